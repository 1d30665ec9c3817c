"""Where corpus inputs and outputs live: an fsspec filesystem for any URI (`s3://`, `gs://`,
`file://`, plain paths) plus the storage options that reach it.

s3fs is used for S3 because it honours `AWS_ENDPOINT_URL` and the other usual AWS environment
variables (pyarrow's own S3 filesystem ignores the endpoint variable); Ray Data and pyarrow accept
the fsspec filesystem wherever they take `filesystem=`."""

from __future__ import annotations

import argparse
import posixpath
from typing import Any

import fsspec
from fsspec.core import url_to_fs

# Options that may appear in summaries and logs; everything else (keys, secrets, tokens) never does.
PUBLIC_OPTION_KEYS = ("endpoint_url", "anon", "profile")

# Transient S3 errors (HTTP 500/502/503/504, throttling, connection resets) are retried by botocore
# with exponential backoff and jitter; s3fs retries timeouts and cut-short reads on top. Options given
# by the caller win.
S3_RETRIES = {"retries": {"max_attempts": 10, "mode": "standard"}}


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """The object-storage flags every subcommand that reads or writes a run takes."""
    group = parser.add_argument_group("object storage")
    group.add_argument("--endpoint-url", default=None, help="S3 endpoint URL (default: AWS_ENDPOINT_URL / AWS's)")
    group.add_argument("--anonymous", action="store_true", help="read object storage without credentials")
    group.add_argument("--profile", default=None, help="AWS profile for object storage")


def storage_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return storage_options(args.endpoint_url, args.anonymous, args.profile)


def storage_options(
    endpoint_url: str | None = None, anonymous: bool = False, profile: str | None = None
) -> dict[str, Any]:
    """s3fs options from the CLI flags; credentials stay with the AWS environment/profile chain."""
    options: dict[str, Any] = {}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    if anonymous:
        options["anon"] = True
    if profile:
        options["profile"] = profile
    return options


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def options_for(uri: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Storage options apply to object stores only; local paths take none; S3 gets retries."""
    if is_local(uri):
        return {}
    options = dict(options or {})
    if uri.split("://", 1)[0] in ("s3", "s3a"):
        options["config_kwargs"] = {**S3_RETRIES, **options.get("config_kwargs", {})}
    return options


def filesystem(uri: str, options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem holding `uri` and the path of `uri` on it."""
    return url_to_fs(uri, **options_for(uri, options))


def join(uri: str, *parts: str) -> str:
    return posixpath.join(uri.rstrip("/"), *parts)


def public_options(options: dict[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (options or {}).items() if key in PUBLIC_OPTION_KEYS}
