"""Watching must not change the result: sdviz's final image equals diffusers' pipelines'.

For every registered scheduler, txt2img against StableDiffusionPipeline and
img2img against StableDiffusionImg2ImgPipeline, same model, prompt, negative
prompt, steps, guidance, eta and seed: final latents bit-for-bit, images
within 1/255 per pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image

import sdviz
from sdviz.sampling import schedulers
from training import scenes

NAMES = schedulers.for_family("sd")
PROMPT = "a large red circle on the left on a blue background"
NEGATIVE = "a green square"


def reference(model, pipeline_class, name, **kwargs):
    pipe = model.pipeline(schedulers.create(name, model.scheduler_config), pipeline_class)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe(output_type="latent", generator=torch.Generator().manual_seed(kwargs.pop("seed")), **kwargs).images
    image = np.asarray(pipe.image_processor.postprocess(
        model.vae.decode(latents / model.vae.config.scaling_factor).sample, output_type="pil")[0])
    return latents[0].numpy(), image


def assert_same(traj, ref_latents, ref_image):
    np.testing.assert_array_equal(traj.steps[-1].x_next, ref_latents)
    difference = np.abs(traj.final_image.astype(int) - ref_image.astype(int))
    assert difference.max() <= 1, f"max pixel difference {difference.max()}"


@pytest.mark.parametrize("name", NAMES)
def test_txt2img_matches_pipeline(embedded, name):
    eta = 0.5 if name == "ddim" else 0.0
    settings = sdviz.Settings(prompt=PROMPT, negative_prompt=NEGATIVE, scheduler=name, steps=9, guidance=6.0,
                              eta=eta, seed=11)
    traj = sdviz.generate(embedded, settings)
    assert traj.complete
    latents, image = reference(embedded, StableDiffusionPipeline, name, prompt=PROMPT, negative_prompt=NEGATIVE,
                               num_inference_steps=9, guidance_scale=6.0, eta=eta, seed=11)
    assert_same(traj, latents, image)


@pytest.fixture(scope="module")
def init_image():
    scene = scenes.make_scene(("yellow", "square", "large", "center", "purple"), np.random.default_rng(0))
    return Image.fromarray(scenes.render(scene)[0])


@pytest.mark.parametrize("name", NAMES)
def test_img2img_matches_pipeline(embedded, init_image, name):
    settings = sdviz.Settings(prompt=PROMPT, negative_prompt=NEGATIVE, scheduler=name, steps=10, guidance=7.5,
                              seed=5, strength=0.6)
    traj = sdviz.generate(embedded, settings, init_image=init_image)
    latents, image = reference(embedded, StableDiffusionImg2ImgPipeline, name, prompt=PROMPT,
                               negative_prompt=NEGATIVE, image=init_image, strength=0.6,
                               num_inference_steps=10, guidance_scale=7.5, seed=5)
    assert_same(traj, latents, image)
    # strength 0.6 of 10 steps skips the first 4 steps (4 * order entries of the timesteps)
    scheduler = schedulers.create(name, embedded.scheduler_config)
    scheduler.set_timesteps(10)
    assert len(traj.steps) == len(scheduler.timesteps) - 4 * scheduler.order


@pytest.mark.parametrize("name", ["ddim", "euler", "dpmpp_2m"])
def test_unguided_run_matches_pipeline(embedded, name):
    """guidance <= 1 runs the UNet once per step (no negative prompt), as the pipeline does."""
    traj = sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, scheduler=name, steps=6, guidance=1.0, seed=2))
    assert traj.steps[0].noise_uncond is None
    latents, image = reference(embedded, StableDiffusionPipeline, name, prompt=PROMPT, num_inference_steps=6,
                               guidance_scale=1.0, seed=2)
    assert_same(traj, latents, image)


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "dpmpp_2m", "unipc"])
def test_v_prediction_model_matches_pipeline(tiny_v_model, name):
    traj = sdviz.generate(tiny_v_model, sdviz.Settings(prompt="a red circle", scheduler=name, steps=5, seed=4))
    latents, image = reference(tiny_v_model, StableDiffusionPipeline, name, prompt="a red circle",
                               num_inference_steps=5, guidance_scale=7.5, seed=4)
    assert_same(traj, latents, image)


def test_guidance_combines_the_two_predictions(embedded):
    traj = sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=4, guidance=3.0))
    step = traj.steps[1]
    expected = step.noise_uncond + 3.0 * (step.noise_cond - step.noise_uncond)
    np.testing.assert_allclose(step.noise_pred, expected, rtol=1e-5, atol=1e-5)
