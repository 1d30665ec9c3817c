"""What the corpus plan hands Ray for its stages: the stages of `pipeline.corpus.stages`, imported in
the worker that runs them, never in the driver.

Ray pickles a stage by reference (module and name), so the driver imports the module a stage is
defined in. The stages need torch and the models (about 1.5 s to import and 0.3 GB of the driver's
memory); these references need neither, so a corpus run's driver never loads torch. Each keeps its
stage's name, which Ray shows in progress lines and process titles (`MapBatches(DiarizeForward)`)."""

from __future__ import annotations

from typing import Any


def decode_recording(row: dict[str, Any], **options: Any) -> dict[str, Any]:
    from pipeline.corpus import stages

    return stages.decode_recording(row, **options)


def postprocess_batch(batch: dict[str, Any], **options: Any) -> dict[str, Any]:
    from pipeline.corpus import stages

    return stages.postprocess_batch(batch, **options)


class DiarizeForward:
    """The model actor (`stages.DiarizeForward`): built in the actor's process."""

    def __init__(self, **options: Any):
        from pipeline.corpus import stages

        self._actor = stages.DiarizeForward(**options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self._actor(batch)
