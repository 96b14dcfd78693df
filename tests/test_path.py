"""The path a run takes (sdviz.analysis.path): the shared map of steps, the words behind a region, where two
runs part; checked on the default object model's runs against numpy and against what the runs hold."""

from __future__ import annotations

import numpy as np
import pytest

import sdviz
from sdviz.analysis.path import PARTED, parting, path_latents, region_words, start_vp, trajectory_map
from sdviz.sampling.fork import Fork, fork_settings

TWO = "a {left} on the left and a {right} on the right"


@pytest.fixture(scope="module")
def runs(default):
    """One seed and prompt at guidance 1 and 7.5, and the same run with Euler ancestral."""
    base = sdviz.Settings(prompt=TWO.format(left="fish", right="rocket"), steps=12, seed=4)
    low = sdviz.generate(default, sdviz.Settings(**{**base.to_dict(), "guidance": 1.0}))
    high = sdviz.generate(default, base)
    euler = sdviz.generate(default, sdviz.Settings(**{**base.to_dict(), "scheduler": "euler"}))
    return low, high, euler


def test_the_map_has_a_point_per_step_and_runs_from_one_noise_start_together(runs):
    low, high, euler = runs
    mapped = trajectory_map([low, high, euler])
    for traj, points, x0_points in zip(runs, mapped.points, mapped.x0_points):
        assert points.shape == (len(traj.steps) + 1, 2) and x0_points.shape == (len(traj.steps), 2)
    np.testing.assert_allclose(mapped.points[0][0], mapped.points[1][0], atol=1e-5)  # one noise, one point
    np.testing.assert_allclose(mapped.points[0][0], mapped.points[2][0], atol=1e-4)  # Euler's σ-scaled start too
    spread = np.ptp(np.concatenate(mapped.points), axis=0).max()
    assert np.linalg.norm(mapped.points[0][-1] - mapped.points[1][-1]) > 0.05 * spread  # guidance: they end apart


def test_the_map_is_the_same_in_any_order_and_pca_explains_what_numpy_says(runs):
    low, high, euler = runs
    forward = trajectory_map([low, high, euler])
    backward = trajectory_map([euler, high, low])
    for k, j in ((0, 2), (1, 1), (2, 0)):
        np.testing.assert_allclose(forward.points[k], backward.points[j], atol=1e-4)
        np.testing.assert_allclose(forward.x0_points[k], backward.x0_points[j], atol=1e-4)
    rows = np.concatenate([block for t in runs for block in path_latents(t)]).astype(np.float64)
    singular = np.linalg.svd(rows - rows.mean(axis=0), compute_uv=False)
    assert forward.explained[0] == pytest.approx(singular[0] ** 2 / (singular ** 2).sum(), rel=1e-6)
    assert forward.explained[0] >= forward.explained[1] > 0


def test_a_variance_exploding_start_is_brought_to_the_denoisers_scale(runs):
    low, _, euler = runs
    np.testing.assert_allclose(start_vp(euler), start_vp(low), atol=1e-4)  # both are the seed's noise
    assert np.abs(euler.x_start).std() > 3 * np.abs(low.x_start).std()  # Euler's own form is σ times larger


@pytest.mark.parametrize("left,right,seed", [("fish", "rocket", 0), ("apple", "star", 3), ("rocket", "tree", 7)])
def test_a_box_on_an_object_ranks_its_word_above_the_other(default, left, right, seed):
    traj = sdviz.generate(default, sdviz.Settings(prompt=TWO.format(left=left, right=right), steps=10, seed=seed),
                          attention=True)
    height, width = traj.attention.image_hw
    for box, near, far in (((0, 0, width // 2, height), left, right), ((width // 2, 0, width, height), right, left)):
        ranked = region_words(traj, len(traj.steps) - 1, box, span="run")
        share = {item["word"]: item["share"] for item in ranked}
        assert share[near] > share[far], (box, ranked)
        assert [item["share"] for item in ranked] == sorted((item["share"] for item in ranked), reverse=True)
    # a word's share inside the box and outside it sum to 1: the left half and the right half
    last = len(traj.steps) - 1
    left_half = {i["index"]: i["share"] for i in region_words(traj, last, (0, 0, width // 2, height), "step")}
    right_half = {i["index"]: i["share"] for i in region_words(traj, last, (width // 2, 0, width, height), "step")}
    for index, share in left_half.items():
        assert share + right_half[index] == pytest.approx(1.0, abs=1e-6)
    kinds = {item["kind"] for item in region_words(traj, 0, (0, 0, width, height))}
    assert kinds == {"start", "word", "end"}  # the start and end tokens are ranked too


def test_the_negative_prompts_words_are_ranked_when_there_is_one(default):
    traj = sdviz.generate(default, sdviz.Settings(prompt="a fish on the left", negative_prompt="a blue star",
                                                   steps=6), attention=True)
    ranked = region_words(traj, 5, (0, 0, 32, 32), "upto")
    negative = {item["word"] for item in ranked if item["negative"]}
    assert {"blue", "star"} <= negative and "fish" in {item["word"] for item in ranked if not item["negative"]}


def test_words_refuse_a_run_without_attention_and_a_box_outside_the_image(runs, default):
    with pytest.raises(sdviz.InputError, match="no attention maps"):
        region_words(runs[0], 3, (0, 0, 10, 10))
    traj = sdviz.generate(default, sdviz.Settings(prompt="a star", steps=3), attention=True)
    for box in ((0, 0, 65, 10), (10, 10, 10, 20), (-1, 0, 5, 5)):
        with pytest.raises(sdviz.InputError, match="outside the image"):
            region_words(traj, 1, box)
    with pytest.raises(sdviz.InputError, match="box 'a,b' is not four numbers"):
        region_words(traj, 1, "a,b")
    with pytest.raises(sdviz.InputError, match="step 4 is out of range"):
        region_words(traj, 3, (0, 0, 8, 8))


def test_a_fork_that_changes_nothing_never_parts_and_a_new_prompt_parts_after_the_fork(runs, default):
    parent = runs[1]
    same = sdviz.generate(default, fork_settings(parent), fork=Fork(parent, at=4))
    result = parting(parent, same, (parent.decoder(), same.decoder()))
    assert result["parted_at"] is None and max(result["x0"]) <= PARTED
    changed = sdviz.generate(default, fork_settings(parent, prompt=TWO.format(left="star", right="apple")),
                             fork=Fork(parent, at=4))
    result = parting(parent, changed, (parent.decoder(), changed.decoder()))
    assert result["parted_at"] is not None and result["parted_at"] > 4
    assert result["x0"][:4] == [0.0] * 4 and len(result["x_t"]) == 12 and result["threshold"] == PARTED



def test_an_image_to_image_run_maps_from_its_noised_image(default, runs):
    traj = sdviz.generate(default, sdviz.Settings(prompt=TWO.format(left="star", right="apple"), steps=10,
                                                  strength=0.5), init_image=runs[1].final_image)
    mapped = trajectory_map([traj, runs[1]])
    assert len(mapped.points[0]) == len(traj.steps) + 1 and len(traj.steps) == 5
    # it starts from the noised image, nearer to the image it was given than the other run's pure noise is
    start, noise, image = mapped.points[0][0], mapped.points[1][0], mapped.points[1][-1]
    assert np.linalg.norm(start - image) < np.linalg.norm(noise - image)
