"""Guidance, decomposed: x0 = x0_uncond + g (x0_cond - x0_uncond), with a run's own numbers
(Ho & Salimans, 2022, "Classifier-free diffusion guidance")."""

from __future__ import annotations

import numpy as np

from sdviz.sampling.errors import InputError


def guidance_example(record, guidance: float) -> dict[str, float]:
    """The guidance formula at the latent value the prompt changes most at this step:
    x0 = x0_uncond + g (x0_cond - x0_uncond), with the mean |x0_cond - x0_uncond| over all values."""
    if record.x0_uncond is None:
        raise InputError.said("error.no_guidance")
    difference = record.x0_cond - record.x0_uncond
    channel, y, x = np.unravel_index(int(np.abs(difference).argmax()), difference.shape)
    uncond, cond = float(record.x0_uncond[channel, y, x]), float(record.x0_cond[channel, y, x])
    return {"guidance": float(guidance), "channel": int(channel), "y": int(y), "x": int(x),
            "uncond": uncond, "cond": cond, "guided": float(record.x0_pred[channel, y, x]),
            "formula": uncond + guidance * (cond - uncond),
            "mean_difference": float(np.abs(difference).mean()),
            "mean_guided_difference": float(np.abs(record.x0_pred - record.x0_uncond).mean())}
