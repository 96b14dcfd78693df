"""The traced sampler: the denoising loop, unrolled, keeping every step.

The loop is diffusers' `StableDiffusionPipeline.__call__` (and the img2img
pipeline's, and those of SDXL, SD3 and Flux) written out, with the same calls in
the same order, so the final image equals the pipeline's for the same seed. What
differs between model families (encoding the prompt, the starting latents and
their layout, the timesteps, one call of the denoiser) comes from the model's
`sdviz.sampling.families.Family`. A per-run pipeline object shares the loaded weights and
owns this run's fresh scheduler; its own helpers encode the prompt and prepare
the starting latents. At every entry of the scheduler's timesteps one
`StepRecord` is produced: x_t before and after, the three predictions (noise, or
velocity for flow matching), x0 (each guidance half's x0 follows from them), and
(every N steps) their decoded frames, all in the (C, h, w) layout of the VAE's
latents.

    run = Run(model, Settings(prompt="a rocket on the right"))
    for record in run:            # one StepRecord per scheduler entry, as it happens
        ...
    run.trajectory                # everything, on the CPU
"""

from __future__ import annotations

import inspect
import threading
import time
import warnings
from typing import Iterator

import numpy as np
import torch

from sdviz.sampling import noise, schedulers
from sdviz.sampling.checks import check_run
from sdviz.sampling.previews import Previewer, decode_full
from sdviz.sampling.settings import RunSettings, Settings
from sdviz.sampling.tokens import token_view, truncation_warning
from sdviz.sampling.trajectory import StepRecord, Trajectory


def _cpu(tensor: torch.Tensor | None) -> np.ndarray | None:
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

        fork: an `sdviz.sampling.fork.Fork`, to continue its parent from after its first `at` steps with these
        settings (the parent's init image is used; `init_image` must not be given).
        start_latents: text to image from these latents instead of the seed's noise, as diffusers'
        pipeline takes `latents=` (an inversion's noise, to reconstruct its image)."""
        from sdviz.sampling.images import prepare_init_image

        inputs = check_run(model, settings, init_image, fork, start_latents)
        self.model, self.settings, self.fork = model, inputs.settings, fork
        self.start_latents = start_latents = inputs.start_latents
        facts, family = model.facts, model.family
        img2img = inputs.init_image is not None
        self.init_image = (
            prepare_init_image(inputs.init_image, self.settings.width, self.settings.height) if img2img else None
        )
        self.previewer = Previewer(model, self.settings.preview, self.settings.height, self.settings.width)
        self.capture = capture
        self.total: int | None = None  # entries in the scheduler's timesteps, known once the run starts
        self.time_limit = time_limit
        self._stop = stop_signal if stop_signal is not None else threading.Event()
        self._started = False
        with model.text_lock:
            view = token_view(model.token_tokenizer, self.settings.prompt, facts.tokens)
            others = [  # the other text encoders' slots (SDXL's second CLIP, SD3's and Flux's T5 or CLIP)
                {"tokenizer": name, "encoder": encoder,
                 **token_view(getattr(model.pipe, name), self.settings.prompt, window).to_dict()}
                for name, encoder, window in family.encoder_windows(model.pipe) if name != family.token_tokenizer]
        marks = {"forked_from": fork.to_dict()} if fork is not None else {}
        if start_latents is not None:
            marks["start_latents"] = True  # not the seed's noise: x_start holds them
        self.trajectory = Trajectory(
            settings=RunSettings(**self.settings.to_dict(), model=model.name, img2img=img2img, **marks),
            facts=facts,
            shapes={
                "token_embeddings": list(facts.token_shape()),
                "latents": list(facts.latent_shape(self.settings.height, self.settings.width)),
                "image": list(facts.image_shape(self.settings.height, self.settings.width)),
            },
            tokens=({**view.to_dict(), "encoder": family.text_encoders[family.tokenizers.index(family.token_tokenizer)],
                     "others": others} if others else view.to_dict()),
            x_start=np.zeros(0, np.float32),
            init_image=np.asarray(self.init_image) if img2img else None,
        )
        message = truncation_warning(view, facts.tokens)
        if message:
            warnings.warn(message, stacklevel=2)
            self.trajectory.warnings.append(message)

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
        family = model.family
        started = time.perf_counter()
        device, denoiser = model.device, model.denoiser
        scheduler = schedulers.create(s.scheduler, model.scheduler_config)
        img2img = self.init_image is not None
        edit = s.source_prompt is not None  # CycleDiffusion: the source image's chain beside the edited one
        extra = {}
        if s.invert:  # DDIM inversion as DiffEdit's `invert` runs it (flow models: the flow's steps reversed)
            import diffusers

            pipeline_class = getattr(diffusers, family.inverse_pipeline)
            inverse, timesteps = family.inverse_scheduler(scheduler, s.steps, device,
                                                          model.facts.image_tokens(s.height, s.width))
            if "inverse_scheduler" in inspect.signature(pipeline_class.__init__).parameters:
                extra["inverse_scheduler"] = inverse  # DiffEdit's
            scheduler = inverse  # the forward scheduler is not stepped
        elif edit:
            from diffusers import CycleDiffusionPipeline as pipeline_class
            from diffusers.pipelines.deprecated.stable_diffusion_variants.pipeline_cycle_diffusion import (
                compute_noise,
                posterior_sample,
            )
        else:
            pipeline_class = family.pipeline_class(img2img)
        pipe = family.pipeline(pipeline_class, model.components(scheduler), **extra)  # this run's; shares the weights
        generator = torch.Generator("cpu").manual_seed(s.seed)
        guided = family.guided(pipe, s)
        scale = family.guidance_scale(s)
        prediction_type = model.facts.prediction_type

        def view(latents):  # the denoiser's layout as the VAE's (B, C, h, w): Flux's packed patches unpacked
            return family.view(latents, s, model.facts.vae_factor)

        # 1. Encode the prompt, and the negative (or empty) prompt for guidance
        with model.text_lock:
            cond = family.encode(pipe, s, device, guided)
            if edit:
                source_cond, source_uncond = pipe.encode_prompt(s.source_prompt, device, 1, guided, None)
        embeddings = cond.embeddings
        if edit:  # one batch, in the pipeline's order: source and edit, unconditional halves first
            uncond, text = embeddings.chunk(2) if guided else (None, embeddings)
            embeddings = (torch.cat([source_uncond, uncond, source_cond, text]) if guided
                          else torch.cat([source_cond, text]))
            cond.embeddings = embeddings
        traj.timings["encode_prompt"] = time.perf_counter() - started

        # 2. Timesteps (img2img keeps the last `strength` of them) and 3. the starting latents: noise, or the
        # init image encoded and noised to the first timestep. In the family's order: the noise is scaled by
        # the scheduler's initial sigma once its timesteps are set (SD), and SD3's and Flux's timesteps
        # depend on the latents' size.
        if not s.invert and (img2img or not family.latents_first):  # an inversion's: set with its scheduler
            timesteps = family.timesteps(scheduler, s.steps, device, model.facts.image_tokens(s.height, s.width))
        if img2img and not s.invert:
            timesteps, _ = pipe.get_timesteps(s.steps, s.strength, device)
        if s.invert:  # the image's latents, not noised
            image = pipe.image_processor.preprocess(self.init_image)
            latents, positions = family.clean_latents(pipe, image, embeddings.dtype, device, generator)
            cond.extra.update(positions)
        elif img2img:
            image = pipe.image_processor.preprocess(self.init_image)
            latents, positions = family.image_latents(pipe, image, timesteps[:1], s, model.facts.latent_channels,
                                                      embeddings.dtype, device, generator)
            cond.extra.update(positions)
            if edit:
                latents, clean_latents = latents  # the source's chain starts where the edit does
                source_latents = latents
        else:
            channels = model.facts.latent_channels
            given = None if self.start_latents is None else torch.from_numpy(self.start_latents)[None].to(embeddings.dtype)
            latents, positions = family.prepare_latents(pipe, s, channels, embeddings.dtype, device, generator, given)
            cond.extra.update(positions)
            if family.latents_first:
                timesteps = family.timesteps(scheduler, s.steps, device, model.facts.image_tokens(s.height, s.width))
        traj.x_start = _cpu(view(latents))
        self.total = len(timesteps)
        extra_step_kwargs = family.step_kwargs(pipe, generator, s.eta)
        if s.eta > 0 and "eta" not in extra_step_kwargs:
            traj.warnings.append(f"eta {s.eta} is ignored: {type(scheduler).__name__} has no eta")
        variance_exploding = noise.is_variance_exploding(scheduler)
        attention_kwargs = None
        if self.capture is not None:
            negative = None
            if guided and s.negative_prompt and family.batched_guidance:  # the negative half is observed too
                with model.text_lock:
                    negative = token_view(model.token_tokenizer, s.negative_prompt, model.facts.tokens).to_dict()
            attention_kwargs = self.capture.begin(denoiser, traj, negative)
        timings = {"unet": 0.0, "decode": 0.0}

        # 4. Denoising loop: one record per scheduler entry (a fork first replays its parent's first entries)
        last = len(timesteps) - 1
        x_t_cpu = traj.x_start
        first, frames = 0, (None, None)
        if self.fork is not None and self.fork.at > 0:
            latents = self._replay(scheduler, timesteps, latents, pipe, generator, view)
            first, x_t_cpu = self.fork.at, traj.steps[-1].x_next
        for i in range(first, len(timesteps)):
            t = timesteps[i]
            if self._stop.is_set():
                break
            if self.time_limit is not None and time.perf_counter() - started > self.time_limit:
                traj.warnings.append(f"stopped after step {i} of {len(timesteps)}: the run-time limit is "
                                     f"{self.time_limit:g} s")
                break
            step_started = time.perf_counter()
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = family.scale_input(scheduler, model_input, t)
            sigma = (noise.inverse_sigma(scheduler, t) if s.invert and not family.flow
                     else noise.current_sigma(scheduler, t))
            denoiser_input = model_input
            if edit:
                source_input = scheduler.scale_model_input(source_latents, t)
                denoiser_input = (torch.stack([source_input[0], model_input[0], source_input[0], model_input[1]])
                                  if guided else torch.cat([source_input, model_input]))  # as the pipeline batches it
            output = family.denoise(denoiser, denoiser_input, t, cond, attention_kwargs)
            if edit:
                source_noise, output = _edit_halves(output, guided, s.source_guidance)
            if guided:
                noise_uncond, noise_cond = output.chunk(2)
                noise_pred = noise_uncond + scale * (noise_cond - noise_uncond)
            else:
                noise_uncond = noise_cond = None
                noise_pred = output
            timings["unet"] += time.perf_counter() - step_started
            if self.capture is not None:
                self.capture.finish_step(i)
            x_vp = model_input[-1:]  # the denoiser's view of x_t (variance-preserving, or flow's interpolation)
            x0_pred = noise.predict_x0(x_vp, noise_pred, sigma, prediction_type)
            if s.invert:  # towards noise: x0 as the inverse step computes it
                latents, x0_pred = scheduler.step(noise_pred, t, latents, return_dict=False)
            elif edit:  # the source's next latents from DDIM's posterior, and the noise that step implies
                previous = posterior_sample(scheduler, source_latents, t, clean_latents, generator, s.eta)
                variance_noise = compute_noise(scheduler, previous, source_latents, t, source_noise, s.eta)
                source_latents = previous
                latents = scheduler.step(noise_pred, t, latents, variance_noise=variance_noise, eta=s.eta,
                                         return_dict=False)[0]
            else:
                latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
            next_scale = noise.vp_coefficients(noise.current_sigma(scheduler, None))[0] if variance_exploding else 1.0

            # 5. Decode x_t (after the step) and x0 every N steps; the starting noise once
            decode_started = time.perf_counter()
            x_next_view, x0_view = view(latents), view(x0_pred)  # once a step: Flux's unpacking copies
            frames = (None, None)
            if i == last:  # x_t alone, batched as the pipeline decodes it, so the final image is exact
                frames = self.previewer.step_frames(x_next_view, x0_view, alone=True)
            elif (i + 1) % s.every == 0:
                frames = self.previewer.step_frames(x_next_view * next_scale, x0_view)
            if i == 0:
                traj.noise_image = self.previewer.decode(view(x_vp))[0]
            timings["decode"] += time.perf_counter() - decode_started

            record = StepRecord(
                index=i,
                timestep=float(t),
                sigma=sigma,
                x_t=x_t_cpu,  # the previous step's x_next (or the start): one array, not a copy
                x_next=_cpu(x_next_view),
                next_vp_scale=next_scale,
                noise_uncond=_cpu(None if noise_uncond is None else view(noise_uncond)),
                noise_cond=_cpu(None if noise_cond is None else view(noise_cond)),
                noise_pred=_cpu(view(noise_pred)),
                x0_pred=_cpu(x0_view),
                x0_slope=noise.x0_slope(sigma, prediction_type),  # gives x0 of each guidance half
                eta=s.eta,
                source_x_next=_cpu(source_latents) if edit else None,
                x_t_image=frames[0],
                x0_image=frames[1],
                seconds=time.perf_counter() - step_started,
            )
            traj.steps.append(record)
            x_t_cpu = record.x_next
            yield record

        # 6. The final image: the last decoded frame when the preview is the VAE itself
        finished = len(traj.steps) == len(timesteps)
        if finished:
            if s.preview == "full" and frames[0] is not None:  # this run's own frame: whoever follows the run may have taken the record's
                traj.final_image = frames[0]
            else:
                decode_started = time.perf_counter()
                traj.final_image = decode_full(model, view(latents))[0]
                timings["decode"] += time.perf_counter() - decode_started
        if self.capture is not None:
            traj.attention = self.capture.maps(traj)
        traj.complete = finished
        traj.timings.update(timings)
        traj.timings["total"] = time.perf_counter() - started

    def _replay(self, scheduler, timesteps, latents, pipe, generator, view):
        """The parent's first `at` entries, stepped again with the UNet outputs it recorded and the eta each
        step had: the scheduler and the generator end in the parent's state, the latents at its x_next,
        bit for bit. The parent's records are kept (copied, with their frames: see `_kept`)."""
        parent, model = self.fork.parent, self.model
        traj, family = self.trajectory, model.family
        if not np.array_equal(traj.x_start, parent.x_start):
            raise RuntimeError("the fork's starting latents differ from its parent's (another torch or device?)")
        traj.noise_image = parent.noise_image
        for i in range(self.fork.at):
            record, t = parent.steps[i], timesteps[i]
            family.scale_input(scheduler, latents, t)  # as the run called it: some schedulers keep state here
            noise.current_sigma(scheduler, t)
            output = family.pack(torch.from_numpy(record.noise_pred)[None].to(model.device, model.dtype))
            latents = scheduler.step(output, t, latents, **family.step_kwargs(pipe, generator, record.eta),
                                     return_dict=False)[0]
            traj.steps.append(self._kept(record, i == len(timesteps) - 1))
        if not np.array_equal(_cpu(view(latents)), parent.steps[self.fork.at - 1].x_next):
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


def _edit_halves(output: torch.Tensor, guided: bool, source_guidance: float):
    """An edit's UNet output, batched (source uncond, edit uncond, source cond, edit cond) or, unguided,
    (source, edit): the source's guided noise, and the edit's output as a plain run's batch."""
    if guided:
        source_uncond, edit_uncond, source_cond, edit_cond = output.chunk(4)
        return (source_uncond + source_guidance * (source_cond - source_uncond),
                torch.cat([edit_uncond, edit_cond]))
    source, edit = output.chunk(2)
    return source, edit


def generate(model, settings: Settings, init_image=None, callback=None, capture=None, fork=None,
             start_latents=None) -> Trajectory:
    """Runs to the end and returns the trajectory; callback(record) is called at every step."""
    run = Run(model, settings, init_image=init_image, capture=capture, fork=fork, start_latents=start_latents)
    for record in run:
        if callback is not None:
            callback(record)
    return run.trajectory
