"""The embedded shapes model: SD 1.x-family format, size, the data it learned, and what it draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sdviz.sampling.attention import layer_table
from sdviz.sampling.models import PICKLE_SUFFIXES, SHAPES_MODEL
from training import scenes
from training.evaluate import ATTRIBUTES, ddim_pipeline, generate, held_out_pairs, score_images, vae_psnr

ROOT = Path(__file__).resolve().parent.parent
BARS = {"colour": 0.9, "shape": 0.8, "position": 0.8, "background": 0.9}


@pytest.fixture(scope="module")
def pipe():
    return ddim_pipeline(str(SHAPES_MODEL))


def test_loads_unchanged_as_a_stable_diffusion_pipeline():
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    pipe = StableDiffusionPipeline.from_pretrained(SHAPES_MODEL)
    assert isinstance(pipe.tokenizer, CLIPTokenizer) and isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.unet, UNet2DConditionModel) and isinstance(pipe.vae, AutoencoderKL)
    assert pipe.safety_checker is None
    assert pipe.vae.config.latent_channels == 4 and pipe.unet.config.in_channels == 4
    assert pipe.unet.config.sample_size >= 16 and pipe.unet.config.sample_size * pipe.vae_scale_factor >= 64
    config = pipe.scheduler.config
    assert (config.beta_schedule, config.beta_start, config.beta_end, config.num_train_timesteps,
            config.prediction_type, config.steps_offset) == ("scaled_linear", 0.00085, 0.012, 1000, "epsilon", 1)


def test_the_real_clip_vocabulary():
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(SHAPES_MODEL / "tokenizer")
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert tokenizer("a photo of an astronaut riding a horse").input_ids == [
        49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]


def test_cross_attention_at_two_or_more_resolutions(pipe):
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    table = layer_table(pipe.unet, size, size, vae_factor=pipe.vae_scale_factor)
    assert len({row["resolution"] for row in table if row["kind"] == "cross"}) >= 2


def test_shipped_as_safetensors_within_30_mb():
    files = [p for p in SHAPES_MODEL.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {"unet", "vae", "text_encoder"}
    assert sum(p.stat().st_size for p in files) <= 30 * 2**20


def test_model_card_reports_the_evaluation():
    card = (SHAPES_MODEL / "README.md").read_text()
    report = json.loads((SHAPES_MODEL / "eval.json").read_text())
    assert report["pairs"] == 200 and report["daam_prompts"] == 50
    for attribute in ATTRIBUTES:
        assert f"{report['accuracy'][attribute] * 100:.1f} %" in card
    assert report["vae_psnr_db"] >= 28 and f"{report['vae_psnr_db']:.1f} dB" in card
    assert f"{report['daam_miou']:.3f}" in card  # its bar: tests/test_attention.py
    training = json.loads((SHAPES_MODEL / "training_log.json").read_text())
    assert training["wall_seconds"]["total"] <= 90 * 60
    assert f"{training['wall_seconds']['total'] / 60:.1f} min" in card


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_evaluation_meets_the_bar(attribute):
    """The 200-pair figure the card reports."""
    report = json.loads((SHAPES_MODEL / "eval.json").read_text())
    assert report["accuracy"][attribute] >= BARS[attribute], report["accuracy"]


@pytest.fixture(scope="module")
def subset_results(pipe):
    """A fixed 40-pair subset of the 200 held-out pairs, scored by the analyser as the card's figures are."""
    pairs = held_out_pairs(40)
    return score_images(pairs, generate(pipe, pairs))


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_draws_what_held_out_prompts_ask_for(subset_results, attribute):
    assert np.mean(subset_results[attribute]) >= BARS[attribute], np.mean(subset_results[attribute])


def test_vae_reconstructs_held_out_scenes(pipe):
    assert vae_psnr(pipe, count=32) >= 28


# --- the data -------------------------------------------------------------------------


def test_analyser_reads_rendered_scenes_exactly():
    rng = np.random.default_rng(3)
    for _ in range(200):
        scene = scenes.sample_scene(rng)
        image, mask = scenes.render(scene)
        analysis = scenes.analyse(image)
        stated = {"colour": scene.colour, "shape": scene.shape, "size": scene.size,
                  "position": scene.position, "background": scene.background}
        assert all(analysis.matches(stated).values()), (scene, analysis)
        assert scenes.iou(analysis.mask, mask > 0.5) >= 0.75  # small anti-aliased triangles: ~0.8


def test_prompts_parse_back_into_their_attributes():
    scene = scenes.make_scene(("purple", "triangle", "small", "bottom", "white"), np.random.default_rng(0))
    text = scenes.caption(scene).text
    assert text == "a small purple triangle at the bottom on a white background"
    assert scenes.parse_prompt(text) == {"colour": "purple", "shape": "triangle", "size": "small",
                                         "position": "bottom", "background": "white"}
    assert scenes.parse_prompt("a red circle") == {"colour": "red", "shape": "circle"}


def test_held_out_combinations_never_reach_training():
    rng = np.random.default_rng(0)
    assert not any(scenes.is_held_out(scenes.sample_scene(rng).combo) for _ in range(2000))
    pairs = held_out_pairs(200)
    assert len({pair.seed for pair in pairs}) == 200
    for pair in pairs:
        assert scenes.is_held_out(pair.combo)
        stated = scenes.parse_prompt(pair.prompt)
        assert all(stated[key] == value
                   for key, value in zip(("colour", "shape", "size", "position", "background"), pair.combo)
                   if key in stated)


def test_training_hides_the_scene_where_sampling_starts():
    """From `terminal_t` up the UNet learns from pure noise (so it must take the layout from
    the prompt), with the target that still leads to the scene; every scheduler's first step
    at 10 or more steps falls in that range."""
    from diffusers import DDPMScheduler

    from sdviz.sampling import schedulers
    from training.train import SD1_SCHEDULER, Config, noised

    schedule = DDPMScheduler.from_config(SD1_SCHEDULER)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 8, 4, 16, 16, generator=generator)
    timesteps = torch.linspace(0, 999, 8).long()
    x_t, target = noised(x0, noise, timesteps, schedule.alphas_cumprod, Config.terminal_t)
    blind = timesteps >= Config.terminal_t
    assert blind.any() and not blind.all()
    torch.testing.assert_close(x_t[~blind], schedule.add_noise(x0, noise, timesteps)[~blind])
    torch.testing.assert_close(target[~blind], noise[~blind])
    assert torch.equal(x_t[blind], noise[blind])
    alpha = schedule.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    x0_from_target = (x_t - (1 - alpha).sqrt() * target) / alpha.sqrt()
    torch.testing.assert_close(x0_from_target[blind], x0[blind], atol=1e-4, rtol=1e-4)
    config = json.loads((SHAPES_MODEL / "scheduler" / "scheduler_config.json").read_text())
    for name in schedulers.for_family("sd"):
        for steps in (10, 20, 50):
            scheduler = schedulers.create(name, config)
            scheduler.set_timesteps(steps)
            assert scheduler.timesteps[0] >= Config.terminal_t, (name, steps, scheduler.timesteps[0])


@pytest.mark.slow
def test_training_script_runs_end_to_end(tmp_path):
    """The committed script, with a few steps of each phase, writes a pipeline diffusers loads."""
    from diffusers import StableDiffusionPipeline

    out = tmp_path / "model"
    (out / "tokenizer").mkdir(parents=True)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (out / "tokenizer" / name).write_bytes((SHAPES_MODEL / "tokenizer" / name).read_bytes())
    from training.train import main  # `python -m training.train ARGS` run in this process

    main(["--out", str(out), "--vae-steps", "2", "--unet-steps", "2", "--pool", "64", "--vae-eval", "16"])
    pipe = StableDiffusionPipeline.from_pretrained(out)
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                 output_type="np").images[0]
    assert image.shape == (64, 64, 3)
    assert pipe.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]  # CLIP's own ids
    assert sorted(p.name for p in (out / "tokenizer").iterdir()) == ["merges.txt", "special_tokens_map.json",
                                                                     "tokenizer_config.json", "vocab.json"]
    log = json.loads((out / "training_log.json").read_text())
    assert log["config"]["unet_steps"] == 2 and "vae held-out PSNR" in " ".join(log["log"])
