"""sdviz: see how Stable Diffusion turns noise into an image, step by step.

    import sdviz
    model = sdviz.load_model()                      # the embedded model by default
    traj = sdviz.generate(model, sdviz.Settings(prompt="a fish on the left and a rocket on the right"))
    sdviz.drawing.sheets.filmstrip(traj).save("filmstrip.png")
    runs = sdviz.compare(model, sdviz.Settings(prompt="a rocket"), {"scheduler": ["ddim", "heun"]}, out="cmp")
    sdviz.trajectory_map(runs.trajectories)         # the path: every step in one plane (also runs.map())
    runs.parting(0, 1)                              # where two variants part

The package is in layers, each importing only the ones below it:

    sdviz.cli        the command line (python -m sdviz, or `sdviz`)
    sdviz.notebook   a run shown in a notebook, and `live`, a widget that follows a run
    sdviz.workflows  writing a run's files, comparing runs, inverting an image
    sdviz.drawing    sheets, GIF/MP4, charts, views, the run page
    sdviz.analysis   schedules, alignment, guidance, forward process, distances, metrics
    sdviz.sampling   settings, models, schedulers, families, the traced sampler, the trajectory

The names below load on first use (PEP 562), so `import sdviz` does not import
torch; the sampler and its torch come with the first `Run` or `generate`. In a Jupyter
kernel, `import sdviz` also registers how a Trajectory and a Comparison show themselves
(their page, inline: `sdviz.notebook.register`).
"""

import importlib
import sys

_EXPORTS = {
    "InputError": "sdviz.sampling.errors",
    "ModelFacts": "sdviz.sampling.models", "default_model": "sdviz.sampling.models",
    "from_pipeline": "sdviz.sampling.models", "load_model": "sdviz.sampling.models",
    "Run": "sdviz.sampling.sampler", "generate": "sdviz.sampling.sampler",
    "Settings": "sdviz.sampling.settings", "StepRecord": "sdviz.sampling.trajectory",
    "Trajectory": "sdviz.sampling.trajectory",
    "Comparison": "sdviz.workflows.compare", "compare": "sdviz.workflows.compare",
    "trajectory_map": "sdviz.analysis.path", "region_words": "sdviz.analysis.path", "parting": "sdviz.analysis.path",
    "Inversion": "sdviz.workflows.invert", "invert": "sdviz.workflows.invert",
    "write_run": "sdviz.workflows.render",
    "live": "sdviz.notebook",
}
_SUBMODULES = ("analysis", "cli", "drawing", "messages", "notebook", "sampling", "workflows")

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


if "IPython" in sys.modules:  # a notebook's kernel (or an IPython shell): runs show themselves there
    from sdviz.notebook import register

    register()
