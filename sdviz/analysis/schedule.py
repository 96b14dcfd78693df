"""The noise schedule of a run: where each scheduler puts its steps, in numbers.

For every entry of a scheduler's timesteps, the noise level the denoiser is
evaluated at, in the three forms the literature uses (*The Illustrated Stable
Diffusion*'s "amounts of noise"):

    sigma       sqrt((1 - alpha_bar) / alpha_bar): noise over signal, the VE form's std
                (flow matching, SD3 and Flux: the interpolation's sigma, x_t = (1 - sigma) x0 + sigma eps)
    alpha_bar   the share of the signal's variance left: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps
                (flow matching: the same ratio of signal to noise, as a variance-preserving alpha_bar)
    snr         alpha_bar / (1 - alpha_bar) = 1 / sigma^2, signal-to-noise ratio ((1 - sigma)^2 / sigma^2
                for flow matching)

The values are diffusers' own: the scheduler is built as a run builds it and
stepped through its timesteps (on a zero sample, so nothing is computed but its
bookkeeping), reading sigma at each entry exactly as the sampler does. So the
second-order schedulers' doubled entries (Heun, KDPM2's interpolated sigmas) and
Karras spacing come out as the run sees them.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from sdviz.sampling import schedulers

COMPARED = ("ddim", "euler", "dpmpp_2m_karras", "heun")  # the overlay's default: uniform, Karras, 2nd order
NATIVE_IMAGE_TOKENS = 4096  # SD3's and Flux's image positions at 1024 x 1024: their shift's default here


def compared_names(family: str = "sd") -> tuple[str, ...]:
    """The overlay's schedulers for a model family: COMPARED where they fit, else all that fit."""
    fitting = schedulers.for_family(family)
    return tuple(name for name in COMPARED if name in fitting) or tuple(fitting)


def schedule_table(scheduler: str, steps: int, scheduler_config: dict[str, Any], family: str | None = None,
                   image_tokens: int | None = None) -> list[dict[str, float]]:
    """One row per entry of the scheduler's timesteps for `steps` steps: index, timestep, sigma,
    alpha_bar, snr (`math.inf` where sigma is 0), with the timesteps set as the model family's pipeline
    sets them (default: the scheduler's first family; SD3's and Flux's shift for `image_tokens` image
    positions, default NATIVE_IMAGE_TOKENS). Computed once per scheduler, step count and config (the page
    redraws its plots at every step shown)."""
    from sdviz.sampling.checks import MAX_STEPS, check_int

    steps = check_int("steps", steps, 1, MAX_STEPS)
    spec = schedulers.resolve(scheduler)
    family = family or spec.families[0]
    config = json.dumps(dict(scheduler_config), sort_keys=True, default=str)
    return [dict(r) for r in _table(spec.name, steps, config, family, image_tokens or NATIVE_IMAGE_TOKENS)]


@functools.lru_cache(maxsize=64)
def _table(scheduler: str, steps: int, config: str, family: str, image_tokens: int) -> tuple[dict[str, float], ...]:
    import torch

    from sdviz.sampling import noise
    from sdviz.sampling.families import FAMILIES

    stepper = schedulers.create(scheduler, json.loads(config))
    FAMILIES[family].timesteps(stepper, steps, "cpu", image_tokens)
    flow = FAMILIES[family].flow
    sample = torch.zeros(1, 1, 2, 2)
    rows = []
    with torch.no_grad():
        for index, timestep in enumerate(stepper.timesteps):
            FAMILIES[family].scale_input(stepper, sample, timestep)  # as in a run: some schedulers expect it first
            sigma = noise.current_sigma(stepper, timestep)
            sample = stepper.step(torch.zeros_like(sample), timestep, sample, return_dict=False)[0]
            rows.append(row(index, float(timestep), sigma, flow))
    return tuple(rows)


def row(index: int, timestep: float, sigma: float, flow: bool = False) -> dict[str, float]:
    """A schedule row from the sigma of one evaluation (flow matching's sigma, when `flow`)."""
    if flow:  # x_t = (1 - sigma) x0 + sigma eps: the same signal-to-noise ratio as a VP alpha_bar
        snr = (1.0 - sigma) ** 2 / (sigma * sigma) if sigma > 0 else math.inf
        alpha_bar = snr / (1.0 + snr) if sigma > 0 else 1.0
    else:
        alpha_bar = 1.0 / (1.0 + sigma * sigma)
        snr = 1.0 / (sigma * sigma) if sigma > 0 else math.inf
    return {"index": index, "timestep": timestep, "sigma": sigma, "alpha_bar": alpha_bar, "snr": snr}


def trajectory_schedule(trajectory) -> list[dict[str, float]]:
    """The schedule a run actually took, read from its records (img2img: only the part it ran)."""
    flow = trajectory.facts.prediction_type == "flow"
    return [row(s.index, s.timestep, s.sigma, flow) for s in trajectory.steps]


def compared(steps: int, scheduler_config: dict[str, Any], names=COMPARED, family: str | None = None,
             image_tokens: int | None = None) -> dict[str, list[dict[str, float]]]:
    """Several schedulers' tables for the same step count: where each spends its steps."""
    return {name: schedule_table(name, steps, scheduler_config, family, image_tokens) for name in names}
