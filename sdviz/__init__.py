"""sdviz: see how Stable Diffusion turns noise into an image, step by step.

    import sdviz
    model = sdviz.load_model()                      # the embedded model by default
    traj = sdviz.generate(model, sdviz.Settings(prompt="a fish on the left and a rocket on the right"))
    sdviz.export.filmstrip(traj).save("filmstrip.png")
    runs = sdviz.compare(model, sdviz.Settings(prompt="a rocket"), {"scheduler": ["ddim", "heun"]}, out="cmp")

The names below load on first use (PEP 562), so `import sdviz` does not import
torch; the sampler and its torch come with the first `Run` or `generate`.
"""

import importlib

_EXPORTS = {
    "ModelFacts": "sdviz.models", "default_model": "sdviz.models", "from_pipeline": "sdviz.models",
    "load_model": "sdviz.models", "Run": "sdviz.sampler", "generate": "sdviz.sampler",
    "Settings": "sdviz.settings", "StepRecord": "sdviz.trajectory", "Trajectory": "sdviz.trajectory",
    "Comparison": "sdviz.comparison", "compare": "sdviz.comparison", "Inversion": "sdviz.inversion",
    "invert": "sdviz.inversion",
}
_SUBMODULES = ("attention", "comparison", "edit", "explain", "export", "families", "fork", "frames", "images", "inversion",
               "limits",
               "models", "noise", "page", "plots", "previews", "sampler", "schedule", "schedulers", "settings", "tokens",
               "trajectory", "views")

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"sdviz.{name}")
    else:
        raise AttributeError(f"module 'sdviz' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])
