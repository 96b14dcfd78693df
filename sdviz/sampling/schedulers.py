"""The scheduler registry: short names over diffusers' own scheduler classes.

Every run gets a fresh scheduler built from the model's scheduler config
(schedulers keep per-run state: step index, multistep history), so nothing
about a run lives on a shared object. Each scheduler fits some model families:
the noise-prediction ones the SD 1.x/2.x, SDXL and LCM UNets, the flow-matching
ones SD3 and Flux.

The few-step schedulers are here too: LCM's and TCD's (consistency: each step
jumps to a clean estimate and noises it again, TCD by its gamma, which is the
run's eta), and the trailing timestep spacing that SD-Turbo, SDXL-Turbo,
SDXL-Lightning and Hyper-SD are distilled for (`*_trailing`).

A model's own scheduler is used exactly as its pipeline builds it: its config's
class from its config, with no override (`model_default`). A diffusers scheduler
class that is not registered is used as it is when sdviz can trace it (it keeps
the training schedule, or is a flow-matching one), and refused by name otherwise;
no scheduler is ever replaced by another.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

from sdviz.messages import text
from sdviz.sampling.errors import InputError, shortened


@dataclass(frozen=True)
class SchedulerSpec:
    """A registered scheduler: the diffusers class and the config it overrides."""

    name: str
    class_name: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    families: tuple[str, ...] = ("sd", "sdxl", "lcm")  # the model families (sdviz.sampling.families) it samples


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
    SchedulerSpec("lcm", "LCMScheduler", "LCM (latent consistency; few steps)"),
    SchedulerSpec("tcd", "TCDScheduler", "TCD (trajectory consistency; eta is its gamma)"),
    SchedulerSpec("euler_trailing", "EulerDiscreteScheduler", "Euler, trailing (SD-Turbo, Lightning)",
                  {"timestep_spacing": "trailing"}),
    SchedulerSpec("euler_a_trailing", "EulerAncestralDiscreteScheduler", "Euler ancestral, trailing (SDXL-Turbo)",
                  {"timestep_spacing": "trailing"}),
    SchedulerSpec("ddim_trailing", "DDIMScheduler", "DDIM, trailing (Hyper-SD)", {"timestep_spacing": "trailing"}),
    SchedulerSpec("flow_euler", "FlowMatchEulerDiscreteScheduler", "Flow matching Euler", families=("sd3", "flux")),
    SchedulerSpec("flow_heun", "FlowMatchHeunDiscreteScheduler", "Flow matching Heun (2nd order)",
                  families=("sd3",)),  # its set_timesteps takes no shift (mu), which Flux's pipeline passes
)

SCHEDULERS: dict[str, SchedulerSpec] = {spec.name: spec for spec in _SPECS}


FLOW_FAMILIES = ("sd3", "flux")


def resolve(name: str) -> SchedulerSpec:
    """The spec for a short name or a diffusers class name (case-insensitive).

    A class name means that class as the model's config sets it, as diffusers'
    `from_config` builds it: the registered entry with no override (`euler`), or,
    where every entry of the class overrides something (DPMSolverMultistepScheduler),
    a spec of the class's own; the short names pick the variants. A diffusers
    scheduler class that is not registered gives a spec of its own too
    (`unregistered`), or is refused, naming why.
    """
    if not isinstance(name, str):
        raise InputError.said("error.scheduler_not_name", value=shortened(name), allowed=", ".join(SCHEDULERS))
    key = name.strip()
    if key.lower() in SCHEDULERS:
        return SCHEDULERS[key.lower()]
    of_class = [spec for spec in _SPECS if spec.class_name.lower() == key.lower()]
    for spec in of_class:
        if not spec.overrides:
            return spec
    if of_class:
        return SchedulerSpec(of_class[0].class_name, of_class[0].class_name, f"{of_class[0].class_name} (as "
                             "the model's config sets it)", families=of_class[0].families)
    spec = unregistered(key)
    if spec is None:
        allowed = ", ".join(SCHEDULERS)
        raise InputError.said("error.unknown_scheduler", name=shortened(name), allowed=allowed)
    return spec


@functools.lru_cache(maxsize=32)
def unregistered(class_name: str) -> SchedulerSpec | None:
    """A spec for a diffusers scheduler class sdviz does not register, used exactly as its config says: None
    when diffusers has no such scheduler; refused (InputError) when sdviz cannot trace its steps.

    Traced are the classes that keep the training schedule (`alphas_cumprod`, from which every step's noise
    level and x0 follow) and step a noise or velocity prediction; and the flow-matching ones (`FlowMatch*`,
    sigmas in [0, 1]), for SD3 and Flux.
    """
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        return None
    stepped = {"model_output", "timestep", "sample"} <= set(inspect.signature(cls.step).parameters)
    instance = cls()
    if class_name.startswith("FlowMatch") and stepped and hasattr(instance, "sigmas"):
        takes_shift = "mu" in inspect.signature(cls.set_timesteps).parameters
        return SchedulerSpec(class_name, class_name, class_name, families=FLOW_FAMILIES if takes_shift else ("sd3",))
    if stepped and hasattr(instance, "alphas_cumprod"):
        return SchedulerSpec(class_name, class_name, class_name)
    raise InputError.said("error.scheduler_untraceable", name=repr(class_name), allowed=", ".join(SCHEDULERS))


def for_family(family: str, own: str | None = None) -> list[str]:
    """The names of the schedulers that can sample a model of this family (and the model's `own`, where it is
    an unregistered class: `ModelFacts.scheduler`)."""
    names = [spec.name for spec in _SPECS if family in spec.families]
    if own and own not in names and family in resolve(own).families:
        names.append(own)
    return names


def check_fits(name: str, family: str) -> str:
    """`name` resolved, if it can sample a model of `family`; else an InputError naming those that can."""
    spec = resolve(name)
    if family not in spec.families:
        raise InputError.said("error.scheduler_not_fit", name=repr(spec.name), family=family,
                              families=", ".join(spec.families), allowed=", ".join(for_family(family)))
    return spec.name


def model_default(family: str, model_config: dict[str, Any]) -> str:
    """The model's own scheduler, as its pipeline builds it: the registered name whose class is the config's and
    whose overrides the config already has (the most specific: `euler_trailing` for a trailing Euler), else
    the config's class itself, unregistered, with no override. Refused when sdviz cannot trace it."""
    class_name = str(model_config.get("_class_name", ""))
    matching = [spec for spec in _SPECS if spec.class_name == class_name and family in spec.families
                and all(model_config.get(key, _UNSET) == value for key, value in spec.overrides.items())]
    if matching:
        return max(matching, key=lambda spec: len(spec.overrides)).name
    spec = resolve(class_name) if class_name else None
    if spec is None or family not in spec.families:
        raise InputError.said("error.model_scheduler_not_fit", name=repr(class_name or text("error.none_named")),
                              family=family, allowed=", ".join(for_family(family)))
    return spec.name


_UNSET = object()


def create(name: str, model_config: dict[str, Any]):
    """A new scheduler instance of `name`, configured from the model's scheduler config."""
    import diffusers

    spec = resolve(name)
    cls = getattr(diffusers, spec.class_name)
    return cls.from_config(dict(model_config), **spec.overrides)


def describe(own: str | None = None) -> list[tuple[str, str, str]]:
    """(short name, diffusers class, label) for every registered scheduler (and `own`, an unregistered one)."""
    specs = list(_SPECS) + ([resolve(own)] if own and own not in SCHEDULERS else [])
    return [(s.name, s.class_name, s.label) for s in specs]


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
