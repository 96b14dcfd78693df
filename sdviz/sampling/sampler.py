"""The traced sampler: the denoising loop, unrolled, keeping every step.

The loop is diffusers' `StableDiffusionPipeline.__call__` (and the img2img
pipeline's, and those of SDXL, SD3 and Flux) written out, with the same calls in
the same order, so the final image equals the pipeline's for the same seed. What
differs between model families (encoding the prompt, the starting latents and
their layout, the timesteps, one call of the denoiser) comes from the model's
`sdviz.sampling.families.Family`; what differs between tasks (generating, a
CycleDiffusion edit, an inversion) from the run's `sdviz.sampling.tasks` object,
which holds this run's pipeline (sharing the loaded weights) and fresh scheduler.
A fork first replays its parent's steps (`Run._replay`). At every entry of the
scheduler's timesteps one `StepRecord` is made (`Run._record`, the one place):
x_t before and after, the three predictions (noise, or velocity for flow
matching), x0 (each guidance half's x0 follows from them), and (every N steps)
their decoded frames, all in the (C, h, w) layout of the VAE's latents. Inputs
are checked up front, in `sdviz.sampling.checks`.

    run = Run(model, Settings(prompt="a rocket on the right"))
    for record in run:            # one StepRecord per scheduler entry, as it happens
        ...
    run.trajectory                # everything, on the CPU
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from collections.abc import Iterator

import numpy as np
import torch

from sdviz.messages import text
from sdviz.sampling import noise, tasks
from sdviz.sampling.checks import check_run
from sdviz.sampling.previews import Previewer, decode_full
from sdviz.sampling.settings import RunSettings, Settings
from sdviz.sampling.tokens import token_view, truncation_warning
from sdviz.sampling.trajectory import StepRecord, Trajectory


def _cpu(tensor: torch.Tensor | None) -> np.ndarray | None:
    """(1, C, h, w) on the device as (C, h, w) float32 on the CPU."""
    return None if tensor is None else tensor[0].detach().float().cpu().numpy()


class Run:
    """One traced run. Iterate it for StepRecords; `trajectory` fills as it goes.

    `stop()` (from another thread), setting the `stop_signal` event it was given, or
    running past `time_limit` seconds ends the run after the current step, and the
    run finishes as usual (attention maps included); closing the iterator ends it too.
    Either way the trajectory is kept, marked incomplete. A signal set before the run
    starts gives an empty trajectory. Nothing of the run is stored on the model: the
    attention capture observes this run's own UNet calls. A Run runs once; iterating
    it again raises.
    """

    def __init__(self, model, settings: Settings, init_image=None, capture=None,
                 stop_signal: threading.Event | None = None, time_limit: float | None = None, fork=None,
                 start_latents: np.ndarray | None = None):
        """Checks everything (`checks.check_run`) before any model work.

        Args:
            model: a loaded model (`sdviz.sampling.models`).
            settings: what to run; the size and scheduler left None are the model's.
            init_image: image to image (or an edit, or an inversion) from this image: a path, PIL image or array.
            capture: an `AttentionCapture` that observes this run's denoiser calls, or None.
            stop_signal: an event that ends the run after the current step when set.
            time_limit: seconds after which the run ends after the current step.
            fork: an `sdviz.sampling.fork.Fork`, to continue its parent after its first `at` steps with these
                settings (the parent's init image is used; `init_image` must not be given).
            start_latents: (C, h, w) text to image from these latents instead of the seed's noise, as
                diffusers' pipeline takes `latents=` (an inversion's noise, to reconstruct its image).
        """
        from sdviz.sampling.images import prepare_init_image

        inputs = check_run(model, settings, init_image, fork, start_latents)
        self.model, self.settings, self.fork = model, inputs.settings, fork
        self.start_latents = inputs.start_latents
        width, height = self.settings.width, self.settings.height
        img2img = inputs.init_image is not None
        self.init_image = prepare_init_image(inputs.init_image, width, height) if img2img else None
        self.previewer = Previewer.of(model, self.settings)
        self.capture = capture
        self.total: int | None = None  # entries in the scheduler's timesteps, known once the run starts
        self.time_limit = time_limit
        self.timed_out = False  # set when the time limit ended the run
        self._stop = stop_signal if stop_signal is not None else threading.Event()
        self._started = False
        self._timings = {"unet": 0.0, "decode": 0.0}
        self.trajectory = _new_trajectory(model, self.settings, self.init_image, fork, self.start_latents)

    def stop(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[StepRecord]:
        if self._started:
            raise RuntimeError("this Run has already run; create a new Run to run again")
        self._started = True
        with torch.no_grad():
            yield from self._loop()

    def _loop(self) -> Iterator[StepRecord]:
        model, s, traj = self.model, self.settings, self.trajectory
        started = time.perf_counter()
        task = tasks.task_for(model, s, self.init_image, self.start_latents)  # generate, edit or invert
        family, scheduler = model.family, task.scheduler
        scale, prediction_type = family.guidance_scale(s), model.facts.prediction_type

        # 1. Encode the prompt, and the negative (or empty) prompt for guidance
        with model.text_lock:
            cond = task.encode()
        traj.timings["encode_prompt"] = time.perf_counter() - started

        # 2. Timesteps and 3. the starting latents, (1, C, h, w) in the denoiser's layout
        timesteps, latents = task.start(cond)
        traj.x_start, self.total = _cpu(task.view(latents)), len(timesteps)
        if s.eta > 0 and "eta" not in task.step_kwargs:
            traj.warnings.append(text("warning.no_eta", eta=s.eta, scheduler=type(scheduler).__name__))
        attention_kwargs = self._begin_capture(task.guided)

        # 4. Denoising loop: one record per scheduler entry (a fork first replays its parent's first entries)
        first, x_t, frame = 0, traj.x_start, None
        if self.fork is not None and self.fork.at > 0:
            latents = self._replay(task, timesteps, latents)
            first, x_t = self.fork.at, traj.steps[-1].x_next
        for i in range(first, len(timesteps)):
            t = timesteps[i]
            if self._stopping(i, started):
                break
            step_started = time.perf_counter()
            model_input = torch.cat([latents] * 2) if task.guided else latents  # (2, ...) with guidance
            model_input = family.scale_input(scheduler, model_input, t)
            sigma = task.sigma(t)
            noise_pred = task.denoise(model_input, t, cond, attention_kwargs)
            noise_uncond = noise_cond = None
            if task.guided:
                noise_uncond, noise_cond = noise_pred.chunk(2)
                noise_pred = noise_uncond + scale * (noise_cond - noise_uncond)
            self._timings["unet"] += time.perf_counter() - step_started
            if self.capture is not None:
                self.capture.finish_step(i)
            x_vp = model_input[-1:]  # the denoiser's view of x_t (variance-preserving, or flow's interpolation)
            x0_pred = noise.predict_x0(x_vp, noise_pred, sigma, prediction_type)
            latents, x0_pred = task.step(noise_pred, t, latents, x0_pred)

            # 5. Decode x_t (after the step) and x0 every N steps, and record the step
            record = self._record(task, i, t, sigma, x_t, x_vp, (noise_uncond, noise_cond, noise_pred), x0_pred,
                                  latents, step_started)
            x_t, frame = record.x_next, record.x_t_image  # this run's own frame: a consumer may release the record's
            yield record

        # 6. The final image, the attention maps, the timings
        self._finish(task, latents, frame, started)

    def _begin_capture(self, guided: bool):
        """The attention capture's keyword arguments for the denoiser's calls; None without a capture."""
        if self.capture is None:
            return None
        model, s = self.model, self.settings
        negative = None
        if guided and s.negative_prompt and model.family.batched_guidance:  # the negative half is observed too
            with model.text_lock:
                negative = token_view(model.token_tokenizer, s.negative_prompt, model.facts.tokens).to_dict()
        return self.capture.begin(model.denoiser, self.trajectory, negative)

    def _stopping(self, i: int, started: float) -> bool:
        """Whether the run ends before step `i`: stopped, or past its time limit (said in its warnings)."""
        if self._stop.is_set():
            return True
        if self.time_limit is not None and time.perf_counter() - started > self.time_limit:
            self.trajectory.warnings.append(text("warning.time_limit", step=i, total=self.total,
                                                 limit=f"{self.time_limit:g}"))
            self.timed_out = True
            return True
        return False

    def _record(self, task: tasks.Generate, i: int, t, sigma: float, x_t: np.ndarray, x_vp: torch.Tensor,
                noises: tuple, x0_pred: torch.Tensor, latents: torch.Tensor, started: float) -> StepRecord:
        """The one place a step's record is made, kept in the trajectory.

        Args:
            x_t: (C, h, w) on the CPU, the step's input (the previous record's x_next, or the start).
            x_vp: (1, C, h, w) the denoiser's view of x_t.
            noises: (noise_uncond, noise_cond, noise_pred), each (1, C', h', w') in the denoiser's layout
                (the guidance halves None without guidance).
            x0_pred, latents: (1, C', h', w') x0 and x_t after the step, in the denoiser's layout.
        Frames are decoded every `every` steps and at the last, alone, as the pipeline decodes it, so the
        final image is exact; the starting noise once, at the first step.
        """
        noise_uncond, noise_cond, noise_pred = noises
        next_scale = task.next_vp_scale()
        decode_started = time.perf_counter()
        x_next, x0 = task.view(latents), task.view(x0_pred)  # (1, C, h, w), once a step: Flux's unpacking copies
        frames = (None, None)
        if i == self.total - 1:
            frames = self.previewer.step_frames(x_next, x0, alone=True)
        elif (i + 1) % self.settings.every == 0:
            frames = self.previewer.step_frames(x_next * next_scale, x0)
        if i == 0:
            self.trajectory.noise_image = self.previewer.decode(task.view(x_vp))[0]
        self._timings["decode"] += time.perf_counter() - decode_started
        record = StepRecord(
            index=i,
            timestep=float(t),
            sigma=sigma,
            x_t=x_t,  # one array, not a copy
            x_next=_cpu(x_next),
            next_vp_scale=next_scale,
            noise_uncond=_cpu(None if noise_uncond is None else task.view(noise_uncond)),
            noise_cond=_cpu(None if noise_cond is None else task.view(noise_cond)),
            noise_pred=_cpu(task.view(noise_pred)),
            x0_pred=_cpu(x0),
            x0_slope=noise.x0_slope(sigma, self.model.facts.prediction_type),  # gives x0 of each guidance half
            eta=self.settings.eta,
            source_x_next=_cpu(task.source_x_next()),
            denoised=_cpu(None if task.denoised is None else task.view(task.denoised)),
            x_t_image=frames[0],
            x0_image=frames[1],
            seconds=time.perf_counter() - started,
        )
        self.trajectory.steps.append(record)
        return record

    def _finish(self, task: tasks.Generate, latents: torch.Tensor, frame: np.ndarray | None, started: float) -> None:
        """The final image (the last step's frame when the preview is the VAE itself), the attention maps, the
        timings; the trajectory marked complete when every step ran."""
        traj = self.trajectory
        finished = len(traj.steps) == self.total
        if finished:
            if self.settings.preview == "full" and frame is not None:
                traj.final_image = frame
            else:
                decode_started = time.perf_counter()
                traj.final_image = decode_full(self.model, task.view(latents))[0]
                self._timings["decode"] += time.perf_counter() - decode_started
        if self.capture is not None:
            traj.attention = self.capture.maps(traj)
        traj.complete = finished
        traj.timings.update(self._timings)
        traj.timings["total"] = time.perf_counter() - started

    def _replay(self, task: tasks.Generate, timesteps, latents: torch.Tensor) -> torch.Tensor:
        """The parent's first `at` entries, stepped again with the UNet outputs it recorded and the eta each
        step had (`Generate.replay`): the scheduler and the generator end in the parent's state, the latents
        at its x_next, bit for bit. The parent's records are kept (copied, with their frames: see `_kept`)."""
        parent, traj = self.fork.parent, self.trajectory
        if not np.array_equal(traj.x_start, parent.x_start):
            raise RuntimeError("the fork's starting latents differ from its parent's (another torch or device?)")
        traj.noise_image = parent.noise_image
        for i in range(self.fork.at):
            record = parent.steps[i]
            latents = task.replay(record.noise_pred, record.eta, timesteps[i], latents)
            traj.steps.append(self._kept(record, i == len(timesteps) - 1))
        if not np.array_equal(_cpu(task.view(latents)), parent.steps[self.fork.at - 1].x_next):
            raise RuntimeError(f"replaying the parent's first {self.fork.at} steps did not give its latents")
        return latents

    def _kept(self, record, alone: bool):
        """A copy of a parent's record for the fork, with the frames of its decoded steps: the parent's own
        when it still holds them and decoded them as the fork does (the same preview), else decoded here."""
        from dataclasses import replace

        same_preview = self.fork.parent.settings.preview == self.settings.preview
        if same_preview and record.x_t_image is not None:
            return replace(record)
        kept = replace(record, x_t_image=None, x0_image=None)
        if kept.decoded:
            kept.x_t_image, kept.x0_image = self.previewer.record_frames(record, alone)
        return kept


def _new_trajectory(model, settings: Settings, init_image, fork, start_latents) -> Trajectory:
    """A run's trajectory before its first step: its settings as it runs, the model's facts, the tensors'
    shapes and the prompt's tokens (SDXL, SD3 and Flux: each text encoder's), with a warning when the prompt
    is longer than the text encoder reads."""
    facts, family = model.facts, model.family
    with model.text_lock:
        view = token_view(model.token_tokenizer, settings.prompt, facts.tokens)
        others = [  # the other text encoders' slots (SDXL's second CLIP, SD3's and Flux's T5 or CLIP)
            {"tokenizer": name, "encoder": encoder,
             **token_view(getattr(model.pipe, name), settings.prompt, window).to_dict()}
            for name, encoder, window in family.encoder_windows(model.pipe) if name != family.token_tokenizer]
    marks = {"forked_from": fork.to_dict()} if fork is not None else {}
    if start_latents is not None:
        marks["start_latents"] = True  # not the seed's noise: x_start holds them
    img2img = init_image is not None
    trajectory = Trajectory(
        settings=RunSettings(**settings.to_dict(), model=model.name, img2img=img2img, **marks),
        facts=facts,
        shapes={
            "token_embeddings": list(facts.token_shape()),
            "latents": list(facts.latent_shape(settings.height, settings.width)),
            "image": list(facts.image_shape(settings.height, settings.width)),
        },
        tokens=({**view.to_dict(), "encoder": family.text_encoders[family.tokenizers.index(family.token_tokenizer)],
                 "others": others} if others else view.to_dict()),
        x_start=np.zeros(0, np.float32),
        init_image=np.asarray(init_image) if img2img else None,
        model_ref=weakref.ref(model),
    )
    message = truncation_warning(view, facts.tokens)
    if message:
        warnings.warn(message, stacklevel=3)  # at the caller of Run()
        trajectory.warnings.append(message)
    return trajectory


def generate(model, settings: Settings, init_image=None, callback=None, capture=None, fork=None,
             start_latents=None, attention: bool = False) -> Trajectory:
    """Runs to the end and returns the trajectory; callback(record) is called at every step. `attention`
    captures the per-word cross-attention maps (an `AttentionCapture` of the model's defaults; pass `capture`
    for others)."""
    if attention and capture is None:
        from sdviz.sampling.attention import AttentionCapture

        capture = AttentionCapture(model)
    run = Run(model, settings, init_image=init_image, capture=capture, fork=fork, start_latents=start_latents)
    for record in run:
        if callback is not None:
            callback(record)
    return run.trajectory
