"""Comparisons: the variants a --vary gives, lining runs up by progress or noise level, the grid with one
column per variant, and `compare` from the command line writing what `render` writes for each variant."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz import cli
from sdviz.analysis.align import ALIGNMENTS, align, at, positions
from sdviz.sampling.settings import Settings
from sdviz.workflows.compare import VIDEO_FRAMES, Comparison, folder_name, parse_vary, read_vary, variants
from tests.test_exports import _mp4_frames

PROMPT = "a large red circle on the left on a blue background"


def test_vary_gives_the_product_and_refuses_more_than_eight():
    base = Settings(prompt=PROMPT)
    chosen = variants(base, [parse_vary("scheduler=ddim,euler_a"), parse_vary("guidance=1,7.5")])
    assert [(v["settings"].scheduler, v["settings"].guidance) for v in chosen] == [
        ("ddim", 1.0), ("ddim", 7.5), ("euler_a", 1.0), ("euler_a", 7.5)]
    assert chosen[1]["label"] == "scheduler=ddim, guidance=7.5" and chosen[1]["settings"].prompt == PROMPT
    assert parse_vary("prompt=a red circle, big|a blue square") == ("prompt", ["a red circle, big",
                                                                                      "a blue square"])
    with pytest.raises(ValueError, match="vary gives 9 variants \\(3 x 3\\); allowed: 2 to 8"):
        variants(base, [parse_vary("steps=4,5,6"), parse_vary("eta=0,0.5,1")])
    with pytest.raises(ValueError, match="vary gives 1 variants"):
        variants(base, [parse_vary("steps=4")])
    with pytest.raises(ValueError, match="allowed names: scheduler, steps"):
        parse_vary("colour=red,blue")
    with pytest.raises(ValueError, match="vary steps: 'four' is not a value of steps; allowed: int values"):
        parse_vary("steps=four,five")


def test_a_variants_folder_is_its_number_and_its_values_in_safe_characters():
    assert folder_name(0, "scheduler=ddim, guidance=7.5") == "01_scheduler=ddim_guidance=7.5"
    assert folder_name(2, "prompt=a cat / a dog?") == "03_prompt=a-cat---a-dog"
    assert folder_name(1, "???") == "02"  # nothing safe is left: the number alone, not '02_'


def test_runs_line_up_by_progress_and_by_noise_level(embedded):
    short = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=4))
    heun = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=8, scheduler="heun"))  # 15 entries
    by_progress = align([short, heun], rows=3, by="progress")
    assert by_progress == [[0, 0], [2, 7], [3, 14]]
    by_sigma = align([short, heun], rows=4, by="sigma")
    assert by_sigma[0] == [0, 0] and by_sigma[-1][0] == 3
    assert heun.steps[by_sigma[-1][1]].sigma == heun.steps[-1].sigma  # Heun's last level, first of its two entries
    assert all(a <= b for column in zip(*by_sigma) for a, b in zip(column, column[1:]))
    logs = [np.log([s.sigma for s in traj.steps]) for traj in (short, heun)]
    widest = max(float(np.abs(np.diff(v)).max()) for v in logs)  # the widest gap between two steps' levels
    for i, j in by_sigma:  # lined up at the same noise level, as near as the runs' own steps allow
        assert abs(logs[0][i] - logs[1][j]) <= widest
    with pytest.raises(ValueError, match="align 'time' is not a choice"):
        align([short], by="time")


def test_the_grid_has_one_column_per_variant(embedded):
    runs = [sdviz.generate(embedded, Settings(prompt=PROMPT, steps=3, seed=seed)) for seed in range(3)]
    two, three = (Comparison(runs[:n], ["s"] * n).grid() for n in (2, 3))
    tile = three.width - two.width
    scale = max(1, -(-128 // runs[0].final_image.shape[0]))  # frames are enlarged to 128 pixels high at least
    assert tile == runs[0].final_image.shape[1] * scale + max(4, runs[0].final_image.shape[1] * scale // 16)
    assert three.height == two.height  # rows: the lined-up points and the final images


def test_cli_compare_writes_each_variants_render(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--prompt", PROMPT, "--steps", "4", "--seed", "3", "--vary", "scheduler=ddim,euler_a",
                     "--out", str(out)]) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert [v["label"] for v in summary["variants"]] == ["scheduler=ddim", "scheduler=euler_a"]
    assert Image.open(out / "compare.png").size[0] > 2 * 128 and (out / "compare.gif").stat().st_size > 0
    gif = Image.open(out / "compare.gif")
    assert gif.n_frames >= 2
    second = summary["variants"][1]
    assert cli.main(["render", "--prompt", PROMPT, "--steps", "4", "--seed", "3", "--scheduler", "euler_a",
                     "--out", str(tmp_path / "alone")]) == 0
    mine, alone = np.load(out / second["folder"] / "latents.npz"), np.load(tmp_path / "alone" / "latents.npz")
    assert mine.files == alone.files
    for name in mine.files:
        np.testing.assert_array_equal(mine[name], alone[name])
    assert sorted(p.name for p in (out / second["folder"]).iterdir()) == sorted(
        p.name for p in (tmp_path / "alone").iterdir())
    assert "the layout settles at step" in capsys.readouterr().err
    assert cli.main(["compare", "--prompt", PROMPT, "--vary", "steps=2,3,4", "--vary", "guidance=1,2,3",
                     "--out", str(tmp_path / "x")]) == 2
    assert "vary gives 9 variants" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_positions_are_where_at_finds_each_step(embedded):
    """The curves' x axis (`positions`) and the slider (`at`) read positions the same way: the step `at`
    picks is the one whose position is nearest."""
    short = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=5))
    karras = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=9, scheduler="dpmpp_2m_karras"))
    for by in ALIGNMENTS:
        xs = positions([short, karras], by)
        assert [len(x) for x in xs] == [5, 9] and min(min(x) for x in xs) == 0.0
        for position in np.linspace(0, 1, 23):
            for x, index in zip(xs, at([short, karras], position, by)):
                assert abs(x[index] - position) == min(abs(np.array(x) - position))
    assert at([short, karras], 1.0, "progress") == [4, 8]


def test_the_python_api_runs_each_variant_as_generate_does_and_writes_the_comparison(embedded, tmp_path):
    import imageio.v3 as iio

    seen = {}
    out = tmp_path / "cmp"
    result = sdviz.compare(embedded, Settings(prompt=PROMPT, steps=4, seed=3), {"scheduler": ["ddim", "heun"]},
                           by="sigma", out=out, callback=lambda i, record, total: seen.setdefault(i, []).append(total))
    assert isinstance(result, sdviz.Comparison) and result.labels == ["scheduler=ddim", "scheduler=heun"]
    assert {i: len(totals) for i, totals in seen.items()} == {0: 4, 1: 7}  # Heun: 2 x 4 - 1 entries
    for traj, scheduler in zip(result.trajectories, ("ddim", "heun")):
        alone = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=4, seed=3, scheduler=scheduler))
        np.testing.assert_array_equal(traj.final_image, alone.final_image)
        np.testing.assert_array_equal(traj.steps[1].x0_pred, alone.steps[1].x0_pred)
    summary = json.loads((out / "compare.json").read_text())
    assert summary["align"] == "sigma" and summary["vary"] == {"scheduler": ["ddim", "heun"]}
    assert [v["steps"] for v in summary["variants"]] == [4, 7]
    assert all(isinstance(v["settled_step"], int) for v in summary["variants"])
    for variant in summary["variants"]:  # a render folder per variant
        assert ((out / variant["folder"] / "trajectory.json").is_file()
                and (out / variant["folder"] / "final.png").is_file())
    gif = iio.imread(out / "compare.gif")
    assert len(gif) >= 4 and gif.shape[2] > 2 * 128  # two variants side by side, each 128 wide at least
    mp4 = list(_mp4_frames(out / "compare.mp4"))
    assert len(mp4) == VIDEO_FRAMES + 12  # and the last held 1.5 s at 8 frames a second
    assert abs(mp4[0].shape[1] - gif.shape[2]) <= 1  # the same side-by-side frames (even-padded for H.264)
    assert np.abs(mp4[-1][: gif.shape[1], : gif.shape[2]].astype(int) - gif[-1][..., :3]).mean() < 12
    np.testing.assert_array_equal(np.asarray(result.grid()), np.asarray(Image.open(out / "compare.png").convert("RGB")))
    assert read_vary(["guidance=1,2"]) == read_vary({"guidance": [1, "2"]}) == [("guidance", [1.0, 2.0])]
    with pytest.raises(ValueError, match="vary 'colour' is not a setting a variant may change"):
        sdviz.compare(embedded, Settings(prompt=PROMPT), {"colour": ["red", "blue"]})
