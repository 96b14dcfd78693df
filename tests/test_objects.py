"""The object scenes (issue: a default model that draws things): the atlas, the grammar, the held-out split,
the analyser read back on rendered scenes, and the training script resumed step by step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import ROOT
from training import objects


def test_the_atlas_holds_single_token_objects_with_their_licence(embedded):
    names, tiles = objects.atlas()
    assert len(names) >= 150 and len(set(names)) == len(names)
    assert tiles.shape[1:] == (tiles.shape[1], tiles.shape[1], 4) and tiles[..., 3].max() == 1
    assert all(len(embedded.tokenizer.tokenize(name)) == 1 for name in names)  # one CLIP token each
    assert "MIT License" in (objects.ATLAS / "LICENSE").read_text()
    assert all(objects.backgrounds_for()[name] for name in names)  # every object stands out somewhere


@pytest.mark.parametrize("side", [64, 128])
def test_the_analyser_reads_rendered_scenes_back(side):
    rng = np.random.default_rng(side)
    results: dict[str, list[bool]] = {}
    for index in range(120):
        scene = objects.sample_scene(rng, held_out=bool(index % 2), two=index % 3 == 0)
        image, masks = objects.render(scene, side)
        assert len(masks) == len(scene.objects) and all(mask.max() > 0.5 for mask in masks)
        for key, value in objects.scores(image, objects.caption(scene)).items():
            results.setdefault(key, []).append(value)
    rates = {key: float(np.mean(values)) for key, values in results.items()}
    assert set(rates) == {"background", "object", "position", "both objects"}
    assert min(rates.values()) >= 0.97, rates


def test_a_blank_or_wrong_image_scores_false():
    scene = objects.Scene((objects.Placed("cat", "left", 0.25, 0.5, 0.5),), "blue", "large")
    image, _ = objects.render(scene, 128)
    assert objects.caption(scene) == "a large cat on the left on a blue background"
    assert objects.caption(objects.Scene((objects.Placed("apple", "top", 0.5, 0.25, 0.5),), "orange", None)) == \
        "an apple at the top on an orange background"
    assert objects.scores(image, "a large cat on the left on a blue background") == {
        "background": True, "object": True, "position": True}
    assert objects.scores(image, "a rocket on the right on a green background") == {
        "background": False, "object": False, "position": False}
    blank = np.full((128, 128, 3), objects.COLOURS["blue"], np.uint8)
    assert objects.scores(blank, "a cat on the left and a dog on the right") == {"both objects": False}


def test_captions_parse_back_and_the_split_is_fixed():
    rng = np.random.default_rng(0)
    for index in range(50):
        scene = objects.sample_scene(rng, two=bool(index % 2))
        stated = objects.parse_prompt(objects.caption(scene))
        assert stated["objects"] == [(p.name, p.position) for p in scene.objects]
        assert stated["background"] == scene.background and stated.get("size") == scene.size
        dropped = objects.caption(scene, says_size=False, says_position=False, says_background=False)
        assert objects.parse_prompt(dropped)["objects"] == [(p.name, None) for p in scene.objects]
    held = [objects.sample_scene(rng, held_out=True) for _ in range(30)]
    assert all(objects.is_held_out(tuple(p.name for p in s.objects), s.objects[0].position, s.background)
               for s in held)
    vocabularies = objects.scenes_json()
    assert (set(vocabularies) >= {"objects", "colours", "positions"}
            and vocabularies["objects"]["tree"] == "deciduous-tree")


TINY = ["--image-size", "64", "--vae-channels", "16,16,16,16", "--unet-channels", "32,32,32,32",
        "--unet-heads", "1,1,1,1", "--text-width", "32", "--text-layers", "1", "--text-heads", "2",
        "--vae-steps", "1", "--vae-batch", "2", "--vae-crop", "32", "--vae-eval", "4", "--unet-batch", "2",
        "--pool", "8", "--save-every", "100", "--threads", "1"]


def unet_weights(folder):
    from safetensors.torch import load_file

    return load_file(next((folder / "unet").glob("*.safetensors")))


def test_a_time_budget_sets_the_step_count_and_the_count_reproduces_it(tmp_path):
    from training.train_objects import main

    main([*TINY, "--unet-steps", "100000", "--unet-seconds", "1", "--out", str(tmp_path / "budget")])
    steps = json.loads((tmp_path / "budget" / "training_log.json").read_text())["config"]["unet_steps"]
    assert 25 < steps < 100000
    main([*TINY, "--unet-steps", str(steps), "--out", str(tmp_path / "again")])
    budget, again = unet_weights(tmp_path / "budget"), unet_weights(tmp_path / "again")
    assert all(torch.equal(budget[k], again[k]) for k in budget)


def test_training_resumes_where_it_stopped_bit_for_bit(tmp_path):
    """Stopped after every step (--stop-after 0) and resumed until done, the run ends with the weights an
    uninterrupted run ends with."""
    from training.train_objects import main

    tiny = [*TINY, "--unet-steps", "2"]
    main([*tiny, "--out", str(tmp_path / "whole")])
    for attempt in range(8):  # noqa: B007 - read after the loop: how many runs it took
        main([*tiny, "--out", str(tmp_path / "resumed"), "--state", str(tmp_path / "state"), "--stop-after", "0"])
        if (tmp_path / "resumed" / "unet").exists():
            break
    state = torch.load(tmp_path / "state" / "state.pt", weights_only=False)
    assert state["unet_step"] == 2 and attempt == 3  # it stopped after each of the 1 + 2 steps
    from safetensors.torch import load_file

    for part in ("unet", "vae", "text_encoder"):
        whole, resumed = (load_file(next((tmp_path / run / part).glob("*.safetensors")))
                          for run in ("whole", "resumed"))
        assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole), part
    assert json.loads((tmp_path / "resumed" / "scenes.json").read_text())["positions"]["top left"] == [0.25, 0.25]


def test_the_evaluation_draws_held_out_prompts_and_scores_what_it_reads():
    from training.evaluate_objects import held_out_prompts, score

    pairs = held_out_prompts(20)
    assert len({p for p, _ in pairs}) == 20 and held_out_prompts(20) == pairs  # fixed
    counts = [len(objects.parse_prompt(p)["objects"]) for p, _ in pairs]
    assert counts == [1, 2] * 10
    for prompt, _ in pairs:
        stated = objects.parse_prompt(prompt)
        names = tuple(name for name, _ in stated["objects"])
        assert objects.is_held_out(names, stated["objects"][0][1], stated["background"])
    rng = np.random.default_rng(0)
    scenes = [objects.sample_scene(rng, held_out=True, two=bool(i % 2)) for i in range(10)]
    results = score([(objects.caption(s), 0) for s in scenes], [objects.render(s)[0] for s in scenes])
    assert all(all(values) for values in results.values()) and len(results["both objects"]) == 5


def test_a_run_resumes_from_its_carry(tmp_path):
    """--carry writes a compact copy of the state at every save (float16 UNet and text encoder, float32 VAE,
    no optimiser); a run whose --state holds nothing starts from it, at the carried steps, and finishes."""
    from training.train_objects import REWARM, State, carried_lr, main

    tiny = [*TINY, "--unet-steps", "3", "--save-every", "1"]
    carry = tmp_path / "carry.pt"
    main([*tiny, "--out", str(tmp_path / "first"), "--state", str(tmp_path / "state"), "--carry", str(carry),
          "--stop-after", "0"])  # the VAE's one step
    main([*tiny, "--out", str(tmp_path / "first"), "--state", str(tmp_path / "state"), "--carry", str(carry),
          "--stop-after", "0"])  # and the UNet's first
    state = torch.load(tmp_path / "state" / "state.pt", weights_only=False)
    carried = torch.load(carry, weights_only=False)
    assert (carried["vae_step"], carried["unet_step"]) == (1, 1) and "unet_optimiser" in state
    assert not any("optimiser" in key or "ema" in key for key in carried)
    unet = carried["weights"]["unet"]
    assert all(unet[name].dtype == torch.float16 and torch.equal(unet[name], value.half())
               for name, value in state["unet"].items())
    assert all(torch.equal(carried["weights"]["vae"][name], value) for name, value in state["vae"].items())

    main([*tiny, "--out", str(tmp_path / "carried"), "--state", str(tmp_path / "new-state"), "--carry", str(carry)])
    record = json.loads((tmp_path / "carried" / "training_log.json").read_text())
    assert any("resumed from a carry at vae step 1, unet step 1" in line for line in record["log"])
    assert any("unet resumed at step 1" in line for line in record["log"])
    assert json.loads((tmp_path / "carried" / "unet" / "config.json").read_text())["block_out_channels"] == [32] * 4
    resumed = State(None)
    resumed.data["carried"] = {"unet": 1}
    assert carried_lr(resumed, "unet", 1, 1.0) == 1 / REWARM and carried_lr(resumed, "unet", REWARM, 1.0) == 1.0
    assert carried_lr(resumed, "vae", 1, 1.0) == 1.0


def test_a_snapshot_is_the_state_as_it_stands_and_loads_as_a_pipeline(tmp_path):
    """--snapshot writes the model from the state's EMA weights and its scaling factor, trains nothing, and
    the folder loads as diffusers' StableDiffusionPipeline: how a long run is checked halfway."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from training.train_objects import main

    tiny = [*TINY, "--unet-steps", "3", "--state", str(tmp_path / "state")]
    main([*tiny, "--out", str(tmp_path / "out"), "--stop-after", "0", "--save-every", "1"])  # the VAE's step
    main([*tiny, "--out", str(tmp_path / "out"), "--stop-after", "0", "--save-every", "1"])  # the UNet's first
    state = torch.load(tmp_path / "state" / "state.pt", weights_only=False)
    main([*tiny, "--snapshot", str(tmp_path / "snapshot")])
    assert torch.load(tmp_path / "state" / "state.pt", weights_only=False)["unet_step"] == 1  # nothing trained
    snapshot = unet_weights(tmp_path / "snapshot")
    assert all(torch.equal(snapshot[name], value.half()) for name, value in state["ema_unet"].items())
    assert not all(torch.equal(state["ema_unet"][name], value) for name, value in state["unet"].items())
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "snapshot")
    assert pipe.vae.config.scaling_factor == pytest.approx(state["scaling_factor"])
    source = CLIPTokenizer.from_pretrained(ROOT / "assets" / "sdviz-shapes" / "tokenizer")
    prompt = "a cat on the left and a rocket on the right"
    assert pipe.tokenizer(prompt).input_ids == source(prompt).input_ids and len(source(prompt).input_ids) == 13
    record = json.loads((tmp_path / "snapshot" / "training_log.json").read_text())
    assert record["unet_step"] == 1 and "snapshot at unet step 1" in record["log"][-1]
    assert (tmp_path / "snapshot" / "scenes.json").exists()


def test_the_model_card_reports_what_training_and_evaluation_recorded(tmp_path):
    """A tiny run, evaluated by `training.evaluate_objects` (diffusers' pipeline, the analyser, DAAM with
    sdviz), and its card written by `training.model_card`: every figure is the one the files hold."""
    from training import evaluate_objects, model_card
    from training.train_objects import main

    model = tmp_path / "model"
    main([*TINY, "--unet-steps", "2", "--out", str(model)])
    evaluate_objects.main(["--model", str(model), "--pairs", "4"])
    report = json.loads((model / "eval.json").read_text())
    assert report["counts"]["object"] == 2 and report["counts"]["both objects"] == 2
    assert set(report["rates"]) >= set(evaluate_objects.BARS) and report["vae_scenes"] == evaluate_objects.VAE_SCENES
    model_card.main(["--model", str(model)])
    card = (model / "README.md").read_text()
    for key, label in model_card.MEASURES.items():
        rate = report["rates"][key]
        assert f"| {label} | **{f'{rate:.3f}' if key == 'daam iou' else f'{rate * 100:.1f} %'}** " in card, key
    assert (f"**{report['vae_psnr_db']:.1f} dB**" in card
            and f"**{report['generation_seconds_20_steps']:.2f} s**" in card)
    log = json.loads((model / "training_log.json").read_text())
    assert f"**{log['wall_seconds'] / 3600:.1f} h**" in card and "150 emoji objects" in card
    from sdviz.sampling.models import card_examples

    examples = card_examples(str(model))
    assert len(examples) >= 4 and any(len(objects.parse_prompt(text)["objects"]) == 2 for text in examples)
    for text in examples:  # each a sentence of the grammar, on a background its objects may stand on
        stated = objects.parse_prompt(text)
        assert all(name in objects.objects() and position for name, position in stated["objects"]), text
        names = [name for name, _ in stated["objects"]]
        assert "background" not in stated or all(stated["background"] in objects.backgrounds_for()[n] for n in names)


def test_a_run_stopped_at_a_step_is_taken_as_it_stands_and_goes_on_to_the_end(tmp_path):
    """--stop-at-step N saves the state at UNet step N of the schedule and writes no model; --snapshot then
    writes the model as it stands there, its card says so; the same command without the stop ends with the
    weights of a run that never stopped."""
    from training import evaluate_objects, model_card
    from training.train_objects import main

    tiny = [*TINY, "--unet-steps", "4"]
    main([*tiny, "--out", str(tmp_path / "whole")])
    stopped = [*tiny, "--state", str(tmp_path / "state"), "--out", str(tmp_path / "resumed")]
    main([*stopped, "--stop-at-step", "2"])
    assert torch.load(tmp_path / "state" / "state.pt", weights_only=False)["unet_step"] == 2
    assert not (tmp_path / "resumed").exists()
    with pytest.raises(SystemExit, match="--stop-at-step 1: the state is already at unet step 2"):
        main([*stopped, "--stop-at-step", "1"])
    main([*stopped, "--stop-at-step", "3"])
    main([*stopped, "--snapshot", str(tmp_path / "taken")])
    assert json.loads((tmp_path / "taken" / "training_log.json").read_text())["unet_step"] == 3
    evaluate_objects.main(["--model", str(tmp_path / "taken"), "--pairs", "2"])
    model_card.main(["--model", str(tmp_path / "taken")])
    card = (tmp_path / "taken" / "README.md").read_text()
    assert "the EMA's at UNet step 3 of the 4" in card and "`--stop-at-step 3`" in card
    assert "stopped and resumed 1 time," in card  # one resume (logged by the VAE and the UNet); no snapshot
    main(stopped)
    whole, resumed = unet_weights(tmp_path / "whole"), unet_weights(tmp_path / "resumed")
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
