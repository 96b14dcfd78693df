"""The app's event handlers: they turn widget values into core calls and core results
into what the widgets show. Per-request data lives in locals and `gr.State` (the
trajectory); the only shared objects are the read-only model cache and the export folder.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np

from sdviz import export, views
from sdviz.attention import AttentionCapture, layer_table, overlay
from sdviz.sampler import Run
from sdviz.settings import MAX_SEED, Settings
from ui import html

log = logging.getLogger("sdviz.app")
PLAY_SECONDS = 0.25  # per frame when playing the trajectory back
SPANS = ("this step", "up to this step", "whole run")


def user_errors(fn):
    """ValueError (bad input) becomes gr.Error, shown in the page; anything else is logged
    with its traceback server-side and shown as a one-line error. The server keeps serving."""

    def convert(error: Exception) -> gr.Error:
        if isinstance(error, ValueError):
            return gr.Error(str(error))
        log.exception("handler %s failed", fn.__name__)
        return gr.Error(f"the run failed: {type(error).__name__}: {error}")

    if inspect.isgeneratorfunction(inspect.unwrap(fn)):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as error:  # noqa: BLE001 - converted for the user, logged above
                raise convert(error) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001
            raise convert(error) from None
    return call


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


class StopSignal:
    """A run's Stop: a threading.Event in the session's state.

    ZeroGPU runs handlers in another process, where no event set here can reach; it pickles
    as a fresh one, and there Stop goes through gradio's cancel instead (see ui/layout.py).
    """

    def __init__(self):
        self.event = threading.Event()

    def __reduce__(self):
        return (StopSignal, ())


class ExportStore:
    """A folder per run for downloads; folders older than max_age seconds are removed."""

    def __init__(self, max_age: int):
        self.root = Path(tempfile.mkdtemp(prefix="sdviz-exports-"))
        self.max_age = max_age

    def new_folder(self) -> Path:
        now = time.time()
        for old in self.root.iterdir():
            if now - old.stat().st_mtime > self.max_age:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.root))


def write_downloads(traj, folder: Path) -> list[str]:
    """filmstrip.png, trajectory.gif, trajectory.mp4 and trajectory.zip (JSON + latents + frames)."""
    files = []
    if traj.decoded_steps():
        export.filmstrip(traj).save(folder / "filmstrip.png")
        files += [str(folder / "filmstrip.png"), str(export.save_gif(traj, folder / "trajectory.gif")),
                  str(export.save_mp4(traj, folder / "trajectory.mp4"))]
    saved = traj.save(folder / "trajectory")
    with zipfile.ZipFile(folder / "trajectory.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(saved.iterdir()):
            archive.write(path, path.name)
    files.append(str(folder / "trajectory.zip"))
    return files


class Handlers:
    def __init__(self, config, cache):
        self.config, self.cache = config, cache
        self.exports = ExportStore(config.cache_seconds)

    # --- models ------------------------------------------------------------------

    def model(self, name: str | None):
        name = (name or self.config.default_model).strip()
        if name not in self.config.models and not self.config.allow_custom_models:
            raise ValueError(
                f"model {name!r} is not offered here; allowed: {', '.join(self.config.models)} "
                "(set SDVIZ_ALLOW_CUSTOM_MODELS=1 to allow any hub id or local path)"
            )
        return self.cache.get(name)

    @user_errors
    def native_size(self, name: str):
        facts = self.model(name).facts
        return facts.native_width, facts.native_height

    # --- a run -----------------------------------------------------------------------

    def _run(self, prompt, negative_prompt, model_name, scheduler, steps, guidance, seed, width, height,
             eta, preview, every, attention, init_image=None, strength=0.8, stop_signal=None):
        model = self.model(model_name)
        settings = Settings(
            prompt=prompt or "", negative_prompt=negative_prompt or "", scheduler=scheduler,
            steps=steps, guidance=guidance, eta=eta, seed=seed,
            width=width or None, height=height or None, strength=strength,
            preview=preview, every=every,
        )
        capture = AttentionCapture(model, self_attention=True) if attention else None
        return Run(model, settings, init_image=init_image, capture=capture, stop_signal=stop_signal)

    @staticmethod
    def arm() -> StopSignal:
        """A new run's stop signal, kept in the session's state before the run is queued."""
        return StopSignal()

    @staticmethod
    def stop(stop_signal: StopSignal | None) -> None:
        """Stop: the run (queued or running) ends after its current step and finishes as usual."""
        if stop_signal is not None:
            stop_signal.event.set()

    @user_errors
    @gpu
    def stream(self, stop_signal, prompt, negative_prompt, model_name, scheduler, steps, guidance, seed, width,
               height, eta, preview, every, attention, init_image=None, strength=0.8):
        """Streams every step: diagram, status, x_t, x0, filmstrip, trajectory state."""
        run = self._run(prompt, negative_prompt, model_name, scheduler, steps, guidance, seed, width,
                        height, eta, preview, every, attention, init_image, strength,
                        stop_signal.event if stop_signal is not None else None)
        traj = run.trajectory
        img2img = init_image is not None

        def drawn(active: str, step: str = "") -> str:
            return html.diagram(traj.shapes, traj.facts, active, traj.settings["scheduler"], step, img2img)

        yield (drawn("encode" if img2img else "text"), html.status(note="encoding the prompt"),
               gr.skip(), gr.skip(), gr.skip(), traj)
        shown = 0
        for record in run:
            for message in traj.warnings[shown:]:  # a cut prompt, an ignored eta
                gr.Warning(message)
            shown = len(traj.warnings)
            yield (
                drawn("unet", f"· step {record.index + 1} / {run.total}"),
                html.status(record, run.total),
                record.x_t_image if record.decoded else gr.skip(),
                record.x0_image if record.decoded else gr.skip(),
                html.filmstrip(traj) if record.decoded else gr.skip(),
                traj,
            )
        yield (drawn("vae", "· done"), html.status(traj.steps[-1] if traj.steps else None,
               run.total or 0, "· finished" if traj.complete else "· stopped"),
               traj.final_image if traj.final_image is not None else gr.skip(), gr.skip(),
               html.filmstrip(traj), traj)

    @user_errors
    def finish(self, traj):
        """After a run (or a Stop): the explorer, tokens, attention choices and downloads."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 7
        maps = traj.attention
        token_choices = [(f"{i}: {maps.tokens[i].replace('</w>', '')}", i) for i in maps.word_slots()] if maps else []
        resolutions = ["all", *maps.resolutions] if maps else ["all"]
        self_resolutions = sorted(maps.self_attn) if maps else []
        return (
            gr.update(minimum=1, maximum=len(traj.steps), value=len(traj.steps), interactive=True),
            html.token_slots(traj.tokens),
            gr.update(choices=token_choices, value=token_choices[0][1] if token_choices else None),
            gr.update(choices=resolutions, value="all"),
            gr.update(choices=self_resolutions, value=self_resolutions[0] if self_resolutions else None),
            write_downloads(traj, self.exports.new_folder()),
            traj.final_image,
        )

    # --- exploring a finished run ------------------------------------------------------

    @user_errors
    def show_step(self, traj, step, token, resolution, span):
        """x_t, x0, predicted noise, latent channels, the step's facts, and the heat map."""
        if traj is None or not traj.steps:
            return (gr.skip(),) * 6
        index = _step_index(traj, step)
        record = traj.steps[index]
        shown = _nearest_decoded(traj, index)
        latent_rgb = self.model(traj.settings["model"]).latent_rgb.numpy()
        size = tuple(traj.shapes["image"][1:])
        channels = [(image, f"channel {c}") for c, image in enumerate(views.channel_images(record.x_next * record.next_vp_scale))]
        info = (f"**step {index + 1} / {len(traj.steps)}** · timestep {record.timestep:g} · σ {record.sigma:.4f}"
                f" · x_t std {np.std(record.x_next * record.next_vp_scale):.3f}"
                + (f" · (frames from step {shown.index + 1}: decoded every {traj.settings['every']})"
                   if shown is not record else ""))
        return (shown.x_t_image, shown.x0_image, views.noise_image(record.noise_pred, latent_rgb, size),
                channels, info, self._heat(traj, index, token, resolution, span))

    def _heat(self, traj, index, token, resolution, span):
        maps = traj.attention
        if maps is None or token is None:
            return None
        steps = {"this step": index, "up to this step": range(index + 1)}.get(span)
        base = traj.final_image if span == "whole run" and traj.final_image is not None \
            else _nearest_decoded(traj, index).x0_image
        return overlay(base, maps.heat_map(int(token), steps=steps, resolution=resolution))

    def play(self, traj, step):
        """Moves the step slider through the run, one frame every PLAY_SECONDS."""
        if traj is None or not traj.steps:
            return
        index = _step_index(traj, step)
        start = 0 if index == len(traj.steps) - 1 else index
        for shown in range(start, len(traj.steps)):
            yield shown + 1
            time.sleep(PLAY_SECONDS)

    @user_errors
    def probe(self, traj, step, resolution, event: gr.SelectData):
        """Self-attention of the clicked pixel at this step (as DiffSeg reads it)."""
        if traj is None or traj.attention is None:
            raise ValueError("run with attention capture on to probe self-attention")
        index = _step_index(traj, step)
        x, y = event.index
        heat = traj.attention.self_attention_probe(int(y), int(x), step=index, resolution=resolution)
        image = overlay(_nearest_decoded(traj, index).x0_image, heat)
        image[int(y), int(x)] = (255, 255, 255)
        return image

    @user_errors
    def layers(self, model_name, width, height, guidance):
        model = self.model(model_name)
        settings = Settings(width=width or None, height=height or None).resolved(model.facts)
        rows = layer_table(model.unet, settings.height, settings.width, guidance=float(guidance) > 1,
                           vae_factor=model.facts.vae_factor, text_tokens=model.facts.tokens)
        return [[r["index"], r["kind"], r["resolution"], str(tuple(r["query_shape"])), str(tuple(r["key_shape"])),
                 str(tuple(r["value_shape"])), str(tuple(r["probs_shape"])), r["name"]] for r in rows]

    # --- the API ---------------------------------------------------------------------------

    @user_errors
    @gpu
    def api_generate(self, prompt, negative_prompt, model, scheduler, steps, guidance, seed, width, height,
                     eta, preview, every, init_image=None, strength=0.8):
        """Runs to the end; returns the final image and the trajectory files."""
        run = self._run(prompt, negative_prompt, model, scheduler, steps, guidance, seed, width, height,
                        eta, preview, every, False, init_image, strength)
        for _ in run:
            pass
        traj = run.trajectory
        return traj.final_image, write_downloads(traj, self.exports.new_folder())


def _step_index(traj, step) -> int:
    """The record index of the slider's step (counted from 1, as the status counts), clamped."""
    return int(min(max(int(step or 1) - 1, 0), len(traj.steps) - 1))


def _nearest_decoded(traj, index: int):
    """The step itself if decoded, else the closest decoded step at or before it (or the first)."""
    for record in reversed(traj.steps[: index + 1]):
        if record.decoded:
            return record
    return traj.decoded_steps()[0]


def random_seed() -> int:
    return random.randint(0, min(MAX_SEED, 2**32 - 1))
