"""Pictures of a run's numbers: latent channels as grey maps, noise as colour, what the prompt adds
as a signed map, attention as heat over an image, and where two images differ.

Gradio-free helpers shared by the exports, the run page, the app and notebooks; inputs are a step
record's float32 arrays (C, h, w) or uint8 frames (H, W, 3), outputs uint8 images.
"""

from __future__ import annotations

import numpy as np

from sdviz.drawing.sheets import enlarge


def channel_images(latents: np.ndarray, side: int = 128) -> list[np.ndarray]:
    """Each latent channel as its own grey image (0 is mid-grey; +-max|value| is white/black)."""
    images = []
    for channel in latents:
        peak = float(np.abs(channel).max()) or 1.0
        grey = ((channel / peak) * 127.5 + 127.5).round().clip(0, 255).astype(np.uint8)
        images.append(enlarge(np.repeat(grey[..., None], 3, axis=2), side))
    return images


def noise_image(noise: np.ndarray, latent_rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Predicted noise through the latent-to-RGB map, standardised, at the image size (uint8)."""
    weights = np.asarray(latent_rgb, np.float32)
    rgb = np.einsum("chw,cr->hwr", noise.astype(np.float32), weights[:-1])
    rgb = (rgb - rgb.mean()) / (rgb.std() + 1e-8)
    image = ((rgb / 3) * 127.5 + 127.5).round().clip(0, 255).astype(np.uint8)
    factor = max(1, size[0] // image.shape[0])
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def prompt_effect(uncond: np.ndarray, cond: np.ndarray) -> tuple[np.ndarray, float]:
    """x0_cond - x0_uncond in pixels, averaged over RGB, as a signed colour map: red where the
    prompt brightens, blue where it darkens, white where it changes nothing; scaled so the largest
    change is full colour. Returns (uint8 (H, W, 3), that largest change in [0, 1] units)."""
    change = (cond.astype(np.float32) - uncond.astype(np.float32)).mean(axis=2) / 255.0  # (H, W) in [-1, 1]
    peak = float(np.abs(change).max())
    scaled = change / peak if peak > 0 else change
    positive, negative = np.clip(scaled, 0, 1), np.clip(-scaled, 0, 1)
    rgb = np.stack([1 - negative, 1 - positive - negative, 1 - positive], axis=2)
    return (rgb * 255).round().clip(0, 255).astype(np.uint8), peak


def difference(edited: np.ndarray, source: np.ndarray) -> np.ndarray:
    """|edited - source| per pixel as a grey image, stretched so the largest change is white."""
    change = np.abs(edited.astype(np.float32) - source.astype(np.float32)).mean(axis=2)
    peak = max(float(change.max()), 1.0)
    return np.repeat((change / peak * 255).round().astype(np.uint8)[..., None], 3, axis=2)


# --- attention as heat ------------------------------------------------------------------------

_JET = np.array([[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0]], np.float32)


def colourise(heat: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] to uint8 RGB with a jet-like colour map (blue low, red high)."""
    position = np.clip(heat, 0, 1) * (len(_JET) - 1)
    low = np.floor(position).astype(int).clip(0, len(_JET) - 2)
    fraction = (position - low)[..., None]
    rgb = _JET[low] * (1 - fraction) + _JET[low + 1] * fraction
    return (rgb * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The heat map over an image (uint8 (H, W, 3)), more opaque where the map is high."""
    if heat.shape != image.shape[:2]:
        import torch

        from sdviz.sampling.attention.maps import resize_maps

        heat = resize_maps(torch.from_numpy(heat[None].astype(np.float32)), image.shape[:2])[0].numpy().clip(0, 1)
    weight = (alpha * (0.35 + 0.65 * heat))[..., None]
    blended = image.astype(np.float32) * (1 - weight) + colourise(heat).astype(np.float32) * weight
    return blended.round().clip(0, 255).astype(np.uint8)
