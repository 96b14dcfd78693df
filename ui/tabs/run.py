"""The run column: text to image, image to image, edit or invert an image, the settings, and the run
streamed live beside them (x_t and x0 as they are decoded, the filmstrip, the final image).

Every run streams through `RunHandlers._stream`: the page shows the newest step at display rate,
while the session's trajectory keeps every step's latents and a bounded frame cache.
"""

from __future__ import annotations

import html as html_text
import random
from dataclasses import dataclass

import gradio as gr

from sdviz.messages import DEFAULT as DEFAULT_LANGUAGE
from sdviz.messages import catalogue, text
from sdviz.sampling import schedulers
from sdviz.sampling.checks import MAX_SEED, PREVIEW_MODES
from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings
from sdviz.workflows.invert import Inverting
from ui import components, html
from ui.errors import user_errors
from ui.form import Form
from ui.live_feed import session_of
from ui.live_panels import PANELS, LivePanels
from ui.streaming import PartStop, follow
from ui.tabs.shared import PRIVATE, RUN_WIDGETS, Shared, States
from ui.words import say, session_language
from ui.zerogpu import iterate, on_spaces

DISPLAY_RATE = 10.0  # live updates per second at most; every step is still kept
DEFAULTS = Settings()


def scheduler_choices(family: str, own: str | None = None) -> list[tuple[str, str]]:
    """(label, name) of the schedulers that can sample a model of this family, the model's `own` included (a
    class sdviz does not register, used as its config sets it)."""
    fitting = schedulers.for_family(family, own)
    known = catalogue(DEFAULT_LANGUAGE)
    return [(text(f"scheduler.{name}") if f"scheduler.{name}" in known else label, name)
            for name, _, label in schedulers.describe(own) if name in fitting]


def model_choices(config) -> list[tuple[str, str]]:
    """(label, name): the menu shows and sends names, so no install path reaches the page or the API."""
    return [(say("run.default_model", name=name) if name == config.default_name else name, name)
            for name in config.menu()]


def random_seed() -> int:
    return random.randint(0, min(MAX_SEED, 2**32 - 1))


# --- the layout ----------------------------------------------------------------------------------

@dataclass
class RunInputs:
    """The run column's widgets."""

    prompt: gr.Textbox
    examples: gr.Radio
    generate: gr.Button
    init_image: components.Image
    strength: components.Slider
    generate_img2img: gr.Button
    edit_image: components.Image
    source_prompt: gr.Textbox
    edit_prompt: gr.Textbox
    edit_strength: components.Slider
    source_guidance: components.Slider
    edit_button: gr.Button
    invert_button: gr.Button
    negative: gr.Textbox
    stop: gr.Button
    settings: RunSettings


@dataclass
class RunSettings:
    """The Settings accordion's widgets."""

    model: components.Dropdown
    scheduler: components.Dropdown
    steps: components.Slider
    guidance: components.Slider
    true_cfg: components.Slider
    seed: gr.Number
    dice: gr.Button
    width: gr.Number
    height: gr.Number
    eta: components.Slider
    preview: components.Radio
    every: gr.Number
    attention: gr.Checkbox


@dataclass
class LiveView:
    """The live run: what every run streams to."""

    diagram: gr.HTML  # the model's diagram, its active part lit (above the columns)
    status: gr.HTML
    frames: gr.HTML  # x_t and x0, sent as compact data URIs
    filmstrip: gr.HTML
    new_figures: gr.HTML  # hidden: a streamed run's new filmstrip figures, appended by the page
    final: gr.Image
    feed: gr.HTML  # empty: its script asks for the live panels of the session's run (ui.live_feed), arms runs
    token: gr.Textbox  # hidden: a run's token, set by the page's script as the run is sent (Shared.start)

    def outputs(self, states: States) -> list:
        """The outputs of every run, in the order of the updates it streams (the trajectory at TRAJECTORY; an
        inversion's and a fork's updates add the run kept beside it, after it)."""
        return [self.diagram, self.status, self.frames, self.filmstrip, self.new_figures, self.final,
                states.trajectory]


TRAJECTORY = 6  # the place of the run's trajectory in each update a run streams (LiveView.outputs)


def build_inputs(config, default_model) -> RunInputs:
    """The run column: the three ways to start a run, the negative prompt, Stop and the settings."""
    with gr.Tabs():
        with gr.Tab(say("tab.txt2img"), id="txt2img"):
            prompt = components.Textbox(label=say("run.prompt"), value=default_model.examples[0], lines=2,
                                        elem_id="prompt")
            examples = components.Radio(choices=list(default_model.examples), value=None, label=say("run.examples"),
                                elem_id="examples")
            generate = gr.Button(say("run.generate"), variant="primary", elem_id="generate")
        with gr.Tab(say("tab.img2img"), id="img2img"):
            init_image = components.Image(label=say("run.start_image"), type="filepath", elem_id="init-image")
            strength = components.Slider(0.05, 1.0, value=DEFAULTS.strength, step=0.05,
                              label=say("run.strength"))
            generate_img2img = gr.Button(say("run.generate_img2img"), variant="primary", elem_id="generate-img2img")
        with gr.Tab(say("tab.edit"), id="edit"):
            edit_image = components.Image(label=say("run.edit_image"), type="filepath", elem_id="edit-image")
            source_prompt = components.Textbox(label=say("run.source_prompt"), lines=1,
                                               elem_id="source-prompt")
            edit_prompt = components.Textbox(label=say("run.edit_prompt"), lines=1,
                                             elem_id="edit-prompt")
            with gr.Row():
                edit_strength = components.Slider(0.05, 1.0, value=DEFAULTS.strength, step=0.05,
                                       label=say("run.strength"), elem_id="edit-strength")
                source_guidance = components.Slider(0, 20, value=DEFAULTS.source_guidance, step=0.5,
                                         label=say("run.source_guidance"), elem_id="source-guidance")
            with gr.Row():
                edit_button = gr.Button(say("run.edit"), variant="primary", elem_id="edit")
                invert_button = gr.Button(say("run.invert"), elem_id="invert")
            gr.Markdown(say("intro.edit"))
    negative = components.Textbox(label=say("run.negative"), value="", elem_id="negative")
    stop = gr.Button(say("run.stop"), variant="stop", elem_id="stop")
    with gr.Accordion(say("run.settings"), open=True):
        settings = _build_settings(config, default_model.facts)
    return RunInputs(prompt, examples, generate, init_image, strength, generate_img2img, edit_image, source_prompt,
                     edit_prompt, edit_strength, source_guidance, edit_button, invert_button, negative, stop, settings)


def _build_settings(config, default) -> RunSettings:
    model = components.Dropdown(model_choices(config), value=config.default_name, label=say("run.model"),
                     allow_custom_value=config.allow_custom_models, elem_id="model")
    scheduler = components.Dropdown(scheduler_choices(default.family, default.scheduler), value=default.scheduler,
                                    label=say("run.scheduler"), elem_id="scheduler")
    steps = components.Slider(1, config.limits.steps, value=DEFAULTS.steps, step=1, label=say("run.steps"),
                              elem_id="steps")
    guidance = components.Slider(0, 20, value=DEFAULTS.guidance, step=0.5, label=say("run.guidance"),
                                 elem_id="guidance")
    true_cfg = components.Slider(1, 20, value=DEFAULTS.true_cfg, step=0.5, elem_id="true-cfg",
                      label=say("run.true_cfg"),
                      visible=default.family == "flux")
    with gr.Row():
        seed = components.Number(value=DEFAULTS.seed, step=1, label=say("run.seed"), elem_id="seed")
        dice = gr.Button(say("run.random_seed"), size="sm", elem_id="random-seed")
    with gr.Row():
        width = components.Number(value=default.native_width, step=default.vae_factor, label=say("run.width"),
                                  elem_id="width")
        height = components.Number(value=default.native_height, step=default.vae_factor, label=say("run.height"),
                                   elem_id="height")
    eta = components.Slider(0, 1, value=DEFAULTS.eta, step=0.05, label=say("run.eta"))
    with gr.Row():
        preview = components.Radio(list(PREVIEW_MODES), value=DEFAULTS.preview, label=say("run.preview"))
        every = components.Number(value=DEFAULTS.every, step=1, label=say("run.every"))
    attention = components.Checkbox(value=True, label=say("run.attention"))
    return RunSettings(model, scheduler, steps, guidance, true_cfg, seed, dice, width, height, eta, preview, every,
                       attention)


def build_live(diagram: gr.HTML, session) -> LiveView:
    """The live panels; the session's feeds (ui.live_feed.LiveFeeds) and arming (ui.session.Arming) answer the
    page's script."""
    status = gr.HTML(html.status(), elem_id="status")
    frames = gr.HTML(html.live(), elem_id="live")
    filmstrip = gr.HTML("", html_template=html.FILMSTRIP_TEMPLATE, elem_id="filmstrip")
    new_figures = gr.HTML("", visible=False)
    new_figures.change(None, new_figures, None, js=html.FILMSTRIP_APPEND, show_progress="hidden")  # in the page
    final = gr.Image(label=say("run.final"), height=192, format="png", interactive=False, elem_id="final",
                     elem_classes="sdviz-pixelated")
    def queued(request) -> str:
        return html.status(note=text("status.queued", language=session_language(request)))

    feed = gr.HTML("", js_on_load=html.FEED_SCRIPT, elem_id="live-feed",
                   server_functions=[session.feeds.server_function(), session.arming.server_function(queued)])
    token = components.Textbox(label=say("run.run_token"), visible=False, elem_id="run-token")
    return LiveView(diagram, status, frames, filmstrip, new_figures, final, feed, token)


def form(inputs: RunInputs, states: States, step: gr.Slider, token: gr.Textbox) -> Form:
    """The run's widgets by name: `Settings`' field names, plus the run's token ("stop_signal": what Stop
    reaches, ui.session.Arming) and the fork's parent (the session's run) and step."""
    s = inputs.settings
    return Form(stop_signal=token, prompt=inputs.prompt, negative_prompt=inputs.negative, model=s.model,
                scheduler=s.scheduler, steps=s.steps, guidance=s.guidance, seed=s.seed, width=s.width,
                height=s.height, eta=s.eta, preview=s.preview, every=s.every, attention=s.attention,
                true_cfg=s.true_cfg, init_image=inputs.init_image, strength=inputs.strength,
                parent=states.trajectory, step=step)


# --- the events ----------------------------------------------------------------------------------

@dataclass
class RunEvents:
    """The page's runs, each one event that streams into the live view."""

    txt2img: gr.events.Dependency
    img2img: gr.events.Dependency
    edit: gr.events.Dependency
    invert: gr.events.Dependency

    def all(self) -> tuple:
        return self.txt2img, self.img2img, self.edit, self.invert


def wire(handlers: RunHandlers, inputs: RunInputs, live: LiveView, shared: Shared) -> RunEvents:
    """The run column's events: its three tabs' runs, the random seed, a model chosen, a prompt tried."""
    outputs, states, s = live.outputs(shared.states), shared.states, inputs.settings
    events = RunEvents(
        txt2img=shared.start(inputs.generate, handlers.stream, *RUN_WIDGETS, "attention", "true_cfg",
                             outputs=outputs),
        img2img=shared.start(inputs.generate_img2img, handlers.stream_img2img, *RUN_WIDGETS, "attention",
                             "init_image", "strength", outputs=outputs),
        edit=shared.start(inputs.edit_button, handlers.stream_edit, *RUN_WIDGETS, "attention",
                          prompt=inputs.edit_prompt, init_image=inputs.edit_image, strength=inputs.edit_strength,
                          source_prompt=inputs.source_prompt, source_guidance=inputs.source_guidance,
                          outputs=outputs),
        invert=shared.start(inputs.invert_button, handlers.stream_invert, "stop_signal", "negative_prompt", "model",
                            "steps", "guidance", "seed", "width", "height", "preview", "every", "attention",
                            prompt=inputs.source_prompt, init_image=inputs.edit_image,
                            outputs=[*outputs, states.parent]))
    s.dice.click(random_seed, None, s.seed, **PRIVATE)
    s.model.change(handlers.model_changed, [s.model, s.scheduler], [s.width, s.height, s.scheduler, s.true_cfg,
                                                                   inputs.examples], **PRIVATE)
    inputs.examples.input(None, inputs.examples, inputs.prompt, js="(text) => text", show_progress="hidden")
    return events


def wire_stop(button: gr.Button, handlers: RunHandlers, runs: list) -> gr.events.Dependency | None:
    """Stop: the session's run (queued or running) ends after its current step and finishes as usual. On
    ZeroGPU the run is in another process, where only gradio's cancel reaches: the cancel event is
    returned, to be followed as a run's end is (a cancelled run never finishes)."""
    if on_spaces():
        return button.click(None, cancels=runs, **PRIVATE)
    button.click(handlers.stop, None, None, concurrency_limit=None, **PRIVATE)
    return None


# --- the handlers --------------------------------------------------------------------------------

class RunHandlers:
    """The runs the page streams, over the session's model cache, model threads and file store."""

    def __init__(self, session):
        self.session, self.files, self.threads = session, session.files, session.threads

    def stop(self) -> None:
        """Stop: the session's run (queued or running) ends after its current step and finishes as usual."""
        self.session.arming.stop(session_of())

    @user_errors
    def model_changed(self, name, scheduler):
        """A newly chosen model's native size, the schedulers that fit it (the chosen one where it fits, else
        the model's own), the true-CFG slider, shown for Flux only (at 1 for the others), and its example
        prompts."""
        model = self.session.model(name)
        facts = model.facts
        scheduler = None if scheduler is None else schedulers.resolve(scheduler).name  # a known name, or refused
        fitting = schedulers.for_family(facts.family, facts.scheduler)
        value = scheduler if scheduler in fitting else facts.scheduler
        return (facts.native_width, facts.native_height,
                gr.update(choices=scheduler_choices(facts.family, facts.scheduler), value=value),
                gr.update(visible=True) if facts.family == "flux" else gr.update(visible=False, value=1.0),
                gr.update(choices=list(model.examples), value=None))

    @user_errors
    async def stream(self, stop_signal=None, **run):
        """Text to image, streamed: diagram, status, x_t and x0, filmstrip, final image, trajectory state.
        `run`: the run's values by name (see `ui.form`)."""
        run = self.session.build_run(**run, stop_event=self.session.stop_event(stop_signal))
        async for update in self._stream(run):
            yield update

    @user_errors
    async def stream_img2img(self, stop_signal=None, **run):
        """Image to image, streamed like `stream`; refuses to run without an image (`init_image`)."""
        run = self.session.build_run(**run, stop_event=self.session.stop_event(stop_signal), img2img=True)
        async for update in self._stream(run):
            yield update

    @user_errors
    async def stream_edit(self, stop_signal=None, scheduler="ddim", source_prompt=None, **run):
        """An edit (CycleDiffusion), streamed like a run: the image, what it shows (source prompt) and what it
        should show (prompt). It steps with DDIM, whatever the scheduler menu says."""
        scheduler = schedulers.resolve(scheduler).name  # the menu's value is checked, though an edit uses DDIM
        if not isinstance(source_prompt, str) or not source_prompt.strip():
            raise InputError.said("error.no_source_prompt")
        run = self.session.build_run(**run, scheduler="ddim", source_prompt=source_prompt,
                                     stop_event=self.session.stop_event(stop_signal), img2img=True)
        if scheduler != "ddim":
            gr.Info(text("info.edit_ddim", scheduler=scheduler))
        async for update in self._stream(run):
            yield update

    @user_errors
    async def stream_invert(self, stop_signal=None, attention=False, **run):
        """Inversion: the image run back to noise, then that noise run forward again (DDIM, eta 0; flow models:
        flow Euler), both streamed; the session's run is the reconstruction, the inversion kept beside it.
        Both share one run's time limit (`sdviz.workflows.invert.Inverting`). `run` names no scheduler or eta:
        the model's family decides them. A stopped inversion is the session's run, with no reconstruction."""
        stopping = self.session.stop_event(stop_signal)
        first = self.session.build_run(**run, attention=attention, stop_event=PartStop(stopping), img2img=True,
                                       invert=True)  # the scheduler the model's family reverses
        inverting = Inverting(first, self.session.capture(first.model, attention),
                              stop_signal=PartStop(stopping))  # following one run stops it: not the next
        for phase in inverting.runs():
            inversion = None if phase is first else first.trajectory  # kept beside the reconstruction
            async for update in self._stream(phase):
                yield (*update, inversion)

    @user_errors
    async def stream_fork(self, stop_signal=None, parent=None, step=None, attention=False, **changes):
        """Fork from the slider's step: the session's run continued after that step with `changes` (the page
        sends its prompt, negative prompt, guidance, eta and preview settings; model, scheduler, steps, seed
        and size stay the parent's, and a change of those is refused), streamed like a run; the parent is
        kept beside it."""
        run = self.session.build_fork(parent, step, attention, self.session.stop_event(stop_signal), **changes)
        async for update in self._stream(run):
            yield (*update, parent)

    async def _stream(self, run):
        """The live panels (`ui.live_panels`) at display rate, each update published to the session's live feed,
        which the page's script asks for (`ui.live_feed`); the event carries them too only while no page asks,
        and always carries the first (unless a page asks) and the last."""
        traj, panels = run.trajectory, LivePanels(run.trajectory)
        feed = self.session.feeds.start(session_of())

        def update(part: dict, final) -> tuple:
            return (*[gr.skip() if part[name] is None else part[name] for name in PANELS], final, traj)

        try:
            part = panels.start()
            feed.publish(**part)
            if feed.followed():  # the page's script draws the panels: the event empties the last final image
                yield update(dict.fromkeys(PANELS), None)
            else:
                yield update(part, None)
            shown = 0
            async for records in follow(run, iterate, 1 / DISPLAY_RATE, self.threads):
                shown = _warn(traj.warnings, shown)  # a cut prompt, an ignored eta
                part = panels.step(records, run.total)
                feed.publish(**part)
                if not feed.followed():
                    yield update(part, gr.skip())
            _warn(traj.warnings, shown)  # the run-time limit
            ended = text("status.ended" if traj.complete else "status.stopped")
            part = panels.end(run.total or 0, self.session.limits.cut_short([traj]) if run.timed_out else ended)
            feed.publish(**part)  # the same as the event's last update, whichever the page draws last
            yield update(part, self.files.image(traj.final_image) if traj.final_image is not None else gr.skip())
        except BaseException:  # refused, failed or abandoned: the page's status is ready again, as after a refusal
            feed.publish(status=html.status())
            raise


def _warn(warnings: list, shown: int) -> int:
    """The run's warnings after the first `shown`, as the page's toasts; returns how many there are now."""
    for message in warnings[shown:]:
        gr.Warning(html_text.escape(message, quote=False))
    return len(warnings)
