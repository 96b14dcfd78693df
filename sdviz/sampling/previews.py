"""Per-step preview decoders: latents (as the UNet sees them) to uint8 RGB frames.

    full    the model's own VAE: exact, about one UNet step's cost per decode
    approx  a linear latent-to-RGB map (ComfyUI's published SD 1.x, SDXL, SD3 and
            Flux factors, otherwise fitted by least squares against the model's VAE at load)
    taesd   diffusers' AutoencoderTiny (madebyollin's taesd, taesdxl, taesd3, taef1),
            when its weights load

Latents here are always as the denoiser sees them, in the VAE's (B, C, h, w) layout:
(z - shift_factor) * scaling_factor for the VAE's own latents z.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch

from sdviz.sampling.errors import InputError

# ComfyUI latent_formats.py: rows are latent channels, columns R, G, B, then the bias; output in [-1, 1].
SD1_LATENT_RGB = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
                  [-0.2120, -0.2616, -0.7177], [0.0, 0.0, 0.0]]
SDXL_LATENT_RGB = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
                   [-0.3165, -0.2492, -0.2188], [0.1084, -0.0175, -0.0011]]
SD3_LATENT_RGB = [
    [-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458], [0.0856, 0.0339, 0.0902],
    [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309], [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358],
    [-0.0194, 0.0020, 0.0669], [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
    [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293], [-0.1448, -0.1463, -0.1189],
    [0.2394, 0.2135, 0.1925]]
FLUX_LATENT_RGB = [
    [-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433], [-0.0174, 0.0160, 0.0617],
    [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115], [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259],
    [-0.0245, 0.0250, 0.1180], [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
    [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499], [-0.1262, -0.0982, -0.0778],
    [-0.0329, -0.0718, -0.0851]]
# The published maps and tiny decoders belong to these VAEs, recognised by (channels, scaling, shift).
SD1_VAE, SDXL_VAE, SD3_VAE, FLUX_VAE = (4, 0.18215, 0.0), (4, 0.13025, 0.0), (16, 1.5305, 0.0609), (16, 0.3611, 0.1159)
LATENT_RGB_BY_VAE = {SD1_VAE: SD1_LATENT_RGB, SDXL_VAE: SDXL_LATENT_RGB, SD3_VAE: SD3_LATENT_RGB,
                     FLUX_VAE: FLUX_LATENT_RGB}
TAESD_BY_VAE = {SD1_VAE: "madebyollin/taesd", SDXL_VAE: "madebyollin/taesdxl", SD3_VAE: "madebyollin/taesd3",
                FLUX_VAE: "madebyollin/taef1"}
FIT_IMAGES = 16  # synthetic images encoded to fit a latent-to-RGB map
FIT_LATENT_SIDE = 16  # their side in latent pixels


def to_uint8(images: torch.Tensor):
    """(B, 3, H, W) in [-1, 1] to uint8 numpy (B, H, W, 3), rounded as diffusers' postprocess does."""
    scaled = (images.float() / 2 + 0.5).clamp(0, 1) * 255
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def published_vae(facts):
    """The key of the published VAE this model's is (by channels, scaling and shift factor), or None."""
    for key in LATENT_RGB_BY_VAE:
        channels, scaling, shift = key
        if (facts.latent_channels == channels and abs(facts.scaling_factor - scaling) < 1e-6
                and abs(facts.shift_factor - shift) < 1e-6):
            return key
    return None


def _latent_statistics(vae, latents: torch.Tensor):
    """(mean, std) per latent channel, (1, C, 1, 1) like `latents`, where the VAE's config has them (else None)."""
    config = vae.config
    if config.get("latents_mean") is None or config.get("latents_std") is None:
        return None
    shape = (1, latents.shape[1], 1, 1)
    return tuple(torch.tensor(values).view(shape).to(latents.device, latents.dtype)
                 for values in (config.latents_mean, config.latents_std))


def to_vae_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """The denoiser's latents as the VAE decodes them, as the pipelines unscale them:
    latents / scaling_factor (+ shift_factor, SD3 and Flux; * std + mean, where the config has them)."""
    config, statistics = vae.config, _latent_statistics(vae, latents)
    if statistics is not None:
        mean, std = statistics
        return latents * std / config.scaling_factor + mean
    if config.get("shift_factor") is not None:
        return latents / config.scaling_factor + config.shift_factor
    return latents / config.scaling_factor


def from_vae_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """The VAE's latents as the denoiser sees them (the inverse of `to_vae_latents`)."""
    config, statistics = vae.config, _latent_statistics(vae, latents)
    if statistics is not None:
        mean, std = statistics
        return (latents - mean) * config.scaling_factor / std
    return (latents - (config.get("shift_factor") or 0.0)) * config.scaling_factor


def fit_latent_rgb(vae, facts) -> torch.Tensor:
    """A (C + 1, 3) map from latents (the denoiser's scale) plus a bias to RGB in [-1, 1].

    The published factors where the VAE is SD 1.x/2.x's, SDXL's, SD3's or Flux's; otherwise a
    least-squares fit of this VAE's decoder, which the map stands in for: on the
    latents of random colour fields (half smooth, half flat blocks) and on draws
    from the latent prior (what the first steps look like), the decoded images,
    average-pooled to latent resolution, are regressed onto the latents.
    """
    channels = facts.latent_channels
    published = published_vae(facts)
    if published is not None:
        return torch.tensor(LATENT_RGB_BY_VAE[published])
    generator = torch.Generator().manual_seed(0)
    side = FIT_LATENT_SIDE * facts.vae_factor
    coarse = torch.rand(FIT_IMAGES, 3, 4, 4, generator=generator) * 2 - 1
    half = FIT_IMAGES // 2
    images = torch.cat([
        torch.nn.functional.interpolate(coarse[:half], size=(side, side), mode="bilinear", align_corners=False),
        torch.nn.functional.interpolate(coarse[half:], size=(side, side), mode="nearest"),
    ])
    prior = torch.randn(FIT_IMAGES, channels, FIT_LATENT_SIDE, FIT_LATENT_SIDE, generator=generator)
    param = next(vae.parameters())
    with torch.no_grad():
        encoded = vae.encode(images.to(param.device, param.dtype)).latent_dist.mode().float().cpu()
        latents = torch.cat([from_vae_latents(vae, encoded), prior])
        decoded = vae.decode(to_vae_latents(vae, latents).to(param.device, param.dtype)).sample
    targets = torch.nn.functional.avg_pool2d(decoded.float().cpu().clamp(-1, 1), facts.vae_factor)  # (N, 3, h, w)
    inputs = torch.cat([latents, torch.ones_like(latents[:, :1])], dim=1)  # (N, C + 1, h, w)
    design = inputs.permute(0, 2, 3, 1).reshape(-1, channels + 1)
    target = targets.permute(0, 2, 3, 1).reshape(-1, 3)
    return torch.linalg.lstsq(design, target).solution  # (C + 1, 3)


@functools.lru_cache(maxsize=4)
def load_taesd(source: str, device: str, dtype_name: str):
    """diffusers' AutoencoderTiny from a hub id or folder; cached, read-only."""
    from diffusers import AutoencoderTiny

    try:
        decoder = AutoencoderTiny.from_pretrained(source, dtype=getattr(torch, dtype_name), use_safetensors=True)
    except (OSError, ValueError) as error:
        raise InputError.said("error.taesd_load", source=repr(source), reason=str(error).splitlines()[0]) from None
    return decoder.to(device).eval().requires_grad_(False)


def taesd_source(facts) -> str:
    """$SDVIZ_TAESD, else the TAESD published for this model's VAE."""
    source = os.environ.get("SDVIZ_TAESD")
    if source:
        return source
    published = published_vae(facts)
    if published is not None:
        return TAESD_BY_VAE[published]
    raise InputError.said("error.taesd_unpublished", factor=f"{facts.scaling_factor:g}")


class Previewer:
    """Decodes batches of latents (UNet scale) with one preview mode; one per run."""

    @classmethod
    def of(cls, model, settings) -> Previewer:
        """The preview decoder of a run of `settings` (resolved: preview, height, width) on `model`."""
        return cls(model, settings.preview, settings.height, settings.width)

    def __init__(self, model, mode: str, height: int, width: int):
        self.model, self.mode, self.size = model, mode, (height, width)
        if mode == "taesd":
            dtype_name = str(model.dtype).replace("torch.", "")
            self.taesd = load_taesd(taesd_source(model.facts), str(model.device), dtype_name)
        elif mode not in ("full", "approx"):
            raise InputError.said("error.unknown_preview", mode=repr(mode))

    @torch.no_grad()
    def step_frames(self, x_t: torch.Tensor, x0_pred: torch.Tensor, alone: bool = False):
        """One step's two frames, uint8 (H, W, 3): x_t (in the form the UNet sees) and x0.

        Decoded in one batch of two; `alone` (the run's last step) one at a time, as the
        pipeline decodes its image, so that the last x_t frame is exactly the pipeline's.
        """
        if alone:
            return self.decode(x_t)[0], self.decode(x0_pred)[0]
        both = self.decode(torch.cat([x_t, x0_pred]))
        return both[0], both[1]

    def record_frames(self, record, alone: bool = False):
        """The frames of a step again, from its record's latents on the CPU: the run's frames, bit for bit.

        The record keeps the latents in float32, a lossless copy of the run's (float16 or float32)
        tensors; they go back to the model's device and dtype and through `step_frames` as in the run.
        """
        device, dtype = self.model.device, self.model.dtype

        def tensor(latents):  # (C, h, w) -> (1, C, h, w)
            return torch.from_numpy(latents)[None].to(device, dtype)

        x_t = tensor(record.x_next) if alone else tensor(record.x_next) * record.next_vp_scale
        return self.step_frames(x_t, tensor(record.x0_pred), alone)

    def denoised_frame(self, record):
        """A step's `denoised` (LCM's scheduler: the boundary-conditioned estimate it steps from) decoded, uint8
        (H, W, 3); None for a step that has none."""
        if record.denoised is None:
            return None
        return self.decode(torch.from_numpy(record.denoised)[None].to(self.model.device, self.model.dtype))[0]

    def guidance_frames(self, record) -> tuple:
        """The decoded x0 of the unconditional (negative) half and of the prompt's half, uint8 (H, W, 3),
        as one batch of two; a run without guidance has no halves."""
        if record.x0_uncond is None:
            raise InputError.said("error.no_guidance")
        batch = torch.from_numpy(np.stack([record.x0_uncond, record.x0_cond])).to(self.model.device, self.model.dtype)
        frames = self.decode(batch)
        return frames[0], frames[1]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor):
        """(B, C, h, w) latents to uint8 (B, H, W, 3)."""
        if self.mode == "full":
            return decode_full(self.model, latents)
        if self.mode == "taesd":
            images = self.taesd.decode(to_vae_latents(self.taesd, latents.to(self.taesd.dtype))).sample
            return to_uint8(images)
        weights = self.model.latent_rgb.to(latents.device, torch.float32)
        rgb = torch.einsum("bchw,cr->brhw", latents.float(), weights[:-1]) + weights[-1].view(1, 3, 1, 1)
        rgb = torch.nn.functional.interpolate(rgb, size=self.size, mode="bilinear", align_corners=False)
        return to_uint8(rgb)


@torch.no_grad()
def decode_full(model, latents: torch.Tensor):
    """The model's VAE, as the family's pipeline decodes (see `to_vae_latents`)."""
    vae = model.vae
    images = vae.decode(to_vae_latents(vae, latents.to(vae.dtype)), return_dict=False)[0]
    return to_uint8(images)
