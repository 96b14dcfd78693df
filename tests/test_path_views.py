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


# --- the pages ----------------------------------------------------------------------------------

def _page_data(page: str) -> dict:
    return json.loads(page.split('id="sdviz-data">')[1].split("</script>")[0])


@pytest.fixture(scope="module")
def run(embedded):
    run = sdviz.Run(embedded, sdviz.Settings(prompt=FISH, steps=8, seed=2))
    for _ in run:
        pass
    return run


def test_the_run_page_holds_the_path_of_its_steps(run):
    from sdviz.analysis.path import trajectory_map
    from sdviz.drawing.page import run_data

    traj = run.trajectory
    mapped = run_data(traj, run.previewer)["map"]
    assert len(mapped["points"]) == len(traj.steps) + 1 and len(mapped["x0_points"]) == len(traj.steps)
    expected = trajectory_map([traj])
    np.testing.assert_allclose(mapped["points"], expected.points[0], atol=1e-4)
    np.testing.assert_allclose(mapped["x0_points"], expected.x0_points[0], atol=1e-4)
    assert mapped["explained"] == expected.explained and sum(mapped["explained"]) <= 1


def test_the_comparison_page_maps_every_variant_and_says_where_they_part(saved, run):
    from sdviz.drawing.page import comparison_page

    data = _page_data((saved / "cmp" / "compare.html").read_text())  # as `compare --html` wrote it
    assert [r["variant"] for r in data["map"]["runs"]] == [0, 1]
    assert all(len(r["points"]) == 7 and len(r["x0_points"]) == 6 for r in data["map"]["runs"])
    np.testing.assert_allclose(data["map"]["runs"][0]["points"][0], data["map"]["runs"][1]["points"][0], atol=1e-4)
    (parted,) = data["parting"]
    assert (parted["variant"], parted["against"]) == (1, 0) and len(parted["x0"]) == len(parted["x_t"]) == 6
    assert parted["parted_at"] is not None and max(parted["x0"]) > parted["threshold"]  # guidance 1 and 7.5 differ
    traj = run.trajectory  # one run against itself never parts: every difference 0
    same = _page_data(comparison_page(sdviz.Comparison([traj, traj], ["a", "b"], previewers=[run.previewer] * 2)))
    assert same["parting"][0]["parted_at"] is None and same["parting"][0]["x0"] == [0.0] * len(traj.steps)


@pytest.mark.browser
def test_a_click_on_the_path_moves_the_slider_to_that_step(run, tmp_path, saved):
    from selenium.webdriver.common.by import By

    from sdviz.drawing.page import run_page
    from tests.test_page import browser, requests_made

    path = tmp_path / "run.html"
    path.write_text(run_page(run.trajectory, run.previewer))
    driver = browser(tmp_path)
    try:
        driver.get(path.as_uri())
        label = driver.find_element(By.ID, "step-label")
        assert label.text.startswith("step 8 / 8")
        x_t = [c for c in driver.find_elements(By.CSS_SELECTOR, "#path circle.point") if c.get_attribute("r") == "3"
               and c.get_attribute("fill-opacity") is None]
        assert len(x_t) == 8  # x_t after each step (the start is a larger circle)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", x_t[2])
        x_t[2].click()  # x_t after step 3
        assert label.text.startswith("step 3 / 8")
        assert driver.find_element(By.ID, "slider").get_attribute("value") == "2"
        ring = driver.execute_script("return Array.from(document.querySelectorAll('#path circle[r=\"7\"]'))"
                                     ".map(c => [c.getAttribute('cx'), c.getAttribute('cy')])")
        assert [x_t[2].get_attribute("cx"), x_t[2].get_attribute("cy")] in ring  # the step ringed on the map
        driver.get((saved / "cmp" / "compare.html").as_uri())  # the comparison: both variants, where they part
        assert len(driver.find_elements(By.CSS_SELECTOR, "#path polyline")) == 2
        assert "variant 2 parts from variant 1 at step" in driver.find_element(By.ID, "parting-text").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "#parting polyline")) == 2  # the curve and the threshold
        assert requests_made(driver) == []
    finally:
        driver.quit()


def test_compare_json_says_where_the_variants_part_and_maps_them(saved):
    summary = json.loads((saved / "cmp" / "compare.json").read_text())
    (parted,) = summary["parting"]
    assert set(parted) == {"variant", "against", "parted_at", "threshold", "x0", "x_t"}
    assert (parted["variant"], parted["against"]) == (1, 0) and len(parted["x0"]) == len(parted["x_t"]) == 6
    after = parted["x0"][parted["parted_at"] - 1:]  # from the step where they part, x0 stays apart
    assert after and all(difference > parted["threshold"] for difference in after)
    assert [run["folder"] for run in summary["map"]["runs"]] == [v["folder"] for v in summary["variants"]]
    mapped = json.loads(sdviz_main("map", str(saved / "cmp"), "--json").stdout)  # the CLI's map: the same points
    for saved_run, mapped_run in zip(summary["map"]["runs"], mapped["runs"]):
        np.testing.assert_allclose(saved_run["points"], mapped_run["points"], atol=1e-3)
