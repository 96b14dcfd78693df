"""Comparing runs: one seed through different choices, side by side.

A comparison is 2 to MAX_VARIANTS variants of one run's settings, differing in any of
VARIED (the product of the values given). Each variant is an ordinary run with its own
trajectory. Runs with different step counts, or second-order schedulers with their doubled
entries, are lined up by `align`:

    progress  the same share of the run's scheduler entries done
    sigma     the same noise level (the step whose sigma is nearest, in log sigma)

`grid` draws the lined-up x_t of every variant, one column per variant; `save_gif` animates it.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np

from sdviz.settings import Settings

MAX_VARIANTS = 8
VARIED = {"scheduler": str, "steps": int, "guidance": float, "eta": float, "prompt": str, "negative_prompt": str,
          "model": str}  # what a variant may change, and how its values are read
TEXT_SEPARATOR = "|"  # prompts hold commas, so their values are separated by this
ALIGNMENTS = ("progress", "sigma")
GRID_ROWS = 6  # lined-up points in the grid: the noise side to the image


def parse_vary(text: str) -> tuple[str, list]:
    """'scheduler=ddim,euler_a' -> ('scheduler', ['ddim', 'euler_a']); prompts split on '|'."""
    name, _, values = str(text).partition("=")
    name = name.strip().replace("-", "_")
    if name not in VARIED or not values.strip():
        raise ValueError(f"vary {text!r:.80} is not NAME=VALUE,VALUE...; allowed names: {', '.join(VARIED)}")
    separator = TEXT_SEPARATOR if name in ("prompt", "negative_prompt") else ","
    parts = [v.strip() for v in values.split(separator)]
    try:
        return name, [VARIED[name](v) for v in parts]
    except ValueError:
        raise ValueError(f"vary {name}: {values!r:.80} are not {VARIED[name].__name__} values") from None


def variants(base: Settings, vary: list[tuple[str, list]], model: str | None = None) -> list[dict]:
    """Every combination of the varied values over `base`: [{'settings', 'model', 'label'}, ...]."""
    if not vary:
        raise ValueError("vary: nothing is varied; allowed: one or more NAME=VALUE,VALUE... "
                         f"with names {', '.join(VARIED)}")
    names = [name for name, _ in vary]
    if len(set(names)) != len(names):
        raise ValueError(f"vary: {', '.join(names)} names one setting twice; give each once with all its values")
    combinations = list(itertools.product(*(values for _, values in vary)))
    if not 2 <= len(combinations) <= MAX_VARIANTS:
        raise ValueError(f"vary gives {len(combinations)} variants ({' x '.join(str(len(v)) for _, v in vary)}); "
                         f"allowed: 2 to {MAX_VARIANTS}")
    out = []
    for values in combinations:
        chosen = dict(zip(names, values))
        source = chosen.pop("model", model)
        out.append({"settings": replace(base, **chosen), "model": source,
                    "label": ", ".join(f"{name}={value}" for name, value in zip(names, values))})
    return out


def check_alignment(by: str) -> str:
    if by not in ALIGNMENTS:
        raise ValueError(f"align {by!r:.40} is not a choice; allowed: {', '.join(ALIGNMENTS)}")
    return by


def align(trajectories, rows: int = GRID_ROWS, by: str = "progress") -> list[list[int]]:
    """For each of `rows` points from the start to the end, each trajectory's step index there."""
    if check_alignment(by) == "progress":
        return [[round(k * (len(t.steps) - 1) / max(rows - 1, 1)) for t in trajectories] for k in range(rows)]
    if not trajectories:
        return [[] for _ in range(rows)]
    logs = [np.log([max(s.sigma, 1e-8) for s in t.steps]) for t in trajectories]
    high, low = max(float(v[0]) for v in logs), min(float(v[-1]) for v in logs)
    targets = [high + (low - high) * k / max(rows - 1, 1) for k in range(rows)]
    return [[int(np.abs(v - target).argmin()) for v in logs] for target in targets]


def grid(trajectories, labels: list[str], by: str = "progress", rows: int = GRID_ROWS, decode=None):
    """A PIL image: one column per variant, one row per lined-up point (x_t after that step), and the
    final images beneath. decode(trajectory) gives a trajectory's frame decoder, for frames not kept."""
    from sdviz.export import sheet

    points = align(trajectories, rows, by)
    table = []
    for row, indices in enumerate(points):
        cells = []
        for traj, label, index in zip(trajectories, labels, indices):
            frame = traj.step_frames(index, decode(traj) if decode else None)[0]
            note = f"step {index + 1}/{len(traj.steps)}" if by == "progress" else f"sigma {traj.steps[index].sigma:.3g}"
            cells.append((note, frame))
        name = f"{round(100 * row / max(rows - 1, 1))}%" if by == "progress" else f"point {row + 1}"
        table.append((name, cells))
    finals = [(f"{k + 1}: {_values(label)}"[:14], t.final_image) for k, (t, label) in enumerate(zip(trajectories, labels))]
    table.append(("final", finals))
    title = "; ".join(f"{k + 1}: {label}" for k, label in enumerate(labels))
    return sheet(table, f"lined up by {by}. {title}")


def save_gif(trajectories, path, by: str = "progress", frames: int = 24, fps: float = 8.0, decode=None) -> Path:
    """Every variant's x_t side by side, lined up by `by`, as a looping GIF."""
    from sdviz.export import MIN_VIDEO_SIDE, enlarge, write_gif

    points = align(trajectories, frames, by)
    pictures = []
    for indices in points:
        row = [traj.step_frames(i, decode(traj) if decode else None)[0] for traj, i in zip(trajectories, indices)]
        height = max(f.shape[0] for f in row)
        gap = np.full((height, max(2, height // 32), 3), 255, np.uint8)
        strip = np.concatenate([p for f in row for p in (np.pad(f, ((0, height - f.shape[0]), (0, 0), (0, 0)),
                                                                 constant_values=255), gap)][:-1], axis=1)
        pictures.append(enlarge(strip, MIN_VIDEO_SIDE // 2))
    return write_gif(pictures, path, fps)


def _values(label: str) -> str:
    """'scheduler=ddim, guidance=7.5' -> 'ddim 7.5': a variant's values, for a caption."""
    return " ".join(part.split("=", 1)[-1] for part in label.split(", "))


def folder_name(index: int, label: str) -> str:
    """A variant's folder: its number and its varied values, in characters safe in any file system."""
    safe = "".join(c if c.isalnum() or c in "._=-" else "-" for c in label.replace(", ", "_"))
    return f"{index + 1:02d}_{safe[:60].strip('-')}" or f"{index + 1:02d}"
