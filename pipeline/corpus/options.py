"""`RunOptions`: the one list of a corpus run's options.

The CLI's `diarize` flags are generated from it (`add_arguments`, `from_args`), `run_corpus` and the
job entry points take it, preflight checks it (`check`), the dry run reads it, and the run's
`summary.json` records it (`summary`). Adding a run option is one field here, with its flag and
help beside it, and its test."""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Sequence

from pipeline.io.storage import add_storage_arguments, public_options, storage_options_from_args

ActorCount = int | str | Sequence[int]
# The options that decide the labels: a `--resume` must continue a run with the same ones (what a run
# used is in OUTPUT/run_options.json, written when it starts), or one output would mix two models.
LABELLING_OPTIONS = (
    "model",
    "model_kwargs",
    "checkpoint",
    "postprocessing_yaml",
    "num_speakers",
    "min_num_speakers",
    "max_num_speakers",
    "exclusive",
)


def model_argument(text: str) -> tuple[str, object]:
    """`key=value` of --model-arg; the value is JSON when it parses (`4`, `0.5`, `true`, `[1, 2]`), else the text."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def run_option(
    default: Any = MISSING, *flags: str, help: str, default_factory: Any = MISSING, **argparse_options: Any
) -> Any:
    """A field of `RunOptions` with its command-line flags (none: set from elsewhere, see `from_args`)."""
    if default_factory is not MISSING:
        default = MISSING
    return field(
        default=default,
        default_factory=default_factory,
        metadata={"flags": flags, "help": help, "argparse": argparse_options},
    )


@dataclass(frozen=True)
class RunOptions:
    manifests: tuple[str, ...] = run_option(
        MISSING,
        "--manifest",
        nargs="+",
        required=True,
        metavar="URI",
        help="manifest URIs or globs (s3://, gs://, file://, paths)",
    )
    output: str = run_option(
        MISSING, "--output", required=True, metavar="URI", help="output folder (local or object store)"
    )
    model: str = run_option(
        "default",
        "--model",
        help="registered name, package.module:factory, or an installed corpus_diarization.models plug-in "
        "(default: %(default)s)",
    )
    model_kwargs: dict = run_option(
        None,
        "--model-arg",
        default_factory=dict,
        action="append",
        type=model_argument,
        metavar="KEY=VALUE",
        help="option passed to the model's factory (repeatable; VALUE read as JSON, else a string)",
    )
    checkpoint: str | None = run_option(
        None, "--checkpoint", metavar="PATH|URI", help="weights for the model, passed to its factory as checkpoint="
    )
    batch_size: int = run_option(4, "--batch-size", type=int, help="recordings per model batch (default: %(default)s)")
    num_actors: ActorCount = run_option(
        1, "--num-actors", metavar="N|MIN,MAX", help="model actor pool size (default: %(default)s)"
    )
    gpus_per_actor: float = run_option(
        0.0, "--gpus-per-actor", type=float, help="GPUs per model actor; >0 requires CUDA (default: CPU)"
    )
    actor_cpus: float = run_option(
        0.5, "--actor-cpus", type=float, help="CPUs reserved per model actor (default: %(default)s)"
    )
    actor_threads: int | None = run_option(
        None,
        "--actor-threads",
        type=int,
        help="torch threads per CPU model actor (default: the node's cores / pool size)",
    )
    task_cpus: float = run_option(
        1.0, "--task-cpus", type=float, help="CPUs reserved per decode and post-processing task (default: %(default)s)"
    )
    resume: bool = run_option(False, "--resume", action="store_true", help="skip inputs already recorded in --output")
    repair: bool = run_option(
        False,
        "--repair",
        action="store_true",
        help="with --resume: set blocks with a damaged part aside (OUTPUT/damaged/) and label their rows again",
    )
    retry_errors: bool = run_option(
        False,
        "--retry-errors",
        action="store_true",
        help="with --resume: label the rows recorded as errors again (a restored file, a fixed line), "
        "each replacing its error record (the old records are kept in OUTPUT/retried/)",
    )
    storage_options: dict = run_option(None, default_factory=dict, help="s3fs/gcsfs options (the CLI's storage flags)")
    num_speakers: int | None = run_option(
        None, "--num-speakers", type=int, help="every file's speaker count (over the rows' num_speakers)"
    )
    min_num_speakers: int = run_option(
        1,
        "--min-speakers",
        "--min-num-speakers",
        type=int,
        help="lower bound of the estimated count (default: %(default)s)",
    )
    max_num_speakers: int = run_option(
        8,
        "--max-speakers",
        "--max-num-speakers",
        type=int,
        help="upper bound of the estimated count when a row gives no num_speakers (default: %(default)s)",
    )
    postprocessing_yaml: str | None = run_option(
        None,
        "--postprocessing-yaml",
        help="NeMo post-processing YAML (parameters: onset, offset, ...), or a preset: nemo, far_field",
    )
    exclusive: bool = run_option(
        False,
        "--exclusive",
        action="store_true",
        help="one speaker at a time: overlapped speech goes to the most active speaker (for aligning ASR words)",
    )
    address: str | None = run_option(
        None, "--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)"
    )
    dry_run: bool = run_option(
        False,
        "--dry-run",
        action="store_true",
        help="read and check every row (fields, ids, audio exists); report rows, hours, errors and cost; write nothing",
    )
    check_audio: bool = run_option(
        False,
        "--check-audio",
        action="store_true",
        help="with --dry-run: also read each file's header for its duration",
    )
    limit: int | None = run_option(
        None, "--limit", type=int, metavar="N", help="only the first N input rows (a trial run)"
    )

    def __post_init__(self) -> None:
        manifests = (self.manifests,) if isinstance(self.manifests, str) else tuple(self.manifests)
        object.__setattr__(self, "manifests", manifests)
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs or {}))
        object.__setattr__(self, "storage_options", dict(self.storage_options or {}))

    @property
    def factory_kwargs(self) -> dict[str, Any]:
        """What the model's factory is called with in every worker: the options, and the checkpoint."""
        return {**self.model_kwargs, **({"checkpoint": self.checkpoint} if self.checkpoint else {})}

    def check(self) -> tuple[int, int]:
        """Every option's value is one the run can use (a `UsageError` naming the flag otherwise);
        returns the actor pool's (min, max) size. Needs neither Ray nor the model's weights."""
        from pipeline.corpus.preflight import check_options

        return check_options(self)

    def summary(self) -> dict[str, Any]:
        """The options as `summary.json` records them: secrets never (`public_options`), the actor pool
        as [min, max]."""
        recorded = asdict(self)
        recorded.update(
            manifests=list(self.manifests),
            storage_options=public_options(self.storage_options),
            num_actors=list(self.check()),
        )
        return recorded

    def labelling(self) -> dict[str, Any]:
        """The options that decide the labels (`LABELLING_OPTIONS`), as JSON values."""
        return json.loads(json.dumps({name: getattr(self, name) for name in LABELLING_OPTIONS}))

    def differences(self, recorded: dict[str, Any]) -> list[str]:
        """`--flag value (now other)` for each labelling option that differs from `recorded`'s."""
        flags = {spec.name: (spec.metadata["flags"] or (spec.name,))[0] for spec in fields(RunOptions)}
        mine = self.labelling()
        return [
            f"{flags[name]} {json.dumps(recorded[name])} (now {json.dumps(mine[name])})"
            for name in LABELLING_OPTIONS
            if name in recorded and recorded[name] != mine[name]
        ]

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The run's flags on `diarize` (the storage flags with them)."""
        for spec in fields(RunOptions):
            if spec.metadata["flags"]:
                extra = dict(spec.metadata["argparse"])
                if not extra.get("required") and extra.get("action") != "append":
                    extra["default"] = spec.default
                parser.add_argument(*spec.metadata["flags"], dest=spec.name, help=spec.metadata["help"], **extra)
        add_storage_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunOptions":
        values = {spec.name: getattr(args, spec.name) for spec in fields(cls) if spec.metadata["flags"]}
        values["model_kwargs"] = dict(values["model_kwargs"] or [])
        return cls(**values, storage_options=storage_options_from_args(args))
