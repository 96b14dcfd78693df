"""The explaining tabs in a real headless Chromium: generate, then guidance decomposed at the slider's
step, the schedule and distance plots drawn, the forward process and the latent space, an img2img run
marked on the forward process, and the "How it works" walk with every panel filled.

Screenshots go to $SDVIZ_SCREENSHOTS (docs/screenshots refreshes the README's) or a temp folder.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

if not (shutil.which("chromium") and shutil.which("chromedriver")):
    if os.environ.get("SDVIZ_REQUIRE_BROWSER") == "1":
        raise RuntimeError("SDVIZ_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
    pytest.skip("needs chromium and chromium-driver", allow_module_level=True)

pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.conftest import open_page  # noqa: E402
from tests.test_browser import set_number, status_text  # noqa: E402
from ui.walk import WALK_PANELS  # noqa: E402


@pytest.fixture(scope="module")
def page(app_url, tmp_path_factory):
    """The page after a finished 12-step run."""
    driver = open_page(app_url, tmp_path_factory.mktemp("chromium-explain"))
    set_number(driver, "#steps", 12)
    driver.find_element(By.CSS_SELECTOR, "#generate").click()
    WebDriverWait(driver, 90).until(lambda d: "step 12 / 12" in status_text(d) and "finished" in status_text(d))
    WebDriverWait(driver, 60).until(lambda d: "step 12 / 12" in d.find_element(By.CSS_SELECTOR, "#step-info").text)
    yield driver
    driver.quit()


def open_tab(driver, name: str) -> None:
    driver.find_element(By.XPATH, f"//button[@role='tab' and normalize-space()='{name}']").click()


def image_source(driver, selector: str) -> str:
    images = driver.find_elements(By.CSS_SELECTOR, f"{selector} img")
    return images[0].get_attribute("src") if images else ""


def drawn(driver, plot: str) -> bool:
    """A chart drawn by the plot component (Vega's marks); an empty plot shows only a placeholder icon (an svg)."""
    return bool(driver.find_elements(By.CSS_SELECTOR, f"{plot} .vega-embed svg.marks, {plot} .vega-embed canvas.marks"))


def text(driver, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


def test_guidance_is_decomposed_at_the_slider_step(page, shots):
    WebDriverWait(page, 30).until(lambda d: "g = 7.5" in text(d, "#guidance-formula"))
    for selector in ("#x0-uncond", "#x0-cond", "#x0-guided", "#prompt-effect"):
        assert image_source(page, selector), selector
    last = text(page, "#guidance-formula")
    before = image_source(page, "#x0-uncond")
    set_number(page, "#step-slider", 3)
    WebDriverWait(page, 30).until(lambda d: text(d, "#guidance-formula") != last
                                  and image_source(d, "#x0-uncond") != before)
    page.execute_script("document.querySelector('#x0-uncond').scrollIntoView()")
    time.sleep(0.5)
    page.save_screenshot(str(shots / "07-guidance.png"))


def test_the_schedule_and_where_the_picture_is_decided(page, shots):
    open_tab(page, "Noise schedule")
    WebDriverWait(page, 30).until(lambda d: "settles at step" in text(d, "#decided"))
    for plot in ("#schedule-plot", "#compare-plot", "#distance-plot"):
        WebDriverWait(page, 30).until(lambda d, plot=plot: drawn(d, plot))
    page.execute_script("document.querySelector('#schedule-plot').scrollIntoView()")
    time.sleep(1)
    page.save_screenshot(str(shots / "08-schedule.png"))


def test_forward_process_and_latent_space(page, shots):
    open_tab(page, "Forward process")
    WebDriverWait(page, 30).until(lambda d: image_source(d, "#forward-image")
                                  and "ᾱ goes from" in text(d, "#forward-note"))
    page.execute_script("document.querySelector('#forward-image').scrollIntoView()")
    time.sleep(0.5)
    page.save_screenshot(str(shots / "09-forward.png"))
    open_tab(page, "Latent space")
    WebDriverWait(page, 30).until(lambda d: image_source(d, "#latent-image") and "fewer" in text(d, "#latent-note"))
    assert "PSNR" in text(page, "#latent-note")


def test_how_it_works_has_every_panel_filled(page, shots):
    open_tab(page, "How it works")

    def filled(driver) -> list[str]:
        empty = []
        for name in WALK_PANELS:
            selector = f"#walk-{name}"
            if not (image_source(driver, selector) or text(driver, selector).strip()):
                empty.append(name)
        return empty

    WebDriverWait(page, 60).until(lambda d: not filled(d))
    assert "cross-attention" in text(page, "#walk-attention-note")
    assert "×" in text(page, "#walk-components") and "padding" in text(page, "#walk-tokens")
    page.execute_script("document.querySelector('#walk-tab').scrollIntoView()")
    time.sleep(1)
    page.save_screenshot(str(shots / "10-how-it-works.png"))
    page.execute_script("document.querySelector('#walk-forward').scrollIntoView()")
    time.sleep(0.5)
    page.save_screenshot(str(shots / "11-how-it-works-forward.png"))


def test_an_img2img_run_is_marked_on_the_forward_process(page, shots, tmp_path):
    """The walk and forward tabs, opened before, are drawn again for the new run."""
    start = np.zeros((64, 64, 3), np.uint8)
    start[:, :32] = (30, 200, 60)
    path = tmp_path / "start.png"
    Image.fromarray(start).save(path)
    page.execute_script("window.scrollTo(0, 0)")
    open_tab(page, "Image to image")
    page.find_element(By.CSS_SELECTOR, "#init-image input[type=file]").send_keys(str(path))
    WebDriverWait(page, 30).until(lambda d: image_source(d, "#init-image"))
    page.find_element(By.CSS_SELECTOR, "#generate-img2img").click()
    WebDriverWait(page, 90).until(lambda d: "finished" in status_text(d) and "/ 9" in status_text(d))
    open_tab(page, "Forward process")
    WebDriverWait(page, 60).until(lambda d: "This img2img run started at entry 4 of 12" in text(d, "#forward-note"))
    page.execute_script("document.querySelector('#forward-image').scrollIntoView()")
    time.sleep(0.5)
    page.save_screenshot(str(shots / "12-forward-img2img.png"))


def test_fork_from_a_step_with_a_new_prompt(page, shots):
    """The run on the page (the img2img run above) forked after its step 3 with another prompt: it streams
    like a run, and the fork is shown against its parent."""
    page.execute_script("window.scrollTo(0, 0)")
    open_tab(page, "Text to image")
    prompt = page.find_element(By.CSS_SELECTOR, "#prompt textarea")
    prompt.clear()
    prompt.send_keys("a small dog at the top on a purple background")
    open_tab(page, "Explore the steps")
    set_number(page, "#step-slider", 3)
    WebDriverWait(page, 30).until(lambda d: "step 3 / 9" in text(d, "#step-info"))
    page.find_element(By.CSS_SELECTOR, "#fork").click()
    WebDriverWait(page, 90).until(lambda d: "finished" in status_text(d)
                                  and "Forked after step 3" in text(d, "#fork-note"))
    assert "small dog" in text(page, "#fork-note")
    assert image_source(page, "#fork-view")
    WebDriverWait(page, 30).until(lambda d: drawn(d, "#fork-plot"))
    page.execute_script("document.querySelector('#fork-view').scrollIntoView()")
    time.sleep(1)
    page.save_screenshot(str(shots / "13-fork.png"))


def column_captions(driver) -> list[str]:
    """The columns' captions, read at once (the page's script swaps the row as a comparison streams)."""
    return driver.execute_script("return Array.from(document.querySelectorAll('#compare-columns figure'), "
                                 "f => f.dataset.caption)")


def test_compare_streams_the_variants_and_lines_them_up(page, shots):
    """Two schedulers from the settings on the page, streamed one after another into their columns; then the
    shared slider lines them up, by progress and by noise level; the curves, the finals and the downloads."""
    page.execute_script("window.scrollTo(0, 0)")
    open_tab(page, "Compare")
    values = page.find_element(By.CSS_SELECTOR, "#vary-first-values textarea")
    values.clear()
    values.send_keys("ddim, heun")
    drawn_before = int(page.find_element(By.CSS_SELECTOR, "#live-feed").get_attribute("data-drawn") or 0)
    page.find_element(By.CSS_SELECTOR, "#compare").click()
    WebDriverWait(page, 30).until(lambda d: column_captions(d)[:2] and column_captions(d)[1] == "waiting"
                                  and column_captions(d)[0].startswith("step "))  # live: the first variant steps
    # the variants came by the page's own questions (ui.live_feed), not as the comparison event's messages
    WebDriverWait(page, 30).until(lambda d: int(d.find_element(By.CSS_SELECTOR, "#live-feed").get_attribute(
        "data-drawn")) - drawn_before >= 5)
    WebDriverWait(page, 120).until(lambda d: "comparison done" in text(d, "#compare-status"))
    WebDriverWait(page, 30).until(lambda d: drawn(d, "#compare-plot") and "settles its layout first"
                                  in text(d, "#compare-note"))
    assert len(page.find_elements(By.CSS_SELECTOR, "#compare-columns figure img")) == 4  # x_t and x0 of each
    assert [c.split(" · ")[0] for c in column_captions(page)] == ["step 12/12", "step 23/23"]
    assert len(page.find_elements(By.CSS_SELECTOR, "#compare-finals img")) == 2
    set_number(page, "#compare-position", 25)
    WebDriverWait(page, 30).until(lambda d: [c.split(" · ")[0] for c in column_captions(d)]
                                  == ["step 4/12", "step 7/23"])
    by_progress = column_captions(page)
    page.find_element(By.XPATH, "//*[@id='align']//label[normalize-space()='sigma']").click()
    WebDriverWait(page, 30).until(lambda d: column_captions(d) != by_progress
                                  and "noise level" in text(d, "#compare-note"))
    page.execute_script("document.querySelector('#compare-columns').scrollIntoView()")
    time.sleep(1)
    page.save_screenshot(str(shots / "14-compare.png"))
    page.find_element(By.CSS_SELECTOR, "#compare-files-button").click()
    WebDriverWait(page, 60).until(lambda d: "compare.mp4" in text(d, "#compare-files").replace("\n", ""))
    assert all(name in text(page, "#compare-files").replace("\n", "") for name in ("compare.png", "compare.gif",
                                                                                 "compare.json", "compare.html"))


def type_into(driver, selector: str, value: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f"{selector} textarea")
    box.clear()
    box.send_keys(value)


def test_edit_an_image_then_invert_it(page, shots, tmp_path):
    """The Edit tab: a drawn scene of one object edited into another object streams like a run and is shown
    against its source; then the same image inverted to noise and reconstructed, with its error."""
    from dataclasses import replace

    from training import objects

    scene = objects.sample_scene(np.random.default_rng(0), two=False)
    other = next(name for name in objects.objects() if name != scene.objects[0].name)
    path = tmp_path / "scene.png"
    Image.fromarray(objects.render(scene)[0]).save(path)
    page.execute_script("window.scrollTo(0, 0)")
    open_tab(page, "Edit or invert an image")
    page.find_element(By.CSS_SELECTOR, "#edit-image input[type=file]").send_keys(str(path))
    WebDriverWait(page, 30).until(lambda d: image_source(d, "#edit-image"))
    type_into(page, "#source-prompt", objects.caption(scene))
    type_into(page, "#edit-prompt", objects.caption(replace(scene, objects=(replace(scene.objects[0], name=other),))))
    page.find_element(By.CSS_SELECTOR, "#edit").click()
    open_tab(page, "Explore the steps")
    WebDriverWait(page, 90).until(lambda d: "finished" in status_text(d) and "/ 9" in status_text(d))
    WebDriverWait(page, 60).until(lambda d: "after step 1" in text(d, "#edit-note"))
    assert image_source(page, "#edit-view")
    WebDriverWait(page, 30).until(lambda d: drawn(d, "#edit-plot"))
    page.execute_script("document.querySelector('#edit-note').scrollIntoView()")
    time.sleep(1)
    page.save_screenshot(str(shots / "17-edit.png"))

    page.execute_script("window.scrollTo(0, 0)")
    page.find_element(By.CSS_SELECTOR, "#invert").click()
    WebDriverWait(page, 120).until(lambda d: "dB from the image" in text(d, "#trip-note"))
    assert "finished" in status_text(page) and "step 12 / 12" in status_text(page)
    assert image_source(page, "#trip-view") and not page.find_element(By.CSS_SELECTOR, "#edit-view").is_displayed()
    for _ in range(2):  # again once the images below have loaded and the page has grown
        page.execute_script("document.querySelector('#trip-view').scrollIntoView()")
        time.sleep(1)
    page.save_screenshot(str(shots / "18-invert.png"))


def test_the_negative_prompts_words_have_heat_maps(page):
    page.execute_script("window.scrollTo(0, 0)")
    open_tab(page, "Text to image")
    type_into(page, "#negative", "a small green cat")
    page.find_element(By.CSS_SELECTOR, "#generate").click()
    WebDriverWait(page, 90).until(lambda d: "finished" in status_text(d) and "step 12 / 12" in status_text(d))
    type_into(page, "#negative", "")
    open_tab(page, "Attention")
    choice = "//*[@id='word']//label[normalize-space()='negative 3: green']"
    WebDriverWait(page, 60).until(lambda d: d.find_elements(By.XPATH, choice))
    before = image_source(page, "#heat")
    page.find_element(By.XPATH, choice).click()
    WebDriverWait(page, 30).until(lambda d: image_source(d, "#heat") and image_source(d, "#heat") != before)
