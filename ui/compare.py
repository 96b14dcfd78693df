"""The Compare tab's handlers: one seed through 2 to 8 variants of the settings on the page, streamed
one variant after another into columns side by side, then lined up by one slider (by progress
through each run, or by noise level), their distance-to-final curves in one plot, their final
images in a row, and the grid, GIF and MP4 written when asked for. Also the /compare endpoint.

The session keeps a `sdviz.workflows.compare.Comparison` in `gr.State`: each variant's x_t and x0 latents
(`keep_shown`), and frames in one bounded cache shared out between the variants (`FrameCache`); any
step not cached is decoded again from its latents when it is shown. The variants' steps add up to at
most the host's SDVIZ_MAX_COMPARE_STEPS, so the latents are bounded too (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import html as html_text
from dataclasses import replace

import gradio as gr
import pandas as pd

from sdviz.analysis.align import check_alignment, positions
from sdviz.analysis.distance import SETTLED_DISTANCE, distance_to_final
from sdviz.sampling.checks import check_text
from sdviz.sampling.errors import InputError
from sdviz.sampling.frames import DEFAULT_MAX_BYTES, FrameCache
from sdviz.sampling.settings import Settings
from sdviz.workflows.compare import TEXT_SEPARATOR, Comparison, keep_shown, parse_vary, variants
from ui import html
from ui.handlers import DISPLAY_RATE, _event, iterate, user_errors, write_trajectory_zip
from ui.streaming import PartStop, follow

NOTHING = ""  # the second "vary" menu's empty choice
POSITION_STEPS = 100  # the shared slider runs 0..100 (% of the way from the noise to the image)
PLOT_X = "position (%)"
VALUES_INFO = f"commas between values; prompts separated by {TEXT_SEPARATOR}"


def example_values(name: str, prompt: str = "", models: list[str] | None = None, prompts: tuple[str, ...] = ()) -> str:
    """Values to start from when a setting is picked to vary (the user edits them). `prompts`: the model's
    example prompts, the first other than `prompt` offered beside it."""
    other = next((text for text in prompts if text != prompt), "")
    examples = {"scheduler": "ddim, euler, dpmpp_2m_karras, heun", "steps": "10, 20, 40", "guidance": "1, 4, 7.5",
                "eta": "0, 0.5, 1", "prompt": f"{prompt} {TEXT_SEPARATOR} {other}",
                "negative_prompt": f" {TEXT_SEPARATOR} red", "model": ", ".join(models or [])}
    return examples.get(name, "")


def read_vary(first_name, first_values, second_name, second_values) -> list[tuple[str, list]]:
    """The two vary rows as (name, values); an empty second row is left out."""
    rows = []
    for name, values in ((first_name, first_values), (second_name, second_values)):
        name = check_text("vary", NOTHING if name is None else name, 40).strip()
        values = check_text(f"vary {name} values", values or "", 2000)
        if name == NOTHING:
            continue
        rows.append(parse_vary(f"{name}={values}"))
    return rows


def distance_plot(comparison, position: float) -> pd.DataFrame:
    """Every variant's predicted-x0 distance to its final image, over the shared position, and the
    slider's position marked."""
    rows = []
    xs = positions(comparison.trajectories, comparison.by)
    for number, (label, traj, x) in enumerate(zip(comparison.labels, comparison.trajectories, xs), 1):
        if traj.distance_to_final:
            rows += [(100 * p, d, f"{number}: {label}") for p, d in zip(x, traj.distance_to_final["x0"])]
    frame = pd.DataFrame(rows, columns=[PLOT_X, "distance", "variant"])
    if frame.empty:
        return frame
    low, high = float(frame["distance"].min()), float(frame["distance"].max())
    mark = pd.DataFrame({PLOT_X: [100 * position] * 2, "distance": [low, high], "variant": ["slider"] * 2})
    return pd.concat([frame, mark], ignore_index=True)


def settled_text(comparison) -> str:
    """Which variant's layout settles first, in share of its own run."""
    lines, order = [], []
    for number, (label, traj, settled) in enumerate(zip(comparison.labels, comparison.trajectories,
                                                        comparison.settled()), 1):
        if not traj.steps:
            lines.append(f"- {number}: {label}: not run (the comparison was stopped, or reached its time limit)")
            continue
        if settled is None:
            lines.append(f"- {number}: {label}: its predicted x0 never stays within {SETTLED_DISTANCE} of its final "
                         "image")
            continue
        share = (settled + 1) / len(traj.steps)
        order.append((share, number, label))
        lines.append(f"- {number}: {label}: settles at step {settled + 1} of {len(traj.steps)} "
                     f"({100 * share:.0f}% of its run)")
    head = ""
    if order:
        share, number, label = min(order)
        head = (f"**{number}: {label}** settles its layout first, {100 * share:.0f}% of the way through its run "
                f"(the predicted x0 stays within {SETTLED_DISTANCE} of its final image from there on).\n\n")
    return head + "\n".join(lines)


class CompareHandlers:
    def __init__(self, handlers):
        self.handlers, self.threads, self.files = handlers, handlers.threads, handlers.files
        self.limits = handlers.limits

    def _runs(self, vary, model=None, stop_event=None, **settings):
        """(labels, runs) of the variants `vary` of a run of `settings` (`Settings`' fields by name) on
        `model`: every variant checked, the host's limits included, before any model work."""
        chosen = variants(Settings(**settings), vary, model)
        runs = []
        for variant in chosen:
            v = variant["settings"]
            runs.append(self.handlers._run(variant["model"], stop_event=PartStop(stop_event), **v.to_dict()))
        self.limits.check_comparison([run.settings.steps for run in runs])
        return [variant["label"] for variant in chosen], runs

    async def _follow(self, runs, stop_event=None, shown_only: bool = False):
        """Runs the variants one after another, all within one run's time limit; yields (index, records)
        as they arrive, and after each variant (index, None), its distances computed, its frames moved
        into its share of the session's frame cache and (shown_only) only the latents the tab shows kept."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index, run in enumerate(runs):
            left = self.limits.run_seconds - (loop.time() - started)
            if left <= 0 or (stop_event is not None and stop_event.is_set()):  # time is up, or Stop was pressed
                break
            run.time_limit = left
            async for records in follow(run, iterate, 1 / DISPLAY_RATE, self.threads):
                yield index, records
            traj = run.trajectory
            if traj.steps:
                await asyncio.to_thread(distance_to_final, traj, self.handlers._decoder(traj))
            traj.frame_cache = FrameCache(max(1, DEFAULT_MAX_BYTES // len(runs)))
            for record in traj.steps:
                traj.frame_cache.take(record)
            if shown_only:
                keep_shown(traj)
            yield index, None

    def _decoders(self, comparison):
        return replace(comparison, decoders=[self.handlers._decoder(t) for t in comparison.trajectories])

    # --- the tab ------------------------------------------------------------------------------

    @user_errors
    async def stream(self, stop_signal=None, first_name=None, first_values="", second_name=None, second_values="",
                     align="progress", **run):
        """The variants, one after another, each streamed into its column: status, columns, comparison.
        `run`: the run's values by name (see `ui.form`), the model among them."""
        vary = read_vary(first_name, first_values, second_name, second_values)
        by = check_alignment(align)
        stop_event = _event(stop_signal)
        labels, runs = self._runs(vary, stop_event=stop_event, **run)
        # each column's figure, encoded once when its variant moves on (not again at every update)
        figures = [html.compare_column(n, label, "waiting") for n, label in enumerate(labels, 1)]

        def columns() -> str:
            return html.compare_columns(figures)

        def status(index: int, note: str = "") -> str:
            return html.status(note=f"variant {index + 1} of {len(runs)}: {labels[index]} {note}")

        yield status(0, "· starting"), columns(), None
        async for index, records in self._follow(runs, stop_event, shown_only=True):
            run = runs[index]
            if records is None:
                traj = run.trajectory
                for message in traj.warnings:  # a cut prompt, an ignored eta, the time limit
                    gr.Warning(html_text.escape(f"variant {index + 1} ({labels[index]}): {message}", quote=False))
                if traj.steps:
                    x_t, x0 = traj.step_frames(len(traj.steps) - 1, self.handlers._decoder(traj))
                    figures[index] = html.compare_column(
                        index + 1, labels[index], f"{'done' if traj.complete else 'stopped'}: {len(traj.steps)} steps",
                        x_t, x0)
                continue
            decoded = [r for r in records if r.decoded]
            if decoded:
                record = decoded[-1]
                figures[index] = html.compare_column(index + 1, labels[index], f"step {record.index + 1}/{run.total}",
                                                     record.x_t_image, record.x0_image)
            yield status(index, f"· step {records[-1].index + 1} of {run.total}"), columns(), gr.skip()
        done = Comparison([run.trajectory for run in runs], labels, by, dict(vary))
        stopped = [label for label, traj in zip(labels, done.trajectories) if not traj.complete]
        note = f"· {len(runs) - len(stopped)} of {len(runs)} variants finished"
        yield html.status(note=f"comparison done {note}"), columns(), done

    @user_errors
    def finish(self, comparison, align):
        """After a comparison: the shared slider at the end, the variants there, the curves, the note and the
        final images."""
        if comparison is None:
            return (gr.skip(),) * 5
        columns, plot, note = self.show(comparison, POSITION_STEPS, align)
        finals = html.compare_finals([(label, t.final_image) for label, t in zip(comparison.labels,
                                                                                   comparison.trajectories)])
        return gr.update(value=POSITION_STEPS, interactive=True), columns, plot, note, finals

    @user_errors
    def show(self, comparison, position, align):
        """The variants lined up at the slider's position (0..100), by progress or noise level."""
        if comparison is None:
            return gr.skip(), gr.skip(), gr.skip()
        comparison = self._decoders(replace(comparison, by=check_alignment(align)))
        where = min(max(float(position or 0), 0.0), POSITION_STEPS) / POSITION_STEPS
        return self.threads.call(self._show, comparison, where)

    @staticmethod
    def _show(comparison, where: float):
        shown = []
        for number, (traj, label, (index, frames)) in enumerate(
                zip(comparison.trajectories, comparison.labels, comparison.frames(where)), 1):
            if index is None:
                shown.append(html.compare_column(number, label, "not run"))
                continue
            record = traj.steps[index]
            shown.append(html.compare_column(number, label, f"step {index + 1}/{len(traj.steps)} · σ {record.sigma:.3g}",
                                             *frames))
        by = "progress" if comparison.by == "progress" else "noise level"
        return html.compare_columns(shown), distance_plot(comparison, where), (
            f"Lined up by {by} at {100 * where:.0f}% of the way from the noise to the image.\n\n"
            + settled_text(comparison))

    @user_errors
    async def downloads(self, comparison):
        """compare.png (the grid), compare.gif, compare.mp4, compare.json and compare.html, written when asked for."""
        if comparison is None or not any(t.steps for t in comparison.trajectories):
            raise InputError("compare: there is no comparison yet; press Compare first")
        folder = self.files.new_folder()
        files = await asyncio.to_thread(write_comparison, self._decoders(comparison), folder)
        return [str(path) for path in files]

    # --- the API ------------------------------------------------------------------------------

    @user_errors
    async def api(self, prompt, negative_prompt, model, scheduler, steps, guidance, seed, width, height,
                  eta, preview, every, vary, align="progress"):
        """2 to 8 variants of one run (`vary`: NAME=V1,V2 parts separated by ';', as the CLI's --vary),
        one after another within one run's time limit; returns the grid PNG and compare.json, compare.gif,
        compare.mp4 and each variant's trajectory zip (`<folder>.zip`, the folder compare.json names).
        Every variant is checked against the host's limits before any model work."""
        vary = [parse_vary(part) for part in check_text("vary", vary, 2000).split(";") if part.strip()]
        by = check_alignment(align)
        labels, runs = self._runs(vary, model, prompt=prompt, negative_prompt=negative_prompt, scheduler=scheduler,
                                  steps=steps, guidance=guidance, seed=seed, width=width, height=height, eta=eta,
                                  preview=preview, every=every)
        yield gr.skip(), gr.skip()
        async for _ in self._follow(runs):
            yield gr.skip(), gr.skip()
        comparison = self._decoders(Comparison([run.trajectory for run in runs], labels, by, dict(vary)))
        folder = self.files.new_folder()
        files = await asyncio.to_thread(write_comparison, comparison, folder, True)
        yield str(files[0]), [str(path) for path in files[1:]]


def write_comparison(comparison, folder, zips: bool = False) -> list:
    """compare.png, compare.json, compare.gif, compare.mp4, compare.html (the page that replays the comparison
    with no server) and (zips) each variant's trajectory as `<folder>.zip`, the folder compare.json names."""
    from sdviz.drawing.page import comparison_page

    written = comparison.save(folder)
    (folder / "compare.html").write_text(comparison_page(comparison), encoding="utf-8")
    files = [*(written[kind] for kind in ("png", "json", "gif", "mp4")), folder / "compare.html"]
    if zips:
        files += [write_trajectory_zip(traj.with_frames(decode), folder / f"{name}.zip") for traj, decode, name
                  in zip(comparison.trajectories, comparison.decoders, comparison.folders) if traj.steps]
    return files

