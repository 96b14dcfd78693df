"""Comparisons: the variants a --vary gives, lining runs up by progress or noise level, the grid with one
column per variant, and `compare` from the command line writing what `render` writes for each variant."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz import cli, compare
from sdviz.settings import Settings

PROMPT = "a large red circle on the left on a blue background"


def test_vary_gives_the_product_and_refuses_more_than_eight():
    base = Settings(prompt=PROMPT)
    chosen = compare.variants(base, [compare.parse_vary("scheduler=ddim,euler_a"), compare.parse_vary("guidance=1,7.5")])
    assert [(v["settings"].scheduler, v["settings"].guidance) for v in chosen] == [
        ("ddim", 1.0), ("ddim", 7.5), ("euler_a", 1.0), ("euler_a", 7.5)]
    assert chosen[1]["label"] == "scheduler=ddim, guidance=7.5" and chosen[1]["settings"].prompt == PROMPT
    assert compare.parse_vary("prompt=a red circle, big|a blue square") == ("prompt", ["a red circle, big",
                                                                                      "a blue square"])
    with pytest.raises(ValueError, match="vary gives 9 variants \\(3 x 3\\); allowed: 2 to 8"):
        compare.variants(base, [compare.parse_vary("steps=4,5,6"), compare.parse_vary("eta=0,0.5,1")])
    with pytest.raises(ValueError, match="vary gives 1 variants"):
        compare.variants(base, [compare.parse_vary("steps=4")])
    with pytest.raises(ValueError, match="allowed names: scheduler, steps"):
        compare.parse_vary("colour=red,blue")
    with pytest.raises(ValueError, match="are not int values"):
        compare.parse_vary("steps=four,five")


def test_runs_line_up_by_progress_and_by_noise_level(embedded):
    short = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=4))
    heun = sdviz.generate(embedded, Settings(prompt=PROMPT, steps=8, scheduler="heun"))  # 15 entries
    by_progress = compare.align([short, heun], rows=3, by="progress")
    assert by_progress == [[0, 0], [2, 7], [3, 14]]
    by_sigma = compare.align([short, heun], rows=4, by="sigma")
    assert by_sigma[0] == [0, 0] and by_sigma[-1][0] == 3
    assert heun.steps[by_sigma[-1][1]].sigma == heun.steps[-1].sigma  # Heun's last level, first of its two entries
    assert all(a <= b for column in zip(*by_sigma) for a, b in zip(column, column[1:]))
    logs = [np.log([s.sigma for s in traj.steps]) for traj in (short, heun)]
    widest = max(float(np.abs(np.diff(v)).max()) for v in logs)  # the widest gap between two steps' levels
    for i, j in by_sigma:  # lined up at the same noise level, as near as the runs' own steps allow
        assert abs(logs[0][i] - logs[1][j]) <= widest
    with pytest.raises(ValueError, match="align 'time' is not a choice"):
        compare.align([short], by="time")


def test_the_grid_has_one_column_per_variant(embedded):
    runs = [sdviz.generate(embedded, Settings(prompt=PROMPT, steps=3, seed=seed)) for seed in range(3)]
    two, three = (compare.grid(runs[:n], ["s"] * n) for n in (2, 3))
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
