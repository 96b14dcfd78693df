"""The trajectory: what a run keeps, how it saves and loads, stopping, decoding every N steps."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

import sdviz
from sdviz.sampling.attention import AttentionCapture
from sdviz.sampling.trajectory import LATENT_FIELDS, Trajectory


@pytest.fixture(scope="module")
def traj(embedded):
    return sdviz.generate(embedded, sdviz.Settings(prompt="a small green circle at the bottom", steps=8, seed=3))


def test_one_record_per_scheduler_entry_with_every_field(traj, embedded):
    assert [r.index for r in traj.steps] == list(range(8))
    channels, h, w = embedded.facts.latent_shape(embedded.facts.native_height, embedded.facts.native_width)
    for record in traj.steps:
        for name in LATENT_FIELDS:
            if name not in ("source_x_next", "denoised"):  # an edit's only; LCM's only
                assert getattr(record, name).shape == (channels, h, w), name
        assert record.source_x_next is None and record.denoised is None
        assert record.x_t_image.shape == (embedded.facts.native_height, embedded.facts.native_width, 3)
        assert record.x_t_image.dtype == np.uint8
    # each step starts where the previous one ended
    for before, after in zip(traj.steps, traj.steps[1:]):
        np.testing.assert_array_equal(before.x_next, after.x_t)
    np.testing.assert_array_equal(traj.steps[0].x_t, traj.x_start)
    # timesteps go down, and so does the noise level
    assert all(a.timestep > b.timestep and a.sigma > b.sigma for a, b in zip(traj.steps, traj.steps[1:]))
    np.testing.assert_array_equal(traj.final_image, traj.steps[-1].x_t_image)


def test_facts_hold_the_real_shapes(traj, embedded):
    facts = embedded.facts
    assert traj.shapes["token_embeddings"] == [embedded.tokenizer.model_max_length,
                                               embedded.text_encoder.config.hidden_size]
    assert traj.shapes["latents"] == [embedded.unet.config.in_channels, *traj.steps[0].x_t.shape[1:]]
    assert traj.shapes["image"] == [3, *traj.final_image.shape[:2]]
    assert traj.shapes["image"][1] == traj.shapes["latents"][1] * facts.vae_factor
    assert traj.facts.scaling_factor == embedded.vae.config.scaling_factor


def test_an_older_saved_run_loads_its_settings_and_facts_typed(traj, tmp_path):
    """A file written before a field existed loads with that field's default, and a key no longer known is
    dropped; what loads is the dataclasses, so a misspelt field is an error, not a missing key."""
    import json

    traj.save(tmp_path)
    meta = json.loads((tmp_path / "trajectory.json").read_text())
    for part, gone in (("settings", "true_cfg"), ("facts", "pooled_width")):
        del meta[part][gone]
        meta[part]["retired_field"] = 1
    (tmp_path / "trajectory.json").write_text(json.dumps(meta))
    loaded = Trajectory.load(tmp_path)
    assert loaded.settings == traj.settings and loaded.facts == traj.facts
    assert loaded.settings.true_cfg == 1.0 and loaded.facts.pooled_width == 0
    with pytest.raises(AttributeError):
        _ = loaded.settings.retired_field


def test_save_and_load_without_loss(traj, tmp_path):
    traj.save(tmp_path)
    loaded = Trajectory.load(tmp_path)
    assert loaded.settings == traj.settings and loaded.facts == traj.facts and loaded.shapes == traj.shapes
    assert loaded.tokens == traj.tokens and loaded.timings == traj.timings and loaded.complete == traj.complete
    np.testing.assert_array_equal(loaded.x_start, traj.x_start)
    np.testing.assert_array_equal(loaded.noise_image, traj.noise_image)
    np.testing.assert_array_equal(loaded.final_image, traj.final_image)
    assert len(loaded.steps) == len(traj.steps)
    for a, b in zip(loaded.steps, traj.steps):
        assert ((a.index, a.timestep, a.sigma, a.next_vp_scale, a.seconds)
                == (b.index, b.timestep, b.sigma, b.next_vp_scale, b.seconds))
        for name in (*LATENT_FIELDS, "x_t_image", "x0_image"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_decoding_every_n_steps_keeps_every_records_latents(embedded):
    traj = sdviz.generate(embedded, sdviz.Settings(prompt="a red square", steps=10, every=4))
    assert len(traj.steps) == 10
    assert [r.index for r in traj.decoded_steps()] == [3, 7, 9]  # every 4th, and always the last
    assert traj.noise_image is not None and traj.final_image is not None


def test_stop_ends_the_run_after_the_current_step(embedded):
    run = sdviz.Run(embedded, sdviz.Settings(prompt="a red square", steps=10))
    for record in run:
        if record.index == 2:
            run.stop()
    assert len(run.trajectory.steps) == 3
    assert not run.trajectory.complete and run.trajectory.final_image is None


def test_a_stop_signal_from_another_thread_ends_the_run_and_it_finishes_as_usual(embedded):
    """How the app's Stop reaches a run: an event set elsewhere; set before the start, no steps."""
    signal = threading.Event()
    run = sdviz.Run(embedded, sdviz.Settings(prompt="a red square", steps=10), stop_signal=signal,
                    capture=AttentionCapture(embedded))
    for record in run:
        if record.index == 2:
            threading.Thread(target=signal.set).start()
            signal.wait()
    assert len(run.trajectory.steps) == 3 and not run.trajectory.complete
    assert run.trajectory.attention is not None and run.trajectory.attention.steps == [0, 1, 2]
    early = sdviz.Run(embedded, sdviz.Settings(prompt="a red square", steps=10), stop_signal=signal)
    assert list(early) == [] and early.trajectory.steps == [] and not early.trajectory.complete


def test_a_run_closed_midway_keeps_its_steps(embedded):
    run = sdviz.Run(embedded, sdviz.Settings(prompt="a red square", steps=10))
    iterator = iter(run)
    next(iterator), next(iterator)
    iterator.close()
    assert len(run.trajectory.steps) == 2 and not run.trajectory.complete


def test_long_prompt_runs_with_a_warning_saying_where_it_was_cut(embedded):
    words = "a red circle and a blue square " * 12 + "beside a zebra"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = sdviz.generate(embedded, sdviz.Settings(prompt=words, steps=2))
    assert traj.complete
    message = traj.warnings[0]
    assert any(message in str(w.message) for w in caught)
    kept_words = [s for s in traj.tokens["slots"] if s["kind"] == "word"]
    assert len(kept_words) == embedded.tokenizer.model_max_length - 2
    assert f"cut after {kept_words[-1]['token'].replace('</w>', '')!r}" in message
    assert traj.tokens["dropped"].endswith("beside a zebra") and "zebra" in message


def test_empty_prompt_runs_unconditioned(embedded):
    traj = sdviz.generate(embedded, sdviz.Settings(prompt="", steps=3))
    assert traj.complete
    np.testing.assert_array_equal(traj.steps[0].noise_uncond, traj.steps[0].noise_cond)
    assert [s["kind"] for s in traj.tokens["slots"][:3]] == ["start", "end", "padding"]


def test_token_slots_fill_the_window(embedded):
    traj = sdviz.generate(embedded, sdviz.Settings(prompt="a photo of an astronaut riding a horse", steps=1))
    slots = traj.tokens["slots"]
    assert len(slots) == embedded.tokenizer.model_max_length
    assert [s["id"] for s in slots[:10]] == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert [s["kind"] for s in slots[:10]] == ["start"] + ["word"] * 8 + ["end"]
    assert {s["kind"] for s in slots[10:]} == {"padding"}
