"""The noise schedule of a run: where each scheduler puts its steps, in numbers.

For every entry of a scheduler's timesteps, the noise level the UNet is evaluated
at, in the three forms the literature uses (*The Illustrated Stable Diffusion*'s
"amounts of noise"):

    sigma       sqrt((1 - alpha_bar) / alpha_bar): noise over signal, the VE form's std
    alpha_bar   the share of the signal's variance left: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps
    snr         alpha_bar / (1 - alpha_bar) = 1 / sigma^2, signal-to-noise ratio

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

from sdviz import schedulers

COMPARED = ("ddim", "euler", "dpmpp_2m_karras", "heun")  # the overlay's default: uniform, Karras, 2nd order


def schedule_table(scheduler: str, steps: int, scheduler_config: dict[str, Any]) -> list[dict[str, float]]:
    """One row per entry of the scheduler's timesteps for `steps` steps: index, timestep, sigma,
    alpha_bar, snr (`math.inf` where sigma is 0). Computed once per scheduler, step count and config
    (the page redraws its plots at every step shown)."""
    from sdviz.settings import MAX_STEPS, check_int

    steps = check_int("steps", steps, 1, MAX_STEPS)
    config = json.dumps(dict(scheduler_config), sort_keys=True, default=str)
    return [dict(r) for r in _table(schedulers.resolve(scheduler).name, steps, config)]


@functools.lru_cache(maxsize=64)
def _table(scheduler: str, steps: int, config: str) -> tuple[dict[str, float], ...]:
    import torch

    from sdviz import noise

    stepper = schedulers.create(scheduler, json.loads(config))
    stepper.set_timesteps(steps, device="cpu")
    sample = torch.zeros(1, 1, 2, 2)
    rows = []
    with torch.no_grad():
        for index, timestep in enumerate(stepper.timesteps):
            stepper.scale_model_input(sample, timestep)  # as in a run: some schedulers expect it before step()
            sigma = noise.current_sigma(stepper, timestep)
            sample = stepper.step(torch.zeros_like(sample), timestep, sample, return_dict=False)[0]
            rows.append(row(index, float(timestep), sigma))
    return tuple(rows)


def row(index: int, timestep: float, sigma: float) -> dict[str, float]:
    """A schedule row from the sigma of one evaluation."""
    alpha_bar = 1.0 / (1.0 + sigma * sigma)
    return {"index": index, "timestep": timestep, "sigma": sigma, "alpha_bar": alpha_bar,
            "snr": 1.0 / (sigma * sigma) if sigma > 0 else math.inf}


def trajectory_schedule(trajectory) -> list[dict[str, float]]:
    """The schedule a run actually took, read from its records (img2img: only the part it ran)."""
    return [row(s.index, s.timestep, s.sigma) for s in trajectory.steps]


def compared(steps: int, scheduler_config: dict[str, Any], names=COMPARED) -> dict[str, list[dict[str, float]]]:
    """Several schedulers' tables for the same step count: where each spends its steps."""
    return {name: schedule_table(name, steps, scheduler_config) for name in names}


def plot(tables: dict[str, list[dict[str, float]]], path, marked: int | None = None, title: str = ""):
    """A PNG of log10 sigma over the fraction of the run done, one line per scheduler; `marked`
    (an index into the first table) drawn as a vertical line."""
    from sdviz.plots import line_chart

    series = {}
    for name, table in tables.items():
        last = max(len(table) - 1, 1)
        series[name] = [(r["index"] / last, math.log10(r["sigma"])) for r in table if r["sigma"] > 0]
    first = next(iter(tables.values()))
    mark = marked / max(len(first) - 1, 1) if marked is not None else None
    return line_chart(series, path, x_label="share of the run's steps done", y_label="log10 sigma",
                      title=title, marker=mark)
