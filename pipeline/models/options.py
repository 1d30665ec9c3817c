"""Checks of a model's options without loading its weights, so that a bad `--model-arg` gets one
line that names the fix before Ray starts (the registry's `check_model_arguments` calls a factory's
`check_options`; the model's constructor uses the same check)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Sequence

from ..errors import BadParameterError


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


def check_values(config: Any, limits: dict[str, Limit], choices: dict[str, Sequence[str]] | None = None, prefix: str = "") -> None:
    """UsageError naming the first option of `config` (a dataclass) outside its `limits` or `choices`."""
    for name, limit in limits.items():
        value = getattr(config, name)
        if not limit.allows(value):
            raise BadParameterError(f"{prefix}{name}={value!r}: must be {limit.describe()}")
    for name, allowed in (choices or {}).items():
        value = getattr(config, name)
        if value not in allowed:
            raise BadParameterError(f"{prefix}{name}={value!r}: use one of {sorted(allowed)}")


def nested(current: Any, value: Any, name: str) -> Any:
    """A nested config option given as a mapping (`--model-arg 'clustering={"threshold": 0.8}'`):
    the current config with those fields replaced; a config object passes through."""
    if not isinstance(value, dict):
        if is_dataclass(value) and isinstance(value, type(current)):
            return value
        raise BadParameterError(f"{name}={value!r}: give a mapping of its fields, e.g. {name}='{{\"{fields(current)[0].name}\": ...}}'")
    known = {f.name for f in fields(current)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise BadParameterError(f"{name} has no option(s) {unknown}: use some of {sorted(known)}")
    return replace(current, **value)
