"""The app's event handlers: they turn widget values into core calls and core results
into what the widgets show. Per-request data lives in locals and `gr.State` (the
trajectory, the run's stop signal); the shared objects are the read-only model
cache, the file store and the model threads every torch call runs on.

Every value a handler takes is checked here or in the core, whoever sent it (the
page, the API, or a hand-made request to an event the page uses): a bad one is
answered with one message naming the parameter, the value and what is allowed,
logged without a traceback; real failures are logged with theirs.
"""

from __future__ import annotations

import asyncio
import functools
import html as html_text
import inspect
import json
import logging
import random
import shutil
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np

from sdviz.drawing import views
from sdviz.drawing.sheets import filmstrip, save_gif, save_mp4
from sdviz.drawing.views import overlay
from sdviz.sampling import schedulers
from sdviz.sampling.attention import AttentionCapture, model_layer_table
from sdviz.sampling.checks import MAX_SEED, check_float, check_int, check_settings, check_text
from sdviz.sampling.errors import InputError
from sdviz.sampling.frames import FrameCache
from sdviz.sampling.images import load_image
from sdviz.sampling.models import display_name
from sdviz.sampling.previews import Previewer
from sdviz.sampling.sampler import Run
from sdviz.sampling.settings import Settings
from sdviz.sampling.tokens import shown
from ui import html
from ui.model_threads import ModelThreads
from ui.streaming import PartStop, follow

log = logging.getLogger("sdviz.app")
PLAY_SECONDS = 0.25  # per frame when playing the trajectory back
DISPLAY_RATE = 10.0  # live updates per second at most; every step is still kept
SELF_ATTENTION_POSITIONS = 256  # self-attention kept up to 16 x 16 positions (SD 1.5: 0.14 MB a step)
SPANS = ("this step", "up to this step", "whole run")
NEGATIVE_WORD = "negative:"  # the Word choice of a negative prompt's word: this, then its slot


def user_errors(fn):
    """A refusal of bad input (`sdviz.InputError`, raised by sdviz or the app) becomes gr.Error, shown in the page and returned over the
    API, and logged as one line; anything else is logged with its traceback server-side and answered
    with one line that shows nothing of the server. The server keeps serving."""

    def convert(error: Exception) -> gr.Error:
        if isinstance(error, InputError):
            log.info("refused %s: %s", fn.__name__, error)
            return gr.Error(html_text.escape(str(error), quote=False), print_exception=False)
        log.error("handler %s failed", fn.__name__, exc_info=error)
        return gr.Error(f"the request failed ({type(error).__name__}); the server logged the details",
                        print_exception=False)

    target = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(target):
        @functools.wraps(fn)
        async def follow_async(*args, **kwargs):
            try:
                async for update in fn(*args, **kwargs):
                    yield update
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - converted for the user, logged above
                raise convert(error) from None
        return follow_async

    if inspect.iscoroutinefunction(target):
        @functools.wraps(fn)
        async def call_async(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001
                raise convert(error) from None
        return call_async

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001
            raise convert(error) from None
    return call


def scheduler_choices(family: str) -> list[tuple[str, str]]:
    """(label, name) of the schedulers that can sample a model of this family."""
    fitting = schedulers.for_family(family)
    return [(label, name) for name, _, label in schedulers.describe() if name in fitting]


def on_spaces() -> bool:
    """Whether Hugging Face's `spaces` package (ZeroGPU) is importable."""
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


def gpu(fn):
    """@spaces.GPU on Hugging Face Spaces (ZeroGPU); unchanged elsewhere."""
    if not on_spaces():
        return fn
    import spaces

    return spaces.GPU(fn)


@gpu
def iterate(run, emit) -> None:
    """The run's steps, on the worker thread (on ZeroGPU, in the GPU process)."""
    for record in run:
        emit(record)


@gpu
def decode_record(previewer, record, alone: bool):
    """A step's frames decoded again from its latents (on ZeroGPU, in the GPU process)."""
    return previewer.record_frames(record, alone)


class StopSignal:
    """A run's Stop: a threading.Event in the session's state.

    ZeroGPU runs handlers in another process, where no event set here can reach; it pickles
    as a fresh one, and there Stop goes through gradio's cancel instead (see ui/layout.py).
    """

    def __init__(self):
        self.event = threading.Event()

    def __reduce__(self):
        return (StopSignal, ())


def write_downloads(traj, folder: Path) -> list[str]:
    """filmstrip.png, trajectory.gif, trajectory.mp4 and trajectory.zip (JSON + latents + frames);
    `traj` holds its frames (see Trajectory.with_frames)."""
    files = []
    if traj.decoded_steps():
        filmstrip(traj).save(folder / "filmstrip.png")
        files += [str(folder / "filmstrip.png"), str(save_gif(traj, folder / "trajectory.gif")),
                  str(save_mp4(traj, folder / "trajectory.mp4"))]
    files.append(str(write_trajectory_zip(traj, folder / "trajectory.zip")))
    return files


def write_trajectory_zip(traj, path: Path) -> Path:
    """The trajectory (JSON + latents + frames) as one zip; no unzipped copy stays on disk."""
    saved = traj.save(path.with_suffix(""))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(saved.iterdir()):
            archive.write(item, item.name)
    shutil.rmtree(saved)
    return path


class Handlers:
    def __init__(self, config, cache, files, threads: ModelThreads | None = None):
        self.config, self.cache, self.files, self.limits = config, cache, files, config.limits
        self.threads = threads or ModelThreads(config.concurrency)  # where every torch call of a handler runs
        self.sources = {display_name(source): source for source in config.models}  # menu name -> folder/hub id

    # --- models ------------------------------------------------------------------

    def model(self, name):
        """The loaded model a menu name (or, where allowed, any hub id or folder) stands for."""
        name = check_text("model", self.config.default_name if name is None else name, 300).strip()
        source = self.sources.get(name)
        if source is None:
            if not self.config.allow_custom_models:
                raise InputError(
                    f"model {name!r} is not offered here; allowed: {', '.join(self.sources)} "
                    "(the host can set SDVIZ_ALLOW_CUSTOM_MODELS=1 to allow any hub id or local path)"
                )
            source = name
        model = self.cache.get(source)
        self.sources.setdefault(model.name, source)
        return model

    @user_errors
    def model_changed(self, name, scheduler):
        """A newly chosen model's native size, the schedulers that fit it (the chosen one where it fits, else
        the model's own), the true-CFG slider, shown for Flux only (at 1 for the others), and its example
        prompts."""
        model = self.model(name)
        facts = model.facts
        fitting = schedulers.for_family(facts.family)
        value = scheduler if scheduler in fitting else facts.scheduler
        return (facts.native_width, facts.native_height,
                gr.update(choices=scheduler_choices(facts.family), value=value),
                gr.update(visible=True) if facts.family == "flux" else gr.update(visible=False, value=1.0),
                gr.update(choices=list(model.examples), value=None))

    # --- a run -----------------------------------------------------------------------

    def _run(self, model=None, attention=False, init_image=None, *, img2img=False, stop_event=None,
             **settings) -> Run:
        """A run of `settings` (`Settings`' fields by name; a field not given takes its default) on the
        model of that menu name, capturing attention or not. Checks every value, then the host's limits,
        before any model work."""
        model = self.model(model)
        if not isinstance(attention, bool):
            raise InputError(f"attention {attention!r:.60} is not true or false")
        settings = check_settings(Settings(**settings), model.facts, img2img, self.limits)
        image = None
        if img2img:
            if init_image is None:
                raise InputError("init image is missing; allowed: an uploaded image (PNG, JPEG, WebP, ...)")
            image = load_image(init_image, check_size=self.limits.check_image)
        capture = (AttentionCapture(model, self_attention=True, self_max_positions=SELF_ATTENTION_POSITIONS)
                   if attention else None)
        return Run(model, settings, init_image=image, capture=capture, stop_signal=stop_event,
                   time_limit=self.limits.run_seconds)

    @staticmethod
    def arm(previous: StopSignal | None):
        """A new run's stop signal, kept in the session's state before the run is queued.

        The session's earlier run, queued or running, is stopped: one session runs one
        run at a time, and Stop always reaches the run the page shows.
        """
        if previous is not None:
            previous.event.set()
        return StopSignal(), html.status(note="queued: waiting for the model")

    @staticmethod
    def refused() -> str:
        """The status after a run was refused (the message says why): the page is ready again."""
        return html.status()

    @staticmethod
    def stop(stop_signal: StopSignal | None) -> None:
        """Stop: the run (queued or running) ends after its current step and finishes as usual."""
        if stop_signal is not None:
            stop_signal.event.set()

    @user_errors
    async def stream(self, stop_signal=None, **run):
        """Text to image, streamed: diagram, status, x_t, x0, filmstrip, trajectory state. `run`: the run's
        values by name (see `ui.form`)."""
        run = self._run(**run, stop_event=_event(stop_signal))
        async for update in self._stream(run):
            yield update

    @user_errors
    async def stream_img2img(self, stop_signal=None, **run):
        """Image to image, streamed like `stream`; refuses to run without an image (`init_image`)."""
        run = self._run(**run, stop_event=_event(stop_signal), img2img=True)
        async for update in self._stream(run):
            yield update

    @user_errors
    async def stream_edit(self, stop_signal=None, scheduler="ddim", source_prompt=None, **run):
        """An edit (CycleDiffusion), streamed like a run: the image, what it shows (source prompt) and what it
        should show (prompt). It steps with DDIM, whatever the scheduler menu says."""
        if not isinstance(source_prompt, str) or not source_prompt.strip():
            raise InputError("source prompt is empty; allowed: a description of the image to edit (what it shows)")
        run = self._run(**run, scheduler="ddim", source_prompt=source_prompt, stop_event=_event(stop_signal),
                        img2img=True)
        if scheduler != "ddim":
            gr.Info(f"An edit steps with DDIM (CycleDiffusion samples its posterior); {scheduler!s:.40} is not used.")
        async for update in self._stream(run):
            yield update

    @user_errors
    async def stream_invert(self, stop_signal=None, attention=False, **run):
        """Inversion: the image run back to noise, then that noise run forward again (DDIM, eta 0; flow models:
        flow Euler), both streamed; the session's run is the reconstruction, the inversion kept beside it.
        Both share one run's time limit. `run` names no scheduler or eta: the model's family decides them."""
        started = time.perf_counter()
        run = self._run(**run, attention=attention, stop_event=PartStop(_event(stop_signal)), img2img=True,
                        invert=True)  # the scheduler the model's family reverses
        async for update in self._stream(run):
            yield (*update, None)
        inversion = run.trajectory
        if not inversion.complete:
            return  # stopped, or out of time: the partial inversion is the session's run
        model, limit = run.model, self.limits.run_seconds
        capture = (AttentionCapture(model, self_attention=True, self_max_positions=SELF_ATTENTION_POSITIONS)
                   if attention else None)
        forward = Run(model, replace(run.settings, invert=False), capture=capture,
                      stop_signal=PartStop(_event(stop_signal)),
                      time_limit=None if limit is None else max(limit - (time.perf_counter() - started), 0.0),
                      start_latents=inversion.steps[-1].x_next)
        async for update in self._stream(forward):
            yield (*update, inversion)

    @user_errors
    async def stream_fork(self, stop_signal=None, parent=None, step=None, attention=False, **changes):
        """Fork from the slider's step: the session's run continued after that step with `changes` (the page
        sends its prompt, negative prompt, guidance, eta and preview settings; model, scheduler, steps, seed
        and size stay the parent's, and a change of those is refused), streamed like a run; the parent is
        kept beside it."""
        from sdviz.sampling.fork import Fork, fork_settings

        if parent is None or not parent.steps:
            raise InputError("fork: there is no run to fork yet; generate one, then pick a step")
        if not isinstance(attention, bool):
            raise InputError(f"attention {attention!r:.60} is not true or false")
        model = self.model(parent.settings.model)
        at = _step_index(parent, step) + 1  # the slider's step is kept; the fork takes the next one
        settings = check_settings(fork_settings(parent, **changes), model.facts, parent.settings.img2img, self.limits)
        capture = (AttentionCapture(model, self_attention=True, self_max_positions=SELF_ATTENTION_POSITIONS)
                   if attention else None)
        run = Run(model, settings, capture=capture, stop_signal=_event(stop_signal), time_limit=self.limits.run_seconds,
                  fork=Fork(parent, at))
        async for update in self._stream(run):
            yield (*update, parent)

    async def _stream(self, run):
        """The live panels at display rate. The frames each step brings are shown (the newest),
        thumbnailed (those on the filmstrip's stride) and moved into the session's bounded
        frame cache: the trajectory the session keeps holds latents, not frames."""
        traj = run.trajectory
        traj.frame_cache = FrameCache()
        img2img = traj.settings.img2img
        strip = html.Filmstrip()

        def drawn(active: str, step: str = "") -> str:
            return html.diagram(traj.shapes, traj.facts, active, traj.settings.scheduler, step, img2img)

        yield (drawn("encode" if img2img else "text"), html.status(note="encoding the prompt"),
               html.live(), "", None, traj)  # no earlier run's frames or final image beside this one
        shown, newest = 0, None
        async for records in follow(run, iterate, 1 / DISPLAY_RATE, self.threads):
            for message in traj.warnings[shown:]:  # a cut prompt, an ignored eta
                gr.Warning(html_text.escape(message, quote=False))
            shown = len(traj.warnings)
            grown = not strip.figures and traj.noise_image is not None and strip.add(0, traj.noise_image)
            decoded = [r for r in records if r.decoded]
            for record in decoded:
                grown = strip.add(record.index + 1, record.x_t_image) or grown
            if decoded:
                newest = decoded[-1].index + 1, decoded[-1].x_t_image
            live = html.live(decoded[-1].x_t_image, decoded[-1].x0_image, newest[0]) if decoded else gr.skip()
            for record in decoded:
                traj.frame_cache.take(record)
            yield (
                drawn("unet") if records[0].index == 0 else gr.skip(),
                html.status(records[-1], run.total),
                live,
                strip.html() if grown else gr.skip(),
                gr.skip(),
                traj,
            )
        for message in traj.warnings[shown:]:  # the run-time limit
            gr.Warning(html_text.escape(message, quote=False))
        if newest is not None:
            strip.close(*newest)
        for record in traj.steps:  # a fork's kept steps came with frames, not through the stream
            traj.frame_cache.take(record)
        final = traj.final_image
        yield (drawn("vae", "· done"), html.status(traj.steps[-1] if traj.steps else None,
               run.total or 0, "· finished" if traj.complete else "· stopped"),
               gr.skip(), strip.html(), self.files.image(final) if final is not None else gr.skip(), traj)

    @user_errors
    def finish(self, traj):
        """After a run (or a Stop): the explorer, tokens and attention choices; downloads wait to be asked for."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 7
        maps = traj.attention
        token_choices = [(f"{i}: {shown(maps.tokens[i])}", i) for i in maps.word_slots()] if maps else []
        if maps is not None and maps.negative is not None:  # the negative prompt's words, from the unconditional half
            negative = maps.negative
            token_choices += [(f"negative {i}: {shown(negative.tokens[i])}", f"{NEGATIVE_WORD}{i}")
                              for i in negative.word_slots()]
        resolutions = ["all", *maps.resolutions] if maps else ["all"]
        self_resolutions = sorted(maps.self_attn) if maps else []
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
    def downloads(self, traj, written):
        """GIF, MP4, filmstrip, trajectory and run.html, written the first time they are asked for."""
        if traj is None or not traj.steps:
            return None, None
        if written is not None:
            return written, written
        files = self._write_downloads(traj)
        return files, files

    def _write_downloads(self, traj) -> list[str]:
        """write_downloads, and run.html: the page that replays the run with no server."""
        folder = self.files.new_folder()
        complete = traj.with_frames(self._decoder(traj))
        files = write_downloads(complete, folder)
        return [*files, str(self.threads.call(self._write_page, complete, folder / "run.html"))]

    def _write_page(self, traj, path: Path) -> Path:
        """On the model thread: the guidance halves are decoded with the run's own preview decoder."""
        from sdviz.drawing.page import write_page

        settings = traj.settings
        model = self.model(settings.model)
        previewer = Previewer(model, settings.preview, settings.height, settings.width)
        return write_page(traj, path, previewer.record_frames, previewer, model.latent_rgb)

    # --- exploring a finished run ------------------------------------------------------

    @user_errors
    def show_step(self, traj, step, token, resolution, span):
        """x_t, x0, predicted noise, latent channels, the step's facts, and the heat map."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 6
        return self.threads.call(self._show_step, traj, step, token, resolution, span)  # decodes, resizes: torch

    def _show_step(self, traj, step, token, resolution, span):
        index = _step_index(traj, step)
        record = traj.steps[index]
        x_t_image, x0_image = traj.step_frames(index, self._decoder(traj))
        latent_rgb = self.model(traj.settings.model).latent_rgb.numpy()
        size = tuple(traj.shapes["image"][1:])
        channels = [(self.files.image(image), f"channel {c}")
                    for c, image in enumerate(views.channel_images(record.x_next * record.next_vp_scale))]
        info = (f"**step {index + 1} / {len(traj.steps)}** · timestep {record.timestep:g} · σ {record.sigma:.4f}"
                f" · x_t std {np.std(record.x_next * record.next_vp_scale):.3f}")
        heat = self._heat(traj, index, token, resolution, span, x0_image)
        predicted = self.files.image(views.noise_image(record.noise_pred, latent_rgb, size))
        return (self.files.image(x_t_image), self.files.image(x0_image),
                gr.update(value=predicted, label=traj.prediction_label),
                channels, info, self.files.image(heat) if heat is not None else None)

    def _decoder(self, traj):
        """decode(record, alone): the run's own preview decoder, for frames no longer kept."""
        settings = traj.settings
        previewer = Previewer(self.model(settings.model), settings.preview, settings.height,
                              settings.width)
        return functools.partial(self.threads.call, decode_record, previewer)

    def _heat(self, traj, index, token, resolution, span, x0_image):
        maps = traj.attention
        if maps is None or token is None:
            return None
        if isinstance(token, str) and token.startswith(NEGATIVE_WORD) and maps.negative is not None:
            maps, token = maps.negative, _negative_slot(token, len(maps.negative.tokens))
        else:
            token = check_int("word", token, 0, len(maps.tokens) - 1)
        if resolution not in ("all", *maps.resolutions):
            raise InputError(f"resolution {resolution!r:.60} is not captured; allowed: all, {', '.join(maps.resolutions)}")
        if span not in SPANS:
            raise InputError(f"steps {span!r:.60} is not a choice; allowed: {', '.join(SPANS)}")
        steps = {"this step": index, "up to this step": range(index + 1)}.get(span)
        base = traj.final_image if span == "whole run" and traj.final_image is not None else x0_image
        return overlay(base, maps.heat_map(token, steps=steps, resolution=resolution))

    def play(self, traj, step):
        """Moves the step slider through the run, one frame every PLAY_SECONDS."""
        if traj is None or not traj.steps:
            return
        index = _step_index(traj, step)
        start = 0 if index == len(traj.steps) - 1 else index
        for index in range(start, len(traj.steps)):
            yield index + 1
            time.sleep(PLAY_SECONDS)

    @user_errors
    def probe(self, traj, step, resolution, event: gr.SelectData):
        """Self-attention of the clicked pixel at this step (as DiffSeg reads it)."""
        if traj is None or traj.attention is None:
            raise InputError("run with attention capture on to probe self-attention")
        return self.threads.call(self._probe, traj, step, resolution, event.index)  # torch: on a model thread

    def _probe(self, traj, step, resolution, pixel):
        index = _step_index(traj, step)
        height, width = traj.shapes["image"][1:]
        if not isinstance(pixel, (list, tuple)) or len(pixel) != 2:
            raise InputError(f"pixel {pixel!r:.60} is not a pixel; allowed: [x, y]")
        x = check_int("pixel x", pixel[0], 0, width - 1)
        y = check_int("pixel y", pixel[1], 0, height - 1)
        if resolution not in traj.attention.self_attn:
            raise InputError(f"self-attention resolution {resolution!r:.60} is not captured; "
                             f"allowed: {', '.join(traj.attention.self_attn)}")
        heat = traj.attention.self_attention_probe(y, x, step=index, resolution=resolution)
        image = overlay(traj.step_frames(index, self._decoder(traj))[1], heat)
        image[y, x] = (255, 255, 255)
        return self.files.image(image)

    @user_errors
    def layers(self, model_name, width, height, guidance):
        """The attention layer inventory at this size; within the host's pixel limit, like a run."""
        model = self.model(model_name)
        guidance = check_float("guidance", guidance, 0.0, 100.0)
        settings = check_settings(Settings(width=width, height=height), model.facts, limits=self.limits)
        rows = self.threads.call(model_layer_table, model, settings.height, settings.width, guidance=guidance > 1)
        return [[r["index"], r["kind"], r["resolution"], str(tuple(r["query_shape"])), str(tuple(r["key_shape"])),
                 str(tuple(r["value_shape"])), str(tuple(r["probs_shape"])), r["name"]] for r in rows]

    # --- the API ---------------------------------------------------------------------------

    @user_errors
    async def api_generate(self, prompt, negative_prompt, model, scheduler, steps, guidance, seed, width, height,
                           eta, preview, every, init_image=None, strength=0.8, source_prompt="", source_guidance=1.0,
                           true_cfg=1.0):
        """Runs to the end; returns the final image and the trajectory files. A source prompt (with an image)
        makes it an edit; true_cfg (Flux) real guidance with the negative prompt.

        A generator, so that a client that cancels or goes away stops the run (see ui.streaming).
        """
        source_prompt = check_text("source prompt", source_prompt if source_prompt is not None else "")
        run = self._run(model, False, init_image, img2img=init_image is not None, prompt=prompt,
                        negative_prompt=negative_prompt, scheduler=scheduler, steps=steps, guidance=guidance,
                        seed=seed, width=width, height=height, eta=eta, preview=preview, every=every,
                        strength=strength, source_prompt=source_prompt or None, source_guidance=source_guidance,
                        true_cfg=true_cfg)
        yield gr.skip(), gr.skip()
        async for _ in follow(run, iterate, 1 / DISPLAY_RATE, self.threads):
            yield gr.skip(), gr.skip()
        traj = run.trajectory
        final = self.files.image(traj.final_image) if traj.final_image is not None else None
        yield final, await asyncio.to_thread(self._write_downloads, traj)

    @user_errors
    async def api_invert(self, prompt, negative_prompt, model, steps, guidance, seed, width, height, preview, every,
                         image):
        """Inversion and reconstruction, run to the end as the page streams them; returns the
        reconstructed image and round_trip.png, error.json and both runs' trajectory zips."""
        if image is None:
            raise InputError("image is missing; allowed: an uploaded image (PNG, JPEG, WebP, ...) to invert")
        last = None
        async for update in self.stream_invert(prompt=prompt, negative_prompt=negative_prompt, model=model,
                                               steps=steps, guidance=guidance, seed=seed, width=width, height=height,
                                               preview=preview, every=every, init_image=image):
            last = update
            yield gr.skip(), gr.skip()
        reconstruction, inversion = last[5], last[6]
        if inversion is None or not reconstruction.complete:
            raise InputError("invert: the run stopped before the reconstruction ended (this server's run-time "
                             "limit); allowed: fewer steps")
        yield self.files.image(reconstruction.final_image), await asyncio.to_thread(
            self._write_round_trip, inversion, reconstruction)

    def round_trip(self, inversion, reconstruction):
        """On the model thread: (round_trip_sheet, the Inversion with its errors) of an inverted image."""
        from sdviz.analysis.forward import latent_space
        from sdviz.drawing.sheets import round_trip_sheet
        from sdviz.workflows.invert import Inversion

        def measure():
            settings = inversion.settings
            vae = latent_space(self.model(settings.model), inversion.init_image, settings.width,
                               settings.height).psnr
            decoders = (self._decoder(inversion), self._decoder(reconstruction))
            return round_trip_sheet(inversion, reconstruction, decoders), Inversion(inversion, reconstruction, vae)

        return self.threads.call(measure)

    def _write_round_trip(self, inversion, reconstruction) -> list[str]:
        folder = self.files.new_folder()
        sheet, result = self.round_trip(inversion, reconstruction)
        sheet.save(folder / "round_trip.png")
        (folder / "error.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
        files = [str(folder / "round_trip.png"), str(folder / "error.json")]
        for name, traj in (("inversion", inversion), ("reconstruction", reconstruction)):
            files.append(str(write_trajectory_zip(traj.with_frames(self._decoder(traj)), folder / f"{name}.zip")))
        return files


def _event(stop_signal) -> threading.Event | None:
    return stop_signal.event if isinstance(stop_signal, StopSignal) else None


def _step_index(traj, step) -> int:
    """The record index of the slider's step (counted from 1, as the status counts), clamped."""
    return int(min(max(int(step or 1) - 1, 0), len(traj.steps) - 1))


def random_seed() -> int:
    return random.randint(0, min(MAX_SEED, 2**32 - 1))


def _negative_slot(token: str, slots: int) -> int:
    """The slot of a negative prompt's word from its Word choice ('negative:3')."""
    number = token[len(NEGATIVE_WORD):]
    if not number.isdigit():
        raise InputError(f"word {token!r:.60} is not a negative prompt's word; allowed: {NEGATIVE_WORD}0.."
                         f"{NEGATIVE_WORD}{slots - 1}")
    return check_int("negative word", int(number), 0, slots - 1)
