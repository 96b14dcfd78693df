"""x0 is right for every scheduler: against the schedulers' own x0 where they expose it,
and against the forward process where they do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sdviz
from sdviz.sampling import noise, schedulers

# step() returns pred_original_sample for these; the others keep x0 inside (or not at all).
RETURNS_X0 = ["ddim", "ddpm", "lms", "euler", "euler_a", "heun", "kdpm2"]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sigma", [0.05, 1.0, 14.6])
def test_predict_x0_inverts_the_forward_process(prediction_type, sigma):
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=generator)
    alpha, s = noise.vp_coefficients(sigma)
    x_t = alpha * x0 + s * eps
    output = eps if prediction_type == "epsilon" else alpha * eps - s * x0  # v = alpha * eps - s * x0
    torch.testing.assert_close(noise.predict_x0(x_t, output, sigma, prediction_type), x0, rtol=1e-4, atol=1e-4)


def test_predict_x0_refuses_unknown_parameterisation():
    with pytest.raises(ValueError, match="prediction_type 'edm'"):
        noise.predict_x0(torch.zeros(1), torch.zeros(1), 1.0, "edm")


def test_flow_matching_x0_inverts_the_interpolation():
    """x_t = (1 - sigma) x0 + sigma eps and v = eps - x0 give back x0, and the slope is d x0 / d v."""
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=generator)
    sigma = 0.7
    x_t, v = (1 - sigma) * x0 + sigma * eps, eps - x0
    torch.testing.assert_close(noise.predict_x0(x_t, v, sigma, "flow"), x0, rtol=1e-5, atol=1e-5)
    assert noise.x0_slope(sigma, "flow") == -sigma


def scheduler_x0(model, name, settings):
    """Re-runs the loop with the scheduler's own pred_original_sample captured at each step."""
    traj = sdviz.generate(model, settings)
    scheduler = schedulers.create(name, model.scheduler_config)
    scheduler.set_timesteps(settings.steps)
    own = []
    generator = torch.Generator().manual_seed(settings.seed)
    for record in traj.steps:
        t = scheduler.timesteps[record.index]
        scheduler.scale_model_input(torch.from_numpy(record.x_t)[None], t)
        kwargs = {"generator": generator} if name in ("ddpm", "euler_a") else {}
        out = scheduler.step(torch.from_numpy(record.noise_pred)[None], t, torch.from_numpy(record.x_t)[None], **kwargs)
        own.append(out.pred_original_sample[0].numpy())
    return traj, own


@pytest.mark.parametrize("name", RETURNS_X0)
def test_x0_matches_the_schedulers_own(embedded, name):
    settings = sdviz.Settings(prompt="a blue square at the top", scheduler=name, steps=6, seed=1)
    traj, own = scheduler_x0(embedded, name, settings)
    for record, theirs in zip(traj.steps, own):
        np.testing.assert_allclose(record.x0_pred, theirs, rtol=1e-3, atol=2e-3, err_msg=f"step {record.index}")


@pytest.mark.parametrize("name", ["ddim", "euler", "heun"])
def test_x0_matches_the_schedulers_own_for_v_prediction(tiny_v_model, name):
    settings = sdviz.Settings(prompt="a red circle", scheduler=name, steps=5, seed=3)
    traj, own = scheduler_x0(tiny_v_model, name, settings)
    for record, theirs in zip(traj.steps, own):
        np.testing.assert_allclose(record.x0_pred, theirs, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("name", ["dpmpp_2m", "dpmpp_2m_karras", "unipc"])
def test_x0_matches_the_multistep_solvers_internal_x0(embedded, name):
    """DPM-Solver++ and UniPC (predict_x0) keep the converted x0 in model_outputs; step() returns none."""
    settings = sdviz.Settings(prompt="a green triangle", scheduler=name, steps=6, seed=2)
    traj = sdviz.generate(embedded, settings)
    scheduler = schedulers.create(name, embedded.scheduler_config)
    scheduler.set_timesteps(settings.steps)
    for record in traj.steps:
        t = scheduler.timesteps[record.index]
        out = scheduler.step(torch.from_numpy(record.noise_pred)[None], t, torch.from_numpy(record.x_t)[None])
        assert not hasattr(out, "pred_original_sample")
        np.testing.assert_allclose(record.x0_pred, scheduler.model_outputs[-1][0].numpy(), rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("name", schedulers.for_family("sd"))
def test_x0_reaches_the_final_latents(embedded, name):
    """At the last step x_t has (almost) no noise left, so x0 must be the final latents, for every scheduler,
    PNDM and DEIS (no x0 anywhere in diffusers) included; and it must improve along the run."""
    traj = sdviz.generate(embedded, sdviz.Settings(prompt="a white circle on a black background", scheduler=name,
                                                   steps=12, seed=7))
    final = traj.steps[-1].x_next
    scale = float(np.abs(final).mean())
    errors = [float(np.abs(r.x0_pred - final).mean()) / scale for r in traj.steps]
    assert errors[-1] < 0.05, errors
    assert errors[-1] < errors[0]


def test_sigma_of_each_step_is_the_noise_level_the_unet_sees(embedded):
    """For Euler (VE) the UNet input is x_t / sqrt(sigma^2 + 1): check the recorded sigma reproduces it."""
    traj = sdviz.generate(embedded, sdviz.Settings(prompt="a red square", scheduler="euler", steps=5))
    scheduler = schedulers.create("euler", embedded.scheduler_config)
    scheduler.set_timesteps(5)
    for record, sigma in zip(traj.steps, scheduler.sigmas):
        assert record.sigma == pytest.approx(float(sigma), rel=1e-6)
