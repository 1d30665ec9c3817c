"""Model registry: `load_model(name)` builds a ready diarization model by name.

A model is any `SpkDiarizationMixin` (and usually an `nn.Module`); register another one (a NeMo
checkpoint wrapper, say) with `@register_model("name")` and the Ray pipeline can run it by name."""

from __future__ import annotations

from typing import Callable

import torch

_REGISTRY: dict[str, Callable] = {}


def register_model(name: str) -> Callable:
    def decorate(factory: Callable) -> Callable:
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_models() -> list[str]:
    _import_builtin_models()
    return sorted(_REGISTRY)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was requested but CUDA is not usable in this process")
    return device


def load_model(name: str = "default", device: str | torch.device | None = None, **kwargs):
    """The model registered as `name`, in eval mode, on `device` (CUDA when available if None)."""
    _import_builtin_models()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs).to(resolve_device(device)).eval()


def _import_builtin_models() -> None:
    from . import default  # noqa: F401  (registers "default")
