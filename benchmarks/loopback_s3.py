"""An S3 API on loopback for the benchmarks (moto's server, as the tests use): fake credentials where
none are set, the request log silenced, the server stopped on exit."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator


@contextlib.contextmanager
def loopback_s3() -> Iterator[str]:
    """The endpoint URL of a fresh moto server on 127.0.0.1, at a port the system chose."""
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server._server.server_address[:2]  # noqa: SLF001 - the port it chose
        yield f"http://{host}:{port}"
    finally:
        server.stop()
