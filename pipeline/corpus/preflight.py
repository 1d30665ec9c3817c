"""Checks a corpus run makes before any work, each failing in seconds with one line naming the fix
(`UsageError`): the options, the model (before Ray starts), that the output can be written (the
lease, see `lease.py`), and the resources the model actors ask for against what the cluster has or
its autoscaler can add. A wrong flag should cost seconds, not GPU hours or a hang."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.config import PostProcessingParams
    from pipeline.corpus.options import ActorCount, RunOptions


class CheckedRun(NamedTuple):
    manifests: list[str]  # the manifest URIs, globs expanded
    pool: tuple[int, int]  # the actor pool's (min, max) size
    postprocessing: PostProcessingParams | None  # from --postprocessing-yaml


def check_run(run: RunOptions) -> CheckedRun:
    """Every check that needs neither torch nor Ray, in the order a user fixes them: the options, the
    model and its options, the post-processing YAML, that the manifests exist, and that the output
    holds no other run's records unless resuming, nor a lease another run holds (the lease names
    the holder; `run_corpus` takes it for real). The CLI calls it before importing either: a mistake is one line
    in under two seconds."""
    from pipeline.config import load_postprocessing_from_yaml
    from pipeline.io.manifest import expand_manifests

    pool = run.check()
    check_model(run.model, run.factory_kwargs)
    postprocessing = load_postprocessing_from_yaml(run.postprocessing_yaml)
    manifests = expand_manifests(run.manifests, run.storage_options)
    if not run.dry_run:
        from pipeline.corpus.lease import OutputLease
        from pipeline.corpus.outputs import OutputLayout

        OutputLease(run.output, run.storage_options).refuse_if_held(resume=run.resume)  # names the holder
        layout = OutputLayout(run.output, run.storage_options)
        if layout.check_fresh(run.resume):
            check_same_labelling(run, layout)
    return CheckedRun(manifests, pool, postprocessing)


def check_options(run: RunOptions) -> tuple[int, int]:
    """Validates the run options (each failure names its flag); returns the actor pool's (min, max) size."""
    whole_number_at_least(run.batch_size, 1, "--batch-size")
    if run.repair and not run.resume:
        raise UsageError("--repair goes with --resume: it mends a run's output to continue it")
    if run.retry_errors and not run.resume:
        raise UsageError("--retry-errors goes with --resume: it labels again the error rows of a run's output")
    whole_number_at_least(run.max_num_speakers, 1, "--max-num-speakers")
    whole_number_at_least(run.min_num_speakers, 1, "--min-num-speakers")
    if int(run.min_num_speakers) > int(run.max_num_speakers):
        raise UsageError(
            f"--min-num-speakers ({run.min_num_speakers}) is above --max-num-speakers ({run.max_num_speakers})"
        )
    if run.num_speakers is not None:
        whole_number_at_least(run.num_speakers, 1, "--num-speakers")
    if run.actor_threads is not None:
        whole_number_at_least(run.actor_threads, 1, "--actor-threads")
    if run.limit is not None:
        whole_number_at_least(run.limit, 0, "--limit")
    number_at_least(run.gpus_per_actor, 0, "--gpus-per-actor")
    number_at_least(run.actor_cpus, 0, "--actor-cpus")
    number_at_least(run.task_cpus, 0, "--task-cpus", strictly=True)
    if float(run.gpus_per_actor) > 1 and not float(run.gpus_per_actor).is_integer():
        raise UsageError(
            f"--gpus-per-actor must be a fraction of one GPU or a whole number of GPUs, got {run.gpus_per_actor}"
        )
    return actor_pool_size(run.num_actors)


def actor_pool_size(num_actors: ActorCount) -> tuple[int, int]:
    """`4` -> (4, 4); `"1,4"` or `(1, 4)` -> (1, 4)."""
    try:
        if isinstance(num_actors, str):
            parts = [int(part) for part in num_actors.split(",")]
        else:
            parts = [num_actors] if isinstance(num_actors, int) else [int(part) for part in num_actors]
    except (TypeError, ValueError):
        parts = []
    if not 1 <= len(parts) <= 2 or not 1 <= parts[0] <= parts[-1]:
        raise UsageError(f"--num-actors must be N >= 1 or MIN,MAX with 1 <= MIN <= MAX, got {num_actors!r}")
    return int(parts[0]), int(parts[-1])


def check_collar(collar: Any) -> float:
    number_at_least(collar, 0, "--collar")
    return float(collar)


def check_same_labelling(run: RunOptions, layout) -> None:
    """A `--resume` continues the run in `layout` with the options that decide its labels, or is
    refused naming each that differs (one output, one model and setting)."""
    recorded = layout.recorded_options()
    differing = run.differences(recorded) if recorded else []
    if differing:
        raise UsageError(
            f"--resume continues the run in {run.output} with its own options, and these differ: "
            f"{'; '.join(differing)}; rerun with the run's options, or choose another --output"
        )


def check_model(model: str, model_kwargs: dict[str, Any]) -> None:
    """The model resolves here (registered, module:factory or plug-in) and takes these options;
    it is not built (weights load in the actors; a built-in's options are checked torch-free)."""
    from pipeline.models.registry import check_model_arguments

    check_model_arguments(model, model_kwargs)


def whole_number_at_least(value: Any, low: int, flag: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{flag} must be a whole number >= {low}, got {value!r}")


def number_at_least(value: Any, low: float, flag: str, strictly: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strictly and value == low):
        raise UsageError(f"{flag} must be a number {'>' if strictly else '>='} {low:g}, got {value!r}")


# ---------------------------------------------------------------------- resources (Ray connected)


def check_resources(gpus_per_actor: float, actor_cpus: float, min_actors: int) -> None:
    """Refuse a pool the cluster can never start: no node (alive, or of a type the autoscaler can
    add) fits one actor, or, without an autoscaler, the nodes fit fewer than `min_actors` GPU actors.
    Ray would otherwise wait forever for the resources (the autoscaler logs, nothing fails)."""
    import ray

    need = {"GPU": float(gpus_per_actor), "CPU": float(actor_cpus)}
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    node_types = autoscaler_node_types()
    fits_now = sum(actors_that_fit(node, need) for node in nodes)
    if fits_now >= min_actors or any(actors_that_fit(kind, need) for kind in node_types):
        return
    total = ray.cluster_resources()
    have = f"the cluster has {total.get('GPU', 0):g} GPU(s) and {total.get('CPU', 0):g} CPU(s) on {len(nodes)} node(s)"
    scaling = (
        "its autoscaler has no node type that fits one actor"
        if node_types
        else "and no autoscaler that could add nodes"
    )
    if fits_now == 0:
        wanted = (
            f"a model actor needs {need['GPU']:g} GPU(s) and {need['CPU']:g} CPU(s) (--gpus-per-actor, --actor-cpus)"
        )
        fix = (
            "use --gpus-per-actor 0 to run the model on CPUs, or a cluster with GPUs"
            if need["GPU"]
            else "lower --actor-cpus"
        )
    else:
        wanted = f"--num-actors asks for at least {min_actors} model actors but only {fits_now} fit"
        fix = f"use --num-actors {fits_now} or MIN,MAX with MIN <= {fits_now}"
    raise UsageError(f"{wanted}; {have}, {scaling}; {fix}")


def actors_that_fit(resources: dict[str, float], need: dict[str, float]) -> int:
    counts = [math.floor(resources.get(name, 0.0) / amount + 1e-9) for name, amount in need.items() if amount > 0]
    return min(counts) if counts else 1


def autoscaler_node_types() -> list[dict[str, float]]:
    """Resources of each node type the cluster's autoscaler may add (empty without an autoscaler):
    the cluster config the autoscaler reports to the GCS, else the cluster launcher's bootstrap
    config on the head node."""
    types: list[dict[str, float]] = []
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        if config is not None:
            types = [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]
    except Exception:  # noqa: BLE001 - a private API: absent or changed means "unknown", not an error
        types = []
    if types:
        return types
    bootstrap = os.path.expanduser("~/ray_bootstrap_config.yaml")
    if os.path.exists(bootstrap):
        import yaml

        with open(bootstrap) as f:
            config = yaml.safe_load(f) or {}
        for kind in (config.get("available_node_types") or {}).values():
            if kind.get("max_workers", 1) != 0:  # resources left to auto-detection: assume they may fit
                types.append(
                    {k: float(v) for k, v in kind["resources"].items()}
                    if kind.get("resources")
                    else {"CPU": math.inf, "GPU": math.inf}
                )
    return types
