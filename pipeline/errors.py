"""User-facing errors: a mistake the user can fix gets one line on stderr that names the fix.

Raise `UsageError` for a bad option, a missing manifest, an existing output, missing credentials,
no GPU where one was asked for: the CLI prints `error: <message>` and exits 2 (argparse's code for
usage errors); `--debug` shows the traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UsageError(Exception):
    """A mistake in how the pipeline was called; the message is one line and names the fix."""

    exit_code = 2


class BadParameterError(UsageError, ValueError):
    """A parameter's value or name is not one the model or post-processing takes (a ValueError too,
    for callers of the Python API that catch those)."""
