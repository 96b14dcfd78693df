"""Pictures of runs: sheets and filmstrips, GIF and MP4, line charts, latent and heat views, and the
self-contained run page (its style and scripts are files in templates/).

Drawings import the analysis and sampling layers only; they write no folders of files."""

import importlib
import pkgutil

_SUBMODULES = {module.name for module in pkgutil.iter_modules(__path__)}


def __getattr__(name: str):
    """`sdviz.<layer>.<module>` loads the module on first use (PEP 562)."""
    if name not in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
