"""run.html: a run as one self-contained page. Its data against the run; the command line; and a real
headless Chromium that opens the file offline, finds no request leaving the page, moves the slider, plays,
clicks a word for its heat map, and shows a prompt holding markup as text."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image

import sdviz
from sdviz import cli
from sdviz.drawing.page import HEAT_SIDE, PAGE_SIDE, comparison_page, image_uri, run_data, run_page
from sdviz.sampling.attention import AttentionCapture

HOSTILE = 'a large red circle <script>window.pwned=1</script><img src=x onerror="window.pwned=2"> on a blue background'


@pytest.fixture(scope="module")
def run(embedded):
    capture = AttentionCapture(embedded)
    run = sdviz.Run(embedded, sdviz.Settings(prompt=HOSTILE, steps=12, every=3), capture=capture)
    for _ in run:
        pass
    run.trajectory.distance_to_final = sdviz.analysis.distance.distance_to_final(run.trajectory, run.previewer)
    return run


def decoded(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/webp;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_the_page_holds_every_step_its_frames_heat_maps_and_nothing_from_outside(run, embedded):
    traj = run.trajectory
    data = run_data(traj, run.previewer)
    assert [s["index"] for s in data["steps"]] == list(range(12))  # every step, decoded or not (every 3)
    for step, record in zip(data["steps"], traj.steps):
        x_t, x0 = traj.step_frames(record.index, run.previewer)
        np.testing.assert_array_equal(decoded(step["x_t"]), x_t)  # small frames go lossless, pixel for pixel
        np.testing.assert_array_equal(decoded(step["x0"]), x0)
        assert step["sigma"] == pytest.approx(record.sigma) and "x0_uncond" in step and "noise" in step
    heat = data["heat"]
    words = [traj.attention.tokens[i].replace("</w>", "") for i in traj.attention.word_slots()]
    assert heat["words"] == words and max(heat["size"]) <= HEAT_SIDE
    maps = np.frombuffer(base64.b64decode(heat["maps"]), np.uint8).reshape(12, len(words), *heat["size"])
    assert maps.max(axis=(2, 3)).min() == 255 and maps.min(axis=(2, 3)).max() == 0  # each map normalised
    assert data["distance"]["x0"] == traj.distance_to_final["x0"]
    page = run_page(traj, run.previewer)
    assert "<script>window.pwned" not in page and "<img src=x" not in page  # the prompt is text, never markup
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # nothing loaded from anywhere
    assert len(page.encode()) < 2 * 2**20
    big = np.random.default_rng(0).integers(0, 256, (512, 512, 3), np.uint8)
    assert decoded(image_uri(big)).shape == (PAGE_SIDE, PAGE_SIDE, 3)  # larger frames scaled down
    without = run_data(traj)  # no decoder: only the steps the run decoded (every 3, and the last)
    assert [s["index"] for s in without["steps"]] == [s.index for s in traj.steps if s.decoded]


def test_cli_writes_the_page_with_render_and_for_a_saved_run_or_comparison(tmp_path, capsys):
    assert cli.main(["render", "--prompt", "a red circle", "--steps", "6", "--html", "--out", str(tmp_path / "r")]) == 0
    written = (tmp_path / "r" / "run.html").read_text()
    assert cli.main(["html", str(tmp_path / "r"), "--out", str(tmp_path / "again.html")]) == 0
    again = (tmp_path / "again.html").read_text()
    steps = [json.loads(page.split('id="sdviz-data">')[1].split("</script>")[0])["steps"] for page in (written, again)]
    assert [s["x_t"] for s in steps[0]] == [s["x_t"] for s in steps[1]]  # the saved run replays as it ran
    assert all("x0_uncond" in s for s in steps[1])  # the guidance halves read back from the run's folder
    assert cli.main(["compare", "--prompt", "a red circle", "--steps", "4", "--vary", "guidance=1,7.5", "--html",
                     "--out", str(tmp_path / "c")]) == 0
    page = (tmp_path / "c" / "compare.html").read_text()
    data = json.loads(page.split('id="sdviz-data">')[1].split("</script>")[0])
    assert [v["label"] for v in data["variants"]] == ["guidance=1.0", "guidance=7.5"]
    assert (tmp_path / "c" / "01_guidance=1.0" / "run.html").is_file()
    assert cli.main(["html", str(tmp_path / "c")]) == 0
    assert cli.main(["html", str(tmp_path / "nothing")]) == 2
    assert "is not a run folder (no trajectory.json)" in capsys.readouterr().err


def test_a_saved_run_naming_a_model_does_not_load_it(tmp_path, capsys, monkeypatch):
    """A saved run is someone's file: `html` (with frames to decode again) and `render --fork` load no model
    the file names, only one named with --model, and say so in one line."""
    import sdviz.sampling.models as models

    folder = tmp_path / "r"
    assert cli.main(["render", "--prompt", "a red circle", "--steps", "4", "--every", "2", "--out", str(folder)]) == 0
    saved = json.loads((folder / "trajectory.json").read_text())
    saved["settings"]["model"] = "someone/their-model"
    (folder / "trajectory.json").write_text(json.dumps(saved))
    loaded, real_load = [], models.load_model

    def load_model(source=None, **options):
        loaded.append(source)
        return real_load(source, **options)

    monkeypatch.setattr(models, "load_model", load_model)
    capsys.readouterr()
    assert cli.main(["html", str(folder)]) == 2
    assert cli.main(["render", "--fork", str(folder), "--at", "1", "--out", str(tmp_path / "f")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all("was made with the model 'someone/their-model', which only --model can name"
                                    in line for line in errors), errors
    assert loaded == [] and not (tmp_path / "f").exists()
    assert cli.main(["html", str(folder), "--model", str(models.EMBEDDED_MODEL)]) == 0  # named: loaded, decoded
    assert loaded == [str(models.EMBEDDED_MODEL)]


# --- in a real browser, offline ------------------------------------------------------------------

def browser(tmp_path):
    """Chromium with its network off, keeping a log of every request."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("SDVIZ_REQUIRE_BROWSER") == "1":
            raise RuntimeError("SDVIZ_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
        pytest.skip("needs chromium and chromium-driver")
    pytest.importorskip("selenium.webdriver")
    from tests.conftest import chromium

    driver = chromium(tmp_path / "profile", performance_log=True)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                                 "downloadThroughput": 0, "uploadThroughput": 0})
    return driver


def requests_made(driver) -> list[str]:
    """Every URL the page (a file: document) asked for, from Chrome's performance log; its data: URIs aside."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent" and params.get("documentURL", "").startswith("file:"):
            urls.append(params["request"]["url"])
    assert any(u.startswith("file:") for u in urls)  # the page itself was seen: the log works
    return [u for u in urls if not u.startswith(("data:", "file:"))]


def slides(driver, total: int, to: int):
    """The page opens on its last step; the slider's Home key goes to step 1 with other frames, and the arrow
    keys on to step `to`. Returns the step label and the slider."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    label = driver.find_element(By.ID, "step-label")
    assert label.text.startswith(f"step {total} / {total}")
    before = driver.find_element(By.ID, "x_t").get_attribute("src")
    slider = driver.find_element(By.ID, "slider")
    slider.send_keys(Keys.HOME)
    assert label.text.startswith(f"step 1 / {total}")
    assert driver.find_element(By.ID, "x_t").get_attribute("src") != before
    for _ in range(to - 1):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert label.text.startswith(f"step {to} / {total}")
    return label, slider


@pytest.mark.browser
def test_the_page_replays_the_run_offline_in_a_browser(run, embedded, tmp_path, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path = tmp_path / "run.html"
    path.write_text(run_page(run.trajectory, run.previewer))
    driver = browser(tmp_path)
    try:
        driver.get(path.as_uri())
        assert driver.find_element(By.ID, "prompt").text == HOSTILE  # markup shown as text
        assert driver.execute_script("return window.pwned === undefined")
        label, slider = slides(driver, 12, 4)
        heat = driver.find_element(By.ID, "heat")
        assert not heat.is_displayed()
        chip = next(c for c in driver.find_elements(By.CSS_SELECTOR, "#chips .word") if c.text == "red")
        chip.click()
        assert heat.is_displayed() and "on" in chip.get_attribute("class")
        pixels = driver.execute_script(
            "const c = document.getElementById('heat'); return Array.from(c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data)")
        alpha = np.array(pixels).reshape(-1, 4)[:, 3]
        assert alpha.min() > 0 and alpha.max() > alpha.min()  # a map drawn, stronger in places
        first = pixels
        slider.send_keys(Keys.ARROW_RIGHT)  # the map follows the step
        assert driver.execute_script(
            "const c = document.getElementById('heat'); return Array.from(c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data)") != first
        driver.find_element(By.ID, "play").click()
        time.sleep(1.2)
        assert int(label.text.split()[1]) > 5  # playing moves on by itself
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(shots / "15-run-page.png"))
        assert requests_made(driver) == []
        assert not driver.find_elements(By.CSS_SELECTOR, "script[src], link[href], img[src^='http']")
    finally:
        driver.quit()


@pytest.mark.browser
def test_a_comparison_page_lines_the_variants_up_offline(embedded, tmp_path, shots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    comparison = sdviz.compare(embedded, sdviz.Settings(prompt="a red circle", steps=5),
                               {"scheduler": ["ddim", "heun"]})
    path = tmp_path / "compare.html"
    path.write_text(comparison_page(comparison))
    driver = browser(tmp_path)
    try:
        driver.get(path.as_uri())
        captions = lambda: [c.text.split(" · ")[0]
                            for c in driver.find_elements(By.CSS_SELECTOR, "#variants figcaption")]
        assert captions() == ["step 5/5", "step 9/9"]
        slider = driver.find_element(By.ID, "slider")
        for _ in range(50):
            slider.send_keys(Keys.ARROW_LEFT)
        assert captions() == [f"step {i + 1}/{n}" for i, n in zip(sdviz.analysis.align.at(comparison.trajectories, 0.5),
                                                                   (5, 9))]
        Select(driver.find_element(By.ID, "by")).select_by_value("sigma")
        slider.send_keys(Keys.ARROW_LEFT)
        expected = sdviz.analysis.align.at(comparison.trajectories, 0.49, "sigma")
        assert captions() == [f"step {i + 1}/{n}" for i, n in zip(expected, (5, 9))]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#distance polyline")) == 2
        driver.save_screenshot(str(shots / "16-compare-page.png"))
        assert requests_made(driver) == []
    finally:
        driver.quit()
