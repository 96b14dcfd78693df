"""What differs between a run's tasks: generating, editing, inverting; one small class each.

`sampler.Run` writes out one denoising loop for every task, as diffusers' pipelines do. A task
builds the run's pipeline (on the model's shared weights, with this run's own scheduler) and
supplies the parts of the loop that differ, each as its diffusers pipeline does it:

    Generate    text to image and image to image (`StableDiffusionPipeline`, its img2img
                pipeline, and SDXL's, SD3's and Flux's); and a fork's replay of its parent's steps
    Edit        CycleDiffusion (Wu & De la Torre 2023, `CycleDiffusionPipeline`): the source image's
                chain, sampled from DDIM's posterior, beside the edited one, in one denoiser batch
    Invert      DDIM inversion as DiffEdit's `invert` runs it (`DDIMInverseScheduler`); flow models:
                the flow's Euler steps backwards (`schedulers.FlowInverse`)

    encode()                     the prompt (an edit: and the source prompt) as the denoiser takes it
    start(cond)                  the timesteps and the starting latents
    sigma(t)                     the noise level the denoiser evaluates at
    denoise(model_input, ...)    the denoiser's output for the run's own guidance batch
    step(noise_pred, t, ...)     the scheduler's step: the next latents and x0
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from sdviz.sampling import noise, schedulers
from sdviz.sampling.families import Conditioning


class Generate:
    """Text to image (from the seed's noise or given latents) and image to image."""

    def __init__(self, model, settings, init_image=None, start_latents=None):
        """settings: resolved (`checks.check_run`); init_image: a PIL image at the run's size, or None;
        start_latents: (C, h, w) latents to start from instead of the seed's noise, or None."""
        self.model, self.settings, self.family = model, settings, model.family
        self.init_image, self.start_latents = init_image, start_latents
        self.scheduler = schedulers.create(settings.scheduler, model.scheduler_config)  # this run's own
        self.pipe = self._pipeline()  # this run's; shares the weights
        self.generator = torch.Generator("cpu").manual_seed(settings.seed)
        self.guided = self.family.guided(self.pipe, settings)  # a batched unconditional half
        self.step_kwargs = self.family.step_kwargs(self.pipe, self.generator, settings.eta)

    def _pipeline(self):
        pipeline_class = self.family.pipeline_class(self.init_image is not None)
        return self.family.pipeline(pipeline_class, self.model.components(self.scheduler))

    def _image_tokens(self) -> int:
        return self.model.facts.image_tokens(self.settings.height, self.settings.width)

    def view(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w): the denoiser's layout as the VAE's (Flux's packed patches unpacked)."""
        return self.family.view(latents, self.settings, self.model.facts.vae_factor)

    def encode(self) -> Conditioning:
        """The prompt, and the negative (or empty) prompt for guidance (call it holding the model's text lock);
        with the embedded guidance's input where the UNet takes one."""
        cond = self.family.encode(self.pipe, self.settings, self.model.device, self.guided)
        cond.timestep_cond = self.family.timestep_cond(self.pipe, self.settings, cond.embeddings.dtype,
                                                       self.model.device)
        return cond

    def start(self, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps, latents): the scheduler's entries (image to image keeps the last `strength` of them)
        and the starting latents in the denoiser's layout: the seed's noise (or the given latents), or the
        init image encoded and noised to the first timestep. In the family's order: SD's noise is scaled by
        the scheduler's initial sigma once its timesteps are set, and SD3's and Flux's timesteps depend on
        the latents' size. `cond` takes the latents' position ids (Flux)."""
        family, s, device = self.family, self.settings, self.model.device
        dtype, channels = cond.embeddings.dtype, self.model.facts.latent_channels
        if self.init_image is not None:
            timesteps = family.img2img_timesteps(self.pipe, self.scheduler, s.steps, s.strength, device,
                                                 self._image_tokens())
            image = self.pipe.image_processor.preprocess(self.init_image)
            latents, positions = family.image_latents(self.pipe, image, timesteps[:1], s, channels, dtype, device,
                                                      self.generator)
        else:
            if not family.latents_first:
                timesteps = family.timesteps(self.scheduler, s.steps, device, self._image_tokens())
            given = None if self.start_latents is None else torch.from_numpy(self.start_latents)[None].to(dtype)
            latents, positions = family.prepare_latents(self.pipe, s, channels, dtype, device, self.generator, given)
            if family.latents_first:
                timesteps = family.timesteps(self.scheduler, s.steps, device, self._image_tokens())
        cond.extra.update(positions)
        return timesteps, latents

    def sigma(self, t) -> float:
        return noise.current_sigma(self.scheduler, t)

    def denoise(self, model_input, t, cond: Conditioning, attention_kwargs) -> torch.Tensor:
        """The denoiser's output for the guidance batch `model_input` (B, ...), unconditional half first."""
        return self.family.denoise(self.model.denoiser, model_input, t, cond, attention_kwargs)

    def step(self, noise_pred, t, latents, x0_pred) -> tuple[torch.Tensor, torch.Tensor]:
        """The next latents and the x0 of this step (the one the loop computed from the denoiser's output at
        the step's own noise level: what the scheduler returns beside its sample is not always x0)."""
        output = self.scheduler.step(noise_pred, t, latents, **self.step_kwargs, return_dict=True)
        self.denoised = getattr(output, "denoised", None)  # LCM's: what it steps from (`StepRecord.denoised`)
        return output.prev_sample, x0_pred

    def next_vp_scale(self) -> float:
        """After the step: x_next times this is its variance-preserving form (1 for VP schedulers)."""
        if not noise.is_variance_exploding(self.scheduler):
            return 1.0
        return noise.vp_coefficients(noise.current_sigma(self.scheduler, None))[0]

    denoised: torch.Tensor | None = None

    def source_x_next(self) -> torch.Tensor | None:
        """An edit's source latents after the step; None for the other tasks."""
        return None

    def replay(self, noise_pred, eta: float, t, latents) -> torch.Tensor:
        """A step taken again with a recorded output `noise_pred` (C, h, w) and eta, calling the scheduler as
        the loop does (some schedulers keep state in `scale_model_input`): no denoiser call, and the scheduler
        and the generator advance as they did the first time. Returns the next latents."""
        self.family.scale_input(self.scheduler, latents, t)
        noise.current_sigma(self.scheduler, t)
        output = self.family.pack(torch.from_numpy(noise_pred)[None].to(self.model.device, self.model.dtype))
        step_kwargs = self.family.step_kwargs(self.pipe, self.generator, eta)
        return self.scheduler.step(output, t, latents, **step_kwargs, return_dict=False)[0]


class Edit(Generate):
    """CycleDiffusion: the init image's own chain (the source prompt's) runs beside the edited one; at each
    step the source's next latents come from DDIM's posterior, and the noise that step implies drives the
    edited chain's step, so what the prompts share stays the image's."""

    clean_latents: torch.Tensor  # (1, C, h, w) the init image's latents, not noised
    source_latents: torch.Tensor  # (1, C, h, w) the source's chain, x_t
    source_noise: torch.Tensor  # (1, C, h, w) the source's guided noise at this step

    def _pipeline(self):
        from diffusers import CycleDiffusionPipeline

        return self.family.pipeline(CycleDiffusionPipeline, self.model.components(self.scheduler))

    def encode(self) -> Conditioning:
        """One batch in the pipeline's order: source and edit, unconditional halves first."""
        cond = super().encode()
        source_cond, source_uncond = self.pipe.encode_prompt(self.settings.source_prompt, self.model.device, 1,
                                                             self.guided, None)
        uncond, text = cond.embeddings.chunk(2) if self.guided else (None, cond.embeddings)
        cond.embeddings = (torch.cat([source_uncond, uncond, source_cond, text]) if self.guided
                           else torch.cat([source_cond, text]))  # (4 or 2, tokens, width)
        return cond

    def start(self, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        timesteps, (latents, self.clean_latents) = super().start(cond)  # the pipeline's (noised, clean)
        self.source_latents = latents  # the source's chain starts where the edit does
        return timesteps, latents

    def denoise(self, model_input, t, cond: Conditioning, attention_kwargs) -> torch.Tensor:
        """The edit's output, as a plain run's guidance batch; the source's guided noise is kept for `step`."""
        source_input = self.scheduler.scale_model_input(self.source_latents, t)
        batch = (torch.stack([source_input[0], model_input[0], source_input[0], model_input[1]]) if self.guided
                 else torch.cat([source_input, model_input]))  # as the pipeline batches it
        output = super().denoise(batch, t, cond, attention_kwargs)
        if self.guided:
            source_uncond, edit_uncond, source_cond, edit_cond = output.chunk(4)
            self.source_noise = source_uncond + self.settings.source_guidance * (source_cond - source_uncond)
            return torch.cat([edit_uncond, edit_cond])
        self.source_noise, output = output.chunk(2)
        return output

    def step(self, noise_pred, t, latents, x0_pred) -> tuple[torch.Tensor, torch.Tensor]:
        from diffusers.pipelines.deprecated.stable_diffusion_variants.pipeline_cycle_diffusion import (
            compute_noise,
            posterior_sample,
        )

        eta = self.settings.eta
        previous = posterior_sample(self.scheduler, self.source_latents, t, self.clean_latents, self.generator, eta)
        variance_noise = compute_noise(self.scheduler, previous, self.source_latents, t, self.source_noise, eta)
        self.source_latents = previous
        latents = self.scheduler.step(noise_pred, t, latents, variance_noise=variance_noise, eta=eta,
                                      return_dict=False)[0]
        return latents, x0_pred

    def source_x_next(self) -> torch.Tensor:
        return self.source_latents


class Invert(Generate):
    """An image run backwards to noise: DDIM's step reversed (`DDIMInverseScheduler`, as DiffEdit's `invert`
    sets it), or the flow's Euler steps over the forward run's sigmas reversed; x0 as the inverse step
    computes it."""

    def _pipeline(self):
        import diffusers

        pipeline_class = getattr(diffusers, self.family.inverse_pipeline)  # whose code encodes the image
        inverse, self.inverse_timesteps = self.family.inverse_scheduler(self.scheduler, self.settings.steps,
                                                                        self.model.device, self._image_tokens())
        extra: dict[str, Any] = {}
        if "inverse_scheduler" in inspect.signature(pipeline_class.__init__).parameters:
            extra["inverse_scheduler"] = inverse  # DiffEdit's
        self.scheduler = inverse  # the forward scheduler is not stepped
        return self.family.pipeline(pipeline_class, self.model.components(inverse), **extra)

    def start(self, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse scheduler's timesteps, from the image up, and the image's latents, not noised."""
        image = self.pipe.image_processor.preprocess(self.init_image)
        latents, positions = self.family.clean_latents(self.pipe, image, cond.embeddings.dtype, self.model.device,
                                                       self.generator)
        cond.extra.update(positions)
        return self.inverse_timesteps, latents

    def sigma(self, t) -> float:
        return noise.current_sigma(self.scheduler, t) if self.family.flow else noise.inverse_sigma(self.scheduler, t)

    def step(self, noise_pred, t, latents, x0_pred) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scheduler.step(noise_pred, t, latents, return_dict=False)  # (latents, x0) towards noise


def task_for(model, settings, init_image=None, start_latents=None) -> Generate:
    """The task these (checked) settings ask for: an edit, an inversion, or generating an image."""
    if settings.invert:
        return Invert(model, settings, init_image)
    if settings.source_prompt is not None:
        return Edit(model, settings, init_image)
    return Generate(model, settings, init_image, start_latents)
