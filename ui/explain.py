"""The explaining panels' handlers: guidance decomposed, the noise schedule, where the picture is
decided, the forward process, the latent space and the "How it works" walk, all drawn from the
session's own run (its `Trajectory` in `gr.State`).

Nothing here runs in the sampling loop: a panel is computed when its step is shown or its tab
opened (a tab opened once is redrawn after every later run), with the run's own preview decoder,
on the model threads.
"""

from __future__ import annotations

import html as html_text
import math

import gradio as gr
import numpy as np
import pandas as pd

from sdviz.analysis import schedule
from sdviz.analysis.distance import SETTLED_DISTANCE, distance_to_final, settled_step
from sdviz.analysis.edit import departure, is_edit
from sdviz.analysis.forward import forward_process, img2img_start, latent_space
from sdviz.analysis.guidance import guidance_example
from sdviz.drawing import views
from sdviz.drawing.edit import sheet as edit_sheet
from sdviz.drawing.sheets import FILMSTRIP_SIDE, enlarge, pick
from sdviz.drawing.sheets import sheet as draw_sheet
from sdviz.drawing.views import overlay, prompt_effect
from sdviz.sampling import schedulers
from sdviz.sampling.attention.layers import attention_layers
from sdviz.sampling.images import load_image
from sdviz.sampling.previews import Previewer
from sdviz.sampling.tokens import shown
from ui import html
from ui.handlers import _step_index, gpu, user_errors
from ui.walk import WALK_PANELS, section_texts

FORWARD_COLUMNS = 8  # noise levels shown in the forward-process rows
SCHEDULE_COLOURS = {"log10 σ (noise / signal)": "#1f77b4", "ᾱ (share of signal variance)": "#ff7f0e",
                    "log10 SNR": "#2ca02c", "this step": "#000000"}
DISTANCE_COLOURS = {"predicted x0 to the final image": "#d62728", "x_t to the final image": "#1f77b4",
                    "settled threshold": "#aaaaaa", "layout settled": "#d0508a", "this step": "#000000"}
WALK_SHARE = 0.25  # the walk shows the step this far into the run: the layout is forming, not yet settled
PANELS = ("forward", "latent", "walk")  # tabs drawn on opening, then after every run


def _mark(frame: pd.DataFrame, x: float, name: str, column: str = "curve") -> pd.DataFrame:
    """A vertical line at x across the frame's value range, as its own series."""
    low, high = float(frame["value"].min()), float(frame["value"].max())
    mark = pd.DataFrame({frame.columns[0]: [x, x], "value": [low, high], column: [name, name]})
    return pd.concat([frame, mark], ignore_index=True)


def schedule_frame(traj, index: int) -> pd.DataFrame:
    """log10 sigma, alpha_bar and log10 SNR at each of the run's steps, and the shown step marked."""
    rows = []
    def log10(value: float) -> float | None:  # flow matching starts at pure noise: SNR 0, no logarithm
        return math.log10(value) if 0 < value < math.inf else None

    for row in schedule.trajectory_schedule(traj):
        step = row["index"] + 1
        rows += [(step, value, name) for value, name in zip(
            (log10(row["sigma"]), row["alpha_bar"], log10(row["snr"])), SCHEDULE_COLOURS) if value is not None]
    return _mark(pd.DataFrame(rows, columns=["step", "value", "curve"]), index + 1, "this step")


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
    return _mark(frame, share, "this step", column="scheduler")


def distance_frame(traj, index: int) -> pd.DataFrame:
    distances = traj.distance_to_final
    x0_curve, x_t_curve, threshold, settled_mark, _ = DISTANCE_COLOURS
    rows = [(n + 1, distances[kind][n], curve)
            for kind, curve in (("x0", x0_curve), ("x_t", x_t_curve)) for n in range(len(traj.steps))]
    rows += [(1, SETTLED_DISTANCE, threshold), (len(traj.steps), SETTLED_DISTANCE, threshold)]
    frame = pd.DataFrame(rows, columns=["step", "value", "curve"])
    settled = settled_step(distances["x0"])
    if settled is not None:
        frame = _mark(frame, settled + 1, settled_mark)
    return _mark(frame, index + 1, "this step")


def decided_text(traj) -> str:
    distances = traj.distance_to_final
    settled = settled_step(distances["x0"])
    total = len(traj.steps)
    target = "the final image" if traj.complete else "the last step reached (the run was stopped)"
    if settled is None:
        where = f"The predicted x0 never stays within {SETTLED_DISTANCE} of {target} before the end."
    else:
        x_t = distances["x_t"][settled]
        where = (f"The layout settles at **step {settled + 1} of {total}**: from there on the predicted x0 stays "
                 f"within {SETTLED_DISTANCE} of {target}. At that step x_t is still {x_t:.3f} away"
                 + (": the picture is decided well before x_t shows it." if x_t > 2 * SETTLED_DISTANCE
                    else "."))
    return (f"{where}\n\nDistance: mean absolute difference of the decoded frames to the run's last frame, "
            "pixel values in [0, 1] (the final image itself with the full preview decoder). "
            f"Step 1's predicted x0 is {distances['x0'][0]:.3f} away.")


def formula_text(record, guidance: float) -> str:
    example = guidance_example(record, guidance)
    g = example["guidance"]
    return (
        f"**x0 = x0(empty) + g · (x0(prompt) − x0(empty))**, with g = {g:g}. At the latent value the prompt "
        f"changes most here (channel {example['channel']}, row {example['y']}, column {example['x']}): "
        f"{example['uncond']:.3f} + {g:g} × ({example['cond']:.3f} − {example['uncond']:.3f}) = "
        f"**{example['formula']:.3f}**, the guided x0's value {example['guided']:.3f}. Over all latent values the "
        f"prompt moves x0 by {example['mean_difference']:.4f} on average; guidance moves it {g:g} times as far "
        f"({example['mean_guided_difference']:.4f})."
    )


# The model work, as decode_record does it: on ZeroGPU each call runs in the GPU process.
guidance_frames = gpu(Previewer.guidance_frames)
forward_process = gpu(forward_process)
latent_space = gpu(latent_space)


def _target(traj) -> str:
    """What the model's denoiser is trained to predict, in words."""
    return {"v_prediction": "v = √ᾱ·ε − √(1−ᾱ)·x0 (a mix of the noise and the image)",
            "flow": "the velocity v = ε − x0 (the straight way from the image to the noise)",
            "sample": "the clean image x0 itself"}.get(traj.facts.prediction_type, "the noise ε")


def unguided_text(traj) -> str:
    """Why a run has one x0 and no guidance halves."""
    if traj.facts.family == "flux":
        return (f"Flux's guidance ({traj.settings.guidance:g}) is an input of the transformer, learnt from a "
                "guided teacher, not a second pass: the transformer saw the prompt alone, so there is one x0. "
                "A negative prompt with true CFG above 1 runs a real unconditional pass, and the halves appear.")
    return (f"This run did not use classifier-free guidance (guidance scale {traj.guidance_scale:g} ≤ 1, or a "
            f"model that does without): the {traj.denoiser_word} saw the prompt alone, so there is one x0.")


def _opened(opened, name: str) -> list[str]:
    """The explaining tabs this session has opened: they are drawn again after each run."""
    return sorted({*(opened or []), name})


class ExplainHandlers:
    """The explaining panels; shares the app's model cache, model threads and file store."""

    def __init__(self, handlers):
        self.handlers, self.threads, self.files = handlers, handlers.threads, handlers.files

    def _previewer(self, traj) -> Previewer:
        settings = traj.settings
        return Previewer(self.handlers.model(settings.model), settings.preview, settings.height,
                         settings.width)

    def _image(self, traj, upload):
        """An uploaded image (its size checked against the host's limit before it is decoded), else the run's."""
        if upload is None:
            return traj.final_image
        return load_image(upload, check_size=self.handlers.limits.check_image, name="image")

    def _guidance(self, traj, record):
        """(x0 frame of the empty prompt, of the prompt, what the prompt adds, its largest change)."""
        uncond, cond = guidance_frames(self._previewer(traj), record)
        return (uncond, cond, *prompt_effect(uncond, cond))

    # --- with the step slider ------------------------------------------------------------

    @user_errors
    def step_views(self, traj, step):
        """Guidance decomposed (three x0, what the prompt adds, the formula) and the schedule and
        distance plots with this step marked."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 8
        return self.threads.call(self._step_views, traj, step)

    def _step_views(self, traj, step):
        index = _step_index(traj, step)
        record = traj.steps[index]
        guidance = traj.guidance_scale
        _, x0_image = traj.step_frames(index, self.handlers._decoder(traj))
        if record.x0_uncond is not None:
            uncond, cond, effect, peak = self._guidance(traj, record)
            pictures = [self.files.image(frame) for frame in (uncond, cond, x0_image, effect)]
            formula = (formula_text(record, guidance) + f" In the colour map, full red or blue is a change of "
                       f"{peak:.3f} in pixel value (of 1).")
        else:
            pictures = [None, None, self.files.image(x0_image), None]
            formula = unguided_text(traj)
        config = self.handlers.model(traj.settings.model).scheduler_config
        return (*pictures, formula, schedule_frame(traj, index), compared_frame(traj, config, index),
                distance_frame(traj, index) if traj.distance_to_final is not None else gr.skip())

    # --- the tabs drawn on opening ------------------------------------------------------------

    @user_errors
    def decided(self, traj, step):
        """Where the picture is decided: every step's distance to the final image, measured once per run
        (kept on the session's trajectory; steps not cached are decoded again), plotted with the step marked."""
        if traj is None or not traj.steps:
            return gr.skip(), "Generate an image first."
        if traj.distance_to_final is None:
            traj.distance_to_final = self.threads.call(distance_to_final, traj, self.handlers._decoder(traj))
        return distance_frame(traj, _step_index(traj, step)), decided_text(traj)

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
            self.handlers, traj, image, self.handlers._decoder(traj)))

    @user_errors
    def latent(self, traj, upload=None):
        """The run's final image, or an upload, through the VAE and back."""
        return self._image_panel(traj, upload, "encode", lambda image: latent_sheet(
            self.handlers.model(traj.settings.model), image, traj.settings.width, traj.settings.height,
            traj.denoiser_word))

    def _image_panel(self, traj, upload, verb: str, draw):
        """(sheet file, note) from draw(image) on a model thread, for the run's image or an upload."""
        if traj is None or not traj.steps:
            return gr.skip(), f"Generate an image first; then you can also {verb} an image of your own here."
        image = self._image(traj, upload)
        if image is None:
            return gr.skip(), f"The run was stopped before its final image; upload an image to {verb}."
        sheet, note = self.threads.call(draw, image)
        return self.files.image(np.asarray(sheet)), note

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
        parent_decode, fork_decode = self.handlers._decoder(parent), self.handlers._decoder(fork)
        count = min(len(parent.steps), len(fork.steps))
        chosen = sorted({*pick(count, FORWARD_COLUMNS - 1), max(at - 1, 0)})
        rows = [(name, [(f"step {k + 1}", traj.step_frames(k, decode)[0]) for k in chosen])
                for name, traj, decode in (("parent", parent, parent_decode), ("fork", fork, fork_decode))]
        marked = {chosen.index(max(at - 1, 0)): f"forked after step {at}"} if at else None
        sheet = draw_sheet(rows, f"the fork keeps the parent's first {at} steps, then follows its own settings",
                             marked)
        for traj, decode in ((parent, parent_decode), (fork, fork_decode)):
            if traj.distance_to_final is None:
                traj.distance_to_final = distance_to_final(traj, decode)
        plot = pd.DataFrame(
            [(n + 1, d, f"{name}: predicted x0 to its final image")
             for name, traj in (("parent", parent), ("fork", fork)) for n, d in enumerate(traj.distance_to_final["x0"])],
            columns=["step", "value", "curve"])
        changed = [f"{key} {getattr(parent.settings, key)!r} → {getattr(fork.settings, key)!r}"
                   for key in ("prompt", "negative_prompt", "guidance", "eta")
                   if getattr(parent.settings, key) != getattr(fork.settings, key)]
        note = (f"Forked after step {at} of {len(parent.steps)}: "
                + ("; ".join(changed) if changed else "nothing changed, so the fork is its parent, bit for bit") + ".")
        return self.files.image(np.asarray(sheet)), _mark(plot, at, "fork point"), note, gr.update(open=True)

    # --- an edit against its source; an inversion's round trip ------------------------------------

    @user_errors
    def edit_view(self, traj, step):
        """An edit's source chain, its own and their difference (the slider's step marked; the last step
        when `step` is None), the departure curve and a note; the panel opened. Closed for other runs."""

        if traj is None or not is_edit(traj):
            return None, None, "", gr.update(open=False)
        index = len(traj.steps) - 1 if step is None else _step_index(traj, step)  # None: a run just ended
        return self.threads.call(self._edit_view, traj, index)

    def _edit_view(self, traj, index):

        settings = traj.settings
        previewer = Previewer(self.handlers.model(settings.model), settings.preview, settings.height,
                              settings.width)
        sheet = edit_sheet(traj, previewer, self.handlers._decoder(traj), at=index)
        gaps = departure(traj)
        plot = _mark(pd.DataFrame([(n + 1, gap, "mean |edit - source| (latents)") for n, gap in enumerate(gaps)],
                                  columns=["step", "value", "curve"]), index + 1, "this step")
        grows = (f", grows most at step {int(np.argmax(np.diff(gaps))) + 2}" if len(gaps) > 1 else "")
        note = (f"Both chains start from the image noised for {len(traj.steps)} steps and share their noise. The "
                f"edit departs from the source at once ({gaps[0]:.3f} apart after step 1, mean |latent| "
                f"difference){grows} and ends {gaps[-1]:.3f} away. Where the bottom row is dark, the edit kept "
                "the image.")
        return self.files.image(np.asarray(sheet)), plot, note, gr.update(open=True)

    @user_errors
    def round_trip_view(self, reconstruction, inversion):
        """An inversion's image to noise and back, with the reconstruction error; the panel opened."""
        if reconstruction is None or inversion is None or not inversion.settings.invert:
            return None, "", gr.update(open=False)
        sheet, result = self.handlers.round_trip(inversion, reconstruction)
        summary, settings = result.summary(), inversion.settings
        method = "DDIM" if settings.scheduler == "ddim" else "flow Euler"
        note = (f"Inverted in {settings.steps} {method} steps at guidance {settings.guidance:g} and run forward "
                f"again: the reconstruction is {summary['psnr_db']:.1f} dB from the image (mean error "
                f"{summary['mean_abs_error']:.1f} / 255); the VAE alone reaches {summary['vae_psnr_db']:.1f} dB. "
                f"The noise it reached has standard deviation {summary['noise_std']:.2f} (a run starts from 1). "
                "Guidance makes the round trip drift: try 1 and then 7.5.")
        return self.files.image(np.asarray(sheet)), note, gr.update(open=True)

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
        handlers = self.handlers
        model = handlers.model(traj.settings.model)
        decode = handlers._decoder(traj)
        index = int(WALK_SHARE * (len(traj.steps) - 1))
        record = traj.steps[index]
        image = traj.final_image if traj.final_image is not None else traj.step_frames(len(traj.steps) - 1, decode)[0]
        strip = denoising_sheet(traj, decode)
        forward, forward_note = forward_sheet(handlers, traj, image, decode)
        latent, latent_note = latent_sheet(model, image, traj.settings.width, traj.settings.height,
                                           traj.denoiser_word)
        x_t_in = traj.noise_image if index == 0 else traj.step_frames(index - 1, decode)[0]
        x0_image = traj.step_frames(index, decode)[1]
        predicted = views.noise_image(record.noise_pred, model.latent_rgb.numpy(), tuple(traj.shapes["image"][1:]))
        predicts = "v" if traj.facts.prediction_type in ("v_prediction", "flow") else "noise"
        prediction = draw_sheet([(f"step {index + 1}", [("x_t in", x_t_in), (f"predicted {predicts}", predicted),
                                                          ("x0: noise removed", x0_image)])],
                                  f"the {traj.denoiser_word} predicts {_target(traj)}; removing the noise gives the "
                                  "predicted x0")
        if record.x0_uncond is not None:
            uncond, cond, effect, _ = self._guidance(traj, record)
            guidance = draw_sheet([(f"step {index + 1}", [("empty prompt", uncond), ("prompt", cond),
                                                            ("guided", x0_image), ("prompt adds", effect)])],
                                    "predicted x0 of each half of the batch, and guided")
            formula = formula_text(record, traj.guidance_scale)
        else:
            guidance = draw_sheet([(f"step {index + 1}", [("x0", x0_image)])], "no guidance")
            formula = unguided_text(traj)
        heat, attention_note = attention_panel(traj, model, image)
        picture = self.files.image
        panels = {"components": components_html(traj), "tokens": tokens_html(traj), "denoise": picture(np.asarray(strip)),
                  "forward": picture(np.asarray(forward)), "forward-note": forward_note,
                  "prediction": picture(np.asarray(prediction)), "latent": picture(np.asarray(latent)),
                  "latent-note": latent_note, "attention-note": attention_note,
                  "attention": picture(heat) if heat is not None else None, "guidance": picture(np.asarray(guidance)),
                  "guidance-note": formula,
                  **{f"text-{index + 1}": text for index, text in enumerate(section_texts(traj))}}
        return tuple(panels[name] for name in WALK_PANELS)


def denoising_sheet(traj, decode, most: int = FORWARD_COLUMNS):
    """The filmstrip of the run: x_t and x0 at up to `most` steps, from the noise on, each decoded
    (or taken from the frame cache) as it is drawn, so a long run does not decode every step."""
    chosen = pick(len(traj.steps), most - 1)
    x_t = [("noise", traj.noise_image)] + [(f"step {k + 1}", traj.step_frames(k, decode)[0]) for k in chosen]
    x0 = [("", None)] + [(f"step {k + 1}", traj.step_frames(k, decode)[1]) for k in chosen]
    return draw_sheet([("x_t", x_t), ("predicted x0", x0)],
                        f"denoising steps (of {len(traj.steps)}, {traj.settings.scheduler}): from noise to image")


def forward_sheet(handlers, traj, image, decode):
    """The forward process of `image` at the run's noise levels (up to FORWARD_COLUMNS of them) above the
    run's own x_t entering the same steps; for img2img the strength's starting point marked."""
    settings = traj.settings
    model = handlers.model(settings.model)
    steps = settings.steps
    table = schedule.schedule_table(settings.scheduler, steps, model.scheduler_config, model.facts.family,
                                    traj.image_tokens)
    start = run_start(traj, model.scheduler_config)
    chosen = pick(len(table), FORWARD_COLUMNS)
    if settings.img2img and start not in chosen:
        chosen = sorted({*chosen[:-1], start, chosen[-1]})[:FORWARD_COLUMNS + 1]
    process = forward_process(model, image, settings.scheduler, steps, settings.seed, settings.preview,
                              levels=chosen, width=settings.width, height=settings.height)
    reverse = []
    for entry in chosen:
        index = entry - start  # the run's step that starts at this level
        if index < 0:
            reverse.append(("not run", None))
        elif index > len(traj.steps):  # a stopped run
            reverse.append(("not reached", None))
        else:
            frame = traj.noise_image if index == 0 else traj.step_frames(index - 1, decode)[0]
            reverse.append((f"step {index + 1}", frame))
    captions = [f"abar {a:.3f}" for a in process.alpha_bar]
    marked = {chosen.index(start): "img2img starts here"} if settings.img2img else None
    sheet = draw_sheet([("forward q(x_t|x0)", list(zip(captions, process.frames))),
                          ("reverse (this run)", reverse)],
                         f"the same noise levels ({settings.scheduler}, {steps} steps), both directions", marked)
    mixed = "x_t = (1 − σ)·x0 + σ·ε" if traj.facts.prediction_type == "flow" else "x_t = √ᾱ·x0 + √(1−ᾱ)·ε"
    note = (f"Top: the image encoded, then noised to the run's levels: {mixed}, one ε for all "
            f"(seed {settings.seed}). ᾱ goes from {process.alpha_bar[0]:.4f} (almost all noise) to "
            f"{process.alpha_bar[-1]:.4f} (almost all image). Bottom: the x_t this run was at when it reached each "
            f"level. Training shows the {traj.denoiser_word} the top row and asks it for {_target(traj)}; sampling "
            "walks the bottom row.")
    if settings.img2img:
        note += (f" This img2img run started at entry {start + 1} of {len(table)} (strength {settings.strength:g}): "
                 "the input image, noised to that level, replaced the pure noise.")
    return sheet, note


def latent_sheet(model, image, width: int, height: int, denoiser: str = "UNet"):
    space = latent_space(model, image, width, height)
    channels = views.channel_images(space.latents, side=space.image.shape[0])
    columns = [("image", space.image), *((f"channel {c}", f) for c, f in enumerate(channels)),
               ("decoded back", space.reconstruction)]
    sheet = draw_sheet([("VAE", columns)], "encoded to latents, each channel a picture, and decoded back")
    facts = model.facts
    note = (f"{space.pixel_values:,} pixel values ({' × '.join(map(str, space.image.shape))}) become "
            f"{space.latent_values:,} latent values ({' × '.join(map(str, space.latents.shape))}): "
            f"**{space.compression:g}× fewer** (VAE factor {facts.vae_factor}, {facts.latent_channels} channels). "
            f"Decoded back the image comes out at a PSNR of **{space.psnr:.1f} dB**. The {denoiser} works in "
            "this small space; only the VAE ever sees pixels.")
    return sheet, note


def components_html(traj) -> str:
    facts = traj.facts
    shapes = traj.shapes
    latents = " × ".join(map(str, shapes["latents"]))
    encoders = facts.encoders or [{"name": "text_encoder", "class": "CLIPTextModel", "tokens": facts.tokens,
                                          "width": shapes["token_embeddings"][1]}]
    rows = [(f"Text encoder ({encoder['class']})", facts.parameters[encoder["name"]],
             f"{encoder['tokens']} token ids", f"{encoder['tokens']} × {encoder['width']}") for encoder in encoders]
    denoiser = facts.denoiser
    predicts = "velocity" if facts.prediction_type == "flow" else "noise"
    rows += [(f"{traj.denoiser_word[0].upper()}{traj.denoiser_word[1:]} ({facts.denoiser_class}, "
              f"{predicts} predictor)", facts.parameters[denoiser],
              f"x_t {latents}, timestep, {' × '.join(map(str, shapes['token_embeddings']))} text"
              + (f", pooled {facts.pooled_width}" if facts.pooled_width else "")
              + (f", {facts.added}" if facts.added else ""), f"{predicts} {latents}"),
             ("VAE (AutoencoderKL: encoder + decoder)", facts.parameters["vae"],
              f"latents {latents}", f"image {' × '.join(map(str, shapes['image']))}")]
    body = "".join(f"<tr><td>{html_text.escape(name)}</td><td>{count:,}</td><td>{inp}</td><td>{out}</td></tr>"
                   for name, count, inp, out in rows)
    return (html.diagram(shapes, facts, "", traj.settings.scheduler) +
            f'<table class="sdviz-walk"><tr><th>component</th><th>parameters</th><th>takes</th><th>gives</th></tr>'
            f"{body}</table>")


def tokens_html(traj) -> str:
    shape = traj.shapes["token_embeddings"]
    joined = " (the text encoders' outputs joined)" if traj.tokens.get("others") else ""
    return (html.token_slots(traj.tokens) +
            f"<p>Each slot becomes one vector: the {traj.denoiser_word} reads <b>{shape[0]} × {shape[1]}</b>{joined}, "
            "the same size for every prompt (padding fills the rest).</p>")


def _joint_attention_panel(traj, layers, image):
    """attention_panel for an MMDiT transformer (SD3, Flux): image and text tokens attend together."""
    joint = sum(1 for layer in layers if layer.kind == "joint")
    single = sum(1 for layer in layers if layer.kind == "single")
    kinds = f"{joint} joint (image and text tokens in two streams)" + (
        f" and {single} single-stream (one sequence, the text first)" if single else "")
    note = (f"The transformer has {len(layers)} attention layers, {kinds}. There is no separate cross-attention: "
            "every image token attends to every image and text token at once, and the image-token × text-token "
            "part of that attention is how the words steer the picture; the heat maps are that part.")
    maps = traj.attention
    if maps is None or not maps.word_slots():
        return None, note + (" Run with attention capture on to see where each word went." if maps is None else "")
    return _strongest_word(traj, maps, image, note)


def attention_panel(traj, model, image):
    """Where the cross-attention layers sit, counted from the UNet itself, and this run's heat map of the
    word that drew the most cross-attention over the whole run, over `image`."""
    layers = attention_layers(model.denoiser)
    if traj.facts.denoiser == "transformer":
        return _joint_attention_panel(traj, layers, image)
    by_block: dict[str, int] = {}
    for layer in layers:
        if layer.kind == "cross":
            block = layer.name.split(".")[0].replace("_blocks", "").replace("mid_block", "mid")
            by_block[block] = by_block.get(block, 0) + 1
    cross = sum(by_block.values())
    counted = ", ".join(f"{n} in the {block} block{'' if block == 'mid' else 's'}" for block, n in by_block.items())
    note = (f"The UNet has {len(layers)} attention layers: {len(layers) - cross} self-attention and {cross} "
            f"cross-attention ({counted}), each after a ResNet block. In a cross-attention layer every latent pixel "
            f"asks all {traj.shapes['token_embeddings'][0]} token vectors which matter to it: that is how the words "
            "steer the picture.")
    maps = traj.attention
    if maps is None:
        return None, note + " Run with attention capture on to see where each word went."
    if not maps.word_slots():
        return None, note
    return _strongest_word(traj, maps, image, note)


def _strongest_word(traj, maps, image, note: str):
    """The heat map of the word that drew the most attention over the whole run, over `image`."""
    mass = maps.aggregate().reshape(len(maps.tokens), -1).sum(axis=1)  # (tokens,) over the whole run
    token = max(maps.word_slots(), key=lambda slot: mass[slot])
    note += (f" Below: where “{shown(maps.tokens[token])}”, the word that drew the most attention, "
             "was looked at over the whole run (the Attention tab shows any word at any step).")
    return enlarge(overlay(image, maps.heat_map(token)), FILMSTRIP_SIDE * 2), note
