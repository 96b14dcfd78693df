"""sdviz: see how Stable Diffusion turns noise into an image, step by step.

    import sdviz
    model = sdviz.load_model()                      # the embedded model by default
    traj = sdviz.generate(model, sdviz.Settings(prompt="a red circle on the left"))
    sdviz.export.filmstrip(traj).save("filmstrip.png")
"""

from sdviz.models import ModelFacts, default_model, from_pipeline, load_model
from sdviz.sampler import Run, generate
from sdviz.settings import Settings
from sdviz.trajectory import StepRecord, Trajectory

__all__ = [
    "ModelFacts", "Run", "Settings", "StepRecord", "Trajectory",
    "default_model", "from_pipeline", "generate", "load_model",
]
__version__ = "0.1.0"
