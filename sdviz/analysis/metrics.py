"""Image metrics shared by the analyses."""

from __future__ import annotations

import numpy as np


def psnr(image: np.ndarray, other: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, dB (inf where they are equal)."""
    error = np.mean((image.astype(np.float64) / 255.0 - other.astype(np.float64) / 255.0) ** 2)
    return float(10 * np.log10(1.0 / error)) if error > 0 else float("inf")
