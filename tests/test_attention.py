"""Attention capture (DAAM per step), heat maps, the self-attention probe and the layer inventory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import sdviz
from sdviz.sampling.attention import AttentionCapture, AttentionMaps, attention_probs, layer_table
from sdviz.sampling.attention.layers import TracedProcessor, observing
from sdviz.sampling.models import SHAPES_MODEL
from tests.helpers import sdviz_main

SD1_TABLE = Path(__file__).resolve().parent / "data" / "sd1_attention_layers.txt"
PROMPT = "a large red circle on the left on a blue background"


def processors(unet) -> dict:
    return dict(unet.attn_processors)


def test_a_captured_run_leaves_the_model_as_it_was(embedded):
    before = processors(embedded.unet)
    assert all(isinstance(p, TracedProcessor) for p in before.values())  # wrapped once, at load
    capture = AttentionCapture(embedded)
    sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=3), capture=capture)
    after = processors(embedded.unet)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert all(vars(p).keys() == {"layer", "original"} for p in after.values())  # nothing of any run on them


def test_the_model_is_unchanged_during_and_after_a_failed_or_abandoned_run(embedded):
    before = processors(embedded.unet)
    run = sdviz.Run(embedded, sdviz.Settings(prompt=PROMPT, steps=5), capture=AttentionCapture(embedded))
    with pytest.raises(RuntimeError, match="boom"):
        for record in run:
            assert all(processors(embedded.unet)[k] is before[k] for k in before)
            if record.index == 2:
                raise RuntimeError("boom")
    run = sdviz.Run(embedded, sdviz.Settings(prompt=PROMPT, steps=5), capture=AttentionCapture(embedded))
    iterator = iter(run)
    next(iterator)
    iterator.close()  # what a cancelled app request does
    assert all(processors(embedded.unet)[k] is before[k] for k in before)


def test_a_capture_and_a_run_are_used_once(embedded):
    capture = AttentionCapture(embedded)
    run = sdviz.Run(embedded, sdviz.Settings(prompt=PROMPT, steps=2), capture=capture)
    list(run)
    with pytest.raises(RuntimeError, match="already run"):
        list(run)
    with pytest.raises(RuntimeError, match="already recorded a run"):
        sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=2), capture=capture)
    assert capture.maps().steps == [0, 1]  # the first run's maps, untouched


def test_overlapping_captured_runs_layer_tables_and_non_square_runs_do_not_see_each_other(embedded):
    """Found on a hosted app: recorders left on the shared UNet broke every later non-square run."""
    import threading

    facts = embedded.facts
    square = (facts.native_width, facts.native_height)
    wide = (facts.native_width * 2, facts.native_height)
    tall = (facts.native_width, facts.native_height + 2 * facts.vae_factor)
    jobs = [("captured", square, 1), ("captured", wide, 2), ("captured", tall, 3), ("plain", wide, 4),
            ("plain", tall, 5), ("layers", wide, 0), ("layers", tall, 0), ("captured", square, 6)]
    results, errors = {}, []
    start = threading.Barrier(len(jobs))

    def work(number, kind, size, seed):
        try:
            start.wait()
            if kind == "layers":
                results[number] = layer_table(embedded.unet, size[1], size[0], vae_factor=facts.vae_factor,
                                              text_tokens=facts.tokens)
                return
            settings = sdviz.Settings(prompt=PROMPT, steps=6, seed=seed, width=size[0], height=size[1])
            capture = AttentionCapture(embedded, self_attention=True) if kind == "captured" else None
            results[number] = sdviz.generate(embedded, settings, capture=capture)
        except Exception as error:  # noqa: BLE001 - collected and reported below
            errors.append(f"{kind} {size}: {type(error).__name__}: {error}")

    before = processors(embedded.unet)
    threads = [threading.Thread(target=work, args=(n, *job)) for n, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    after = processors(embedded.unet)
    assert all(after[k] is before[k] for k in before)
    for number, (kind, size, seed) in enumerate(jobs):
        if kind == "layers":
            expected = layer_table(embedded.unet, size[1], size[0], vae_factor=facts.vae_factor,
                                   text_tokens=facts.tokens)
            assert results[number] == expected
            continue
        traj = results[number]
        assert traj.complete and traj.final_image.shape == (size[1], size[0], 3)
        alone = sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=6, seed=seed, width=size[0],
                                                        height=size[1]),
                               capture=AttentionCapture(embedded, self_attention=True) if kind == "captured" else None)
        np.testing.assert_array_equal(traj.final_image, alone.final_image, err_msg=f"job {number} {kind} {size} {seed}")
        if kind == "captured":
            maps = traj.attention
            assert maps.steps == list(range(6)) and maps.latent_hw == tuple(traj.shapes["latents"][1:])
            assert maps.layer_counts == alone.attention.layer_counts
            for key in alone.attention.cross:  # the same maps as the run made alone: no other run's calls in them
                np.testing.assert_allclose(maps.cross[key].astype(np.float32),
                                           alone.attention.cross[key].astype(np.float32), atol=2e-3)
        else:
            assert traj.attention is None


def test_capture_does_not_change_the_result(embedded):
    settings = sdviz.Settings(prompt=PROMPT, steps=6, seed=8)
    plain = sdviz.generate(embedded, settings)
    watched = sdviz.generate(embedded, settings,
                             capture=AttentionCapture(embedded, self_attention=True, per_layer=True))
    np.testing.assert_array_equal(plain.steps[-1].x_next, watched.steps[-1].x_next)
    np.testing.assert_array_equal(plain.final_image, watched.final_image)


def test_overlapping_runs_encode_their_own_prompts(embedded):
    """CLIP's fast tokenizer keeps its padding/truncation mode on itself between calls: unguarded,
    a run being set up (its token view) switched a running run's prompt encoding to unpadded."""
    import threading

    prompt = "a large red circle on the left on a blue background"
    alone = sdviz.generate(embedded, sdviz.Settings(prompt=prompt, steps=1)).steps[0].noise_pred
    wrong, errors, done = [], [], threading.Event()

    def set_up_runs():  # what every queued request does first
        while not done.is_set():
            sdviz.Run(embedded, sdviz.Settings(prompt=prompt + " and a square", steps=1))

    def run():
        try:
            for _ in range(5):
                got = sdviz.generate(embedded, sdviz.Settings(prompt=prompt, steps=1)).steps[0].noise_pred
                wrong.extend([] if np.array_equal(got, alone) else [np.abs(got - alone).max()])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    setters = [threading.Thread(target=set_up_runs) for _ in range(3)]
    runners = [threading.Thread(target=run) for _ in range(3)]
    for thread in setters + runners:
        thread.start()
    for thread in runners:
        thread.join()
    done.set()
    for thread in setters:
        thread.join()
    assert not errors and not wrong, (errors, wrong)


def test_each_querys_attention_over_the_tokens_sums_to_one(embedded):
    """Before aggregation: softmax rows of every cross- and self-attention layer sum to 1."""
    seen = {"self": 0, "cross": 0}

    def check(layer, attn, hidden_states, encoder_hidden_states, image_rotary_emb=None):
        probs = attention_probs(attn, hidden_states[-1:],
                                None if encoder_hidden_states is None else encoder_hidden_states[-1:])
        keys = embedded.tokenizer.model_max_length if layer.kind == "cross" else hidden_states.shape[1]
        assert probs.shape == (attn.heads, hidden_states.shape[1], keys)
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]), rtol=1e-5, atol=1e-5)
        seen[layer.kind] += 1

    cond, _ = embedded.pipe.encode_prompt(PROMPT, embedded.device, 1, False)
    channels, h, w = embedded.facts.latent_shape(embedded.facts.native_height, embedded.facts.native_width)
    with torch.no_grad():
        embedded.unet(torch.randn(1, channels, h, w), torch.tensor(500), encoder_hidden_states=cond,
                      cross_attention_kwargs=observing(embedded.unet, check))
    assert seen["self"] > 0 and seen["cross"] > 0


@pytest.fixture(scope="module")
def captured(embedded):
    capture = AttentionCapture(embedded, self_attention=True, per_layer=True)
    return sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=10, seed=21), capture=capture)


def test_maps_are_kept_per_step_per_token_per_resolution(captured, embedded):
    maps = captured.attention
    words = PROMPT.split()
    assert maps.tokens == ["<|startoftext|>", *[f"{w}</w>" for w in words], "<|endoftext|>"]  # padding left out
    assert maps.steps == list(range(10))
    latent_h, latent_w = captured.shapes["latents"][1:]
    assert maps.resolutions[0] == f"{latent_h}x{latent_w}" and len(maps.resolutions) >= 2
    for key, array in maps.cross.items():
        h, w = map(int, key.split("x"))
        assert array.shape == (10, len(maps.tokens), h, w) and array.dtype == np.float16
    # per resolution = sum over that resolution's layers of the head-averaged maps, each summing to 1 over tokens
    # (up to the padding slots left out): so every position's token sum is at most the layer count
    for key, array in maps.cross.items():
        assert array.astype(np.float32).sum(1).max() <= maps.layer_counts[key] + 1e-2
    assert sum(maps.layer_counts.values()) == len(maps.layers)


def test_heat_maps_per_step_and_range(captured):
    maps = captured.attention
    circle = maps.tokens.index("circle</w>")
    whole = maps.heat_map(circle)
    assert whole.shape == tuple(captured.shapes["image"][1:])
    assert whole.min() == pytest.approx(0, abs=1e-6) and whole.max() == pytest.approx(1, abs=1e-3)
    early, late = maps.aggregate(steps=0)[circle], maps.aggregate(steps=9)[circle]
    assert not np.allclose(early, late)  # the per-step maps differ: it is not one map copied
    summed = maps.aggregate(steps=range(3))[circle]
    np.testing.assert_allclose(summed, sum(maps.aggregate(steps=s)[circle] for s in range(3)), rtol=1e-3, atol=1e-3)
    fine = maps.resolutions[0]
    assert maps.heat_map(circle, resolution=fine).shape == whole.shape
    with pytest.raises(ValueError, match="resolution '3x3' was not captured"):
        maps.heat_map(circle, resolution="3x3")


def test_self_attention_probe(captured):
    maps = captured.attention
    height, width = captured.shapes["image"][1:]
    probe = maps.self_attention_probe(height // 2, width // 4)
    assert probe.shape == (height, width) and probe.max() == pytest.approx(1, abs=1e-3)
    rows = maps.self_attn[maps.resolutions[0]].astype(np.float32)
    np.testing.assert_allclose(rows.sum(-1), 1.0, atol=2e-2)  # each position's attention sums to 1
    with pytest.raises(ValueError, match="outside the image"):
        maps.self_attention_probe(height, 0)


def test_maps_save_and_load(captured, tmp_path):
    maps = captured.attention
    maps.save(tmp_path / "attention.npz")
    loaded = AttentionMaps.load(tmp_path / "attention.npz")
    assert loaded.tokens == maps.tokens and loaded.steps == maps.steps and loaded.layer_counts == maps.layer_counts
    for key in maps.cross:
        np.testing.assert_array_equal(loaded.cross[key], maps.cross[key])
    with np.load(tmp_path / "attention.npz", allow_pickle=False) as npz:
        assert npz["maps"].shape == (10, len(maps.tokens), *captured.shapes["latents"][1:])
        assert list(npz["tokens"]) == maps.tokens


def test_cli_writes_attention_npz_and_overlays(tmp_path):
    result = sdviz_main("render", "--prompt", "a small blue square at the top", "--steps", "5", "--attention",
                       "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "attention.npz", allow_pickle=False) as npz:
        maps, tokens = npz["maps"], list(npz["tokens"])
    assert maps.ndim == 4 and maps.shape[0] == 5 and maps.shape[1] == len(tokens) and maps.dtype.kind == "f"
    names = sorted(p.name for p in (tmp_path / "attention").iterdir())
    assert names == sorted(["1_a.png", "2_small.png", "3_blue.png", "4_square.png", "5_at.png", "6_the.png",
                            "7_top.png"])


def test_shape_words_attend_to_the_drawn_shape(embedded):
    """DAAM's segmentation on a few held-out prompts (the 50-prompt figures are in the model card)."""
    from training.evaluate import daam_ious, held_out_pairs

    ious = daam_ious(str(embedded.source), held_out_pairs(8), resolutions=("all", "finest"))
    assert np.mean(ious["all"]) >= 0.6, ious  # DAAM's sum over every layer
    assert np.mean(ious["finest"]) >= 0.6, ious  # the latent grid's own layers


def test_daam_miou_meets_the_bar():
    report = json.loads((SHAPES_MODEL / "eval.json").read_text())
    assert report["daam_prompts"] == 50 and report["daam_miou"] >= 0.6, report["daam_miou"]


def table_section(name: str) -> list[str]:
    section = SD1_TABLE.read_text().split(f"[{name}]\n")[1].split("\n\n")[0]
    return [line for line in section.splitlines() if line and not line.startswith("#")]


def parse_seed_table(kind: str) -> list[tuple[int, tuple, tuple, tuple, tuple]]:
    """(index, query, key, value, probs shapes) per row of the SD 1.x table."""
    rows = []
    for line in table_section(kind):
        index, *shapes = re.match(r"^(\d+) (\(.*?\)) (\(.*?\)) (\(.*?\)) (\(.*?\))$", line).groups()
        rows.append((int(index), *(tuple(int(v) for v in re.findall(r"\d+", shape)) for shape in shapes)))
    return rows


def seed_scales() -> dict[int, int]:
    scales = {}
    for line in table_section("scale indices"):
        scale, indices = re.match(r"^(\d+) \[([\d, ]+)\]$", line).groups()
        for index in indices.split(","):
            scales[int(index)] = int(scale)
    return scales


@pytest.fixture(scope="module")
def sd15_layout_model():
    """SD 1.5's attention layout with random weights: its UNet's blocks, layers and 8 heads at 512 x 512
    (cross-attention at 64, 32, 16 and 8 latent pixels, 77 tokens), its VAE's factor 8, with narrow channels.
    What the capture keeps is per layer, grid and token; the channel widths do not enter it, and SD 1.5's
    own widths would take most of a minute to build and run on a CPU."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from benchmarks.benchmark import SD15_UNET
    from training.train import SD1_SCHEDULER

    width = 64
    unet = UNet2DConditionModel(**{**SD15_UNET, "block_out_channels": (64, 128, 256, 256),
                                   "cross_attention_dim": width})
    vae = AutoencoderKL(block_out_channels=(32,) * 4, layers_per_block=1, latent_channels=4, sample_size=512,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407))
    tokenizer = CLIPTokenizer.from_pretrained(SHAPES_MODEL / "tokenizer")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=PNDMScheduler.from_config(SD1_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return sdviz.from_pipeline(pipe, "SD 1.5's attention layout, narrow, random weights")


def test_layer_table_reproduces_the_sd1_table():
    """An SD 1.x UNet built from its config on the meta device (shapes without values), run once at
    512 x 512 with guidance."""
    from diffusers import UNet2DConditionModel

    from benchmarks.benchmark import SD15_UNET

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
    table = layer_table(unet, 512, 512)
    assert len(table) == 32 and [r["order"] for r in table] == list(range(1, 33))
    scales = seed_scales()
    for kind in ("self", "cross"):
        expected = parse_seed_table(kind)
        rows = [r for r in table if r["kind"] == kind]
        assert len(expected) == len(rows) == 16
        for row, (index, query, key, value, probs) in zip(rows, expected):
            assert row["index"] == index
            assert row["resolution"] == scales[index]
            assert (tuple(row["query_shape"]), tuple(row["key_shape"]), tuple(row["value_shape"]),
                    tuple(row["probs_shape"])) == (query, key, value, probs), row["name"]
    assert table[0]["name"] == "down_blocks.0.attentions.0.transformer_blocks.0.attn1"


def test_capture_memory_stays_bounded_at_sd15s_layout(sd15_layout_model):
    """What the capture keeps for SD 1.5's attention layout at 512 x 512, 10-word prompt: < 250 MB for 50
    steps. Unguided: the capture keeps the conditional sample's maps alone, so a guided run keeps the same."""
    model = sd15_layout_model
    assert model.facts.native_height == model.facts.native_width == 512 and model.facts.tokens == 77
    capture = AttentionCapture(model)
    run = sdviz.Run(model, sdviz.Settings(prompt=PROMPT, steps=50, preview="approx", guidance=1.0), capture=capture)
    for _ in run:
        run.stop()  # one step: every step keeps the same amount
    maps = capture.maps()
    assert maps.steps == [0] and sorted(maps.resolutions) == sorted(["64x64", "32x32", "16x16", "8x8"])
    assert maps.nbytes * 50 < 250 * 2**20, maps.nbytes


NEGATIVE = "a small green square at the top"


def test_negative_prompt_maps_come_from_the_unconditional_half(embedded, tmp_path):
    """The negative prompt's words are attended to by the unconditional half of the batch: its maps equal that
    half's cross-attention, computed here apart from the capture, and not the conditional half's."""
    from diffusers import StableDiffusionPipeline

    from sdviz.sampling import schedulers
    from sdviz.sampling.attention.layers import grid_for

    settings = sdviz.Settings(prompt=PROMPT, negative_prompt=NEGATIVE, scheduler="ddim", steps=3, seed=4)
    traj = sdviz.generate(embedded, settings, capture=AttentionCapture(embedded))
    negative = traj.attention.negative
    assert [negative.tokens[i].replace("</w>", "") for i in negative.word_slots()] == NEGATIVE.split()
    assert negative.steps == traj.attention.steps and set(negative.cross) == set(traj.attention.cross)

    keep = len(negative.tokens)
    sums = {"uncond": {}, "cond": {}}

    def observer(layer, attn, hidden_states, encoder_hidden_states, image_rotary_emb=None):
        if layer.kind != "cross":
            return
        for half, row in (("uncond", 0), ("cond", 1)):
            probs = attention_probs(attn, hidden_states[row:row + 1], encoder_hidden_states[row:row + 1])
            grid = grid_for(probs.shape[1], *traj.shapes["latents"][1:])
            key = f"{grid[0]}x{grid[1]}"
            token_map = probs[:, :, :keep].float().mean(0).T.reshape(keep, *grid)
            sums[half][key] = sums[half].get(key, 0) + token_map

    scheduler = schedulers.create("ddim", embedded.scheduler_config)
    pipe = embedded.pipeline(scheduler, StableDiffusionPipeline)
    cond, uncond = pipe.encode_prompt(PROMPT, embedded.device, 1, True, NEGATIVE)
    scheduler.set_timesteps(3)
    x = torch.from_numpy(traj.x_start)[None]
    with torch.no_grad():
        embedded.unet(torch.cat([x, x]), scheduler.timesteps[0], encoder_hidden_states=torch.cat([uncond, cond]),
                      cross_attention_kwargs=observing(embedded.unet, observer))
    for key, captured in negative.cross.items():
        first = captured[0].astype(np.float32)
        np.testing.assert_allclose(first, sums["uncond"][key].numpy(), atol=2e-3)
        assert np.abs(first - sums["cond"][key].numpy()).max() > 0.05
    # saved and loaded with the run's maps; the overlays name the negative words apart
    traj.attention.save(tmp_path / "attention.npz")
    loaded = AttentionMaps.load(tmp_path / "attention.npz").negative
    assert loaded.tokens == negative.tokens and all(np.array_equal(loaded.cross[k], negative.cross[k])
                                                    for k in negative.cross)
    from sdviz.workflows.render import write_overlays

    names = sorted(path.name for path in write_overlays(traj, tmp_path / "overlays"))
    assert "negative_3_green.png" in names and "3_red.png" in names and "negative_2_small.png" in names
    # no negative prompt, or no guidance: no negative maps
    plain = sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, steps=2), capture=AttentionCapture(embedded))
    unguided = sdviz.generate(embedded, sdviz.Settings(prompt=PROMPT, negative_prompt=NEGATIVE, guidance=1.0,
                                                       steps=2), capture=AttentionCapture(embedded))
    assert plain.attention.negative is None and unguided.attention.negative is None


def test_an_edit_and_an_img2img_run_keep_their_prompts_attention(embedded):
    """Heat maps of a real image's run: img2img and an edit (from the edit prompt's half), the result unchanged."""
    from PIL import Image

    from training import scenes

    image = Image.fromarray(scenes.render(scenes.make_scene(("yellow", "square", "large", "left", "purple"),
                                                            np.random.default_rng(0)))[0])
    edit = sdviz.Settings(prompt="a large red circle on the left on a purple background", scheduler="ddim", steps=8,
                          strength=0.75, seed=1,
                          source_prompt="a large yellow square on the left on a purple background")
    for settings in (edit, sdviz.Settings(prompt=edit.prompt, steps=8, strength=0.75, seed=1)):
        plain = sdviz.generate(embedded, settings, init_image=image)
        watched = sdviz.generate(embedded, settings, init_image=image, capture=AttentionCapture(embedded))
        np.testing.assert_array_equal(plain.final_image, watched.final_image)
        maps = watched.attention
        assert len(maps.steps) == len(watched.steps) == 6
        words = [maps.tokens[i].replace("</w>", "") for i in maps.word_slots()]
        assert words == edit.prompt.split()
        circle = maps.word_heat_map("circle")
        assert circle[:, : circle.shape[1] // 2].mean() > circle[:, circle.shape[1] // 2:].mean()  # on the left
