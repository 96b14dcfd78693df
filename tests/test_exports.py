"""Exports read back: GIF and MP4 frames, the filmstrip layout, per-step PNGs."""

from __future__ import annotations

import math

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz.drawing.sheets import (
    FILMSTRIP_SIDE,
    MAX_ENLARGED_PIXELS,
    MAX_TILE_PIXELS,
    MIN_VIDEO_SIDE,
    enlarge,
    filmstrip,
    pick,
    save_gif,
    save_mp4,
    sheet,
)
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


def test_enlargements_and_sheet_tiles_are_bounded_by_their_pixels():
    """A thin frame is not blown up by its short side: an enlargement (GIF, MP4, views) stays within
    MAX_ENLARGED_PIXELS and a sheet's tile within MAX_TILE_PIXELS; a small square frame is enlarged as before."""
    thin, square = np.zeros((4, 2048, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    enlarged = enlarge(thin, MIN_VIDEO_SIDE)
    assert enlarged.shape[0] * enlarged.shape[1] <= MAX_ENLARGED_PIXELS < 4 * 64 * 2048 * 64  # unbounded: x64
    assert enlarge(square, MIN_VIDEO_SIDE).shape == (MIN_VIDEO_SIDE, MIN_VIDEO_SIDE, 3)
    columns = 10
    drawn = sheet([("x_t", [(f"step {k}", thin) for k in range(columns)])])
    tile_width = 2048 * math.isqrt(MAX_TILE_PIXELS // (4 * 2048))  # scaled x2 at most; x32 by its short side
    assert drawn.width <= tile_width * (columns * 17 / 16 + 1)  # the tiles, their gaps and the row's label
    assert sheet([("x_t", [("step 1", square)])]).height >= FILMSTRIP_SIDE  # small frames still enlarged
