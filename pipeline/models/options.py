"""A model's options: each declared with its range beside it (`option(...)`), and checked without
loading weights (`configured`), so that a bad `--model-arg` gets one line that names the fix before
Ray starts (the registry's `check_model_arguments` calls a factory's `check_options`; the model's
constructor uses the same check)."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from typing import Any, Sequence, TypeVar

from pipeline.errors import BadParameterError


@dataclass(frozen=True)
class Limit:
    """The values a numeric option may take: from `low` to `high` (None: unbounded), a whole number
    when `integer`, None too when `optional` (e.g. "the device's default")."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    optional: bool = False

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and int(value) != value:
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            bounds = f" from {self.low:g} to {self.high:g}"
        elif self.low is not None:
            bounds = f" >= {self.low:g}"
        elif self.high is not None:
            bounds = f" <= {self.high:g}"
        else:
            bounds = ""
        return kind + bounds + (", or null" if self.optional else "")


def option(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    optional: bool = False,
    choices: Sequence[Any] | None = None,
    nested: bool = False,
) -> Any:
    """A dataclass field with the values it may take: a number from `low` to `high` (a whole number
    when `integer`, None too when `optional`), one of `choices`, or (`nested`) an options object of
    its own, checked field by field and given as a mapping of them."""
    metadata: dict[str, Any] = {}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    elif not nested:
        metadata["limit"] = Limit(low, high, integer, optional)
    metadata["nested"] = nested
    return field(default=default, default_factory=default_factory, metadata=metadata)


def check_config(config: Any, prefix: str = "") -> None:
    """BadParameterError naming the first option of `config` outside what its `option` allows."""
    for spec in fields(config):
        value = getattr(config, spec.name)
        limit, choices = spec.metadata.get("limit"), spec.metadata.get("choices")
        if limit is not None and not limit.allows(value):
            raise BadParameterError(f"{prefix}{spec.name}={value!r}: must be {limit.describe()}")
        if choices is not None and value not in choices:
            raise BadParameterError(f"{prefix}{spec.name}={value!r}: use one of {list(choices)}")
        if spec.metadata.get("nested") and is_dataclass(value):
            check_config(value, f"{prefix}{spec.name}.")


Config = TypeVar("Config")


def configured(config: Config, **options: Any) -> Config:
    """`config` with `options` applied (a nested option may be a mapping of its fields), checked."""
    known = [spec.name for spec in fields(config)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise BadParameterError(f"no option(s) {unknown}: the options are {known}")
    for spec in fields(config):
        if spec.metadata.get("nested") and spec.name in options:
            options[spec.name] = nested(getattr(config, spec.name), options[spec.name], spec.name)
    config = replace(config, **options)
    check_config(config)
    return config


def nested(current: Any, value: Any, name: str) -> Any:
    """A nested config option given as a mapping (`--model-arg 'clustering={"threshold": 0.8}'`):
    the current config with those fields replaced; a config object passes through."""
    if not isinstance(value, dict):
        if is_dataclass(value) and isinstance(value, type(current)):
            return value
        raise BadParameterError(
            f"{name}={value!r}: give a mapping of its fields, e.g. {name}='{{\"{fields(current)[0].name}\": ...}}'"
        )
    known = {f.name for f in fields(current)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise BadParameterError(f"{name} has no option(s) {unknown}: use some of {sorted(known)}")
    return replace(current, **value)
