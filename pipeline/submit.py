"""`python -m pipeline submit ...`: Ray's own `ray job submit`, with its options and behaviour (it
uploads `--working-dir`, follows the job's logs, exits with the job's status), run in this process so
that what users trip over first is told in one line that names the fix instead of Ray's traceback:
a head that asks for a token the client does not send (Ray 2.59+ turns token authentication on by
itself), a token that is not the head's, a head that does not answer."""

from __future__ import annotations

import os
from typing import Sequence

PROG = "python -m pipeline submit"
TOKEN_HELP = "docs/cluster.md, 'Token authentication'"


def submit(argv: Sequence[str]) -> int:
    """Runs `ray job submit ARGV`; returns its exit status, 2 with one line for a mistake of set-up."""
    import click
    from ray.dashboard.modules.job.cli import job_cli_group

    try:
        job_cli_group.main(args=["submit", *argv], prog_name=PROG.removesuffix(" submit"), standalone_mode=False)
    except click.exceptions.Exit as done:  # --help
        return done.exit_code
    except click.ClickException as mistake:  # Ray's own usage errors, as Ray prints them
        mistake.show()
        return mistake.exit_code
    except SystemExit as ended:  # the job's status (Ray exits 1 when the job failed or was stopped)
        return ended.code if isinstance(ended.code, int) else 1
    except Exception as error:  # noqa: BLE001 - sorted into set-up mistakes (one line) and the rest
        message = setup_error(error, argv)
        if message is None:
            raise
        print(f"error: {message}", flush=True)
        return 2
    return 0


def setup_error(error: BaseException, argv: Sequence[str]) -> str | None:
    """The line for a client that cannot talk to the head as set up; None for anything else."""
    from ray.exceptions import AuthenticationError

    address = address_in(argv) or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    text = str(error)
    if address is None and (isinstance(error, ConnectionError) or "failed to connect" in text.lower()):
        return "no Ray head named: pass --address http://HEAD:8265 (or set RAY_ADDRESS)"
    address = address or "the head"
    if isinstance(error, AuthenticationError) or "authentication token" in text.lower():
        if "invalid" in text.lower() or "mismatch" in text.lower():
            return (
                f"{address} refused this client's token: set RAY_AUTH_TOKEN to the head's "
                f"(~/.ray/auth_token on the head; {TOKEN_HELP})"
            )
        return (
            f"{address} asks for a token: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the head's "
            f"~/.ray/auth_token> (or copy that file to ~/.ray/auth_token here; {TOKEN_HELP})"
        )
    if isinstance(error, ConnectionError) or "failed to connect" in text.lower():
        return f"cannot reach the Ray dashboard at {address}: check --address (http://HEAD:8265) and that the head runs"
    if isinstance(error, (ValueError, FileNotFoundError)):  # Ray's checks of the job's options (--working-dir ...)
        return text.strip().splitlines()[0] if text.strip() else None
    return None


def address_in(argv: Sequence[str]) -> str | None:
    """The `--address` given (either spelling), before the entry point's `--`."""
    argv = list(argv)
    options = argv[: argv.index("--")] if "--" in argv else argv
    for i, arg in enumerate(options):
        if arg == "--address" and i + 1 < len(options):
            return options[i + 1]
        if arg.startswith("--address="):
            return arg.split("=", 1)[1]
    return None
