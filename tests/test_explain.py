"""The explaining views, computed from real runs: guidance decomposed, the schedule against
diffusers' schedulers, the forward process against diffusers' add_noise, where the picture is
decided, the latent space; and the CLI commands that write them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import sdviz
from sdviz import cli
from sdviz.analysis import schedule
from sdviz.analysis.distance import SETTLED_DISTANCE, distance_to_final, settled_step
from sdviz.analysis.forward import forward_process, img2img_start, latent_space
from sdviz.analysis.guidance import guidance_example
from sdviz.drawing.views import prompt_effect
from sdviz.sampling import noise, schedulers
from sdviz.sampling.previews import Previewer
from sdviz.sampling.settings import Settings

PROMPT = "a large red circle on the left on a blue background"


# --- guidance, decomposed ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ddim", "euler_a", "dpmpp_2m_karras", "heun", "kdpm2", "unipc"])
def test_guided_x0_is_the_two_halves_combined(embedded, name):
    traj = sdviz.generate(embedded, Settings(prompt=PROMPT, scheduler=name, steps=6, guidance=5.0))
    variance_exploding = noise.is_variance_exploding(schedulers.create(name, embedded.scheduler_config))
    for record in traj.steps:
        # the identity holds by construction; each half's x0 by the same formula from its own noise is the test
        np.testing.assert_allclose(record.x0_uncond + 5.0 * (record.x0_cond - record.x0_uncond), record.x0_pred,
                                   rtol=0, atol=1e-4)
        x_vp = record.x_t / np.sqrt(record.sigma ** 2 + 1) if variance_exploding else record.x_t
        for output, x0 in ((record.noise_uncond, record.x0_uncond), (record.noise_cond, record.x0_cond)):
            expected = noise.predict_x0(torch.from_numpy(x_vp), torch.from_numpy(output), record.sigma, "epsilon")
            np.testing.assert_allclose(x0, expected.numpy(), rtol=0, atol=1e-3)
    assert np.abs(traj.steps[0].x0_cond - traj.steps[0].x0_uncond).mean() > 1e-3  # the prompt changes x0


def test_each_half_has_its_x0_for_a_v_prediction_model(tiny_v_model):
    traj = sdviz.generate(tiny_v_model, Settings(prompt=PROMPT, steps=4, guidance=4.0))
    for record in traj.steps:
        for output, x0 in ((record.noise_uncond, record.x0_uncond), (record.noise_cond, record.x0_cond)):
            expected = noise.predict_x0(torch.from_numpy(record.x_t), torch.from_numpy(output), record.sigma,
                                        "v_prediction")
            np.testing.assert_allclose(x0, expected.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(record.x0_uncond + 4.0 * (record.x0_cond - record.x0_uncond), record.x0_pred,
                                   rtol=0, atol=1e-4)


def test_img2img_and_unguided_runs(embedded):
    start = np.zeros((64, 64, 3), np.uint8)
    start[:, :32] = (200, 30, 30)
    traj = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=10, strength=0.6, guidance=3.0), init_image=start)
    assert len(traj.steps) == 6
    for record in traj.steps:
        np.testing.assert_allclose(record.x0_uncond + 3.0 * (record.x0_cond - record.x0_uncond), record.x0_pred,
                                   rtol=0, atol=1e-4)
        expected = noise.predict_x0(torch.from_numpy(record.x_t), torch.from_numpy(record.noise_cond), record.sigma,
                                    "epsilon")
        np.testing.assert_allclose(record.x0_cond, expected.numpy(), rtol=0, atol=1e-3)
    plain = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=3, guidance=1.0))
    assert all(r.x0_uncond is None and r.x0_cond is None for r in plain.steps)
    with pytest.raises(ValueError, match="no guidance"):
        guidance_example(plain.steps[0], 1.0)


def test_guidance_frames_example_and_prompt_effect(embedded):
    settings = Settings(prompt=PROMPT, steps=5, guidance=7.5)
    traj = sdviz.generate(embedded, settings)
    previewer = Previewer(embedded, "full", *traj.shapes["image"][1:])
    record = traj.steps[2]
    uncond, cond = previewer.guidance_frames(record)
    # the halves decode as the guided x0 does: the run's own x0 frame is their guided combination's
    assert uncond.shape == cond.shape == record.x0_image.shape and not np.array_equal(uncond, cond)
    effect, peak = prompt_effect(uncond, cond)
    assert effect.shape == uncond.shape and effect.dtype == np.uint8
    change = (cond.astype(float) - uncond.astype(float)).mean(axis=2)
    brighter = np.unravel_index(change.argmax(), change.shape)
    assert effect[brighter][0] == 255 and effect[brighter][2] < 128  # red where the prompt brightens
    assert peak == pytest.approx(np.abs(change).max() / 255, abs=1e-6)
    example = guidance_example(record, 7.5)
    assert example["formula"] == pytest.approx(example["guided"], abs=1e-4)
    assert abs(example["cond"] - example["uncond"]) == pytest.approx(
        np.abs(record.x0_cond - record.x0_uncond).max(), abs=1e-6)


# --- the schedule -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ddim", "euler", "lms", "dpmpp_2m_karras", "unipc"])
def test_schedule_table_is_diffusers_own(embedded, name):
    table = schedule.schedule_table(name, 12, embedded.scheduler_config)
    reference = schedulers.create(name, embedded.scheduler_config)
    reference.set_timesteps(12)
    assert [r["timestep"] for r in table] == [float(t) for t in reference.timesteps]
    for r in table:
        assert r["alpha_bar"] == pytest.approx(1 / (1 + r["sigma"] ** 2))
        assert r["snr"] == pytest.approx(r["alpha_bar"] / (1 - r["alpha_bar"]), rel=1e-6)
    if hasattr(reference, "sigmas") and name != "unipc":
        np.testing.assert_allclose([r["sigma"] for r in table], reference.sigmas[:12].numpy(), rtol=1e-6)
    else:  # DDIM-like: alpha_bar is the scheduler's alphas_cumprod at the timestep
        np.testing.assert_allclose([r["alpha_bar"] for r in table],
                                   reference.alphas_cumprod[reference.timesteps.long()].numpy(), rtol=1e-5)
    if name == "dpmpp_2m_karras":  # Karras spends more of its steps at low noise than uniform spacing
        uniform = schedule.schedule_table("dpmpp_2m", 12, embedded.scheduler_config)
        assert table[-2]["sigma"] < uniform[-2]["sigma"]


@pytest.mark.parametrize("name", ["heun", "kdpm2", "pndm", "euler_a"])
def test_schedule_table_is_the_runs_schedule(embedded, name):
    table = schedule.schedule_table(name, 5, embedded.scheduler_config)
    traj = sdviz.generate(embedded, Settings(prompt=PROMPT, scheduler=name, steps=5))
    assert len(table) == len(traj.steps)
    assert [r["sigma"] for r in table] == [s.sigma for s in traj.steps]
    assert schedule.trajectory_schedule(traj) == table


# --- the forward process ------------------------------------------------------------------------

def test_forward_process_matches_add_noise_and_alpha_bar(embedded):
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = (230, 40, 40)
    process = forward_process(embedded, image, "ddim", 10, seed=3)
    reference = schedulers.create("ddim", embedded.scheduler_config)
    reference.set_timesteps(10)
    np.testing.assert_array_equal(process.timesteps, reference.timesteps.numpy())
    np.testing.assert_allclose(process.alpha_bar, reference.alphas_cumprod[reference.timesteps].numpy(), rtol=1e-5)
    x0, eps = torch.from_numpy(process.x0)[None], torch.from_numpy(process.noise)[None]
    for k, timestep in enumerate(reference.timesteps):
        noised = reference.add_noise(x0, eps, timestep[None])  # diffusers' q(x_t | x0)
        np.testing.assert_allclose(process.x_t[k], noised[0].numpy(), rtol=0, atol=1e-4)
        # statistics: regressed on x0 and eps, x_t has coefficients sqrt(alpha_bar), sqrt(1 - alpha_bar)
        design = np.stack([process.x0.ravel(), process.noise.ravel()], axis=1)
        coefficients = np.linalg.lstsq(design, process.x_t[k].ravel(), rcond=None)[0]
        np.testing.assert_allclose(coefficients, [np.sqrt(process.alpha_bar[k]), np.sqrt(1 - process.alpha_bar[k])],
                                   atol=1e-4)
    assert process.noise.std() == pytest.approx(1.0, abs=0.1)
    stds = process.x_t.reshape(len(process.x_t), -1).std(axis=1)
    np.testing.assert_allclose(stds, np.sqrt(process.alpha_bar * process.x0.var() + 1 - process.alpha_bar), rtol=0.1)
    assert len(process.frames) == 10 and process.frames[0].shape == (64, 64, 3)
    # the most noised frame is far from the image, the least almost the image
    far, near = (np.abs(f.astype(float) - process.image).mean() for f in (process.frames[0], process.frames[-1]))
    assert far > 3 * near
    assert img2img_start(10, 0.6) == 4 and img2img_start(10, 0.6, order=2) == 8


# --- where the picture is decided -----------------------------------------------------------------

def test_distance_to_final_falls_to_zero_and_is_saved(embedded, tmp_path):
    traj = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=20, every=4))
    previewer = Previewer(embedded, "full", *traj.shapes["image"][1:])
    distances = traj.distance_to_final = distance_to_final(traj, previewer)  # undecoded steps decoded again
    assert len(distances["x0"]) == len(distances["x_t"]) == 20
    assert distances["x_t"][-1] == 0.0 and distances["x0"][-1] < 0.01
    assert distances["x_t"][0] > 0.1 and distances["x0"][0] > SETTLED_DISTANCE
    assert np.array_equal(traj.steps[-1].x_t_image, traj.final_image)  # the full preview's last frame is the image
    settled = settled_step(distances["x0"])
    assert settled is not None and 0 < settled < 19
    assert all(d <= SETTLED_DISTANCE for d in distances["x0"][settled:])
    assert distances["x0"][settled - 1] > SETTLED_DISTANCE
    traj.save(tmp_path)
    saved = json.loads((tmp_path / "trajectory.json").read_text())
    assert [s["distance_to_final"]["x0"] for s in saved["steps"]] == distances["x0"]
    assert sdviz.Trajectory.load(tmp_path).distance_to_final == distances


def test_settled_step_needs_the_distance_to_stay_below():
    assert settled_step([0.3, 0.04, 0.2, 0.04, 0.01]) == 3
    assert settled_step([0.3, 0.2]) is None
    assert settled_step([0.01, 0.0]) == 0


# --- latent space ----------------------------------------------------------------------------------

def test_latent_space_numbers_come_from_the_model(embedded):
    traj = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=10))
    space = latent_space(embedded, traj.final_image)
    facts = embedded.facts
    assert space.latents.shape == facts.latent_shape(facts.native_height, facts.native_width)
    assert space.compression == pytest.approx(3 * facts.vae_factor ** 2 / facts.latent_channels)
    assert space.reconstruction.shape == traj.final_image.shape
    assert space.psnr > 20  # the VAE gives the image back
    noise_image = np.random.default_rng(0).integers(0, 256, traj.final_image.shape, dtype=np.uint8)
    assert latent_space(embedded, noise_image).psnr < space.psnr  # noise is what a VAE cannot keep


# --- the command line -------------------------------------------------------------------------------

def test_cli_render_writes_the_guidance_halves_and_the_distances(tmp_path, embedded):
    assert cli.main(["render", "--model", embedded.source, "--prompt", PROMPT, "--steps", "6", "--every", "2",
                     "--out", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    latents = np.load(run / "latents.npz")
    traj = sdviz.Trajectory.load(run)
    np.testing.assert_array_equal(latents["x0_cond"], np.stack([s.x0_cond for s in traj.steps]))
    previewer = Previewer(embedded, "full", *traj.shapes["image"][1:])
    for step in traj.decoded_steps():
        uncond, cond = previewer.guidance_frames(step)
        np.testing.assert_array_equal(np.asarray(Image.open(run / "x0_uncond" / f"{step.index:03d}.png")), uncond)
        np.testing.assert_array_equal(np.asarray(Image.open(run / "x0_cond" / f"{step.index:03d}.png")), cond)
    assert sorted(p.name for p in (run / "x0_cond").iterdir()) == ["001.png", "003.png", "005.png"]
    assert len(traj.distance_to_final["x0"]) == 6 and traj.distance_to_final["x_t"][-1] == 0.0


def test_cli_forward_and_schedule(tmp_path, embedded, capsys):
    """In process (the command line's `main`), as `python -m sdviz` calls it: no interpreter start per command."""
    image = tmp_path / "in.png"
    Image.fromarray(np.full((64, 64, 3), (20, 90, 200), np.uint8)).save(image)
    assert cli.main(["forward", "--image", str(image), "--steps", "8", "--scheduler", "euler", "--seed", "2",
                     "--out", str(tmp_path / "fwd")]) == 0
    saved = np.load(tmp_path / "fwd" / "forward.npz")
    table = schedule.schedule_table("euler", 8, embedded.scheduler_config)
    np.testing.assert_array_equal(saved["timesteps"], [r["timestep"] for r in table])
    np.testing.assert_allclose(saved["x_t"], np.sqrt(saved["alpha_bar"])[:, None, None, None] * saved["x0"]
                               + np.sqrt(1 - saved["alpha_bar"])[:, None, None, None] * saved["noise"], atol=1e-5)
    assert len(list((tmp_path / "fwd" / "forward").glob("*.png"))) == 8

    capsys.readouterr()
    assert cli.main(["schedule", "--scheduler", "dpmpp_2m_karras", "--steps", "7", "--json"]) == 0
    listed = capsys.readouterr().out
    assert json.loads(listed) == schedule.schedule_table("dpmpp_2m_karras", 7, embedded.scheduler_config)
    assert cli.main(["schedule", "--steps", "7", "--out", str(tmp_path / "schedule.png")]) == 0
    assert Image.open(tmp_path / "schedule.png").size == (720, 420)


@pytest.mark.parametrize("args, message", [
    (("schedule", "--scheduler", "karras9"), "unknown scheduler 'karras9'"),
    (("schedule", "--steps", "0"), "steps 0"),
    (("forward", "--image", "missing.png", "--out", "x"), "image 'missing.png' does not exist"),
    (("forward", "--image", "missing.png", "--preview", "blurry", "--out", "x"), "preview 'blurry'"),
])
def test_cli_explain_commands_refuse_bad_input(tmp_path, args, message, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(list(args)) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
