"""The scheduler registry: short names over diffusers' own scheduler classes.

Every run gets a fresh scheduler built from the model's scheduler config
(schedulers keep per-run state: step index, multistep history), so nothing
about a run lives on a shared object. Each scheduler fits some model families:
the noise-prediction ones the SD 1.x/2.x and SDXL UNets, the flow-matching ones
SD3 and Flux.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdviz.sampling.errors import InputError, shortened


@dataclass(frozen=True)
class SchedulerSpec:
    """A registered scheduler: the diffusers class and the config it overrides."""

    name: str
    class_name: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    families: tuple[str, ...] = ("sd", "sdxl")  # the model families (sdviz.sampling.families) it can sample


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
    SchedulerSpec("flow_euler", "FlowMatchEulerDiscreteScheduler", "Flow matching Euler", families=("sd3", "flux")),
    SchedulerSpec("flow_heun", "FlowMatchHeunDiscreteScheduler", "Flow matching Heun (2nd order)",
                  families=("sd3",)),  # its set_timesteps takes no shift (mu), which Flux's pipeline passes
)

SCHEDULERS: dict[str, SchedulerSpec] = {spec.name: spec for spec in _SPECS}


def resolve(name: str) -> SchedulerSpec:
    """The spec for a short name or a diffusers class name (case-insensitive).

    A class name that several entries share (DPMSolverMultistepScheduler) gives
    the first, plain one; the short names pick the variants.
    """
    if not isinstance(name, str):
        raise InputError(f"scheduler {shortened(name)} is not a name; allowed: {', '.join(SCHEDULERS)}")
    key = name.strip()
    if key.lower() in SCHEDULERS:
        return SCHEDULERS[key.lower()]
    for spec in _SPECS:
        if spec.class_name.lower() == key.lower():
            return spec
    allowed = ", ".join(SCHEDULERS)
    raise InputError(f"unknown scheduler {name!r:.60}; allowed: {allowed} (or their diffusers class names)")


def for_family(family: str) -> list[str]:
    """The short names of the schedulers that can sample a model of this family."""
    return [spec.name for spec in _SPECS if family in spec.families]


def check_fits(name: str, family: str) -> str:
    """`name` resolved, if it can sample a model of `family`; else a ValueError naming those that can."""
    spec = resolve(name)
    if family not in spec.families:
        raise InputError(f"scheduler {spec.name!r} does not fit this model ({family}): it samples "
                         f"{', '.join(spec.families)} models; allowed: {', '.join(for_family(family))}")
    return spec.name


def model_default(family: str, model_config: dict[str, Any]) -> str:
    """The model's own scheduler (its config's class) as a registered name, as its pipeline would run it;
    where that class is not registered for the family, the family's first."""
    class_name = str(model_config.get("_class_name", ""))
    for spec in _SPECS:
        if spec.class_name == class_name and family in spec.families:
            return spec.name
    return for_family(family)[0]


def create(name: str, model_config: dict[str, Any]):
    """A new scheduler instance of `name`, configured from the model's scheduler config."""
    import diffusers

    spec = resolve(name)
    cls = getattr(diffusers, spec.class_name)
    return cls.from_config(dict(model_config), **spec.overrides)


def describe() -> list[tuple[str, str, str]]:
    """(short name, diffusers class, label) for every registered scheduler."""
    return [(s.name, s.class_name, s.label) for s in _SPECS]


class FlowInverse:
    """Flow matching's Euler steps run backwards: from the image (sigma 0) up the forward run's sigmas to the
    noise (sigma 1), each step x + (sigma_next - sigma) * v with the velocity v predicted at the current sigma
    (the explicit Euler step FlowMatchEulerDiscreteScheduler takes, in the other direction, as RF-Inversion's
    uncontrolled inversion does; Rout et al., 2024). diffusers has no inverse flow scheduler; this one keeps
    its step index as theirs do, so `sdviz.sampling.noise.current_sigma` reads it.

    forward: a flow-matching scheduler whose timesteps are set (the shift of the run's image size included).
    """

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, forward):
        self.config = forward.config
        self.sigmas = forward.sigmas.flip(0)  # 0 (the image) ... 1 (noise)
        self.timesteps = (self.sigmas[:-1] * forward.config.num_train_timesteps).to(forward.timesteps.device)
        self.num_inference_steps = len(self.timesteps)
        self.step_index = 0

    def step(self, model_output, timestep, sample, return_dict: bool = False):
        """(the sample one level up, x0 = sample - sigma * v); `timestep` is the current entry's."""
        sigma, sigma_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        self.step_index += 1
        return sample + (sigma_next - sigma) * model_output, sample - sigma * model_output
