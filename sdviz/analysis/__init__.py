"""What a trajectory means, in numbers: noise schedules, lining runs up, guidance decomposed, the
forward process and latent space, distances to the final image, an edit's departure, metrics.

Analyses return values; they import the sampling layer only."""

import importlib
import pkgutil

_SUBMODULES = {module.name for module in pkgutil.iter_modules(__path__)}


def __getattr__(name: str):
    """`sdviz.<layer>.<module>` loads the module on first use (PEP 562)."""
    if name not in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
