"""The model and the run: settings, the checks of a run's inputs, schedulers, model families, loading,
noise maths, tokens, preview decoders, attention capture, the tasks (generate, edit, invert), the traced
sampler and the trajectory it fills.

The bottom layer: it imports nothing else of sdviz."""

import importlib
import pkgutil

_SUBMODULES = {module.name for module in pkgutil.iter_modules(__path__)}


def __getattr__(name: str):
    """`sdviz.<layer>.<module>` loads the module on first use (PEP 562)."""
    if name not in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
