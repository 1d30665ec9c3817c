"""Model registry: `load_model(name)` builds a ready diarization model, in any process.

A model is any `SpkDiarizationMixin` (see its docstring for the contract). `name` is one of:

- a name registered with `@register_model("name")` in this package (`"default"`);
- `"package.module:factory"` (the `module:attr` convention of entry points): the module is imported
  and the attribute called, in the driver and in every Ray worker alike, so a model defined in user
  code needs nothing but to be importable there;
- the name of an installed plug-in: an entry point of the group `corpus_diarization.models`
  (`[project.entry-points."corpus_diarization.models"] my-model = "my_pkg.models:build"`).

A registry filled by `@register_model` in user code lives in that process only (Ray workers never
import the user's notebook), which is why the two forms above exist. Model options reach the
factory as keyword arguments (`--model-arg key=value`, `run_corpus(model_kwargs=...)`), a
checkpoint path or URI as `checkpoint=`."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

from pipeline.errors import BadParameterError, UsageError

if TYPE_CHECKING:
    import torch

ENTRY_POINT_GROUP = "corpus_diarization.models"

# The built-in models' packages. Each one's top level is torch-free and gives `MODEL_NAME` and
# `check_options`, so that a wrong name or --model-arg is told before torch (or Ray) loads; its
# `model` module registers the factory.
BUILTIN_PACKAGES = (
    "pipeline.models.overlap_aware",
    "pipeline.models.ge2e",
    "pipeline.models.pyannote_pipeline",
    "pipeline.models.nemo_sortformer",
)

_REGISTRY: dict[str, Callable] = {}


class UnknownModelError(UsageError, KeyError):
    """A model name that is neither registered, nor `module:factory`, nor an installed plug-in."""

    __str__ = Exception.__str__  # KeyError would quote the message


def register_model(name: str) -> Callable:
    def decorate(factory: Callable) -> Callable:
        _REGISTRY[name] = factory
        return factory

    return decorate


def plugin_models() -> dict[str, Any]:
    """Installed plug-ins: entry point name -> entry point (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def builtin_packages() -> dict[str, ModuleType]:
    """Built-in model name -> its (torch-free) package."""
    packages = [importlib.import_module(name) for name in BUILTIN_PACKAGES]
    return {package.MODEL_NAME: package for package in packages}


def available_models() -> list[str]:
    return sorted(set(_REGISTRY) | set(builtin_packages()) | set(plugin_models()))


def resolve_model_factory(name: str) -> Callable:
    """The callable that builds model `name`; raises `UnknownModelError` (one line) when there is none.
    Only what `name` needs is imported: its module for a `module:factory`, its own package for a
    built-in."""
    if name not in _REGISTRY and ":" in name:
        return _import_factory(name)
    if name not in _REGISTRY and name in (builtins := builtin_packages()):
        importlib.import_module(builtins[name].__name__ + ".model")  # registers it
    if name in _REGISTRY:
        return _REGISTRY[name]
    plugins = plugin_models()
    if name in plugins:
        try:
            return plugins[name].load()
        except Exception as error:  # noqa: BLE001 - a broken plug-in is named, not a traceback
            raise UnknownModelError(
                f"model plug-in {name!r} ({plugins[name].value}) cannot be loaded: {type(error).__name__}: {error}"
            ) from error
    raise UnknownModelError(
        f"unknown model {name!r}; available: {available_models()} "
        f"(or give a factory as package.module:function, "
        f"or install a plug-in of the entry-point group {ENTRY_POINT_GROUP!r})"
    )


def _import_factory(reference: str) -> Callable:
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise UnknownModelError(
            f"model {reference!r}: cannot import module {module_name!r} ({error}); "
            "is it installed or on PYTHONPATH on every node?"
        ) from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UnknownModelError(f"model {reference!r}: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UnknownModelError(f"model {reference!r}: {attribute!r} is not callable")
    return target


def check_model_arguments(name: str, kwargs: dict[str, Any]) -> None:
    """Fail before any work when the factory cannot take `kwargs` (a misspelt --model-arg), or
    when its `check_options(**kwargs)` (a factory may offer one: a check without loading weights)
    refuses their values. A built-in model's options are checked by its package, torch-free."""
    builtin = builtin_packages().get(name) if name not in _REGISTRY else None
    try:
        if builtin is not None:
            builtin.check_options(**kwargs)
            return
        factory = resolve_model_factory(name)
        try:
            inspect.signature(factory).bind(**kwargs)
        except ValueError:  # a builtin or C callable: no signature to check
            pass
        check = getattr(factory, "check_options", None)
        if callable(check):
            check(**kwargs)
    except TypeError as error:
        raise UsageError(f"model {name!r} does not take these options {sorted(kwargs)}: {error}") from error
    except BadParameterError as error:
        raise BadParameterError(f"model {name!r}: {error}") from error


def linking_threshold(name: str) -> float | None:
    """The cosine threshold at which `link-speakers` merges speakers of model `name`, as the model
    declares it (`linking_threshold`, chosen on a dev split); None when it declares none or cannot be
    resolved here."""
    from pipeline.models.contract import ModelTraits

    try:
        factory = resolve_model_factory(name)
    except UsageError:
        return None
    threshold = ModelTraits.of(factory).linking_threshold
    return float(threshold) if threshold is not None else None


def resolve_device(device: str | torch.device | None) -> torch.device:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was requested but CUDA is not usable in this process")
    return device


def load_model(name: str = "default", device: str | torch.device | None = None, **kwargs):
    """Model `name` (registered, `module:factory` or plug-in) built with `kwargs`, in eval mode, on
    `device` (CUDA when available if None). Models that are not `nn.Module`s are returned as built."""
    import torch

    model = resolve_model_factory(name)(**kwargs)
    if isinstance(model, torch.nn.Module):
        model = model.to(resolve_device(device)).eval()
    return model
