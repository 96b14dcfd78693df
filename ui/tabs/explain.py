"""The explaining tabs, drawn from the session's own run (its `Trajectory` in `gr.State`): the noise
schedule and where the picture is decided, the forward process, the latent space, and the
"How it works" walk.

Nothing here runs in the sampling loop: a tab is drawn when it is opened, and a tab opened once is
drawn again after every later run (`redraw_opened`), with the run's own preview decoder, on the model
threads. The schedule tab's plots also follow the step slider (ui.tabs.explore).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from sdviz.analysis.distance import distance_to_final
from sdviz.drawing import views
from sdviz.drawing.sheets import sheet as draw_sheet
from sdviz.messages import text
from sdviz.sampling.images import load_image
from ui import walk
from ui.components import Image
from ui.errors import user_errors
from ui.plots import (
    DISTANCE_COLOURS,
    SCHEDULE_COLOURS,
    decided_text,
    distance_frame,
    formula_text,
    prediction_target,
    unguided_text,
)
from ui.session import step_index
from ui.sheets import (
    attention_panel,
    components_html,
    denoising_sheet,
    forward_sheet,
    guidance_pictures,
    latent_sheet,
    path_panel,
    tokens_html,
)
from ui.tabs.shared import PRIVATE, Shared
from ui.walk import WALK_PANELS, section_texts
from ui.words import say

WALK_SHARE = 0.25  # the walk shows the step this far into the run: the layout is forming, not yet settled


def _opened(opened, name: str) -> list[str]:
    """The explaining tabs this session has opened: they are drawn again after each run."""
    return sorted({*(opened or []), name})


# --- the tabs ------------------------------------------------------------------------------------

@dataclass
class SchedulePanels:
    plot: gr.LinePlot  # this run's noise levels
    compared: gr.LinePlot  # where schedulers spend their steps
    distance: gr.LinePlot  # each step's distance to the final image
    decided: gr.Markdown

    @property
    def plots(self) -> list:
        """The plots the step slider marks."""
        return [self.plot, self.compared, self.distance]


@dataclass
class ExplainPanels:
    """Every explaining tab's panels: what is drawn again after a run."""

    schedule: SchedulePanels
    forward: list  # sheet, note
    latent: list  # sheet, note
    walk: list  # in WALK_PANELS order


def build_schedule(handlers: ExplainHandlers, shared: Shared) -> SchedulePanels:
    with gr.Tab(say("tab.schedule"), elem_id="schedule-tab") as tab:
        gr.Markdown(say("intro.schedule"))
        plot = gr.LinePlot(x="step", y="value", color="curve", title=say("schedule.plot"), x_title=say("plot.step"),
                           y_title=say("plot.value"), color_title=say("plot.curve"),
                           color_map=SCHEDULE_COLOURS, height=260, elem_id="schedule-plot")
        compared = gr.LinePlot(x="share of steps done", y="value", color="scheduler", y_title="log10 σ",
                               x_title=say("plot.share"), color_title=say("plot.scheduler"),
                               title=say("schedule.compared"),
                               height=260, elem_id="compare-plot")
        gr.Markdown(say("intro.decided"))
        distance = gr.LinePlot(x="step", y="value", color="curve", y_title=say("plot.frame_distance"),
                               x_title=say("plot.step"), color_title=say("plot.curve"),
                               color_map=DISTANCE_COLOURS, title=say("schedule.distance"), height=260,
                               elem_id="distance-plot")
        decided = gr.Markdown(elem_id="decided")
    states = shared.states
    tab.select(handlers.open_schedule, [states.trajectory, shared.step, states.opened], [distance, decided,
                                                                                       states.opened], **PRIVATE)
    return SchedulePanels(plot, compared, distance, decided)


def build_forward(handlers: ExplainHandlers, shared: Shared) -> list:
    return _image_tab(handlers.open_forward, handlers.forward, shared, say("tab.forward"), "forward",
                      say("intro.forward"), say("forward.label"), say("forward.upload"), say("forward.button"))


def build_latent(handlers: ExplainHandlers, shared: Shared) -> list:
    return _image_tab(handlers.open_latent, handlers.latent, shared, say("tab.latent"), "latent",
                      say("intro.latent"), say("latent.label"), say("latent.upload"), say("latent.button"))


def _image_tab(opened, draw, shared: Shared, title: str, name: str, intro: str, label: str, upload_label: str,
               button_label: str) -> list:
    """A tab of one sheet and its note, drawn from the run's image when opened, or from an upload."""
    with gr.Tab(title, elem_id=f"{name}-tab") as tab:
        gr.Markdown(intro)
        image = gr.Image(label=label, show_label=False, format="png", interactive=False, elem_id=f"{name}-image")
        note = gr.Markdown(elem_id=f"{name}-note")
        with gr.Row():
            upload = Image(label=upload_label, type="filepath", height=160)
            button = gr.Button(button_label, size="sm")
    trajectory, states = shared.states.trajectory, shared.states
    tab.select(opened, [trajectory, states.opened], [image, note, states.opened], **PRIVATE)
    button.click(draw, [trajectory, upload], [image, note], **PRIVATE)
    return [image, note]


def build_walk(handlers: ExplainHandlers, shared: Shared) -> list:
    with gr.Tab(say("tab.walk"), elem_id="walk-tab") as tab:
        panels = walk.build()
    states = shared.states
    tab.select(handlers.open_walk, [states.trajectory, states.opened], [*panels, states.opened], **PRIVATE)
    return panels


def redraw_opened(handlers: ExplainHandlers, panels: ExplainPanels, shared: Shared, event):
    """`event`, then the explaining tabs this session has opened drawn again for the new run (the others
    are drawn when opened: nothing is computed that nobody looks at)."""
    return event.then(handlers.refresh, [shared.states.trajectory, shared.step, shared.states.opened],
                      [panels.schedule.distance, panels.schedule.decided, *panels.forward, *panels.latent,
                       *panels.walk], show_progress="hidden", **PRIVATE)


# --- the handlers --------------------------------------------------------------------------------

class ExplainHandlers:
    """The explaining tabs, over the session's model cache, model threads and file store."""

    def __init__(self, session):
        self.session, self.threads, self.files = session, session.threads, session.files

    def _image(self, traj, upload):
        """An uploaded image (its size checked against the host's limit before it is decoded), else the run's."""
        if upload is None:
            return traj.final_image
        return load_image(upload, check_size=self.session.limits.check_image, name="image")

    @user_errors
    def decided(self, traj, step):
        """Where the picture is decided: every step's distance to the final image, measured once per run
        (kept on the session's trajectory; steps not cached are decoded again), plotted with the step marked."""
        if traj is None or not traj.steps:
            return gr.skip(), text("note.generate_first")
        if traj.distance_to_final is None:
            traj.distance_to_final = self.threads.call(distance_to_final, traj, self.session.decoder(traj))
        return distance_frame(traj, step_index(traj, step)), decided_text(traj)

    def open_schedule(self, traj, step, opened):
        return (*self.decided(traj, step), _opened(opened, "schedule"))

    def open_forward(self, traj, opened):
        return (*self.forward(traj), _opened(opened, "forward"))

    def open_latent(self, traj, opened):
        return (*self.latent(traj), _opened(opened, "latent"))

    def open_walk(self, traj, opened):
        return (*self.walk(traj), _opened(opened, "walk"))

    def refresh(self, traj, step, opened):
        """After a run, the tabs this session has opened, drawn again for the new run."""
        if traj is not None and traj.steps:
            step_index(traj, step)  # checked whether or not a tab that shows it is open
        opened = opened or []
        return (*(self.decided(traj, step) if "schedule" in opened else (gr.skip(),) * 2),
                *(self.forward(traj) if "forward" in opened else (gr.skip(),) * 2),
                *(self.latent(traj) if "latent" in opened else (gr.skip(),) * 2),
                *(self.walk(traj) if "walk" in opened else (gr.skip(),) * len(WALK_PANELS)))

    # --- forward process, latent space ---------------------------------------------------

    @user_errors
    def forward(self, traj, upload=None):
        """The forward process of the run's final image, or of an upload, at the run's noise levels."""
        return self._image_panel(traj, upload, "noise", lambda image: forward_sheet(
            self.session.model(traj.settings.model), traj, image, self.session.decoder(traj)))

    @user_errors
    def latent(self, traj, upload=None):
        """The run's final image, or an upload, through the VAE and back."""
        return self._image_panel(traj, upload, "encode", lambda image: latent_sheet(
            self.session.model(traj.settings.model), image, traj.settings.width, traj.settings.height,
            traj.denoiser_word))

    def _image_panel(self, traj, upload, verb: str, draw):
        """(sheet file, note) from draw(image) on a model thread, for the run's image or an upload."""
        if traj is None or not traj.steps:
            return gr.skip(), text("note.generate_first_upload", verb=text(f"verb.{verb}"))
        image = self._image(traj, upload)
        if image is None:
            return gr.skip(), text("note.stopped_upload", verb=text(f"verb.{verb}"))
        sheet, note = self.threads.call(draw, image)
        return self.files.image(np.asarray(sheet)), note

    # --- How it works ----------------------------------------------------------------------

    @user_errors
    def walk(self, traj):
        """Every panel of the walk, from this run: components, tokens, denoising, forward process and
        noise prediction, latent space, cross-attention, guidance. The step shown is WALK_SHARE into
        the run, where the picture is still being decided."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * len(WALK_PANELS)
        return self.threads.call(self._walk, traj)

    def _walk(self, traj):
        model = self.session.model(traj.settings.model)
        decode = self.session.decoder(traj)
        index = int(WALK_SHARE * (len(traj.steps) - 1))
        record = traj.steps[index]
        image = traj.final_image if traj.final_image is not None else traj.step_frames(len(traj.steps) - 1, decode)[0]
        strip = denoising_sheet(traj, decode)
        forward, forward_note = forward_sheet(model, traj, image, decode)
        latent, latent_note = latent_sheet(model, image, traj.settings.width, traj.settings.height,
                                           traj.denoiser_word)
        x_t_in = traj.noise_image if index == 0 else traj.step_frames(index - 1, decode)[0]
        x0_image = traj.step_frames(index, decode)[1]
        predicted = views.noise_image(record.noise_pred, model.latent_rgb.numpy(), tuple(traj.shapes["image"][1:]))
        predicts = "v" if traj.facts.prediction_type in ("v_prediction", "flow") else "noise"
        step = text("filmstrip.step", step=index + 1)
        prediction = draw_sheet([(step, [(text("walk.x_t_in"), x_t_in), (text(f"walk.predicted_{predicts}"), predicted),
                                         (text("walk.noise_removed"), x0_image)])],
                                text("walk.prediction_title", denoiser=traj.denoiser_word,
                                     target=prediction_target(traj)))
        if record.x0_uncond is not None:
            uncond, cond, effect, _ = guidance_pictures(decode, record)
            guidance = draw_sheet([(step, [(text("walk.empty_prompt"), uncond), (text("walk.prompt"), cond),
                                           (text("walk.guided"), x0_image), (text("walk.prompt_adds"), effect)])],
                                  text("walk.halves_title"))
            formula = formula_text(record, traj.guidance_scale)
        else:
            guidance = draw_sheet([(step, [("x0", x0_image)])], text("walk.no_guidance"))
            formula = unguided_text(traj)
        heat, attention_note = attention_panel(traj, model, image)
        path, path_note = path_panel(traj, decode)
        picture = self.files.image
        panels = {"components": components_html(traj), "tokens": tokens_html(traj),
                  "denoise": picture(np.asarray(strip)), "path": picture(np.asarray(path)), "path-note": path_note,
                  "forward": picture(np.asarray(forward)),
                  "forward-note": forward_note, "prediction": picture(np.asarray(prediction)),
                  "latent": picture(np.asarray(latent)), "latent-note": latent_note,
                  "attention-note": attention_note, "attention": picture(heat) if heat is not None else None,
                  "guidance": picture(np.asarray(guidance)), "guidance-note": formula,
                  **{f"text-{index + 1}": text for index, text in enumerate(section_texts(traj))}}
        return tuple(panels[name] for name in WALK_PANELS)
