"""The forward process and latent space, computed from the model itself (*The Illustrated Stable
Diffusion*'s "forward diffusion" and "departure to latent space"):

    forward_process(model, image, ...)   q(x_t | x0) at a schedule's noise levels, decoded
    latent_space(model, image)           an image to its latents and back, with the numbers
    img2img_start(steps, strength)       where an img2img run starts on its schedule

Every function reads the model's own components (the VAE, the scheduler config), never
sizes written here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdviz.analysis.metrics import psnr


@dataclass
class ForwardProcess:
    """An image noised to a schedule's levels: x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (flow
    matching: (1 - sigma) x0 + sigma eps), one eps for every level (the amounts differ, not the noise).
    Latents at the denoiser's scale, (C, h, w)."""

    timesteps: np.ndarray  # (N,) the schedule's timesteps
    sigmas: np.ndarray  # (N,)
    alpha_bar: np.ndarray  # (N,)
    x0: np.ndarray  # (C, h, w) the image's latents
    noise: np.ndarray  # (C, h, w) eps
    x_t: np.ndarray  # (N, C, h, w) what the denoiser sees: variance-preserving, or flow's interpolation
    frames: list[np.ndarray]  # (N,) decoded x_t, uint8 (H, W, 3)
    image: np.ndarray  # uint8 (H, W, 3): the image as encoded


def encode_image(model, image, width: int | None = None, height: int | None = None):
    """An image (path, PIL, array) resized to the model's size and encoded by its VAE: (uint8 image,
    latents (1, C, h, w) at the denoiser's scale, the distribution's mean, as a torch tensor on the model's device)."""
    import torch

    from sdviz.sampling.images import prepare_init_image
    from sdviz.sampling.previews import from_vae_latents
    from sdviz.sampling.settings import Settings

    size = Settings(width=width, height=height).resolved(model.facts)  # checked against the VAE factor
    picture = prepare_init_image(image, size.width, size.height)
    pixels = model.pipe.image_processor.preprocess(picture).to(model.device, model.vae.dtype)  # (1, 3, H, W)
    with torch.no_grad():
        latents = from_vae_latents(model.vae, model.vae.encode(pixels).latent_dist.mode())
    return np.asarray(picture), latents.to(model.dtype)


def forward_process(model, image, scheduler: str | None = None, steps: int = 20, seed: int = 0,
                    preview: str = "full", levels: list[int] | None = None, width: int | None = None,
                    height: int | None = None) -> ForwardProcess:
    """The training example of the post from real data: `image` encoded (at width x height, default the
    model's native size), then noised to each noise level of `scheduler`'s `steps`-step schedule (the
    levels a run of those settings starts each step at); `levels`, if given, picks entries by index."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    from sdviz.analysis.schedule import schedule_table
    from sdviz.sampling.noise import mix_coefficients
    from sdviz.sampling.previews import Previewer
    from sdviz.sampling.schedulers import check_fits

    facts = model.facts
    scheduler = check_fits(scheduler or facts.scheduler, facts.family)  # the model's own, by default
    picture, x0 = encode_image(model, image, width, height)
    table = schedule_table(scheduler, steps, model.scheduler_config, facts.family,
                           facts.image_tokens(picture.shape[0], picture.shape[1]))
    if levels is not None:
        table = [table[k] for k in levels]
    eps = randn_tensor(x0.shape, generator=torch.Generator("cpu").manual_seed(int(seed)), device=model.device,
                       dtype=x0.dtype)
    coefficients = [mix_coefficients(r["sigma"], facts.prediction_type == "flow") for r in table]
    x_t = torch.cat([alpha * x0 + s * eps for alpha, s in coefficients])  # (N, C, h, w)
    previewer = Previewer(model, preview, picture.shape[0], picture.shape[1])
    frames = [frame for batch in x_t.split(8) for frame in previewer.decode(batch)]
    return ForwardProcess(
        timesteps=np.array([r["timestep"] for r in table], np.float64),
        sigmas=np.array([r["sigma"] for r in table], np.float64),
        alpha_bar=np.array([r["alpha_bar"] for r in table], np.float64),
        x0=x0[0].float().cpu().numpy(), noise=eps[0].float().cpu().numpy(), x_t=x_t.float().cpu().numpy(),
        frames=frames, image=picture,
    )


def img2img_start(steps: int, strength: float, order: int = 1, flow: bool = False) -> int:
    """The index in a `steps`-step schedule where an img2img run of `strength` starts, as diffusers'
    `get_timesteps` counts: SD's runs the last int(steps * strength) steps; SD3's (flow matching) starts at
    int(steps - steps * strength)."""
    if flow:
        return int(max(steps - min(steps * strength, steps), 0)) * order
    run = min(int(steps * strength), steps)
    return max(steps - run, 0) * order


# --- latent space ----------------------------------------------------------------------------

@dataclass
class LatentSpace:
    """An image through the VAE and back (the post's "departure to latent space")."""

    image: np.ndarray  # uint8 (H, W, 3) as encoded
    latents: np.ndarray  # (C, h, w) at UNet scale
    reconstruction: np.ndarray  # uint8 (H, W, 3): the latents decoded
    psnr: float  # dB, reconstruction against the image

    @property
    def pixel_values(self) -> int:
        return int(self.image.size)

    @property
    def latent_values(self) -> int:
        return int(self.latents.size)

    @property
    def compression(self) -> float:
        return self.pixel_values / self.latent_values


def latent_space(model, image, width: int | None = None, height: int | None = None) -> LatentSpace:
    """`image` at width x height (default the model's native size) encoded, and decoded back."""
    from sdviz.sampling.previews import decode_full

    picture, latents = encode_image(model, image, width, height)
    reconstruction = decode_full(model, latents)[0]
    return LatentSpace(image=picture, latents=latents[0].float().cpu().numpy(), reconstruction=reconstruction,
                       psnr=psnr(picture, reconstruction))
