"""The explaining panels' plots and words, from a run (no gradio): the noise schedule, where schedulers
spend their steps, each step's distance to the final image (each plot's data with the shown step marked),
and the words beside them: where the picture is decided, the guidance formula at a step.
"""

from __future__ import annotations

import math

import pandas as pd

from sdviz.analysis import schedule
from sdviz.analysis.distance import SETTLED_DISTANCE, settled_step
from sdviz.analysis.forward import img2img_start
from sdviz.analysis.guidance import guidance_example
from sdviz.messages import text
from sdviz.sampling import schedulers

SCHEDULE_SERIES = {"plot.log_sigma": "#1f77b4", "plot.alpha_bar": "#ff7f0e", "plot.log_snr": "#2ca02c",
                   "plot.this_step": "#000000"}  # each curve's catalogue key and colour
DISTANCE_SERIES = {"plot.x0_distance": "#d62728", "plot.x_t_distance": "#1f77b4", "plot.threshold": "#aaaaaa",
                   "plot.settled": "#d0508a", "plot.this_step": "#000000"}
SCHEDULE_COLOURS = {text(key, "en"): colour for key, colour in SCHEDULE_SERIES.items()}  # as the page is built
DISTANCE_COLOURS = {text(key, "en"): colour for key, colour in DISTANCE_SERIES.items()}  # (each session's, in its own)


def mark(frame: pd.DataFrame, x: float, name: str, column: str = "curve") -> pd.DataFrame:
    """A vertical line at x across the frame's value range, as its own series."""
    low, high = float(frame["value"].min()), float(frame["value"].max())
    line = pd.DataFrame({frame.columns[0]: [x, x], "value": [low, high], column: [name, name]})
    return pd.concat([frame, line], ignore_index=True)


def schedule_frame(traj, index: int) -> pd.DataFrame:
    """log10 sigma, alpha_bar and log10 SNR at each of the run's steps, and the shown step marked."""
    rows = []
    def log10(value: float) -> float | None:  # flow matching starts at pure noise: SNR 0, no logarithm
        return math.log10(value) if 0 < value < math.inf else None

    for row in schedule.trajectory_schedule(traj):
        step = row["index"] + 1
        rows += [(step, value, name) for value, name in zip(
            (log10(row["sigma"]), row["alpha_bar"], log10(row["snr"])), map(text, SCHEDULE_SERIES))
            if value is not None]
    return mark(pd.DataFrame(rows, columns=["step", "value", "curve"]), index + 1, text("plot.this_step"))


def run_start(traj, scheduler_config: dict) -> int:
    """The entry of its scheduler's full schedule a run started at: 0, or where img2img's strength put it
    (the run is the schedule's tail)."""
    settings = traj.settings
    if not settings.img2img:
        return 0
    order = schedulers.create(settings.scheduler, scheduler_config).order
    return img2img_start(settings.steps, settings.strength, order,
                                 traj.facts.prediction_type == "flow")


def compared_frame(traj, scheduler_config: dict, index: int) -> pd.DataFrame:
    """log10 sigma over the share of the steps done, for this run's scheduler and the usual others,
    with the run's step marked on its scheduler's full schedule."""
    family = traj.facts.family
    names = [traj.settings.scheduler, *(n for n in schedule.compared_names(family) if n != traj.settings.scheduler)]
    image_tokens = traj.image_tokens
    tables = schedule.compared(traj.settings.steps, scheduler_config, names, family, image_tokens)
    rows = []
    for name, table in tables.items():
        last = max(len(table) - 1, 1)
        rows += [(r["index"] / last, math.log10(r["sigma"]), name) for r in table if r["sigma"] > 0]
    frame = pd.DataFrame(rows, columns=["share of steps done", "value", "scheduler"])
    entries = len(tables[traj.settings.scheduler])
    share = (run_start(traj, scheduler_config) + index) / max(entries - 1, 1)
    return mark(frame, share, text("plot.this_step"), column="scheduler")


def distance_frame(traj, index: int) -> pd.DataFrame:
    distances = traj.distance_to_final
    x0_curve, x_t_curve, threshold, settled_mark, this_step = map(text, DISTANCE_SERIES)
    rows = [(n + 1, distances[kind][n], curve)
            for kind, curve in (("x0", x0_curve), ("x_t", x_t_curve)) for n in range(len(traj.steps))]
    rows += [(1, SETTLED_DISTANCE, threshold), (len(traj.steps), SETTLED_DISTANCE, threshold)]
    frame = pd.DataFrame(rows, columns=["step", "value", "curve"])
    settled = settled_step(distances["x0"])
    if settled is not None:
        frame = mark(frame, settled + 1, settled_mark)
    return mark(frame, index + 1, this_step)


def decided_text(traj) -> str:
    """Where the layout settles, and what the distance is, in the session's language."""
    distances = traj.distance_to_final
    settled = settled_step(distances["x0"])
    total = len(traj.steps)
    target = text("decided.final" if traj.complete else "decided.stopped")
    if settled is None:
        where = text("decided.never", threshold=SETTLED_DISTANCE, target=target)
    else:
        x_t = distances["x_t"][settled]
        where = text("decided.settles", step=settled + 1, total=total, threshold=SETTLED_DISTANCE, target=target,
                     x_t=f"{x_t:.3f}") + text("decided.before" if x_t > 2 * SETTLED_DISTANCE else "decided.end")
    return f"{where}\n\n" + text("decided.how", first=f"{distances['x0'][0]:.3f}")


def formula_text(record, guidance: float) -> str:
    """The guidance formula at the latent value the prompt changes most, with the step's numbers."""
    example = guidance_example(record, guidance)
    g = example["guidance"]
    return text("guidance.formula", g=f"{g:g}", channel=example["channel"], y=example["y"], x=example["x"],
                uncond=f"{example['uncond']:.3f}", cond=f"{example['cond']:.3f}", formula=f"{example['formula']:.3f}",
                guided=f"{example['guided']:.3f}", mean=f"{example['mean_difference']:.4f}",
                guided_mean=f"{example['mean_guided_difference']:.4f}")


def prediction_target(traj) -> str:
    """What the model's denoiser is trained to predict, in words."""
    return text(f"target.{traj.facts.prediction_type}")


def unguided_text(traj) -> str:
    """Why a run has one x0 and no guidance halves, in the session's language."""
    if traj.facts.family == "flux":
        return text("guidance.flux", guidance=f"{traj.settings.guidance:g}")
    if traj.facts.guidance_embedded:
        return text("guidance.embedded", w=f"{traj.settings.guidance - 1:g}", denoiser=traj.denoiser_word)
    return text("guidance.unguided", guidance=f"{traj.guidance_scale:g}", denoiser=traj.denoiser_word)
