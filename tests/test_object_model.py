"""The embedded object model, the app's default: its format, its card and what it draws, read back by the
analyser of `training.objects` on held-out prompts (a subset of `training.evaluate_objects`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import sdviz
from sdviz.sampling.models import EMBEDDED_MODEL, PICKLE_SUFFIXES, card_examples, default_model
from training import evaluate_objects, objects

SUBSET = 24  # held-out pairs, half with one object and half with two: the first of the card's 200


@pytest.fixture(scope="module")
def pipe():
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(EMBEDDED_MODEL)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def model():
    return sdviz.load_model(str(EMBEDDED_MODEL))


def test_it_is_the_default_and_a_stable_diffusion_1_pipeline(pipe, monkeypatch):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    monkeypatch.delenv("SDVIZ_MODEL", raising=False)
    assert default_model() == str(EMBEDDED_MODEL)
    assert isinstance(pipe.tokenizer, CLIPTokenizer) and len(pipe.tokenizer) == 49408
    assert isinstance(pipe.text_encoder, CLIPTextModel) and isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.vae, AutoencoderKL) and pipe.safety_checker is None
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor >= 64
    config = pipe.scheduler.config
    assert (config.beta_schedule, config.beta_start, config.beta_end, config.num_train_timesteps,
            config.prediction_type) == ("scaled_linear", 0.00085, 0.012, 1000, "epsilon")


def test_shipped_as_safetensors_within_60_mb_with_its_grammar():
    files = [p for p in EMBEDDED_MODEL.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {"unet", "vae", "text_encoder"}
    assert sum(p.stat().st_size for p in files) <= 60 * 2**20
    scenes = json.loads((EMBEDDED_MODEL / "scenes.json").read_text())
    assert scenes == json.loads(json.dumps(objects.scenes_json()))  # the vocabularies it was trained on
    assert len(scenes["objects"]) >= 100 and all(len(rgb) == 3 for rgb in scenes["colours"].values())


def test_the_card_reports_the_200_pair_evaluation_and_its_examples_are_its_grammar():
    card = (EMBEDDED_MODEL / "README.md").read_text()
    report = json.loads((EMBEDDED_MODEL / "eval.json").read_text())
    assert report["pairs"] == 200
    for key, rate in report["rates"].items():
        assert (f"**{rate:.3f}**" if key == "daam iou" else f"**{rate * 100:.1f} %**") in card, key
    training = json.loads((EMBEDDED_MODEL / "training_log.json").read_text())
    step, steps = training["unet_step"], training["config"]["unet_steps"]
    assert step == steps or f"the EMA's at UNet step {step} of the {steps}" in card  # where the weights were taken
    examples = card_examples(str(EMBEDDED_MODEL))
    stated = [objects.parse_prompt(text)["objects"] for text in examples]
    assert len(examples) >= 4 and all(stated)
    assert any(len(placed) == 2 for placed in stated)  # the Attention tab's point: two words, two places


@pytest.mark.parametrize("measure", list(evaluate_objects.BARS))
def test_the_evaluation_meets_its_bar(measure):
    report = json.loads((EMBEDDED_MODEL / "eval.json").read_text())
    assert report["rates"][measure] >= evaluate_objects.BARS[measure], report["rates"]


@pytest.fixture(scope="module")
def subset(pipe, model):
    pairs = evaluate_objects.held_out_prompts(200)[:SUBSET]
    with torch.no_grad():
        results = evaluate_objects.score(pairs, evaluate_objects.generate(pipe, pairs))
        results.update(evaluate_objects.daam(model, pairs[1::2][:SUBSET // 4]))
    return results


@pytest.mark.parametrize("measure", list(evaluate_objects.BARS))
def test_draws_what_held_out_prompts_ask_for(subset, measure):
    """The bars on a subset of the held-out pairs, through diffusers' pipeline (DAAM through sdviz)."""
    assert subset[measure] and np.mean(subset[measure]) >= evaluate_objects.BARS[measure], subset[measure]


def test_the_first_click_draws_both_objects_each_on_its_side(model):
    """The page opens on the card's first example, two objects: sdviz's run of it draws both, each where
    the words say, and each word's attention lands on its own object."""
    from sdviz.sampling.attention import DAAM_THRESHOLD, AttentionCapture

    prompt = card_examples(str(EMBEDDED_MODEL))[0]
    stated = objects.parse_prompt(prompt)
    assert len(stated["objects"]) == 2
    traj = sdviz.generate(model, sdviz.Settings(prompt=prompt, preview="approx"), capture=AttentionCapture(model))
    assert objects.scores(traj.final_image, prompt)["both objects"]
    found = objects.analyse(traj.final_image, stated)["found"]
    for (name, _), mine, other in zip(stated["objects"], found, found[::-1]):
        segment = traj.attention.word_heat_map(name) >= DAAM_THRESHOLD
        assert (segment & mine.mask).sum() > (segment & other.mask).sum(), name
