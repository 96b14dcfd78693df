"""The Compare tab: one seed through 2 to 8 variants of the settings on the page, streamed
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

from sdviz.analysis.align import ALIGNMENTS, check_alignment, positions
from sdviz.analysis.distance import SETTLED_DISTANCE
from sdviz.messages import text
from sdviz.sampling.checks import check_choice, check_float, check_text
from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings
from sdviz.workflows.compare import TEXT_SEPARATOR, VARIED, Comparing, Comparison, parse_vary, variants
from sdviz.workflows.render import write_trajectory_zip
from ui import components, html
from ui.errors import user_errors
from ui.live_feed import session_of
from ui.streaming import PartStop, follow
from ui.tabs import path
from ui.tabs.run import DISPLAY_RATE, model_choices
from ui.tabs.shared import PRIVATE, RUN_WIDGETS, Joined, Shared, refused
from ui.words import say
from ui.zerogpu import iterate

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
    mark = pd.DataFrame({PLOT_X: [100 * position] * 2, "distance": [low, high],
                         "variant": [text("plot.slider")] * 2})
    return pd.concat([frame, mark], ignore_index=True)


def settled_text(comparison) -> str:
    """Which variant's layout settles first, in share of its own run."""
    lines, order = [], []
    for number, (label, traj, settled) in enumerate(zip(comparison.labels, comparison.trajectories,
                                                        comparison.settled()), 1):
        if not traj.steps:
            lines.append(text("compare.not_run_line", number=number, label=label))
            continue
        if settled is None:
            lines.append(text("compare.never_line", number=number, label=label, threshold=SETTLED_DISTANCE))
            continue
        share = (settled + 1) / len(traj.steps)
        order.append((share, number, label))
        lines.append(text("compare.settles_line", number=number, label=label, step=settled + 1,
                          total=len(traj.steps), percent=f"{100 * share:.0f}"))
    head = ""
    if order:
        share, number, label = min(order)
        head = text("compare.first", number=number, label=label, percent=f"{100 * share:.0f}",
                    threshold=SETTLED_DISTANCE) + "\n\n"
    return head + "\n".join(lines)


# --- the tab -------------------------------------------------------------------------------------

def build(handlers: CompareHandlers, shared: Shared, prompt: gr.Textbox, model: gr.Dropdown):
    """The Compare tab and its events; the run's other settings come from the form. Returns the comparison's
    run event (Stop cancels it on ZeroGPU)."""
    gr.Markdown(say("intro.compare"))
    with gr.Row():
        vary_first = components.Dropdown(list(VARIED), value="scheduler", label=say("compare.vary"),
                                         elem_id="vary-first")
        vary_first_values = components.Textbox(value=example_values("scheduler"), label=say("compare.values"),
                                       info=VALUES_INFO, elem_id="vary-first-values", scale=3)
    with gr.Row():
        vary_second = components.Dropdown([("nothing else", NOTHING), *((n, n) for n in VARIED)], value=NOTHING,
                               label=say("compare.vary_second"), elem_id="vary-second")
        vary_second_values = components.Textbox(value="", label=say("compare.values"), info=VALUES_INFO,
                                        elem_id="vary-second-values", scale=3)
    with gr.Row():
        align = components.Radio(list(ALIGNMENTS), value="progress", label=say("compare.align"),
                      info=say("compare.align_info"),
                      elem_id="align")
        compare = gr.Button(say("tab.compare"), variant="primary", elem_id="compare")
    status = gr.HTML(html.status(), elem_id="compare-status")
    position = components.Slider(0, POSITION_STEPS, value=POSITION_STEPS, step=1, interactive=False,
                         label=say("compare.position"),
                         elem_id="compare-position")
    columns = gr.HTML(html.compare_columns([]), elem_id="compare-columns")
    variants_plot = gr.LinePlot(x=PLOT_X, y="distance", color="variant", y_title=say("plot.x0_final"),
                                x_title=say("plot.position"), color_title=say("plot.variant"),
                                title=say("compare.plot"),
                                height=260, elem_id="compare-plot")
    note = gr.Markdown(elem_id="compare-note")
    paths = path.build_compare()
    gr.Markdown(say("compare.finals"))
    finals = gr.HTML(elem_id="compare-finals")
    files_button = gr.Button(say("compare.files_button"), size="sm", elem_id="compare-files-button")
    files = gr.File(label=say("compare.files"), file_count="multiple", elem_id="compare-files")

    comparison = shared.states.comparison
    compare_run = shared.start(compare, handlers.stream, *RUN_WIDGETS, first_name=vary_first,
                               first_values=vary_first_values, second_name=vary_second,
                               second_values=vary_second_values, align=align, outputs=[status, columns, comparison])
    finished = compare_run.success(lambda: None, None, files, show_progress="hidden", **PRIVATE).then(
        handlers.finish, [comparison, align], [position, columns, variants_plot, note, finals], show_progress="hidden",
        **PRIVATE)
    path_steps = path.wire_compare(path.PathHandlers(handlers.session), paths, comparison, position, align, finished)
    compare_run.failure(refused, None, status, show_progress="hidden", **PRIVATE)
    # the variants and the map at the slider's position, one event a move (the reader's, or a click on the map)
    moved = Joined(dict(fn=handlers.show, inputs=[comparison, position, align], outputs=[columns, variants_plot, note]),
                   *path_steps.parts)
    hidden = dict(concurrency_limit=None, show_progress="hidden", **PRIVATE)
    for trigger in (position.input, align.change):
        trigger(**moved.event, **hidden)
    for event in path_steps.moves:
        event.then(**moved.event, **hidden)
    for menu, values in ((vary_first, vary_first_values), (vary_second, vary_second_values)):
        menu.input(handlers.vary_values, [menu, prompt, model], values, show_progress="hidden", **PRIVATE)
    files_button.click(handlers.downloads, comparison, files, **PRIVATE)
    return compare_run


class CompareHandlers:
    """The comparison's runs, one after another on the model threads, within one run's time limit."""

    def __init__(self, session):
        self.session, self.threads, self.files = session, session.threads, session.files

    def build_runs(self, vary, model=None, stop_event=None, **settings):
        """(labels, runs) of the variants `vary` of a run of `settings` (`Settings`' fields by name) on
        `model`: every variant checked, the host's limits included, before any model work."""
        chosen = variants(Settings(**settings), vary, model)
        runs = []
        for variant in chosen:
            v = variant["settings"]
            runs.append(self.session.build_run(variant["model"], stop_event=PartStop(stop_event), **v.to_dict()))
        self.session.limits.check_comparison([run.settings.steps for run in runs])
        return [variant["label"] for variant in chosen], runs

    async def follow_variants(self, runs, labels, stop_event=None, shown_only: bool = False):
        """The variants as the library's `Comparing` runs them, one after another within one run's time limit:
        yields (index, records) as they arrive and, once the library has lined a variant up (its distances, its
        share of the frame cache, (shown_only) only the latents the tab shows), (index, None)."""
        comparing = Comparing(runs, labels, time_limit=self.session.limits.model_seconds, stop_signal=stop_event,
                              shown_only=shown_only, previewer_of=lambda run: self.session.decoder(run.trajectory))
        following, index = comparing.runs(), None
        while True:
            run = await asyncio.to_thread(self.threads.call, next, following, None)  # lines the one before up
            if index is not None:
                yield index, None
            if run is None:
                return
            index = runs.index(run)
            async for records in follow(run, iterate, 1 / DISPLAY_RATE, self.threads):
                yield index, records

    def _decoders(self, comparison):
        return replace(comparison, previewers=[self.session.decoder(t) for t in comparison.trajectories])

    # --- the tab ------------------------------------------------------------------------------

    @user_errors
    def vary_values(self, name, prompt_text, model_name):
        """Values to start from when `name` is picked to vary (see `example_values`)."""
        check_choice("vary", name, [*VARIED, NOTHING])
        check_text("prompt", prompt_text)
        model = self.session.model(model_name)
        prompts = model.examples if name == "prompt" else ()
        return example_values(name, prompt_text, [choice for _, choice in model_choices(self.session.config)], prompts)

    @user_errors
    async def stream(self, stop_signal=None, first_name=None, first_values="", second_name=None, second_values="",
                     align="progress", **run):
        """The variants, one after another, each streamed into its column: status, columns, comparison.
        `run`: the run's values by name (see `ui.form`), the model among them. Like a run's live panels
        (`RunHandlers._stream`), each update goes to the session's live feed, which the page's script asks for,
        and through the event only while no page asks; the last always goes both ways."""
        vary = read_vary(first_name, first_values, second_name, second_values)
        by = check_alignment(align)
        stopping = self.session.stop_event(stop_signal)
        labels, runs = self.build_runs(vary, stop_event=stopping, **run)
        # each column's figure, encoded once when its variant moves on (not again at every update)
        figures = [html.compare_column(n, label, "waiting") for n, label in enumerate(labels, 1)]

        def columns() -> str:
            return html.compare_columns(figures)

        def status(index: int, note: str = "") -> str:
            return html.status(note=text("compare.variant_status", number=index + 1, total=len(runs),
                                         label=labels[index], note=note))

        feed = self.session.feeds.start(session_of())

        def update(shown_status: str, shown_columns: str, comparison):
            feed.publish(status=shown_status, columns=shown_columns)
            return None if feed.followed() else (shown_status, shown_columns, comparison)

        if (sent := update(status(0, text("compare.starting")), columns(), None)) is not None:
            yield sent
        async for index, records in self.follow_variants(runs, labels, stopping, shown_only=True):
            run = runs[index]
            if records is None:
                traj = run.trajectory
                for message in traj.warnings:  # a cut prompt, an ignored eta, the time limit
                    gr.Warning(html_text.escape(text("compare.variant_warning", number=index + 1, label=labels[index],
                                                     message=message), quote=False))
                if traj.steps:
                    x_t, x0 = traj.step_frames(len(traj.steps) - 1, self.session.decoder(traj))
                    figures[index] = html.compare_column(
                        index + 1, labels[index],
                        text("compare.variant_done" if traj.complete else "compare.variant_stopped",
                             steps=len(traj.steps)), x_t, x0)
                continue
            decoded = [r for r in records if r.decoded]
            if decoded:
                record = decoded[-1]
                caption = text("page.variant_step", step=record.index + 1, total=run.total, sigma=f"{record.sigma:.3g}")
                figures[index] = html.compare_column(index + 1, labels[index], caption, record.x_t_image,
                                                     record.x0_image)
            if (sent := update(status(index, text("compare.step_of", step=records[-1].index + 1, total=run.total)),
                               columns(), gr.skip())) is not None:
                yield sent
        done = Comparison([run.trajectory for run in runs], labels, by, dict(vary))
        stopped = [label for label, traj in zip(labels, done.trajectories) if not traj.complete]
        note = text("compare.finished", done=len(runs) - len(stopped), total=len(runs))
        if stopped and not (stopping is not None and stopping.is_set()):  # not Stop: the run-time limit
            note += " · " + self.session.limits.cut_short(done.trajectories, labels)
        ended = html.status(note=text("compare.done", note=note)), columns()
        feed.publish(status=ended[0], columns=ended[1])  # the same as the event's last, whichever is drawn last
        yield (*ended, done)

    @user_errors
    def finish(self, comparison, align):
        """After a comparison: the shared slider at the end, the variants there, the curves, the note and the
        final images."""
        check_alignment(align)
        if comparison is None:
            return (gr.skip(),) * 5
        columns, plot, note = self.show(comparison, POSITION_STEPS, align)
        finals = html.compare_finals([(label, t.final_image) for label, t in zip(comparison.labels,
                                                                                   comparison.trajectories)])
        return gr.update(value=POSITION_STEPS, interactive=True), columns, plot, note, finals

    @user_errors
    def show(self, comparison, position, align):
        """The variants lined up at the slider's position (0..100), by progress or noise level."""
        by, where = check_alignment(align), check_float("position", position, 0, POSITION_STEPS) / POSITION_STEPS
        if comparison is None:
            return gr.skip(), gr.skip(), gr.skip()
        comparison = self._decoders(replace(comparison, by=by))
        return self.threads.call(self._show, comparison, where)

    @staticmethod
    def _show(comparison, where: float):
        shown = []
        for number, (traj, label, (index, frames)) in enumerate(
                zip(comparison.trajectories, comparison.labels, comparison.frames(where)), 1):
            if index is None:
                shown.append(html.compare_column(number, label, text("page.not_run")))
                continue
            record = traj.steps[index]
            caption = text("page.variant_step", step=index + 1, total=len(traj.steps), sigma=f"{record.sigma:.3g}")
            shown.append(html.compare_column(number, label, caption, *frames))
        by = text("compare.by_progress" if comparison.by == "progress" else "compare.by_sigma")
        return html.compare_columns(shown), distance_plot(comparison, where), (
            text("compare.lined_up", by=by, percent=f"{100 * where:.0f}") + "\n\n" + settled_text(comparison))

    @user_errors
    async def downloads(self, comparison):
        """compare.png (the grid), compare.gif, compare.mp4, compare.json and compare.html, written when asked for."""
        if comparison is None or not any(t.steps for t in comparison.trajectories):
            raise InputError.said("error.no_comparison")
        folder = self.files.new_folder()
        files, _ = await asyncio.to_thread(write_comparison, self._decoders(comparison), folder)
        return [str(path) for path in files]

    # --- the API ------------------------------------------------------------------------------

    @user_errors
    async def api(self, prompt, negative_prompt, model, scheduler, steps, guidance, seed, width, height,
                  eta, preview, every, vary, align="progress"):
        """2 to 8 variants of one run (`vary`: NAME=V1,V2 parts separated by ';', as the CLI's --vary),
        one after another within one request's time limit; returns the grid PNG and compare.json, compare.gif,
        compare.mp4 and each variant's trajectory zip (`<folder>.zip`, the folder compare.json names), and the
        status: "finished: N variants", or cut short by the run-time limit (naming it and how far each got).
        Every variant is checked against the host's limits before any model work."""
        deadline = self.session.limits.deadline()  # the request's: its files are written until then
        vary = [parse_vary(part) for part in check_text("vary", vary, 2000).split(";") if part.strip()]
        by = check_alignment(align)
        labels, runs = self.build_runs(vary, model, prompt=prompt, negative_prompt=negative_prompt, scheduler=scheduler,
                                  steps=steps, guidance=guidance, seed=seed, width=width, height=height, eta=eta,
                                  preview=preview, every=every)
        yield gr.skip(), gr.skip(), gr.skip()
        async for _ in self.follow_variants(runs, labels):
            yield gr.skip(), gr.skip(), gr.skip()
        comparison = self._decoders(Comparison([run.trajectory for run in runs], labels, by, dict(vary)))
        folder = self.files.new_folder()
        files, left = await asyncio.to_thread(write_comparison, comparison, folder, True, deadline)
        limits = self.session.limits
        status = "; ".join(filter(None, [limits.cut_short(comparison.trajectories, labels),
                                         limits.files_left_out(left)]))
        status = status or text("status.finished_variants", count=len(runs))
        yield str(files[0]), [str(path) for path in files[1:]], status


def write_comparison(comparison, folder, zips: bool = False, deadline=None) -> tuple[list, list]:
    """(files, names left out): compare.png, compare.json, compare.gif, compare.mp4, compare.html (the page that
    replays the comparison with no server) and (zips) each variant's trajectory as `<folder>.zip`, the folder
    compare.json names. With a request's `deadline`, no zip is begun once it has passed."""
    from sdviz.drawing.page import comparison_page

    written = comparison.save(folder)
    (folder / "compare.html").write_text(comparison_page(comparison), encoding="utf-8")
    files, left = [*(written[kind] for kind in ("png", "json", "gif", "mp4")), folder / "compare.html"], []
    for traj, previewer, name in zip(comparison.trajectories, comparison.previewers, comparison.folders):
        if not (zips and traj.steps):
            continue
        if deadline is not None and deadline.passed():
            left.append(f"{name}.zip")
        else:
            files.append(write_trajectory_zip(traj.with_frames(previewer), folder / f"{name}.zip"))
    return files, left

