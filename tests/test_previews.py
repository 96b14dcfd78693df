"""Preview decoders: approx (published or fitted linear map), taesd (diffusers' AutoencoderTiny), full."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sdviz
from sdviz.sampling.previews import SD1_LATENT_RGB, Previewer


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_approx_preview_tracks_the_full_decode(embedded):
    """The fitted map must explain the VAE's colours better than a grey frame does, step after step.

    The embedded model's small VAE is far from linear (see its model card), so
    a linear map is a rough preview there; the bar is what a linear map reaches.
    """
    settings = dict(prompt="a large orange square on a green background", steps=10, seed=4)
    full = sdviz.generate(embedded, sdviz.Settings(**settings))
    approx = sdviz.generate(embedded, sdviz.Settings(**settings, preview="approx"))
    np.testing.assert_array_equal(full.final_image, approx.final_image)  # the final image is always the VAE's
    gains = [
        psnr(a.x0_image, f.x0_image) - psnr(np.full_like(f.x0_image, 128), f.x0_image)
        for a, f in zip(approx.steps[5:], full.steps[5:])
    ]
    assert np.mean(gains) > 2, gains


def test_published_factors_for_sd_vaes(tiny_sd1_vae_model):
    torch.testing.assert_close(tiny_sd1_vae_model.latent_rgb, torch.tensor(SD1_LATENT_RGB))


def test_fitted_map_for_other_vaes(embedded):
    assert embedded.latent_rgb.shape == (embedded.facts.latent_channels + 1, 3)
    assert not torch.allclose(embedded.latent_rgb, torch.tensor(SD1_LATENT_RGB))


def test_taesd_without_published_weights_says_so(embedded, monkeypatch):
    monkeypatch.delenv("SDVIZ_TAESD", raising=False)
    with pytest.raises(ValueError, match="preview 'taesd': no TAESD is published for this model's VAE"):
        Previewer(embedded, "taesd", 64, 64)


def test_taesd_unreachable_says_so(tiny_sd1_vae_model, monkeypatch):
    monkeypatch.delenv("SDVIZ_TAESD", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read once, at import
    with pytest.raises(ValueError, match="the TAESD weights 'madebyollin/taesd' could not be loaded"):
        Previewer(tiny_sd1_vae_model, "taesd", 16, 16)


def test_taesd_from_a_local_folder(embedded, tmp_path, monkeypatch):
    from diffusers import AutoencoderTiny

    tiny = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                           num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1),
                           latent_channels=embedded.facts.latent_channels)
    tiny.save_pretrained(tmp_path / "taesd")
    monkeypatch.setenv("SDVIZ_TAESD", str(tmp_path / "taesd"))
    traj = sdviz.generate(embedded, sdviz.Settings(prompt="a red circle", steps=3, preview="taesd"))
    expected = tuple(traj.shapes["image"][1:]) + (3,)
    assert traj.steps[0].x0_image.shape == expected
    with torch.no_grad():
        decoded = tiny.decode(torch.from_numpy(traj.steps[0].x0_pred)[None]).sample
    np.testing.assert_allclose(traj.steps[0].x0_image,
                               ((decoded[0].permute(1, 2, 0) / 2 + 0.5).clamp(0, 1) * 255).round().numpy(), atol=1)
