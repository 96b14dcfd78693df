"""Latents are the record, frames a cache: released frames come back bit for bit, within a bound."""

from __future__ import annotations

import numpy as np
import pytest

import sdviz
from sdviz.sampling.frames import FrameCache
from sdviz.sampling.previews import Previewer


def run(model, **settings):
    return sdviz.generate(model, sdviz.Settings(prompt="a red circle on the left", **settings))


def decoder(model, traj):
    return Previewer.of(model, traj.settings)


@pytest.mark.parametrize("preview, scheduler", [("full", "ddim"), ("approx", "ddim"), ("full", "euler")])
def test_released_frames_are_decoded_again_bit_for_bit(embedded, preview, scheduler):
    traj = run(embedded, steps=6, preview=preview, scheduler=scheduler)  # euler: x_t needs its VP scale
    kept = [(s.x_t_image.copy(), s.x0_image.copy()) for s in traj.steps]
    traj.frame_cache = FrameCache(max_bytes=1)  # keeps only the newest pair
    for record in traj.steps:
        traj.frame_cache.take(record)
    assert all(s.x_t_image is None and s.decoded for s in traj.steps)
    assert len(traj.frame_cache) == 1
    decode = decoder(embedded, traj)
    for index in (0, 3, 5, 1):  # the last step is decoded alone, as the pipeline decodes its image
        x_t, x0 = traj.step_frames(index, decode)
        assert np.array_equal(x_t, kept[index][0]) and np.array_equal(x0, kept[index][1]), index
    assert np.array_equal(traj.step_frames(5, decode)[0], traj.final_image if preview == "full" else kept[5][0])


def test_any_step_can_be_shown_and_a_stopped_runs_last_step_is_decoded_as_the_run_did(embedded):
    every_step = run(embedded, steps=8)
    sparse = run(embedded, steps=8, every=3)
    assert [s.decoded for s in sparse.steps] == [False, False, True, False, False, True, False, True]
    decode = decoder(embedded, sparse)
    for index in (0, 4, 6):  # never decoded by the run
        x_t, x0 = sparse.step_frames(index, decode)
        assert np.array_equal(x_t, every_step.steps[index].x_t_image)
        assert np.array_equal(x0, every_step.steps[index].x0_image)

    stopped = sdviz.Run(embedded, sdviz.Settings(prompt="a red circle on the left", steps=8))
    for record in stopped:
        if record.index == 4:
            stopped.stop()
    traj = stopped.trajectory
    assert not traj.complete and len(traj.steps) == 5
    frames = traj.steps[-1].x_t_image.copy()
    FrameCache().take(traj.steps[-1])  # released, and the cache gone: decoded again, batched as mid-run steps are
    traj.frame_cache = FrameCache()
    assert np.array_equal(traj.step_frames(4, decoder(embedded, traj))[0], frames)


def test_frames_held_stay_under_the_bound_whatever_the_step_count(embedded):
    """A run of three times as many steps as the cache may hold frames for, scrubbed through."""
    steps = 30
    traj = run(embedded, steps=steps)
    pair = traj.steps[0].x_t_image.nbytes * 2
    traj.frame_cache = FrameCache(max_bytes=10 * pair)
    for record in traj.steps:
        traj.frame_cache.take(record)
    decode = decoder(embedded, traj)
    for index in range(0, steps, 2):  # scrubbing through the run
        traj.step_frames(index, decode)
    held = traj.nbytes()
    assert held["frames"] == traj.frame_cache.nbytes <= 10 * pair
    latents = traj.steps[0].x_next.nbytes
    guided = 5  # x_next, noise_uncond, noise_cond, noise_pred, x0_pred: x_t is the step before's x_next
    assert held["latents"] == latents * (1 + guided * steps)
    assert all(traj.steps[i].x_t is traj.steps[i - 1].x_next for i in range(1, steps))
    assert traj.steps[0].x_t is traj.x_start


def test_a_trajectory_without_its_frames_says_so_and_exports_with_them(embedded, tmp_path):
    traj = run(embedded, steps=4)
    traj.save(tmp_path / "kept")
    traj.frame_cache = FrameCache()
    for record in traj.steps:
        traj.frame_cache.take(record)
    with pytest.raises(ValueError, match="released"):
        traj.frames()
    with pytest.raises(ValueError, match="released"):
        traj.save(tmp_path / "released")
    traj.frame_cache = FrameCache()  # an empty cache: step 3's frames are nowhere
    with pytest.raises(ValueError, match="not kept"):
        traj.step_frames(2)
    full = traj.with_frames(decoder(embedded, traj))
    assert all(s.x_t_image is None for s in traj.steps)  # the copy has them, the original not
    full.save(tmp_path / "again")
    with np.load(tmp_path / "kept" / "frames.npz") as before, np.load(tmp_path / "again" / "frames.npz") as after:
        assert sorted(before.files) == sorted(after.files)
        for name in before.files:
            assert np.array_equal(before[name], after[name]), name


def test_a_follower_that_releases_each_steps_frames_still_gets_the_final_image(embedded):
    """Found in the browser: the app takes each step's frames as it streams, and the run's final image
    (the last step's frame, with the full preview) was read back from the emptied record."""
    reference = run(embedded, steps=5)
    followed = sdviz.Run(embedded, sdviz.Settings(prompt="a red circle on the left", steps=5))
    cache = FrameCache()
    for record in followed:
        cache.take(record)
    assert followed.trajectory.complete
    assert np.array_equal(followed.trajectory.final_image, reference.final_image)
