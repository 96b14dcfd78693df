"""The scheduler registry: short names over diffusers' own scheduler classes.

Every run gets a fresh scheduler built from the model's scheduler config
(schedulers keep per-run state: step index, multistep history), so nothing
about a run lives on a shared object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SchedulerSpec:
    """A registered scheduler: the diffusers class and the config it overrides."""

    name: str
    class_name: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)


_SPECS = (
    SchedulerSpec("ddim", "DDIMScheduler", "DDIM"),
    SchedulerSpec("pndm", "PNDMScheduler", "PNDM (PLMS)"),
    SchedulerSpec("ddpm", "DDPMScheduler", "DDPM"),
    SchedulerSpec("lms", "LMSDiscreteScheduler", "LMS"),
    SchedulerSpec("euler", "EulerDiscreteScheduler", "Euler"),
    SchedulerSpec("euler_a", "EulerAncestralDiscreteScheduler", "Euler ancestral"),
    SchedulerSpec("heun", "HeunDiscreteScheduler", "Heun (2nd order)"),
    SchedulerSpec(
        "dpmpp_2m",
        "DPMSolverMultistepScheduler",
        "DPM++ 2M",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    SchedulerSpec(
        "dpmpp_2m_karras",
        "DPMSolverMultistepScheduler",
        "DPM++ 2M Karras",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    SchedulerSpec("unipc", "UniPCMultistepScheduler", "UniPC"),
    SchedulerSpec("deis", "DEISMultistepScheduler", "DEIS"),
    SchedulerSpec("kdpm2", "KDPM2DiscreteScheduler", "KDPM2 (2nd order)"),
)

SCHEDULERS: dict[str, SchedulerSpec] = {spec.name: spec for spec in _SPECS}
DEFAULT_SCHEDULER = "ddim"


def resolve(name: str) -> SchedulerSpec:
    """The spec for a short name or a diffusers class name (case-insensitive).

    A class name that several entries share (DPMSolverMultistepScheduler) gives
    the first, plain one; the short names pick the variants.
    """
    if not isinstance(name, str):
        raise ValueError(f"scheduler {name!r:.60} is not a name; allowed: {', '.join(SCHEDULERS)}")
    key = name.strip()
    if key.lower() in SCHEDULERS:
        return SCHEDULERS[key.lower()]
    for spec in _SPECS:
        if spec.class_name.lower() == key.lower():
            return spec
    allowed = ", ".join(SCHEDULERS)
    raise ValueError(f"unknown scheduler {name!r:.60}; allowed: {allowed} (or their diffusers class names)")


def create(name: str, model_config: dict[str, Any]):
    """A new scheduler instance of `name`, configured from the model's scheduler config."""
    import diffusers

    spec = resolve(name)
    cls = getattr(diffusers, spec.class_name)
    return cls.from_config(dict(model_config), **spec.overrides)


def describe() -> list[tuple[str, str, str]]:
    """(short name, diffusers class, label) for every registered scheduler."""
    return [(s.name, s.class_name, s.label) for s in _SPECS]
