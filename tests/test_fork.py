"""Forks: a run continued from after any step with new settings. Unchanged, a fork is its parent bit for
bit, for every scheduler (ancestral, eta > 0, multistep, second order forked mid-step), from memory or from
a saved trajectory; with a new prompt it keeps the first steps and then differs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import sdviz
from sdviz import cli
from sdviz.sampling import schedulers
from sdviz.sampling.fork import Fork, fork_settings
from sdviz.sampling.settings import Settings

PROMPT = "a large red circle on the left on a blue background"
OTHER = "a small yellow triangle at the top on a purple background"


def assert_same_run(fork, parent):
    assert len(fork.steps) == len(parent.steps)
    for mine, theirs in zip(fork.steps, parent.steps):
        for name in ("x_t", "x_next", "noise_pred", "x0_pred"):
            np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name), err_msg=f"{name} {mine.index}")
    np.testing.assert_array_equal(fork.final_image, parent.final_image)


@pytest.mark.parametrize("name", schedulers.for_family("sd"))
def test_an_unchanged_fork_is_its_parent_bit_for_bit(embedded, name):
    settings = Settings(prompt=PROMPT, scheduler=name, steps=5, eta=0.7, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eta is ignored by most schedulers; it is used by DDIM
        parent = sdviz.generate(embedded, settings)
        # after 3 entries a second-order scheduler is between the two stages of a step
        fork = sdviz.generate(embedded, settings, fork=Fork(parent, 3))
    assert_same_run(fork, parent)
    assert fork.settings.forked_from == {"at": 3, "parent": parent.settings.to_dict()}


def test_a_new_prompt_keeps_the_first_steps_then_differs(embedded):
    parent = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=10, seed=2))
    fork = sdviz.generate(embedded, fork_settings(parent, prompt=OTHER), fork=Fork(parent, 3))
    for mine, theirs in zip(fork.steps[:3], parent.steps[:3]):
        np.testing.assert_array_equal(mine.x_next, theirs.x_next)
    np.testing.assert_array_equal(fork.steps[3].x_t, parent.steps[3].x_t)  # the same state at the fork
    assert not np.array_equal(fork.steps[3].noise_pred, parent.steps[3].noise_pred)  # the new words from there
    assert np.abs(fork.final_image.astype(int) - parent.final_image).mean() > 5
    assert fork.settings.prompt == OTHER and fork.tokens != parent.tokens


def test_a_saved_trajectory_holds_what_a_fork_needs(embedded, tmp_path):
    """From the saved folder, with eta changed in a first fork and the fork forked again: each step is
    replayed with the eta it was taken with."""
    parent = sdviz.generate(embedded, Settings(prompt=PROMPT, scheduler="ddim", steps=8, eta=0.0, seed=5))
    parent.save(tmp_path / "parent")
    loaded = sdviz.Trajectory.load(tmp_path / "parent")
    assert_same_run(sdviz.generate(embedded, fork_settings(loaded), fork=Fork(loaded, 4)), parent)
    noisy = sdviz.generate(embedded, fork_settings(loaded, eta=0.9), fork=Fork(loaded, 2))
    assert not np.array_equal(noisy.steps[2].x_next, parent.steps[2].x_next)  # eta's noise from step 3 on
    noisy.save(tmp_path / "noisy")
    again = sdviz.Trajectory.load(tmp_path / "noisy")
    assert [s.eta for s in again.steps] == [0.0, 0.0] + [0.9] * 6
    assert_same_run(sdviz.generate(embedded, fork_settings(again), fork=Fork(again, 5)), noisy)


def test_an_img2img_fork_starts_from_the_parents_image(embedded):
    start = np.zeros((64, 64, 3), np.uint8)
    start[:, :32] = (200, 40, 40)
    settings = Settings(prompt=PROMPT, scheduler="euler_a", steps=10, strength=0.7, seed=1)
    parent = sdviz.generate(embedded, settings, init_image=start)
    assert_same_run(sdviz.generate(embedded, settings, fork=Fork(parent, 3)), parent)


@pytest.mark.parametrize("change, message", [
    ({"scheduler": "euler"}, "scheduler 'euler' differs from the parent run's 'ddim'; a fork keeps"),
    ({"steps": 9}, "steps 9 differs"),
    ({"seed": 1}, "seed 1 differs"),
    ({"width": 32}, "width 32 differs"),
])
def test_a_fork_refuses_what_it_cannot_carry_over(embedded, change, message):
    parent = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=4))
    with pytest.raises(ValueError, match=message):
        sdviz.Run(embedded, fork_settings(parent, **change), fork=Fork(parent, 2))
    sdviz.Run(embedded, fork_settings(parent, scheduler="DDIMScheduler"), fork=Fork(parent, 2))  # the same one
    with pytest.raises(ValueError, match=r"fork step \(at\) 5 is out of range"):
        sdviz.Run(embedded, fork_settings(parent), fork=Fork(parent, 5))


def test_cli_render_fork(tmp_path, capsys):
    """In process (the command line's `main`, as `python -m sdviz` calls it; test_cli runs it as a user does)."""
    parent_dir, fork_dir = tmp_path / "parent", tmp_path / "fork"
    assert cli.main(["render", "--prompt", PROMPT, "--steps", "8", "--scheduler", "dpmpp_2m", "--seed", "3",
                     "--out", str(parent_dir)]) == 0
    assert cli.main(["render", "--fork", str(parent_dir), "--at", "4", "--prompt", OTHER, "--guidance", "5",
                     "--out", str(fork_dir)]) == 0
    meta = json.loads((fork_dir / "trajectory.json").read_text())
    assert meta["settings"]["forked_from"]["at"] == 4
    assert (meta["settings"]["scheduler"], meta["settings"]["steps"], meta["settings"]["seed"]) == ("dpmpp_2m", 8, 3)
    assert (meta["settings"]["prompt"], meta["settings"]["guidance"]) == (OTHER, 5.0)
    parent, fork = np.load(parent_dir / "latents.npz"), np.load(fork_dir / "latents.npz")
    np.testing.assert_array_equal(fork["x_t"][:4], parent["x_t"][:4])
    assert not np.array_equal(fork["x_t"][4:], parent["x_t"][4:])
    capsys.readouterr()
    assert cli.main(["render", "--fork", str(parent_dir), "--at", "4", "--steps", "9",
                     "--out", str(tmp_path / "x")]) == 2
    refused = capsys.readouterr().err
    assert "steps 9 differs from the parent run's 8" in refused and refused.count("\n") == 1
    assert cli.main(["render", "--fork", str(tmp_path), "--at", "1", "--out", str(tmp_path / "y")]) == 2
    assert "is not a run folder (no trajectory.json)" in capsys.readouterr().err
