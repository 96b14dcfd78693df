"""Exports read back: GIF and MP4 frames, the filmstrip layout, per-step PNGs."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz.drawing.sheets import FILMSTRIP_SIDE, MIN_VIDEO_SIDE, filmstrip, pick, save_gif, save_mp4
from sdviz.workflows.render import save_step_pngs


@pytest.fixture(scope="module")
def traj(embedded):
    return sdviz.generate(embedded, sdviz.Settings(prompt="a large blue triangle on the right", steps=12, seed=9))


def test_gif_holds_noise_then_every_decoded_step(traj, tmp_path):
    path = save_gif(traj, tmp_path / "t.gif")
    frames = iio.imread(path, index=None)
    assert len(frames) == len(traj.steps) + 1  # the starting noise, then one per step
    factor = frames.shape[1] // traj.final_image.shape[0]
    assert frames.shape[1] >= MIN_VIDEO_SIDE
    last = frames[-1][::factor, ::factor, :3]
    # GIF is palette-quantised: close to the final image, far from the noise
    assert np.abs(last.astype(int) - traj.final_image).mean() < 8
    assert np.abs(last.astype(int) - traj.noise_image).mean() > 20


def test_mp4_plays_the_trajectory(traj, tmp_path):
    path = save_mp4(traj, tmp_path / "t.mp4", fps=8, hold_last=1.0)
    frames = list(_mp4_frames(path))
    assert len(frames) == len(traj.steps) + 1 + 8
    factor = frames[-1].shape[0] // traj.final_image.shape[0]
    assert np.abs(frames[-1][::factor, ::factor].astype(int) - traj.final_image).mean() < 12


def _mp4_frames(path):
    import imageio.v2 as imageio

    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        yield from reader


def test_filmstrip_shows_a_readable_selection_with_step_numbers(traj):
    sheet = filmstrip(traj, most=5)
    assert sheet.width > sheet.height
    assert pick(len(traj.steps) + 1, 5) == [0, 3, 6, 9, 12]  # noise ... last step
    # the last tile of the x_t row is the final image, scaled by a whole factor
    tile = np.asarray(sheet)
    h = traj.final_image.shape[0]
    scale = -(-FILMSTRIP_SIDE // h)
    found = _find(tile, np.asarray(Image.fromarray(traj.final_image)
                                   .resize((h * scale, h * scale), Image.Resampling.NEAREST)))
    assert found


def _find(sheet: np.ndarray, tile: np.ndarray) -> bool:
    th, tw = tile.shape[:2]
    for y in range(0, sheet.shape[0] - th + 1):
        row = sheet[y, :, :]
        for x in np.flatnonzero((row[:, 0] == tile[0, 0, 0]) & (row[:, 1] == tile[0, 0, 1])):
            if x + tw <= sheet.shape[1] and np.array_equal(sheet[y : y + th, x : x + tw], tile):
                return True
    return False


def test_step_pngs_are_named_from_000(traj, tmp_path):
    written = save_step_pngs(traj, tmp_path)
    names = sorted(p.name for p in (tmp_path / "xt").iterdir())
    assert names == [f"{i:03d}.png" for i in range(12)] + ["noise.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "xt" / "011.png")), traj.final_image)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "x0" / "005.png")), traj.steps[5].x0_image)
    assert len(written) == 1 + 2 * 12


def test_pick_keeps_first_and_last():
    assert pick(3, 10) == [0, 1, 2]
    chosen = pick(51, 10)
    assert chosen[0] == 0 and chosen[-1] == 50 and len(chosen) == 10
