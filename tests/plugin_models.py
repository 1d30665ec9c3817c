"""A small model defined outside the package, as a user's would be: a plain `SpkDiarizationMixin`
(not an `nn.Module`) that calls every 100 ms frame above an energy threshold speech of one speaker.

Loaded by `module:factory` (`plugin_models:energy_diarizer`, this folder being on the path of the
driver and, through Ray's driver sys.path, of its workers) or as an entry-point plug-in. Options
make it misbehave on purpose for the fault tests: `fail="always"` (a model bug), `fail="one_item_short"`
(a forward that breaks the contract: one item fewer than the batch's recordings), `fail_on="<id
substring>"` (one bad recording), `oom_above=N` (CUDA out of memory for batches of more than N
recordings), `batch_log=PATH` (appends the size of every forward batch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pipeline.api import SpkDiarizationMixin
from pipeline.io.audio import SAMPLE_RATE

FRAME_SECONDS = 0.1


class EnergyDiarizer(SpkDiarizationMixin):
    def __init__(
        self,
        threshold_db: float = -50.0,
        fail: str | None = None,
        fail_on: str | None = None,
        oom_above: int | None = None,
        batch_log: str | None = None,
    ):
        super().__init__()
        self.threshold_db = float(threshold_db)
        self.fail, self.fail_on, self.batch_log = fail, fail_on, batch_log
        self.oom_above = None if oom_above is None else int(oom_above)

    def _diarize_forward(self, batch):
        size = len(batch.uniq_ids)
        if self.batch_log:
            with open(self.batch_log, "a") as log:
                log.write(f"{size}\n")
        if self.fail == "always":
            raise RuntimeError("energy model is broken: weights have the wrong shape")
        if self.oom_above is not None and size > self.oom_above:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB for a batch of {size}")
        if self.fail_on and any(self.fail_on in uid for uid in batch.uniq_ids):
            raise ValueError(f"cannot handle {self.fail_on}")
        frame = int(FRAME_SECONDS * SAMPLE_RATE)
        items = []
        for audio, length, offset, uid in zip(batch.audio, batch.audio_lengths, batch.offsets, batch.uniq_ids):
            samples = audio[: int(length)].cpu().numpy()
            frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
            energy_db = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
            items.append({"uniq_id": uid, "offset": float(offset), "energy_db": energy_db.astype(np.float32)})
        return items[:-1] if self.fail == "one_item_short" else items

    def _diarize_output_processing(self, outputs, uniq_ids, diarcfg):
        segments = []
        for output in outputs:
            speech = np.concatenate([[False], output["energy_db"] > self.threshold_db, [False]])
            edges = np.flatnonzero(np.diff(speech.astype(np.int8)))
            turns = [
                (output["offset"] + start * FRAME_SECONDS, output["offset"] + end * FRAME_SECONDS)
                for start, end in zip(edges[::2], edges[1::2])
            ]
            segments.append([f"{start:.3f} {end:.3f} speaker_0" for start, end in turns])
        if diarcfg.include_tensor_outputs:
            return segments, [
                torch.from_numpy((o["energy_db"] > self.threshold_db).astype(np.float32))[None, :, None]
                for o in outputs
            ]
        return segments


def energy_diarizer(checkpoint: str | None = None, **options) -> EnergyDiarizer:
    """The factory: a checkpoint is a JSON file of options (here just `threshold_db`)."""
    if checkpoint:
        options = {**json.loads(Path(checkpoint).read_text()), **options}
    return EnergyDiarizer(**options)
