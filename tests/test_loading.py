"""Loading: safetensors only, clear refusals, facts read from the model itself."""

from __future__ import annotations

import shutil

import pytest

import sdviz
from sdviz.sampling.models import EMBEDDED_MODEL, SHAPES_MODEL, card_examples, check_source, default_model, pick_device


def test_default_is_the_embedded_model(monkeypatch):
    monkeypatch.delenv("SDVIZ_MODEL", raising=False)
    assert default_model() == str(EMBEDDED_MODEL)
    assert check_source(default_model()) == "local"


def test_pickle_only_weights_are_refused(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(EMBEDDED_MODEL, copy)
    for weights in (copy / "unet").glob("*.safetensors"):
        weights.unlink()
    (copy / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match=r"unet/ has only pickle weights \(diffusion_pytorch_model.bin\); "
                                         r"sdviz loads safetensors only"):
        sdviz.load_model(str(copy))


@pytest.mark.parametrize("name", ["model.ckpt", "model.safetensors"])
def test_checkpoint_files_are_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ValueError, match="checkpoint file"):
        check_source(str(tmp_path / name))


def test_missing_and_non_pipeline_paths_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist and is not a hub id"):
        check_source(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="no model_index.json"):
        check_source(str(tmp_path))


def test_unreachable_hub_id_gives_a_clear_message(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: the hub's own switch
    with pytest.raises(ValueError, match="could not load model 'stable-diffusion-v1-5/stable-diffusion-v1-5'"):
        sdviz.load_model("stable-diffusion-v1-5/stable-diffusion-v1-5")


def test_example_prompts_come_from_the_models_card(embedded, tmp_path, monkeypatch):
    """The prompts the page offers are the `widget` entries of the model card's metadata (README.md, as the hub
    reads it); each of the embedded model's is a sentence of its grammar. No card, a card without prompts, a
    broken card or an unreachable hub id give none (the page then offers general prompts)."""
    from huggingface_hub import constants

    from training import scenes

    card = (SHAPES_MODEL / "README.md").read_text()
    assert len(embedded.examples) >= 3 and all(f"- text: {text}\n" in card for text in embedded.examples)
    assert all(scenes.parse_prompt(text)["shape"] for text in embedded.examples)
    folder = tmp_path / "model"
    folder.mkdir()
    assert card_examples(str(folder)) == ()
    (folder / "README.md").write_text("---\nwidget: [{text: ' a cat '}, {src: cat.png}, loose, {text: 3}]\n"
                                      "---\n# card\n")
    assert card_examples(str(folder)) == ("a cat",)
    (folder / "README.md").write_text("---\nwidget: [unclosed\n---\n")
    assert card_examples(str(folder)) == ()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert card_examples("nobody/no-such-model") == ()


def test_device_falls_back_to_the_cpu():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type in (expected, "mps")
    assert pick_device("cpu").type == "cpu"


def test_facts_come_from_the_components(embedded):
    facts = embedded.facts
    assert facts.tokens == embedded.tokenizer.model_max_length
    assert facts.text_width == embedded.text_encoder.config.hidden_size
    assert facts.latent_channels == embedded.vae.config.latent_channels
    assert 2 ** (len(embedded.vae.config.block_out_channels) - 1) == facts.vae_factor
    assert facts.parameters["unet"] == sum(p.numel() for p in embedded.unet.parameters())
    assert embedded.unet.dtype == embedded.vae.dtype  # fp32 on the CPU
