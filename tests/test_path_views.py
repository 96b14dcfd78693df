"""The path's views (issue 35): `sdviz map` and `sdviz words` on saved runs and comparisons, the Python API's
names, the run page's and comparison page's map and partings, compare.json's; and a headless Chromium that
clicks a point of run.html's map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import sdviz
from tests.helpers import sdviz_main

FISH = "a fish on the left and a rocket on the right"
STEPS = 10


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two runs of one seed and prompt saved as `render` saves them (guidance 7.5 with attention, guidance 1
    without), and a comparison of guidance 1 and 7.5 saved as `compare --html` saves it."""
    root = tmp_path_factory.mktemp("path-views")
    common = ("--prompt", FISH, "--steps", str(STEPS), "--seed", "0")
    for name, extra in (("fish", ("--attention",)), ("plain", ("--guidance", "1"))):
        result = sdviz_main("render", *common, *extra, "--out", str(root / name))
        assert result.returncode == 0, result.stderr
    result = sdviz_main("compare", "--prompt", FISH, "--steps", "6", "--vary", "guidance=1,7.5", "--html",
                        "--out", str(root / "cmp"))
    assert result.returncode == 0, result.stderr
    return root


def _one_error_line(result, message: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("sdviz: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr


# --- the command line ---------------------------------------------------------------------------

def test_map_json_has_a_point_per_step_and_one_seed_starts_at_one_point(saved):
    result = sdviz_main("map", "fish", "plain", "--json", cwd=saved)
    assert result.returncode == 0, result.stderr
    mapped = json.loads(result.stdout)
    assert mapped["method"] == "pca" and len(mapped["explained"]) == 2 and mapped["explained"][0] > 0
    assert [run["folder"] for run in mapped["runs"]] == ["fish", "plain"]  # the folders as given
    for run in mapped["runs"]:
        assert len(run["points"]) == STEPS + 1 and len(run["x0_points"]) == STEPS
        assert all(len(point) == 2 for point in run["points"] + run["x0_points"])
    first, second = (np.array(run["points"]) for run in mapped["runs"])
    np.testing.assert_allclose(first[0], second[0], atol=1e-4)  # one noise, one point
    assert np.linalg.norm(first[-1] - second[-1]) > 1e-2  # guidance 1 and 7.5 end apart
    summary = sdviz_main("map", "fish", "plain", cwd=saved)  # without --json: a few lines for a reader
    assert summary.returncode == 0 and "PC1 holds" in summary.stdout and "fish: 10 steps" in summary.stdout


def test_map_of_a_comparison_maps_its_variants_and_draws_a_png(saved, tmp_path):
    out = tmp_path / "map.png"
    result = sdviz_main("map", str(saved / "cmp"), "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [run["folder"] for run in runs] == [str(saved / "cmp" / f) for f in ("01_guidance=1.0", "02_guidance=7.5")]
    assert all(len(run["points"]) == 7 for run in runs)
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape[0] > 200 and picture.shape[1] > 300
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert (31, 119, 180) in colours and (214, 39, 40) in colours  # both runs drawn, each in its colour


@pytest.mark.parametrize("box,near,far", [("0,0,32,64", "fish", "rocket"), ("32,0,64,64", "rocket", "fish")])
def test_words_in_a_box_rank_the_object_there_first(saved, box, near, far):
    result = sdviz_main("words", "fish", "--step", str(STEPS), "--box", box, "--span", "run", "--json", cwd=saved)
    assert result.returncode == 0, result.stderr
    ranked = json.loads(result.stdout)
    assert {"index", "word", "share"} <= set(ranked[0])
    order = [item["word"] for item in ranked]
    assert order.index(near) < order.index(far), ranked
    assert [item["share"] for item in ranked] == sorted((item["share"] for item in ranked), reverse=True)
    shown = sdviz_main("words", "fish", "--step", "3", "--box", box, cwd=saved)  # a ranked list with bars
    assert shown.returncode == 0 and "at step 3 of 10" in shown.stdout and "█" in shown.stdout


@pytest.mark.parametrize("run,step,box,message", [
    ("plain", "1", "0,0,8,8", "this run kept no attention maps"),
    ("fish", "1", "0,0,65,8", "box 0,0,65,8 is outside the image or empty"),
    ("fish", "1", "8,8,8,16", "is outside the image or empty"),
    ("fish", "1", "0,0,8", "box '0,0,8' is not four numbers"),
    ("fish", "0", "0,0,8,8", "--step 0 is out of range; allowed: 1..10"),
    ("fish", "11", "0,0,8,8", "--step 11 is out of range; allowed: 1..10"),
    ("nothing", "1", "0,0,8,8", "is not a run folder"),
])
def test_words_refusals_are_one_line_and_exit_code_2(saved, run, step, box, message):
    _one_error_line(sdviz_main("words", run, "--step", step, "--box", box, cwd=saved), message)


def test_map_refusals_are_one_line(saved):
    _one_error_line(sdviz_main("map", "fish", "--method", "tsne", cwd=saved), "method 'tsne' is not one of")
    _one_error_line(sdviz_main("map", "fish", "nothing", cwd=saved), "RUN_DIR 'nothing' is not a run folder")
    zh = sdviz_main("words", "plain", "--step", "1", "--box", "0,0,8,8", "--lang", "zh", cwd=saved)
    assert zh.returncode == 2 and "sdviz: error:" in zh.stderr and "this run" not in zh.stderr  # in Chinese


# --- the Python API -----------------------------------------------------------------------------

def test_the_path_is_in_the_top_level_api_and_on_a_comparison(embedded):
    from sdviz.analysis import path

    assert (sdviz.trajectory_map, sdviz.region_words, sdviz.parting) == (path.trajectory_map, path.region_words,
                                                                         path.parting)
    comparison = sdviz.compare(embedded, sdviz.Settings(prompt=FISH, steps=5), {"guidance": [1.0, 7.5]})
    mapped = comparison.map()
    assert [len(p) for p in mapped.points] == [6, 6]
    parted = comparison.parting(0, 1)
    assert len(parted["x0"]) == 5 and parted["threshold"] == path.PARTED and parted["by"] == "progress"
    assert comparison.parting(1, 1)["parted_at"] is None  # a variant never parts from itself
    with pytest.raises(sdviz.InputError, match="variant 2 is out of range; allowed: 0..1"):
        comparison.parting(0, 2)
