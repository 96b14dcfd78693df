"""Per-step preview decoders: latents (as the UNet sees them) to uint8 RGB frames.

    full    the model's own VAE: exact, about one UNet step's cost per decode
    approx  a linear latent-to-RGB map (ComfyUI's published SD 1.x / SDXL factors,
            otherwise fitted by least squares against the model's VAE at load)
    taesd   diffusers' AutoencoderTiny (madebyollin/taesd), when its weights load
"""

from __future__ import annotations

import functools
import os

import torch

# ComfyUI latent_formats.py: rows are latent channels, columns R, G, B; output in [-1, 1].
SD1_LATENT_RGB = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]]
SDXL_LATENT_RGB = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
SDXL_LATENT_RGB_BIAS = [0.1084, -0.0175, -0.0011]
# The published maps belong to these VAEs, recognised by their scaling factor.
SD1_SCALING, SDXL_SCALING = 0.18215, 0.13025
TAESD_BY_SCALING = {SD1_SCALING: "madebyollin/taesd", SDXL_SCALING: "madebyollin/taesdxl"}
FIT_IMAGES = 16  # synthetic images encoded to fit a latent-to-RGB map
FIT_LATENT_SIDE = 16  # their side in latent pixels


def to_uint8(images: torch.Tensor):
    """(B, 3, H, W) in [-1, 1] to uint8 numpy (B, H, W, 3), rounded as diffusers' postprocess does."""
    scaled = (images.float() / 2 + 0.5).clamp(0, 1) * 255
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def fit_latent_rgb(vae, facts) -> torch.Tensor:
    """A (C + 1, 3) map from latents (UNet scale) plus a bias to RGB in [-1, 1].

    The published factors where the VAE is SD 1.x/2.x's or SDXL's; otherwise a
    least-squares fit of this VAE's decoder, which the map stands in for: on the
    latents of random colour fields (half smooth, half flat blocks) and on draws
    from the latent prior (what the first steps look like), the decoded images,
    average-pooled to latent resolution, are regressed onto the latents.
    """
    channels = facts.latent_channels
    if channels == 4 and abs(facts.scaling_factor - SD1_SCALING) < 1e-6:
        return torch.tensor(SD1_LATENT_RGB + [[0.0, 0.0, 0.0]])
    if channels == 4 and abs(facts.scaling_factor - SDXL_SCALING) < 1e-6:
        return torch.tensor(SDXL_LATENT_RGB + [SDXL_LATENT_RGB_BIAS])
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
        latents = torch.cat([encoded * facts.scaling_factor, prior])
        decoded = vae.decode((latents / facts.scaling_factor).to(param.device, param.dtype)).sample
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
    except (OSError, ValueError, EnvironmentError) as error:
        raise ValueError(
            f"preview 'taesd': the TAESD weights {source!r} could not be loaded "
            f"({str(error).splitlines()[0]}); use preview 'full' or 'approx', "
            "or set SDVIZ_TAESD to a local AutoencoderTiny folder"
        ) from None
    return decoder.to(device).eval().requires_grad_(False)


def taesd_source(facts) -> str:
    """$SDVIZ_TAESD, else the TAESD published for this model's VAE."""
    source = os.environ.get("SDVIZ_TAESD")
    if source:
        return source
    for scaling, hub_id in TAESD_BY_SCALING.items():
        if facts.latent_channels == 4 and abs(facts.scaling_factor - scaling) < 1e-6:
            return hub_id
    raise ValueError(
        f"preview 'taesd': no TAESD is published for this model's VAE "
        f"(scaling_factor {facts.scaling_factor:g}); use preview 'full' or 'approx', "
        "or set SDVIZ_TAESD to an AutoencoderTiny folder trained for it"
    )


class Previewer:
    """Decodes batches of latents (UNet scale) with one preview mode; one per run."""

    def __init__(self, model, mode: str, height: int, width: int):
        self.model, self.mode, self.size = model, mode, (height, width)
        if mode == "taesd":
            dtype_name = str(model.dtype).replace("torch.", "")
            self.taesd = load_taesd(taesd_source(model.facts), str(model.device), dtype_name)
        elif mode not in ("full", "approx"):
            raise ValueError(f"unknown preview mode {mode!r}; allowed: full, approx, taesd")

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

    @torch.no_grad()
    def decode(self, latents: torch.Tensor):
        """(B, C, h, w) latents to uint8 (B, H, W, 3)."""
        if self.mode == "full":
            return decode_full(self.model, latents)
        if self.mode == "taesd":
            images = self.taesd.decode(latents.to(self.taesd.dtype)).sample
            return to_uint8(images)
        weights = self.model.latent_rgb.to(latents.device, torch.float32)
        rgb = torch.einsum("bchw,cr->brhw", latents.float(), weights[:-1]) + weights[-1].view(1, 3, 1, 1)
        rgb = torch.nn.functional.interpolate(rgb, size=self.size, mode="bilinear", align_corners=False)
        return to_uint8(rgb)


@torch.no_grad()
def decode_full(model, latents: torch.Tensor):
    """The model's VAE, as StableDiffusionPipeline decodes: latents / scaling_factor."""
    vae = model.vae
    images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    return to_uint8(images)
