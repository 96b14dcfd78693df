"""The step explorer: the step slider (and play) that every panel below the run follows, and the
Explore tab: the step's x_t, x0, predicted noise and latent channels, guidance decomposed, and the
boxes that open after an edit (against its source), an inversion (its round trip) or a fork (against
its parent).

After each run `finish` sets the slider to the run's last step and the choices of the Tokens and
Attention tabs; `StepEvents.after` then draws the step again, every panel that follows the slider in one
event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import gradio as gr
import numpy as np
import pandas as pd

from sdviz.analysis.distance import distance_to_final
from sdviz.analysis.edit import departure, is_edit
from sdviz.drawing import views
from sdviz.drawing.edit import sheet as edit_sheet
from sdviz.drawing.sheets import pick
from sdviz.drawing.sheets import sheet as draw_sheet
from sdviz.messages import text
from ui import components, html, walk
from ui.clicks import clickable
from ui.errors import user_errors
from ui.plots import compared_frame, distance_frame, formula_text, mark, schedule_frame, unguided_text
from ui.session import step_index
from ui.sheets import FORWARD_COLUMNS, guidance_pictures
from ui.tabs.attention import AttentionView, heat, word_choices
from ui.tabs.path import fork_parting
from ui.tabs.run import RunEvents
from ui.tabs.shared import PRIVATE, Joined, Shared
from ui.words import say

PLAY_SECONDS = 0.25  # per frame when playing the trajectory back


# --- the layout ----------------------------------------------------------------------------------

@dataclass
class StepRow:
    """The step every panel below the run shows, and its play and pause."""

    step: gr.Slider
    play: gr.Button
    pause: gr.Button


@dataclass
class ExploreView:
    step_info: gr.Markdown
    fork: gr.Button
    pictures: list  # x_t, x0, the predicted noise at the step, and LCM's denoised estimate (shown for LCM only)
    channels: gr.Gallery
    guidance: list  # x0 of each half, guided, what the prompt adds
    formula: gr.Markdown
    edit: list  # the edit against its source: sheet, plot, note, its box
    trip: list  # the round trip: sheet, note, its box
    forked: list  # the fork against its parent: sheet, plot, note, its box

    @property
    def x0_view(self) -> gr.Image:
        return self.pictures[1]


def build_step_row() -> StepRow:
    with gr.Row():  # the step every panel below shows
        step = components.Slider(1, 2, value=1, step=1, label=say("explore.step"), interactive=False,
                                 elem_id="step-slider")
        play = gr.Button(say("explore.play"), size="sm", elem_id="play")
        pause = gr.Button(say("explore.pause"), size="sm")
    return StepRow(step, play, pause)


def build() -> ExploreView:
    """The Explore tab's panels; its events are wired once the tabs it draws into are built (`wire`)."""
    step_info = gr.Markdown(elem_id="step-info")
    with gr.Row():
        fork = gr.Button(say("explore.fork"), size="sm", elem_id="fork")
        gr.Markdown(say("explore.fork_note"))
    with gr.Row(elem_classes="sdviz-pixelated"):
        pictures = [gr.Image(label=say("explore.x_t"), height=200, format="png", interactive=False,
                             elem_id="xt-view"),
                    gr.Image(label=say("explore.x0"), height=200, format="png", interactive=False, elem_id="x0-view"),
                    gr.Image(label=say("explore.noise"), height=200, format="png", interactive=False),
                    gr.Image(label=say("explore.denoised"), height=200, format="png", interactive=False,
                             visible=False, elem_id="denoised-view")]
    channels = gr.Gallery(label=say("explore.channels"), columns=4, height=180, elem_classes="sdviz-pixelated")
    gr.Markdown(say("intro.guidance"))
    with gr.Row(elem_classes="sdviz-pixelated"):
        guidance = [gr.Image(label=label, height=180, format="png", interactive=False, elem_id=elem_id)
                    for label, elem_id in ((say("explore.x0_uncond"), "x0-uncond"),
                                           (say("explore.x0_cond"), "x0-cond"),
                                           (say("explore.x0_guided"), "x0-guided"),
                                           (say("explore.prompt_effect"), "prompt-effect"))]
    formula = gr.Markdown(elem_id="guidance-formula")
    with gr.Accordion(say("explore.edit_box"), open=False) as edit_box:  # opened by an edit
        edit_note = gr.Markdown(elem_id="edit-note")
        edit_view = gr.Image(show_label=False, format="png", interactive=False, elem_id="edit-view")
        edit_plot = gr.LinePlot(x="step", y="value", color="curve", title=say("explore.edit_plot"),
                                x_title=say("plot.step"), y_title=say("plot.value"), color_title=say("plot.curve"),
                                height=220, elem_id="edit-plot")
    with gr.Accordion(say("explore.trip_box"), open=False) as trip_box:
        trip_note = gr.Markdown(elem_id="trip-note")
        trip_view = gr.Image(show_label=False, format="png", interactive=False, elem_id="trip-view")
    with gr.Accordion(say("explore.fork_box"), open=False) as fork_box:  # opened by a fork
        fork_note = gr.Markdown(elem_id="fork-note")
        fork_view = gr.Image(show_label=False, format="png", interactive=False, elem_id="fork-view")
        fork_plot = gr.LinePlot(x="step", y="value", color="curve", title=say("explore.fork_plot"),
                                x_title=say("plot.step"), y_title=say("plot.value"), color_title=say("plot.curve"),
                                height=240, elem_id="fork-plot")
    return ExploreView(step_info, fork, pictures, channels, guidance, formula,
                       [edit_view, edit_plot, edit_note, edit_box], [trip_view, trip_note, trip_box],
                       [fork_view, fork_plot, fork_note, fork_box])


# --- the events ----------------------------------------------------------------------------------

@dataclass
class StepEvents:
    """The events that draw the slider's step. `draw`: every panel that follows the slider as one event (the
    explorer's pictures and heat map, guidance decomposed, the schedule tab's plots with the step marked, an
    edit's views, and the `also` panels of other tabs: the path's map and region words); `show`: the
    explorer's pictures alone, when the Attention tab's choices move."""

    draw: Joined
    show: dict

    def after(self, event):
        """`event`, then the step drawn (even when the slider lands on the value it had)."""
        return event.then(**self.draw.event, **HIDDEN)

    def played(self, play, trajectory, step):
        """`play` (the slider's steps, one by one) as one event that draws each step with the slider."""
        draw, at_run, at_step = self.draw, self.draw.place(trajectory), self.draw.place(step)

        def played(*values):
            values = list(values)
            for shown in play(values[at_run], values[at_step]):
                values[at_step] = shown
                yield (shown, *draw(*values))
        return played


HIDDEN = dict(concurrency_limit=None, show_progress="hidden", **PRIVATE)


def wire(handlers: ExploreHandlers, view: ExploreView, row: StepRow, shared: Shared, attention: AttentionView,
         plots: list, runs: RunEvents, fork_run, also: tuple = (), moves: tuple = ()) -> StepEvents:
    """The explorer's events: the step drawn when the reader moves the slider (one event a move; a move by a
    run's end, play or `moves`, events that set the slider, draws through them), when the Attention tab's
    choices move, and after each run (`runs`, and the fork's) the boxes of a round trip and a fork, opened
    for theirs and closed for the others. `plots`: the schedule tab's three, marked at the step."""
    trajectory, parent = shared.states.trajectory, shared.states.parent
    show = dict(fn=handlers.show_step, inputs=[trajectory, row.step, attention.word, attention.resolution,
                                               attention.span],
                outputs=[*view.pictures, view.channels, view.step_info, attention.heat])
    views = dict(fn=handlers.step_views, inputs=[trajectory, row.step], outputs=[*view.guidance, view.formula, *plots])
    edit = dict(fn=handlers.edit_step, inputs=[trajectory, row.step], outputs=view.edit)
    steps = StepEvents(Joined(show, views, edit, *also), show)
    row.step.input(**steps.draw.event, **HIDDEN)  # the reader's move, drag or typed; not the page's own
    for trigger in (attention.word.change, attention.resolution.change, attention.span.change):
        trigger(**show, **HIDDEN)
    for event in moves:
        steps.after(event)
    playing = row.play.click(steps.played(handlers.play, trajectory, row.step), steps.draw.inputs,
                             [row.step, *steps.draw.outputs], **HIDDEN)
    row.pause.click(None, cancels=[playing], **PRIVATE)

    quiet = dict(show_progress="hidden", **PRIVATE)
    fork_run.success(handlers.fork_view, [trajectory, parent], view.forked, **quiet)
    for event in runs.all():  # nobody's fork: no earlier fork's views
        event.success(lambda: (None, None, "", gr.update(open=False)), None, view.forked, **quiet)
    for event in (*runs.all(), fork_run):  # closed unless an edit (`draw` opens it at the edit's last step)
        event.success(handlers.edit_closed, trajectory, view.edit, **quiet)
    for event in (runs.txt2img, runs.img2img, runs.edit, fork_run):
        event.success(lambda: (None, "", gr.update(open=False)), None, view.trip, **quiet)
    runs.invert.success(handlers.round_trip_view, [trajectory, parent], view.trip, **quiet)
    return steps


# --- the handlers --------------------------------------------------------------------------------

class ExploreHandlers:
    """The explorer's panels, drawn from the session's run with its own decoder, on the model threads."""

    def __init__(self, session):
        self.session, self.threads, self.files = session, session.threads, session.files

    @user_errors
    def finish(self, traj):
        """After a run (or a Stop): the explorer, tokens and attention choices; downloads wait to be asked for."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 7
        token_choices, resolutions, self_resolutions = word_choices(traj)
        return (
            gr.update(minimum=1, maximum=len(traj.steps), value=len(traj.steps), interactive=True),
            html.token_slots(traj.tokens),
            gr.update(choices=token_choices, value=token_choices[0][1] if token_choices else None),
            gr.update(choices=resolutions, value="all"),
            gr.update(choices=self_resolutions, value=self_resolutions[0] if self_resolutions else None),
            None,  # the downloads: written when the Downloads tab is opened
            None,
        )

    @user_errors
    def play(self, traj, step):
        """Moves the step slider through the run, one frame every PLAY_SECONDS."""
        if traj is None or not traj.steps:
            return
        index = step_index(traj, step)
        start = 0 if index == len(traj.steps) - 1 else index
        for index in range(start, len(traj.steps)):
            yield index + 1
            time.sleep(PLAY_SECONDS)

    @user_errors
    def show_step(self, traj, step, token, resolution, span):
        """x_t, x0, predicted noise, LCM's denoised estimate, latent channels, the step's facts, and the heat
        map."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 7
        return self.threads.call(self._show_step, traj, step, token, resolution, span)  # decodes, resizes: torch

    def _show_step(self, traj, step, token, resolution, span):
        index = step_index(traj, step)
        record = traj.steps[index]
        decoder = self.session.decoder(traj)
        x_t_image, x0_image = traj.step_frames(index, decoder)
        denoised = decoder.denoised_frame(record)
        latent_rgb = self.session.model(traj.settings.model).latent_rgb.numpy()
        size = tuple(traj.shapes["image"][1:])
        channels = [(self.files.image(image), f"channel {c}")
                    for c, image in enumerate(views.channel_images(record.x_next * record.next_vp_scale))]
        info = text("explore.step_info", step=index + 1, steps=len(traj.steps), timestep=f"{record.timestep:g}",
                    sigma=f"{record.sigma:.4f}", std=f"{np.std(record.x_next * record.next_vp_scale):.3f}")
        info += walk.few_step_note(traj)
        heat_map = heat(traj, index, token, resolution, span, x0_image)
        predicted = self.files.image(views.noise_image(record.noise_pred, latent_rgb, size))
        return (self.files.image(x_t_image), self.files.image(clickable(x0_image)),  # clicked for its words
                gr.update(value=predicted, label=text(f"prediction.{traj.facts.prediction_type}")),
                gr.update(value=None if denoised is None else self.files.image(denoised), visible=denoised is not None),
                channels, info, self.files.image(heat_map) if heat_map is not None else None)

    @user_errors
    def step_views(self, traj, step):
        """Guidance decomposed (three x0, what the prompt adds, the formula) and the schedule and
        distance plots with this step marked."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 8
        return self.threads.call(self._step_views, traj, step)

    def _step_views(self, traj, step):
        index = step_index(traj, step)
        record = traj.steps[index]
        guidance = traj.guidance_scale
        decoder = self.session.decoder(traj)
        _, x0_image = traj.step_frames(index, decoder)
        if record.x0_uncond is not None:
            uncond, cond, effect, peak = guidance_pictures(decoder, record)
            pictures = [self.files.image(frame) for frame in (uncond, cond, x0_image, effect)]
            formula = formula_text(record, guidance) + text("sentence.gap") + text("guidance.peak", peak=f"{peak:.3f}")
        else:
            pictures = [None, None, self.files.image(x0_image), None]
            formula = unguided_text(traj)
        config = self.session.model(traj.settings.model).scheduler_config
        return (*pictures, formula, schedule_frame(traj, index), compared_frame(traj, config, index),
                distance_frame(traj, index) if traj.distance_to_final is not None else gr.skip())

    # --- a fork against its parent ---------------------------------------------------------

    @user_errors
    def fork_view(self, fork, parent):
        """Both runs' x_t at the same steps (the fork's first steps are the parent's), both distance curves, a
        line on what changed; and the panel opened."""
        if fork is None or parent is None or fork.settings.forked_from is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.threads.call(self._fork_view, fork, parent)

    def _fork_view(self, fork, parent):
        at = fork.settings.forked_from["at"]
        parent_decode, fork_decode = self.session.decoder(parent), self.session.decoder(fork)
        count = min(len(parent.steps), len(fork.steps))
        chosen = sorted({*pick(count, FORWARD_COLUMNS - 1), max(at - 1, 0)})
        rows = [(name, [(text("filmstrip.step", step=k + 1), traj.step_frames(k, decode)[0]) for k in chosen])
                for name, traj, decode in ((text("plot.parent"), parent, parent_decode),
                                           (text("plot.fork"), fork, fork_decode))]
        marked = {chosen.index(max(at - 1, 0)): text("fork.sheet_mark", at=at)} if at else None
        sheet = draw_sheet(rows, text("fork.sheet_title", at=at), marked)
        for traj, decode in ((parent, parent_decode), (fork, fork_decode)):
            if traj.distance_to_final is None:
                traj.distance_to_final = distance_to_final(traj, decode)
        plot = pd.DataFrame([(n + 1, d, text("plot.fork_curve", name=name))
                             for name, traj in ((text("plot.parent"), parent), (text("plot.fork"), fork))
                             for n, d in enumerate(traj.distance_to_final["x0"])], columns=["step", "value", "curve"])
        changed = [f"{key} {getattr(parent.settings, key)!r} → {getattr(fork.settings, key)!r}"
                   for key in ("prompt", "negative_prompt", "guidance", "eta")
                   if getattr(parent.settings, key) != getattr(fork.settings, key)]
        note = text("note.forked", at=at, total=len(parent.steps),
                    changes="; ".join(changed) if changed else text("note.fork_unchanged"))
        difference, parts = fork_parting(parent, fork, (parent_decode, fork_decode))  # where the two part
        plot = mark(pd.concat([plot, difference], ignore_index=True), at, text("plot.fork_point"))
        return self.files.image(np.asarray(sheet)), plot, note + text("sentence.gap") + parts, gr.update(open=True)

    # --- an edit against its source; an inversion's round trip ------------------------------------

    @user_errors
    def edit_step(self, traj, step):
        """An edit's source chain, its own and their difference at the slider's step, the departure curve and
        a note; the panel opened. Another run's: left as it is (closed after the run: `edit_closed`)."""
        if traj is None or not traj.steps or not is_edit(traj):
            return (gr.skip(),) * 4
        return self.threads.call(self._edit_view, traj, step_index(traj, step))

    @staticmethod
    def edit_closed(traj):
        """After a run: the edit's panel closed and emptied for a run that is not an edit."""
        if traj is not None and traj.steps and is_edit(traj):
            return (gr.skip(),) * 4
        return None, None, "", gr.update(open=False)

    def _edit_view(self, traj, index):
        decoder = self.session.decoder(traj)
        sheet = edit_sheet(traj, decoder, at=index)
        gaps = departure(traj)
        plot = mark(pd.DataFrame([(n + 1, gap, text("plot.edit_gap")) for n, gap in enumerate(gaps)],
                                 columns=["step", "value", "curve"]), index + 1, text("plot.this_step"))
        grows = text("note.edit_grows", step=int(np.argmax(np.diff(gaps))) + 2) if len(gaps) > 1 else ""
        note = text("note.edit", steps=len(traj.steps), first=f"{gaps[0]:.3f}", grows=grows, last=f"{gaps[-1]:.3f}")
        return self.files.image(np.asarray(sheet)), plot, note, gr.update(open=True)

    @user_errors
    def round_trip_view(self, reconstruction, inversion):
        """An inversion's image to noise and back, with the reconstruction error; the panel opened."""
        if reconstruction is None or inversion is None or not inversion.settings.invert:
            return None, "", gr.update(open=False)
        sheet, result = self.round_trip(inversion, reconstruction)
        summary, settings = result.summary(), inversion.settings
        method = "DDIM" if settings.scheduler == "ddim" else "flow Euler"
        note = text("note.round_trip", steps=settings.steps, method=method, guidance=f"{settings.guidance:g}",
                    psnr=f"{summary['psnr_db']:.1f}", error=f"{summary['mean_abs_error']:.1f}",
                    vae=f"{summary['vae_psnr_db']:.1f}", std=f"{summary['noise_std']:.2f}")
        return self.files.image(np.asarray(sheet)), note, gr.update(open=True)

    def round_trip(self, inversion, reconstruction):
        """On the model thread: (the round-trip sheet, the Inversion with its errors) of an inverted image."""
        from sdviz.workflows.invert import inversion_of

        def measure():
            decoders = (self.session.decoder(inversion), self.session.decoder(reconstruction))
            result = inversion_of(self.session.model(inversion.settings.model), inversion, reconstruction, decoders)
            return result.round_trip_sheet(), result

        return self.threads.call(measure)
