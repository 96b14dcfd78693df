"""Noise levels and the predicted clean latents x0, the same for every scheduler.

Stable Diffusion was trained variance-preserving (VP):
    x_t = alpha * x0 + s * eps,  alpha = 1 / sqrt(sigma^2 + 1),  s = sigma * alpha
with sigma = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t]) (Karras et al.
2022 write the same model as x = x0 + sigma * eps, "variance exploding", VE).
Schedulers keep their sample in either form; what the UNet sees is always the
VP form (`scale_model_input` divides VE samples by sqrt(sigma^2 + 1)). So from
the UNet's input, its output and the sigma of that evaluation, x0 is

    epsilon:       x0 = (x_vp - s * eps) / alpha
    v_prediction:  x0 = alpha * x_vp - s * v           (Salimans & Ho 2022)
    sample:        x0 = output

which also covers the schedulers whose `step()` returns no
`pred_original_sample` (DPM-Solver, UniPC, DEIS, PNDM) and both stages of the
second-order ones (Heun, KDPM2).

Flow matching (SD3, Flux; Lipman et al. 2023, Esser et al. 2024) interpolates
instead: x_t = (1 - sigma) x0 + sigma eps with sigma in [0, 1], and the
transformer predicts the velocity v = eps - x0 (diffusers' FlowMatchEuler steps
x + (sigma_next - sigma) v), so

    flow:          x0 = x_t - sigma * v
"""

from __future__ import annotations

import math

import torch

from sdviz.sampling.errors import InputError


def is_variance_exploding(scheduler) -> bool:
    """True when the scheduler's sample is x0 + sigma * eps (Euler, LMS, Heun, KDPM2)."""
    return hasattr(scheduler, "sigmas") and float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0


def current_sigma(scheduler, timestep) -> float:
    """Sigma of the sample the scheduler is at now: before `step()`, the one the UNet
    evaluates; after it, for sigma-based schedulers, the one `step()` returned (0 at the end).

    Sigma-based schedulers are read at their step index (KDPM2's second stage
    at its interpolated sigma, as its `scale_model_input` does); the others
    from `alphas_cumprod` at the timestep.
    """
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and hasattr(scheduler, "step_index"):
        if scheduler.step_index is None:
            scheduler._init_step_index(timestep)  # what step() does first; the index is the same
        index = scheduler.step_index
        if hasattr(scheduler, "sigmas_interpol") and not scheduler.state_in_first_order:
            sigmas = scheduler.sigmas_interpol
        return float(sigmas[index]) if index < len(sigmas) else 0.0
    alphas_cumprod = scheduler.alphas_cumprod
    alpha_bar = float(alphas_cumprod[int(round(float(timestep)))])
    return math.sqrt((1 - alpha_bar) / alpha_bar)


def vp_coefficients(sigma: float) -> tuple[float, float]:
    """(alpha, s) with x_vp = alpha * x0 + s * eps for this sigma."""
    alpha = 1.0 / math.sqrt(sigma * sigma + 1.0)
    return alpha, sigma * alpha


def mix_coefficients(sigma: float, flow: bool = False) -> tuple[float, float]:
    """(a, b) with x_t = a * x0 + b * eps as the denoiser sees it: variance-preserving, or flow matching's
    interpolation (1 - sigma, sigma)."""
    return (1.0 - sigma, sigma) if flow else vp_coefficients(sigma)


def x0_slope(sigma: float, prediction_type: str) -> float:
    """How x0 moves per unit of the UNet's output at noise level sigma (x0 is linear in it):
    the x0 of any other output o at the same x_vp is x0_pred + slope * (o - output)."""
    alpha, s = vp_coefficients(sigma)
    slopes = {"epsilon": -s / alpha, "v_prediction": -s, "sample": 1.0, "flow": -sigma}
    if prediction_type not in slopes:
        raise InputError.said("error.unknown_prediction_type", value=repr(prediction_type), allowed=", ".join(slopes))
    return slopes[prediction_type]


def predict_x0(x_vp: torch.Tensor, model_output: torch.Tensor, sigma: float, prediction_type: str) -> torch.Tensor:
    """x0 from the denoiser's input (VP form; flow matching's interpolation) and its (guided) output at
    noise level sigma."""
    if prediction_type == "flow":
        return x_vp - sigma * model_output
    alpha, s = vp_coefficients(sigma)
    if prediction_type == "epsilon":
        return (x_vp - s * model_output) / alpha
    if prediction_type == "v_prediction":
        return alpha * x_vp - s * model_output
    if prediction_type == "sample":
        return model_output
    raise InputError.said("error.unknown_prediction_type", value=repr(prediction_type),
                          allowed="epsilon, v_prediction, sample, flow")


def inverse_sigma(scheduler, timestep) -> float:
    """The noise level of the sample `DDIMInverseScheduler.step(output, timestep, sample)` starts from:
    one step below `timestep` (the image itself, at the scheduler's initial alpha_bar, before the first)."""
    below = int(timestep) - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    below = min(below, scheduler.config.num_train_timesteps - 1)
    alpha_bar = float(scheduler.alphas_cumprod[below]) if below >= 0 else float(scheduler.initial_alpha_cumprod)
    return math.sqrt((1 - alpha_bar) / alpha_bar)
