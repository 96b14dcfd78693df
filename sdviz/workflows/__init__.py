"""What the command line, the app and a notebook all drive: writing a run's files, comparing runs,
inverting an image. Each is the library's one implementation of that task."""

import importlib
import pkgutil

_SUBMODULES = {module.name for module in pkgutil.iter_modules(__path__)}


def __getattr__(name: str):
    """`sdviz.<layer>.<module>` loads the module on first use (PEP 562)."""
    if name not in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
