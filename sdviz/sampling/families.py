"""Model families: what differs between SD 1.x/2.x, LCM, SDXL, SD3 and Flux, behind one seam.

The traced loop (`sampler.Run`) is the same for every family: starting latents, then at each
scheduler entry one call of the denoiser, classifier-free guidance, x0, the scheduler's step.
A `Family` supplies the parts that differ, each as its diffusers pipeline does it, so that
final images stay exactly the pipeline's (as k-diffusion's `external.py` wraps each model
family in one denoiser and keeps the samplers family-agnostic):

    encode          the prompt(s) into what the denoiser takes (SDXL: two CLIP encoders, the
                    pooled embedding and the size/crop ids; SD3: two CLIPs and T5; Flux: CLIP
                    pooled and T5, with text and image position ids)
    timesteps       the scheduler's entries (SD3 and Flux: flow-matching sigmas, shifted by the
                    image's sequence length where the scheduler asks for it)
    latents         the starting noise, in the denoiser's layout (Flux: 2 x 2 patches packed)
    denoise         one call of the UNet or transformer on a guidance batch
    view / pack     the denoiser's layout to (B, C, h, w), the layout every record, frame and
                    view uses, and back

The family comes from the folder's `model_index.json` (its `_class_name`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdviz.messages import DEFAULT, text
from sdviz.sampling.errors import InputError

if TYPE_CHECKING:
    import torch


@dataclass
class Conditioning:
    """One run's encoded prompt, as its denoiser calls take it.

    embeddings  (B, tokens, width): the guidance batch, unconditional half first
    extra       the other keyword arguments of every denoiser call (pooled embeddings, ids)
    negative    Flux's real classifier-free guidance runs the negative prompt as a second call,
                with these keyword arguments instead of `embeddings` and `extra`'s
    timestep_cond   a UNet that takes its guidance as an input (LCM's, `time_cond_proj_dim`): the
                embedding of w = guidance - 1, as the pipelines compute it; None otherwise
    """

    embeddings: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)
    negative: dict[str, Any] | None = None
    timestep_cond: torch.Tensor | None = None


class Family:
    """Stable Diffusion 1.x and 2.x: a UNet with CLIP cross-attention, epsilon or v prediction."""

    name = "sd"
    label = "Stable Diffusion 1.x/2.x"
    pipelines = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
    denoiser = "unet"
    flow = False  # flow matching: x_t = (1 - sigma) x0 + sigma eps, the denoiser predicts eps - x0
    img2img = True
    edits = True  # CycleDiffusion edits (SD 1.x/2.x pipelines)
    inverts = True  # an image run backwards to noise (DDIM inversion; flow models: the flow's Euler steps)
    inverse_pipeline = "StableDiffusionDiffEditPipeline"  # whose code encodes the image an inversion starts from
    text_encoders = ("text_encoder",)  # in the order the pipeline runs them
    tokenizers = ("tokenizer",)
    token_tokenizer = "tokenizer"  # whose slots the cross-attention's keys are (the token view and the attention maps)
    gpu_dtype = "float16"
    latents_first = False  # the pipeline prepares the latents before the timesteps (SD3, Flux)
    batched_guidance = True  # both halves of guidance in one denoiser call (Flux calls the negative prompt apart)
    load_kwargs: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False}

    def pipeline_class(self, img2img: bool):
        import diffusers

        return getattr(diffusers, self.pipelines[1] if img2img else self.pipelines[0])

    def pipeline(self, pipeline_class, components: dict[str, Any], **extra):
        """A pipeline of `pipeline_class` on these components (those its constructor takes)."""
        accepted = inspect.signature(pipeline_class.__init__).parameters
        kwargs = {name: value for name, value in components.items() if name in accepted}
        if "requires_safety_checker" in accepted:
            kwargs["requires_safety_checker"] = False
        return pipeline_class(**kwargs, **extra)

    # -- facts read from the model ------------------------------------------------------------

    def denoiser_module(self, pipe):
        return getattr(pipe, self.denoiser)

    def text_window(self, pipe) -> int:
        """Token slots of the text the cross-attention reads."""
        return getattr(pipe, self.token_tokenizer).model_max_length

    def text_width(self, pipe) -> int:
        return self.denoiser_module(pipe).config.cross_attention_dim

    def context_tokens(self, pipe) -> int:
        """Length of the text sequence the denoiser reads (SD3: CLIP's slots, then T5's)."""
        return self.text_window(pipe)

    def encoder_windows(self, pipe) -> list[tuple[str, str, int]]:
        """(tokenizer, text encoder, slots it encodes) for each text encoder the model has, in order."""
        windows = []
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            if getattr(pipe, encoder, None) is not None:
                windows.append((tokenizer, encoder, self.window_of(pipe, tokenizer)))
        return windows

    def window_of(self, pipe, tokenizer: str) -> int:
        return getattr(pipe, tokenizer).model_max_length

    def pooled_width(self, pipe) -> int:
        """Width of the pooled text embedding the denoiser also takes (0: none)."""
        return 0

    def added_conditioning(self, pipe) -> str:
        """What else each denoiser call takes, in the catalogue's English ('' for nothing): a model's facts are
        shared by every session, so each shows them in its own language (`ui.html.added_words`)."""
        return text("added.lcm_guidance", DEFAULT) if self.guidance_embedded(pipe) else ""

    def native_side(self, pipe) -> tuple[int, int]:
        size = getattr(pipe, "default_sample_size", None) or self.denoiser_module(pipe).config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        return height * pipe.vae_scale_factor, width * pipe.vae_scale_factor

    def size_multiple(self, pipe) -> int:
        """Image sides must be multiples of this: the VAE's factor (times the patch size, for transformers)."""
        return pipe.vae_scale_factor

    def prediction_type(self, pipe) -> str:
        return pipe.scheduler.config.get("prediction_type", "epsilon")

    def guidance_scale(self, settings) -> float:
        """The scale of classifier-free guidance: uncond + scale * (cond - uncond)."""
        return settings.guidance

    def guided(self, pipe, settings) -> bool:
        """Whether the run batches an unconditional half (real classifier-free guidance)."""
        return settings.guidance > 1 and not self.guidance_embedded(pipe)

    def guidance_embedded(self, pipe) -> bool:
        """Whether the denoiser takes the guidance scale as an input (a UNet distilled from a guided teacher,
        LCM's: `time_cond_proj_dim`; Flux-dev's `guidance_embeds`), so that no unconditional pass is run."""
        return self.denoiser_module(pipe).config.get("time_cond_proj_dim") is not None

    def timestep_cond(self, pipe, settings, dtype, device):
        """The embedded guidance's input to every UNet call, as StableDiffusionPipeline, its SDXL and LCM
        pipelines compute it: the embedding of w = guidance - 1; None for a UNet that takes none."""
        import torch

        dim = self.denoiser_module(pipe).config.get("time_cond_proj_dim")
        if dim is None:
            return None
        w = torch.tensor(settings.guidance - 1).repeat(1)
        return pipe.get_guidance_scale_embedding(w, embedding_dim=dim).to(device=device, dtype=dtype)

    def img2img_timesteps(self, pipe, scheduler, steps: int, strength: float, device, image_tokens: int):
        """Image to image: the last `strength` of the scheduler's entries, as the img2img pipeline takes them."""
        self.timesteps(scheduler, steps, device, image_tokens)
        return pipe.get_timesteps(steps, strength, device)[0]

    # -- the run's parts ----------------------------------------------------------------------

    def encode(self, pipe, settings, device, guided: bool) -> Conditioning:
        import torch

        cond, uncond = pipe.encode_prompt(settings.prompt, device, 1, guided, settings.negative_prompt or None)
        return Conditioning(torch.cat([uncond, cond]) if guided else cond)

    def timesteps(self, scheduler, steps: int, device, image_tokens: int):
        """The scheduler's entries for `steps` steps, set as the pipeline sets them. image_tokens: the
        denoiser's image sequence length (SD3's and Flux's shift depends on it)."""
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

        return retrieve_timesteps(scheduler, steps, device)[0]

    def prepare_latents(self, pipe, settings, channels: int, dtype, device, generator, given=None):
        """The starting noise (or `given`, in the view layout) in the denoiser's layout, and the keyword
        arguments it adds to every denoiser call (Flux: the image's position ids)."""
        return pipe.prepare_latents(1, channels, settings.height, settings.width, dtype, device, generator, given), {}

    def image_latents(self, pipe, image, timestep, settings, channels: int, dtype, device, generator):
        """Image to image: the image (preprocessed) encoded and noised to `timestep`, in the denoiser's layout,
        and what it adds to every denoiser call (an edit's pipeline returns (noised, clean) latents)."""
        return pipe.prepare_latents(image, timestep, 1, 1, dtype, device, generator), {}

    def clean_latents(self, pipe, image, dtype, device, generator):
        """An inversion's start: the image (preprocessed) encoded, not noised, in the denoiser's layout, and
        what it adds to every denoiser call. SD: sampled from the VAE's posterior, as DiffEdit's `invert` does."""
        return pipe.prepare_image_latents(image, 1, pipe.vae.dtype, device, generator).to(dtype), {}

    def inverse_scheduler(self, scheduler, steps: int, device, image_tokens: int):
        """The scheduler that runs an image up to noise (DDIM's step reversed: DDIMInverseScheduler, as
        DiffEdit's `invert` sets it), and its timesteps, from the image up."""
        from diffusers import DDIMInverseScheduler

        inverse = DDIMInverseScheduler.from_config(scheduler.config)
        inverse.set_timesteps(steps, device=device)
        return inverse, inverse.timesteps

    def scale_input(self, scheduler, model_input: torch.Tensor, t) -> torch.Tensor:
        return scheduler.scale_model_input(model_input, t)

    def step_kwargs(self, pipe, generator, eta: float) -> dict[str, Any]:
        """The scheduler step's keyword arguments (the generator and eta, where its `step` takes them)."""
        return pipe.prepare_extra_step_kwargs(generator, eta)

    def denoise(self, denoiser, model_input, t, cond: Conditioning, observer_kwargs):
        """The denoiser's output for the guidance batch (unconditional half first)."""
        return denoiser(model_input, t, encoder_hidden_states=cond.embeddings, timestep_cond=cond.timestep_cond,
                        cross_attention_kwargs=observer_kwargs, added_cond_kwargs=cond.extra or None,
                        return_dict=False)[0]

    def view(self, latents: torch.Tensor, settings, vae_factor: int) -> torch.Tensor:
        """Latents in the denoiser's layout as (B, C, h, w)."""
        return latents

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents in the denoiser's layout."""
        return latents


class LCM(Family):
    """A latent consistency model (`LatentConsistencyModelPipeline`): an SD UNet distilled to a few steps, with
    the guidance scale embedded as an input (`time_cond_proj_dim`, w = guidance - 1) and no unconditional
    pass. Each step jumps to a clean estimate and LCM's scheduler noises it again to the next level."""

    name = "lcm"
    label = "Latent consistency"
    pipelines = ("LatentConsistencyModelPipeline", "LatentConsistencyModelImg2ImgPipeline")
    edits = False  # CycleDiffusion samples DDIM's posterior with a guided teacher's noise
    inverts = False  # a consistency model is not trained to be run backwards

    def img2img_timesteps(self, pipe, scheduler, steps: int, strength: float, device, image_tokens: int):
        """As LatentConsistencyModelImg2ImgPipeline: the scheduler's own schedule for `strength` (LCM's and TCD's
        `set_timesteps` take it); a scheduler that takes none, as the SD img2img pipeline slices it."""
        from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_img2img import (
            retrieve_timesteps,
        )

        if "strength" not in inspect.signature(scheduler.set_timesteps).parameters:
            return super().img2img_timesteps(pipe, scheduler, steps, strength, device, image_tokens)
        return retrieve_timesteps(scheduler, steps, device, None, original_inference_steps=None, strength=strength)[0]


AESTHETIC_SCORE, NEGATIVE_AESTHETIC_SCORE = 6.0, 2.5  # StableDiffusionXLImg2ImgPipeline's defaults (refiners read them)


class SDXL(Family):
    """SDXL: two CLIP text encoders (their last hidden states side by side), the second's pooled
    embedding and the image's size and crop as added conditioning."""

    name = "sdxl"
    label = "Stable Diffusion XL"
    pipelines = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
    img2img = True  # StableDiffusionXLImg2ImgPipeline (base models: size and crop ids, no aesthetic score)
    edits = False
    inverse_pipeline = "StableDiffusionXLImg2ImgPipeline"  # its prepare_latents, without the noise
    load_kwargs: dict[str, Any] = {}
    text_encoders = ("text_encoder", "text_encoder_2")
    tokenizers = ("tokenizer", "tokenizer_2")

    def pooled_width(self, pipe) -> int:
        return pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None else 0

    def added_conditioning(self, pipe) -> str:
        embedded = super().added_conditioning(pipe)
        return (f"{embedded}, " if embedded else "") + text("added.sdxl_ids", DEFAULT)

    def encode(self, pipe, settings, device, guided: bool) -> Conditioning:
        import torch

        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
            prompt=settings.prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
            negative_prompt=settings.negative_prompt or None)
        projection = (pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None
                      else int(pooled.shape[-1]))
        size = (settings.height, settings.width)  # original and target size: the image's own, no crop
        if "aesthetic_score" in inspect.signature(pipe._get_add_time_ids).parameters:  # the img2img pipeline's
            time_ids, negative_ids = pipe._get_add_time_ids(
                size, (0, 0), size, AESTHETIC_SCORE, NEGATIVE_AESTHETIC_SCORE, size, (0, 0), size,
                dtype=cond.dtype, text_encoder_projection_dim=projection)
        else:
            time_ids = negative_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=cond.dtype,
                                                             text_encoder_projection_dim=projection)
        if guided:
            cond, pooled = torch.cat([uncond, cond]), torch.cat([uncond_pooled, pooled])
            time_ids = torch.cat([negative_ids, time_ids])
        return Conditioning(cond.to(device), {"text_embeds": pooled.to(device), "time_ids": time_ids.to(device)})

    def image_latents(self, pipe, image, timestep, settings, channels: int, dtype, device, generator):
        """As StableDiffusionXLImg2ImgPipeline.prepare_latents, asked in the VAE's own dtype where its config
        asks for float32 (`force_upcast`, and the loader keeps it so): the pipeline casts the VAE to float32
        and back to the run's dtype around the encode, which on the model's shared VAE would reach other runs;
        in the VAE's dtype both casts leave it as it is."""
        return self._encoded(pipe, image, timestep, device, generator, dtype, add_noise=True), {}

    def clean_latents(self, pipe, image, dtype, device, generator):
        return self._encoded(pipe, image, None, device, generator, dtype, add_noise=False), {}

    @staticmethod
    def _encoded(pipe, image, timestep, device, generator, dtype, add_noise: bool):
        asked = pipe.vae.dtype if pipe.vae.config.force_upcast else dtype
        return pipe.prepare_latents(image, timestep, 1, 1, asked, device, generator, add_noise=add_noise).to(dtype)


class SD3(Family):
    """SD3: an MMDiT transformer whose joint attention reads CLIP-L, CLIP-G and T5 tokens; flow matching."""

    name = "sd3"
    label = "Stable Diffusion 3"
    pipelines = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline")
    denoiser = "transformer"
    flow = True
    latents_first = True
    img2img = True  # StableDiffusion3Img2ImgPipeline: the image encoded with the shift, noised by `scale_noise`
    edits = False
    inverse_pipeline = "StableDiffusion3Img2ImgPipeline"
    load_kwargs: dict[str, Any] = {}
    text_encoders = ("text_encoder", "text_encoder_2", "text_encoder_3")
    tokenizers = ("tokenizer", "tokenizer_2", "tokenizer_3")
    max_sequence_length = 256  # T5 tokens, the pipeline's default

    def text_width(self, pipe) -> int:
        return self.denoiser_module(pipe).config.joint_attention_dim

    def context_tokens(self, pipe) -> int:
        return pipe.tokenizer.model_max_length + self.max_sequence_length

    def window_of(self, pipe, tokenizer: str) -> int:
        return self.max_sequence_length if tokenizer == "tokenizer_3" else getattr(pipe, tokenizer).model_max_length

    def pooled_width(self, pipe) -> int:
        return self.denoiser_module(pipe).config.pooled_projection_dim

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * self.denoiser_module(pipe).config.patch_size

    def prediction_type(self, pipe) -> str:
        return "flow"

    def guided(self, pipe, settings) -> bool:
        return settings.guidance > 1

    def guidance_embedded(self, pipe) -> bool:
        return False

    def timestep_cond(self, pipe, settings, dtype, device):
        return None

    def encode(self, pipe, settings, device, guided: bool) -> Conditioning:
        import torch

        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
            prompt=settings.prompt, prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=guided, negative_prompt=settings.negative_prompt or None,
            max_sequence_length=self.max_sequence_length)
        if guided:
            cond, pooled = torch.cat([uncond, cond]), torch.cat([uncond_pooled, pooled])
        return Conditioning(cond, {"pooled_projections": pooled})

    def timesteps(self, scheduler, steps: int, device, image_tokens: int):
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
            calculate_shift,
            retrieve_timesteps,
        )

        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            kwargs["mu"] = calculate_shift(
                image_tokens, scheduler.config.get("base_image_seq_len", 256),
                scheduler.config.get("max_image_seq_len", 4096), scheduler.config.get("base_shift", 0.5),
                scheduler.config.get("max_shift", 1.16))
        return retrieve_timesteps(scheduler, steps, device, sigmas=None, **kwargs)[0]

    def clean_latents(self, pipe, image, dtype, device, generator):
        """As the img2img pipeline encodes its image (posterior sample, the VAE's shift and scale), not noised."""
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3_img2img import retrieve_latents

        latents = retrieve_latents(pipe.vae.encode(image.to(device=device, dtype=pipe.vae.dtype)), generator)
        return ((latents - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor).to(dtype), {}

    def inverse_scheduler(self, scheduler, steps: int, device, image_tokens: int):
        """The flow's Euler steps run backwards over the forward run's sigmas (see `FlowInverse`)."""
        from sdviz.sampling.schedulers import FlowInverse

        self.timesteps(scheduler, steps, device, image_tokens)
        inverse = FlowInverse(scheduler)
        return inverse, inverse.timesteps

    def scale_input(self, scheduler, model_input: torch.Tensor, t) -> torch.Tensor:
        return model_input  # flow-matching schedulers do not scale the input

    def step_kwargs(self, pipe, generator, eta: float) -> dict[str, Any]:
        return {}  # the pipeline steps with none

    def denoise(self, denoiser, model_input, t, cond: Conditioning, observer_kwargs):
        return denoiser(hidden_states=model_input, timestep=t.expand(model_input.shape[0]),
                        encoder_hidden_states=cond.embeddings, joint_attention_kwargs=observer_kwargs,
                        return_dict=False, **cond.extra)[0]


class Flux(SD3):
    """Flux: a transformer of double-stream and single-stream blocks over 2 x 2 packed latents,
    CLIP's pooled embedding and T5's tokens; guidance embedded as an input (FLUX.1-dev), and real
    classifier-free guidance only with a negative prompt and `true_cfg` above 1."""

    name = "flux"
    label = "Flux"
    pipelines = ("FluxPipeline", "FluxImg2ImgPipeline")
    text_encoders = ("text_encoder", "text_encoder_2")
    tokenizers = ("tokenizer", "tokenizer_2")
    token_tokenizer = "tokenizer_2"
    img2img = True  # FluxImg2ImgPipeline: the image encoded, noised by `scale_noise`, packed
    inverse_pipeline = "FluxImg2ImgPipeline"
    batched_guidance = False
    gpu_dtype = "bfloat16"  # Flux's activations overflow float16
    max_sequence_length = 512

    def text_window(self, pipe) -> int:
        return self.max_sequence_length

    def context_tokens(self, pipe) -> int:
        return self.max_sequence_length

    def window_of(self, pipe, tokenizer: str) -> int:
        return self.max_sequence_length if tokenizer == "tokenizer_2" else getattr(pipe, tokenizer).model_max_length

    def added_conditioning(self, pipe) -> str:
        guided = self.denoiser_module(pipe).config.guidance_embeds
        embedded = text("added.flux_guidance", DEFAULT) + ", " if guided else ""
        return embedded + text("added.flux_ids", DEFAULT)

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * 2  # the 2 x 2 packing

    def guidance_scale(self, settings) -> float:
        return settings.true_cfg  # `guidance` is the distilled guidance the transformer takes as an input

    def guided(self, pipe, settings) -> bool:
        return bool(settings.negative_prompt) and settings.true_cfg > 1

    def guidance_embedded(self, pipe) -> bool:
        return bool(self.denoiser_module(pipe).config.guidance_embeds)

    def encode(self, pipe, settings, device, guided: bool) -> Conditioning:
        import torch

        cond, pooled, text_ids = pipe.encode_prompt(prompt=settings.prompt, prompt_2=None, device=device,
                                                    num_images_per_prompt=1,
                                                    max_sequence_length=self.max_sequence_length)
        extra = {"pooled_projections": pooled, "txt_ids": text_ids}
        negative = None
        if guided:
            uncond, uncond_pooled, uncond_ids = pipe.encode_prompt(
                prompt=settings.negative_prompt, prompt_2=None, device=device, num_images_per_prompt=1,
                max_sequence_length=self.max_sequence_length)
            negative = {"encoder_hidden_states": uncond, "pooled_projections": uncond_pooled, "txt_ids": uncond_ids}
        if self.denoiser_module(pipe).config.guidance_embeds:
            extra["guidance"] = torch.full([1], settings.guidance, device=device, dtype=torch.float32)
        return Conditioning(cond, extra, negative)

    def timesteps(self, scheduler, steps: int, device, image_tokens: int):
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        sigmas = None if scheduler.config.get("use_flow_sigmas") else np.linspace(1.0, 1 / steps, steps)
        mu = calculate_shift(image_tokens, scheduler.config.get("base_image_seq_len", 256),
                             scheduler.config.get("max_image_seq_len", 4096), scheduler.config.get("base_shift", 0.5),
                             scheduler.config.get("max_shift", 1.15))
        return retrieve_timesteps(scheduler, steps, device, sigmas=sigmas, mu=mu)[0]

    def prepare_latents(self, pipe, settings, channels: int, dtype, device, generator, given=None):
        if given is not None:
            given = self.pack(given)
        latents, image_ids = pipe.prepare_latents(1, channels, settings.height, settings.width, dtype, device,
                                                  generator, given)
        return latents, {"img_ids": image_ids}

    def image_latents(self, pipe, image, timestep, settings, channels: int, dtype, device, generator):
        latents, image_ids = pipe.prepare_latents(image, timestep, 1, channels, settings.height, settings.width,
                                                  dtype, device, generator)
        return latents, {"img_ids": image_ids}

    def clean_latents(self, pipe, image, dtype, device, generator):
        """As FluxImg2ImgPipeline encodes its image (`_encode_vae_image`), not noised; packed, with the ids."""
        latents = pipe._encode_vae_image(image.to(device=device, dtype=dtype), generator)
        height, width = latents.shape[-2:]
        ids = pipe._prepare_latent_image_ids(1, height // 2, width // 2, device, dtype)
        return self.pack(latents), {"img_ids": ids}

    def denoise(self, denoiser, model_input, t, cond: Conditioning, observer_kwargs):
        """Flux batches nothing: the prompt's call, then (real guidance) the negative prompt's, stacked
        unconditional first as the other families' batches are."""
        import torch

        timestep = t.expand(1).to(model_input.dtype) / 1000
        latents = model_input[-1:]
        output = denoiser(hidden_states=latents, timestep=timestep, encoder_hidden_states=cond.embeddings,
                          joint_attention_kwargs=observer_kwargs, return_dict=False, **cond.extra)[0]
        if cond.negative is None:
            return output
        negative = denoiser(hidden_states=latents, timestep=timestep, img_ids=cond.extra["img_ids"],
                            guidance=cond.extra.get("guidance"), joint_attention_kwargs=None, return_dict=False,
                            **cond.negative)[0]
        return torch.cat([negative, output])

    def view(self, latents: torch.Tensor, settings, vae_factor: int) -> torch.Tensor:
        from diffusers import FluxPipeline

        return FluxPipeline._unpack_latents(latents, settings.height, settings.width, vae_factor)

    def pack(self, latents: torch.Tensor) -> torch.Tensor:
        from diffusers import FluxPipeline

        batch, channels, height, width = latents.shape
        return FluxPipeline._pack_latents(latents, batch, channels, height, width)


FAMILIES = {family.name: family for family in (Family(), LCM(), SDXL(), SD3(), Flux())}
BY_PIPELINE = {name: family for family in FAMILIES.values() for name in family.pipelines}


def family_of(pipeline_class: str) -> Family:
    """The family of a `model_index.json` `_class_name`; unknown ones are refused, naming those supported."""
    if pipeline_class not in BY_PIPELINE:
        raise InputError.said("error.pipeline_unsupported", pipeline=repr(pipeline_class),
                              supported=", ".join(BY_PIPELINE))
    return BY_PIPELINE[pipeline_class]
