"""Comparing runs: one seed through different choices, side by side.

A comparison is 2 to MAX_VARIANTS variants of one run's settings, differing in any of
VARIED (the product of the values given). Each variant is an ordinary run with its own
trajectory. The runs are lined up by progress or by noise level (`sdviz.analysis.align`).

`compare(model, settings, vary)` runs every variant and returns a `Comparison`, which draws the
grid (one column per variant), animates the lined-up runs (GIF, MP4), maps their paths in one plane
and finds where they part (`sdviz.analysis.path`), and writes what `python -m sdviz compare` writes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdviz.analysis.align import GRID_ROWS, at, check_alignment
from sdviz.analysis.path import PARTED, PathMap, parting, trajectory_map
from sdviz.messages import text
from sdviz.sampling.checks import check_int, check_text, validate
from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings

MAX_VARIANTS = 8
VARIED = {"scheduler": str, "steps": int, "guidance": float, "eta": float, "prompt": str, "negative_prompt": str,
          "model": str}  # what a variant may change, and how its values are read
TEXT_SEPARATOR = "|"  # prompts hold commas, so their values are separated by this
VIDEO_FRAMES = 24  # lined-up points in compare.gif and compare.mp4
FORMAT = "sdviz-compare/1"


def parse_vary(text: str) -> tuple[str, list]:
    """'scheduler=ddim,euler_a' -> ('scheduler', ['ddim', 'euler_a']); prompts split on '|'."""
    name, _, values = str(text).partition("=")
    name = name.strip().replace("-", "_")
    if name not in VARIED or not values.strip():
        raise InputError.said("error.vary_form", text=f"{text!r:.80}", allowed=", ".join(VARIED))
    separator = TEXT_SEPARATOR if name in ("prompt", "negative_prompt") else ","
    return name, _read(name, [v.strip() for v in values.split(separator)])


def _read(name: str, values: list) -> list:
    read = []
    for value in values:
        try:
            read.append(VARIED[name](value))
        except (TypeError, ValueError):
            raise InputError.said("error.vary_value", name=name, value=f"{value!r:.60}",
                                  kind=VARIED[name].__name__) from None
    return read


def read_vary(vary) -> list[tuple[str, list]]:
    """What to vary, as the Python API takes it: {'scheduler': ['ddim', 'euler']}, or a list of
    'NAME=V1,V2' strings (the CLI's --vary), or of (name, values) pairs."""
    if isinstance(vary, str):
        vary = [vary]
    items = vary.items() if isinstance(vary, dict) else vary
    read = []
    for item in items:
        if isinstance(item, str):
            read.append(parse_vary(item))
            continue
        name, values = item
        if name not in VARIED:
            raise InputError.said("error.vary_name", name=f"{name!r:.40}", allowed=", ".join(VARIED))
        read.append((name, _read(name, [values] if isinstance(values, str) else list(values))))
    return read


def variants(base: Settings, vary: list[tuple[str, list]], model: str | None = None,
             img2img: bool = False) -> list[dict]:
    """Every combination of the varied values over `base`: [{'settings', 'model', 'label'}, ...]. The base
    settings and model are checked too, a value a variant replaces included: every value given is checked."""
    validate(base, img2img)
    if model is not None:
        check_text("model", model, 300)
    if not vary:
        raise InputError.said("error.vary_nothing", allowed=", ".join(VARIED))
    names = [name for name, _ in vary]
    if len(set(names)) != len(names):
        raise InputError.said("error.vary_twice", names=", ".join(names))
    combinations = list(itertools.product(*(values for _, values in vary)))
    if not 2 <= len(combinations) <= MAX_VARIANTS:
        raise InputError.said("error.vary_count", count=len(combinations),
                              product=" x ".join(str(len(v)) for _, v in vary), most=MAX_VARIANTS)
    out = []
    for values in combinations:
        chosen = dict(zip(names, values))
        source = chosen.pop("model", model)
        out.append({"settings": replace(base, **chosen), "model": source,
                    "label": ", ".join(f"{name}={value}" for name, value in zip(names, values))})
    return out


# --- a comparison ------------------------------------------------------------------------------

@dataclass
class Comparison:
    """The variants' trajectories, lined up `by` progress or sigma. previewers[i], variant i's run's preview
    decoder, gives its frames again from its latents when they are not kept."""

    trajectories: list
    labels: list[str]
    by: str = "progress"
    vary: dict[str, list] = field(default_factory=dict)
    previewers: list = field(default_factory=list, repr=False)
    _partings: list | None = field(default=None, init=False, repr=False, compare=False)  # partings(), once

    def __post_init__(self):
        check_alignment(self.by)
        self.previewers = list(self.previewers) or [None] * len(self.trajectories)

    @property
    def folders(self) -> list[str]:
        return [folder_name(index, label) for index, label in enumerate(self.labels)]

    def frames(self, position: float, by: str | None = None) -> list[tuple[int | None, tuple | None]]:
        """(step index, (x_t frame, x0 frame)) of every variant at `position`; (None, None) for one with no steps."""
        out = []
        indices = at(self.trajectories, position, by or self.by)
        for traj, previewer, index in zip(self.trajectories, self.previewers, indices):
            out.append((index, None if index is None else traj.step_frames(index, previewer)))
        return out

    def map(self, method: str = "pca") -> PathMap:
        """Every variant's x_t and x0 at every step in one shared plane (`sdviz.analysis.path.trajectory_map`)."""
        return trajectory_map(self.trajectories, method)

    def parting(self, i: int, j: int, threshold: float = PARTED) -> dict:
        """Where variants i and j (from 0) part: their x0 and x_t differences per step, lined up as the
        comparison is, and the step from which the x0 difference stays above `threshold`
        (`sdviz.analysis.path.parting`)."""
        last = len(self.trajectories) - 1
        i, j = check_int("variant", i, 0, last), check_int("variant", j, 0, last)
        return parting(self.trajectories[i], self.trajectories[j], (self.previewers[i], self.previewers[j]),
                       threshold, self.by)

    def ran_map(self) -> tuple[list[int], PathMap] | None:
        """(indices, PathMap): the map of the variants that ran, and which they are; None when none ran or their
        latents differ in shape (a varied model of another size)."""
        ran = [k for k, t in enumerate(self.trajectories) if t.steps]
        if not ran or len({tuple(self.trajectories[k].x_start.shape) for k in ran}) > 1:
            return None
        return ran, trajectory_map([self.trajectories[k] for k in ran])

    def partings(self) -> list[dict]:
        """Where each variant after the first parts from the first (`parting`, computed once): [{"variant",
        "against": 0, "parted_at", "threshold", "x0", "x_t"}] (variants from 0, parted_at a step from 1, in
        the longer run), for the variants that ran, at the first's image size."""
        if self._partings is None:
            first, self._partings = (self.trajectories or [None])[0], []
            for k, traj in enumerate(self.trajectories[1:], 1):
                if first.steps and traj.steps and traj.shapes["image"] == first.shapes["image"]:
                    parted = self.parting(0, k)
                    self._partings.append({"variant": k, "against": 0, **{key: parted[key] for key in (
                        "parted_at", "threshold", "x0", "x_t")}})
        return self._partings

    def settled(self) -> list[int | None]:
        """Each variant's first step index from which its x0 stays near its final image (see
        sdviz.analysis.distance.settled_step); None where it never does or the distances were not computed."""
        from sdviz.analysis.distance import settled_step

        return [settled_step(t.distance_to_final["x0"]) if t.distance_to_final else None for t in self.trajectories]

    def grid(self, rows: int = GRID_ROWS):
        """A PIL image: one column per variant, one row per lined-up point (x_t after that step), and the
        final images beneath."""
        from sdviz.drawing.sheets import sheet

        table = []
        for row in range(rows):
            position = row / max(rows - 1, 1)
            cells = []
            for traj, (index, frames) in zip(self.trajectories, self.frames(position)):
                note = "" if index is None else (
                    text("sheet.variant_step", step=index + 1, total=len(traj.steps)) if self.by == "progress"
                    else text("sheet.sigma", sigma=f"{traj.steps[index].sigma:.3g}"))
                cells.append((note, None if frames is None else frames[0]))
            table.append((f"{round(100 * position)}%", cells))
        table.append((text("sheet.final"), [(f"{k + 1}: {_values(label)}"[:14], t.final_image)
                                for k, (t, label) in enumerate(zip(self.trajectories, self.labels))]))
        title = "; ".join(f"{k + 1}: {label}" for k, label in enumerate(self.labels))
        return sheet(table, text("sheet.lined_up", by=self.by, title=title))

    def video_frames(self, count: int = VIDEO_FRAMES) -> list[np.ndarray]:
        """Every variant's x_t side by side at `count` lined-up points, each under its number and values
        (as in the grid); frames enlarged to at least half MIN_VIDEO_SIDE high, pixels kept."""
        from PIL import Image, ImageDraw

        from sdviz.drawing.fonts import text_font
        from sdviz.drawing.sheets import MIN_VIDEO_SIDE, enlarge

        shown = [k for k, t in enumerate(self.trajectories) if t.steps]
        sample = enlarge(self.trajectories[shown[0]].step_frames(0, self.previewers[shown[0]])[0], MIN_VIDEO_SIDE // 2)
        height, width = sample.shape[:2]
        gap, header = max(2, height // 32), max(14, height // 8)
        font = text_font(header - 3, "".join(f"{k + 1}: {_values(self.labels[k])}" for k in shown))
        canvas = Image.new("RGB", (len(shown) * (width + gap) - gap, header + height), "white")
        draw = ImageDraw.Draw(canvas)
        for column, k in enumerate(shown):
            draw.text((column * (width + gap) + 2, 1), f"{k + 1}: {_values(self.labels[k])}", fill="black", font=font)
        pictures = []
        for point in range(count):
            frames = self.frames(point / max(count - 1, 1))
            for column, k in enumerate(shown):
                frame = Image.fromarray(frames[k][1][0]).resize((width, height), Image.Resampling.NEAREST)
                canvas.paste(frame, (column * (width + gap), header))
            pictures.append(np.asarray(canvas).copy())
        return pictures

    def save_gif(self, path, fps: float = 8.0) -> Path:
        from sdviz.drawing.sheets import write_gif

        return write_gif(self.video_frames(), path, fps)

    def save_mp4(self, path, fps: float = 8.0) -> Path:
        from sdviz.drawing.sheets import write_mp4

        return write_mp4(self.video_frames(), path, fps)

    def summary(self) -> dict[str, Any]:
        """compare.json: how the runs line up, what was varied, and per variant its folder, label,
        settings, steps, whether it finished and the step (from 1) where its layout settled; where each
        variant after the first parts from it ("parting": variant and against from 0, parted_at from 1 or
        None, the threshold, the x0 and x_t difference curves); the variants' paths in one plane ("map":
        `PathMap.to_dict` by their folders; the variants that ran, where their latents share one shape)."""
        variants_ = []
        for folder, label, traj, settled in zip(self.folders, self.labels, self.trajectories, self.settled()):
            variants_.append({"folder": folder, "label": label, "settings": traj.settings.to_dict(),
                              "steps": len(traj.steps), "complete": traj.complete,
                              "settled_step": None if settled is None else settled + 1})
        summary = {"format": FORMAT, "align": self.by, "vary": self.vary, "variants": variants_,
                   "parting": self.partings()}
        ran = self.ran_map()
        if ran is not None:
            summary["map"] = ran[1].to_dict([self.folders[k] for k in ran[0]])
        return summary

    def save(self, out) -> dict[str, Path]:
        """Writes compare.json, compare.png, compare.gif and compare.mp4 to `out` (`compare(out=...)`
        writes each variant's render folder beside them)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = {"png": out / "compare.png", "gif": out / "compare.gif", "mp4": out / "compare.mp4",
                   "json": out / "compare.json"}
        self.grid().save(written["png"])
        self.save_gif(written["gif"])
        self.save_mp4(written["mp4"])
        written["json"].write_text(json.dumps(self.summary(), indent=1) + "\n")
        return written


SHOWN = ("x_t", "x_next", "x0_pred")  # a comparison shows x_t and x0: the latents a long-lived one keeps


def keep_shown(trajectory) -> None:
    """Releases what a comparison does not show: each step's noise predictions (guided and both halves)
    and the decoded starting noise, keeping x_t and x0: at SD 1.5's 512 x 512 a step then holds 128 KB
    of latents instead of 320 KB. The trajectory can still be shown, lined up and decoded; it can no
    longer be saved or forked."""
    trajectory.noise_image = None
    for record in trajectory.steps:
        record.noise_uncond = record.noise_cond = record.noise_pred = None


class Comparing:
    """A comparison as it runs: `runs()` yields each variant's `Run` in turn, for the caller to follow
    (`for record in run`); once the caller is done with a variant, it is lined up before the next one
    starts: its distances to its final image measured, (out) its render folder written, its frames moved
    into its share of a bounded frame cache and (shown_only) only the latents a comparison shows kept.
    `comparison` lines up every variant (one that never ran has no steps). The variants share `time_limit`
    seconds; `stop()` (or the `stop_signal` set) ends the variant in flight and starts no other.
    `previewer_of(run)` gives the decoder that lines a variant up and draws it later (default: the run's
    own `previewer`; an app passes one that decodes where its model work runs).

        comparing = Comparing(runs, labels, "sigma")
        for index, run in enumerate(comparing.runs()):
            for record in run:
                ...
        comparing.comparison
    """

    def __init__(self, runs: list, labels: list[str], by: str = "progress", vary: dict | None = None, *,
                 time_limit: float | None = None, stop_signal=None, out=None, page: bool = False,
                 shown_only: bool = False, previewer_of=None):
        self.by, self.vary = check_alignment(by), dict(vary or {})
        self._runs, self.labels = list(runs), list(labels)
        self.time_limit, self.stop_signal, self.out, self.page, self.shown_only = (
            time_limit, stop_signal, out, page, shown_only)
        self.previewer_of = previewer_of or (lambda run: run.previewer)
        self._stopped, self._current = False, None
        self.done: list = []  # the runs that have run, in order

    def stop(self) -> None:
        self._stopped = True
        if self._current is not None:
            self._current.stop()

    def _stopping(self) -> bool:
        return self._stopped or (self.stop_signal is not None and self.stop_signal.is_set())

    def runs(self):
        """Each variant's Run, once the one before it has been lined up."""
        import time

        from sdviz.sampling.frames import FrameCache

        started = time.perf_counter()
        for index, run in enumerate(self._runs):
            left = None if self.time_limit is None else self.time_limit - (time.perf_counter() - started)
            if self._stopping() or (left is not None and left <= 0):  # Stop was pressed, or time is up
                break
            if left is not None:
                run.time_limit = left
            self._current = run
            yield run
            self._current = None
            self._line_up(index, run, FrameCache(max(1, FrameCache().max_bytes // len(self._runs))))

    def _line_up(self, index: int, run, cache) -> None:
        from sdviz.analysis.distance import distance_to_final

        traj, previewer = run.trajectory, self.previewer_of(run)
        if traj.steps:
            traj.distance_to_final = distance_to_final(traj, previewer)
        if self.out is not None:  # each variant written as it ends, so its frames can go
            from sdviz.workflows.render import write_run

            write_run(traj, Path(self.out) / folder_name(index, self.labels[index]), previewer, self.page)
        traj.frame_cache = cache
        for record in traj.steps:  # the comparison keeps latents; frames are decoded again when drawn
            cache.take(record)
        if self.shown_only:
            keep_shown(traj)
        self.done.append(run)

    @property
    def comparison(self) -> Comparison:
        """Every variant, lined up (one that never ran, stopped or out of time, has no steps)."""
        return Comparison([run.trajectory for run in self._runs], self.labels, self.by, self.vary,
                          [self.previewer_of(run) for run in self._runs])

    def save(self) -> Comparison:
        """Writes compare.json, .png, .gif, .mp4 (and, with `page`, compare.html) to `out`."""
        comparison = self.comparison
        comparison.save(self.out)
        if self.page:
            from sdviz.drawing.page import comparison_page

            (Path(self.out) / "compare.html").write_text(comparison_page(comparison), encoding="utf-8")
        return comparison


def comparison_runs(model, settings: Settings, vary, init_image=None, attention: bool = False,
                    device: str | None = None) -> tuple[list[str], list]:
    """(labels, runs) of every variant of `settings` that `vary` gives, each checked, and each model
    named checked, before any model work; `model` (None: the embedded one) runs the variants that name
    none, the others load theirs (on `device`, or `model`'s)."""
    from sdviz.sampling.models import check_source, load_model
    from sdviz.sampling.sampler import Run

    chosen = variants(settings, read_vary(vary), img2img=init_image is not None)
    for variant in chosen:  # every variant's settings and model, before any model work
        variant["settings"] = validate(variant["settings"], img2img=init_image is not None)
        if variant["model"] is not None:
            check_source(variant["model"])
    models = {None: model} if model is not None else {}
    device = device if device is not None or model is None else str(model.device)
    runs = []
    for variant in chosen:
        source = variant["model"]
        if source not in models:
            models[source] = load_model(source, device=device)
        capture = None
        if attention:
            from sdviz.sampling.attention import AttentionCapture

            capture = AttentionCapture(models[source])
        runs.append(Run(models[source], variant["settings"], init_image=init_image, capture=capture))
    return [variant["label"] for variant in chosen], runs


def compare(model, settings: Settings, vary, init_image=None, by: str = "progress", attention: bool = False,
            out=None, callback: Callable | None = None, device: str | None = None, page: bool = False) -> Comparison:
    """Runs every variant of `settings` that `vary` gives ({'scheduler': ['ddim', 'euler']}, see
    `read_vary`) with `model` (a loaded model; None: the embedded one; varied models are loaded by
    their source, on `device` or the model's), one after another, and returns the Comparison. With `out`,
    writes what `python -m sdviz compare --out` writes (page: and compare.html, the page that replays the
    comparison). callback(variant_index, record, total) is called at every step."""
    check_alignment(by)
    vary = read_vary(vary)
    labels, runs = comparison_runs(model, settings, vary, init_image, attention, device)
    comparing = Comparing(runs, labels, by, dict(vary), out=out, page=page)
    for index, run in enumerate(comparing.runs()):
        for record in run:
            if callback is not None:
                callback(index, record, run.total)
    return comparing.save() if out is not None else comparing.comparison


def _values(label: str) -> str:
    """'scheduler=ddim, guidance=7.5' -> 'ddim 7.5': a variant's values, for a caption."""
    return " ".join(part.split("=", 1)[-1] for part in label.split(", "))


def folder_name(index: int, label: str) -> str:
    """A variant's folder: its number and its varied values, in characters safe in any file system."""
    safe = "".join(c if c.isalnum() or c in "._=-" else "-" for c in label.replace(", ", "_"))[:60].strip("-")
    return f"{index + 1:02d}_{safe}" if safe else f"{index + 1:02d}"  # a label of symbols alone: the number
