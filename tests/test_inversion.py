"""DDIM inversion, traced: every step equals diffusers' own inversion (StableDiffusionDiffEditPipeline.invert
with DDIMInverseScheduler), the reconstruction equals StableDiffusionPipeline started from the inverted noise,
and without guidance the image comes back within a stated PSNR."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from diffusers import DDIMInverseScheduler, StableDiffusionDiffEditPipeline, StableDiffusionPipeline
from PIL import Image

import sdviz
from sdviz.analysis.metrics import psnr
from sdviz.sampling import noise, schedulers
from sdviz.workflows.invert import invert
from training import scenes

PROMPT = "a large yellow square in the center on a purple background"
STEPS = 12
RECONSTRUCTION_PSNR = 30.0  # dB, without guidance, on the embedded model (the VAE's own round trip: 32)


@pytest.fixture(scope="module")
def image():
    """What PROMPT says, drawn by the embedded model's scene renderer: a real image, not the model's own."""
    return Image.fromarray(scenes.render(scenes.make_scene(("yellow", "square", "large", "center", "purple"),
                                                           np.random.default_rng(0)))[0])


@pytest.fixture(scope="module")
def unguided(embedded, image):
    return invert(embedded, sdviz.Settings(prompt=PROMPT, steps=STEPS, guidance=1.0, seed=2), image)


def references(model, image, guidance: float, seed: int):
    """diffusers' inversion (every step's latents, noise last) and DDIM run forward from its noise."""
    ddim = schedulers.create("ddim", model.scheduler_config)
    inverse = DDIMInverseScheduler.from_config(model.scheduler_config)
    pipe = model.pipeline(ddim, StableDiffusionDiffEditPipeline, inverse_scheduler=inverse)
    pipe.set_progress_bar_config(disable=True)
    latents = pipe.invert(prompt=PROMPT, image=image, num_inference_steps=STEPS, inpaint_strength=1.0,
                          guidance_scale=guidance, generator=torch.Generator().manual_seed(seed)).latents[0]
    forward = model.pipeline(schedulers.create("ddim", model.scheduler_config), StableDiffusionPipeline)
    forward.set_progress_bar_config(disable=True)
    out = forward(PROMPT, num_inference_steps=STEPS, guidance_scale=guidance, latents=latents[:1],
                  output_type="np").images[0]
    return latents.numpy()[::-1], (out * 255).round().astype(np.uint8)


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_inversion_and_reconstruction_equal_diffusers(embedded, image, unguided, guidance):
    result = unguided if guidance == 1.0 else invert(
        embedded, sdviz.Settings(prompt=PROMPT, steps=STEPS, guidance=guidance, seed=2), image)
    inverted, reconstructed = references(embedded, Image.fromarray(result.image), guidance, seed=2)
    steps = result.inversion.steps
    assert len(steps) == STEPS
    np.testing.assert_array_equal(np.stack([s.x_next for s in steps]), inverted)  # every step, bit for bit
    np.testing.assert_array_equal(result.reconstruction.final_image, reconstructed)
    assert [s.timestep for s in steps] == sorted(s.timestep for s in steps)  # up: towards noise
    assert result.reconstruction.settings.scheduler == "ddim" and result.inversion.settings.invert
    # each step's x0 is the inverse step's own prediction; its noise level is the sample's, one step down
    sigmas = [s.sigma for s in steps]
    assert sigmas == sorted(sigmas) and sigmas[0] < 0.1 < 5 < sigmas[-1]
    for record in steps:  # the record's sigma is the one the inverse step's x0 used (so the halves' x0 hold)
        x0 = noise.predict_x0(torch.from_numpy(record.x_t), torch.from_numpy(record.noise_pred),
                              record.sigma, "epsilon")
        np.testing.assert_allclose(x0.numpy(), record.x0_pred, atol=1e-4)


def test_unguided_reconstruction_returns_the_image(unguided):
    assert unguided.psnr >= RECONSTRUCTION_PSNR
    assert unguided.psnr > unguided.vae_psnr - 2  # the inversion loses little beyond the VAE's own round trip
    assert 0.8 < unguided.noise_std < 1.2  # it reached noise of about a run's starting spread
    first, last = unguided.inversion.steps[0], unguided.inversion.steps[-1]
    assert np.abs(first.x0_pred - unguided.inversion.x_start).mean() < 0.1  # low noise: x0 is the image
    assert psnr(unguided.image, unguided.image) == float("inf")
    assert last.x_t_image is not None and unguided.reconstruction.final_image.shape == unguided.image.shape


def test_the_cli_writes_both_runs_and_the_error(tmp_path, image):
    from sdviz.cli import main

    image.save(tmp_path / "source.png")
    out = tmp_path / "inv"
    assert main(["invert", "--image", str(tmp_path / "source.png"), "--prompt", PROMPT, "--steps", "6",
                 "--sweep", "1,7.5", "--out", str(out)]) == 0
    error = json.loads((out / "error.json").read_text())
    assert error["guidance"] == 1.0 and error["psnr_db"] > 20 and len(error["guidance_sweep"]) == 2
    assert [row["guidance"] for row in error["guidance_sweep"]] == [1.0, 7.5]
    for name in ("inversion", "reconstruction"):
        loaded = sdviz.Trajectory.load(out / name)
        assert len(loaded.steps) == 6 and (out / name / "final.png").exists()
    assert sdviz.Trajectory.load(out / "inversion").settings.invert is True
    assert Image.open(out / "round_trip.png").height > 2 * image.height


@pytest.mark.parametrize("change,message", [
    (dict(scheduler="euler"), "scheduler 'euler' cannot invert"),
    (dict(eta=0.5), "eta 0.5 cannot invert"),
    (dict(source_prompt="a cat"), "invert or edit, not both"),
    (dict(invert="yes"), "invert 'yes' is not true or false"),
])
def test_bad_inversions_are_refused(embedded, image, change, message):
    from sdviz.sampling.sampler import Run

    settings = sdviz.Settings(prompt=PROMPT, steps=4, **{"invert": True, **change})
    with pytest.raises(ValueError, match=message):
        Run(embedded, settings, init_image=image)


def test_an_inversion_needs_an_image_and_start_latents_must_fit(embedded):
    from sdviz.sampling.sampler import Run

    with pytest.raises(ValueError, match="invert with an init image"):
        Run(embedded, sdviz.Settings(prompt=PROMPT, invert=True))
    facts = embedded.facts
    shape = tuple(facts.latent_shape(facts.native_height, facts.native_width))
    with pytest.raises(ValueError, match=re.escape(f"allowed: an array of shape {shape}")):
        Run(embedded, sdviz.Settings(prompt=PROMPT), start_latents=np.zeros((shape[0], 1, 1), np.float32))


def stream_invert(runner, image_path, stop_signal=None, on_update=None, steps=STEPS, guidance=1.0):
    import asyncio

    async def follow():
        updates = []
        async for update in runner.stream_invert(stop_signal, prompt=PROMPT, steps=steps, guidance=guidance,
                                                   seed=2, init_image=str(image_path)):
            updates.append(update)
            if on_update is not None:
                on_update(update)
        return updates

    return asyncio.run(follow())


def test_the_page_streams_the_inversion_then_the_reconstruction(runner, embedded, image, unguided, tmp_path):
    """The Edit tab's Invert: both runs stream into the live panels; the session ends with the reconstruction
    (the inversion beside it), each equal to the core's. A Stop during the inversion ends both."""
    from ui.session import StopSignal
    from ui.tabs.run import TRAJECTORY

    image.save(tmp_path / "image.png")
    updates = stream_invert(runner, tmp_path / "image.png", StopSignal())  # armed, as the page arms every run
    phases = [update[TRAJECTORY + 1] is not None for update in updates]
    assert phases[0] is False and phases[-1] is True and phases == sorted(phases)  # inversion first, then back
    reconstruction, inversion = updates[-1][TRAJECTORY], updates[-1][TRAJECTORY + 1]
    assert inversion.settings.invert and inversion.complete and reconstruction.complete
    np.testing.assert_array_equal(inversion.steps[-1].x_next, unguided.inversion.steps[-1].x_next)
    np.testing.assert_array_equal(reconstruction.final_image, unguided.reconstruction.final_image)

    signal = StopSignal()

    def stop_midway(update):
        if update[TRAJECTORY] is not None and len(update[TRAJECTORY].steps) >= 3:
            signal.event.set()

    stopped = stream_invert(runner, tmp_path / "image.png", signal, stop_midway)
    assert all(update[TRAJECTORY + 1] is None for update in stopped)  # no reconstruction after a Stop
    assert not stopped[-1][TRAJECTORY].complete and len(stopped[-1][TRAJECTORY].steps) < STEPS


def test_the_round_trip_sheet_pairs_each_noise_level(embedded, unguided):
    from sdviz.drawing.sheets import round_trip_sheet

    sheet = round_trip_sheet(unguided.inversion, unguided.reconstruction, unguided.previewers, columns=4)
    side = unguided.image.shape[0]
    assert sheet.width > 5 * side and sheet.height > 2 * side  # the image and 4 levels, two rows
    with pytest.raises(ValueError, match="the reconstruction has 2 steps and the inversion 12"):
        round_trip_sheet(unguided.inversion, sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=2)),
                         unguided.previewers)


def test_a_reconstruction_forks_from_its_own_start(embedded, unguided):
    """A reconstruction started from the inverted noise, not the seed's: its fork replays it from there (with
    another prompt after step 4), while an inversion and an edit refuse to be forked."""
    from sdviz.sampling.fork import Fork, fork_settings

    parent = unguided.reconstruction
    assert parent.settings.start_latents is True
    fork = sdviz.generate(embedded, fork_settings(parent, prompt="a small red circle at the top"),
                          fork=Fork(parent, 4))
    np.testing.assert_array_equal(fork.x_start, parent.x_start)
    for mine, theirs in zip(fork.steps[:4], parent.steps[:4]):
        np.testing.assert_array_equal(mine.x_next, theirs.x_next)
    assert not np.array_equal(fork.steps[-1].x_next, parent.steps[-1].x_next)
    with pytest.raises(ValueError, match="an inversion cannot be forked"):
        sdviz.generate(embedded, fork_settings(unguided.inversion), fork=Fork(unguided.inversion, 2))


def test_both_directions_keep_their_attention(embedded, image):
    from sdviz.sampling.attention import AttentionCapture

    captures = AttentionCapture(embedded), AttentionCapture(embedded)
    result = invert(embedded, sdviz.Settings(prompt=PROMPT, steps=4, guidance=3.0), image, *captures)
    for traj in (result.inversion, result.reconstruction):
        maps = traj.attention
        assert maps.steps == [0, 1, 2, 3]
        assert [maps.tokens[i].replace("</w>", "") for i in maps.word_slots()] == PROMPT.split()
    square = result.inversion.attention.word_heat_map("square")
    h, w = square.shape
    assert square[h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean() > square.mean()  # the centre, where it is
