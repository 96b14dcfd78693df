"""What a run is asked to do (`Settings`), and what it was (`RunSettings`, a trajectory's).

The checks that refuse bad values, and the ranges they allow, live in `sdviz.sampling.checks`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from sdviz.sampling.checks import resolve


@dataclass(frozen=True)
class Settings:
    """One run's parameters. width/height None mean the model's native size, scheduler None the model's own."""

    prompt: str = ""
    negative_prompt: str = ""
    scheduler: str | None = None
    steps: int = 20
    guidance: float = 7.5
    eta: float = 0.0
    seed: int = 0
    width: int | None = None
    height: int | None = None
    strength: float = 0.8  # img2img only: how much of the schedule to run
    preview: str = "full"
    every: int = 1  # decode previews every N steps (the last step always)
    source_prompt: str | None = None  # an edit (CycleDiffusion, img2img only): the text the init image shows
    source_guidance: float = 1.0  # an edit: guidance of the source prompt's half of the batch
    invert: bool = False  # inversion (init image only): the image run backwards to noise (DDIM; flow: Euler)
    true_cfg: float = 1.0  # Flux only: real classifier-free guidance with the negative prompt when above 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, facts) -> Settings:
        """These settings with the size and scheduler filled in from the model's `ModelFacts` and checked
        against it (`checks.resolve`)."""
        return resolve(self, facts)


@dataclass(frozen=True)
class RunSettings(Settings):
    """A run's settings as it ran (a trajectory's): its size and scheduler resolved, and what else it was."""

    model: str = ""  # the model's display name
    img2img: bool = False
    forked_from: dict[str, Any] | None = None  # {"at": step index, "parent": the parent run's settings}
    start_latents: bool = False  # the run started from given latents (its x_start), not the seed's noise

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> RunSettings:
        """A saved run's settings (`to_dict`); a field an older file lacks takes its default."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def asked(self) -> Settings:
        """The Settings the run was asked for, as a new run takes them."""
        return Settings(**{f.name: getattr(self, f.name) for f in fields(Settings)})
