"""Pictures of latent tensors for the explorer: channels as grey maps, noise as colour.

Gradio-free helpers shared by the app and notebooks; inputs are a step
record's float32 arrays (C, h, w), outputs uint8 images.
"""

from __future__ import annotations

import numpy as np

from sdviz.export import enlarge


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
