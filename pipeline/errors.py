"""The errors a user sees: one line on stderr that names the fix.

    PipelineError            the base: a known failure with a one-line message
    ├── UsageError           the user can fix the call (a bad option, a missing manifest, an
    │   │                    existing output, missing credentials, no GPU where one was asked
    │   │                    for): exit code 2, argparse's code for usage errors
    │   └── BadParameterError   a model or post-processing parameter (a ValueError too)
    └── RunFailed            the run started and cannot go on (a model that keeps failing, an output
                             that cannot take more): exit code 1; what was committed is kept

The CLI prints `error: <message>` and exits with the class's `exit_code`; `--debug` shows the
traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class PipelineError(Exception):
    """A known failure; the message is one line and names the fix."""

    exit_code = 1


class UsageError(PipelineError):
    """A mistake in how the pipeline was called."""

    exit_code = 2


class RunFailed(PipelineError):
    """A run that cannot go on; `--resume` continues it once the cause is fixed."""

    exit_code = 1


class ModelKeepsFailing(RunFailed):
    """The model failed the same way on every recording of several batches in a row: a broken model,
    or out of memory at every batch size, not bad files. Stops the run (exit code 1)."""


class BadParameterError(UsageError, ValueError):
    """A parameter's value or name is not one the model or post-processing takes (a ValueError too,
    for callers of the Python API that catch those)."""


class OutputExists(UsageError, FileExistsError):
    """The output already holds a run's records and `--resume` was not given."""


def causes(error: BaseException):
    """`error` and everything it wraps or was raised from (depth-first, each once): Ray wraps a
    stage's exception (`RayTaskError`, `UserCodeException`, keeping it as `cause`)."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
