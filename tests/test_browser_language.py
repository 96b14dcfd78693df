"""The page in the reader's language, in a real browser: Chromium set to Chinese, Japanese and English opens
the page in that language (labels, tabs, buttons), and what the server writes after a run (the status line,
the diagram, the captions, the walk) follows; the switch changes it for the next update; two sessions at once
in two languages each read their own.

The test counts the characters of each script on the page: Han for Chinese, kana for Japanese, neither on the
English page (outside the switch, which names each language in its own script).
"""

from __future__ import annotations

import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.browser

if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip("needs chromium and chromium-driver", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.conftest import open_page  # noqa: E402

HAN, KANA = re.compile(r"[\u4e00-\u9fff]"), re.compile(r"[\u3040-\u30ff]")
PAGE_TEXT = """
const language = document.querySelector('#language');
const hidden = language ? language.innerText : '';
return document.body.innerText.replace(hidden, '');
"""


def page_text(driver) -> str:
    """What the page shows, the language switch's own names left out."""
    return driver.execute_script(PAGE_TEXT)


def status_text(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#status").text


def run(driver, steps: int = 3) -> None:
    """A short run from the page, waited for until its status says it ended (in any language)."""
    box = driver.find_element(By.CSS_SELECTOR, "#steps input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(steps), Keys.ENTER)
    time.sleep(0.3)
    driver.find_element(By.CSS_SELECTOR, "#generate").click()
    WebDriverWait(driver, 60).until(lambda d: f"{steps} / {steps}" in status_text(d)
                                    and d.find_element(By.CSS_SELECTOR, "#status").get_attribute("innerText")
                                    .strip().endswith(("finished", "完成", "完了")))


def counts(text: str) -> tuple[int, int]:
    return len(HAN.findall(text)), len(KANA.findall(text))


@pytest.fixture(scope="module")
def pages(app_url, tmp_path_factory):
    """One Chromium per language, each its own session, opened at once."""
    languages = ("zh-CN", "ja", "en-US")
    with ThreadPoolExecutor(len(languages)) as pool:
        drivers = list(pool.map(lambda lang: open_page(app_url, tmp_path_factory.mktemp(f"chromium-{lang}"),
                                                       language=lang), languages))
    time.sleep(2)  # the page's words arrive with its load event
    yield dict(zip(languages, drivers))
    for driver in drivers:
        driver.quit()


def test_the_page_opens_in_the_browsers_language_and_runs_in_it(pages, shots, app_server):
    zh, ja, en = pages["zh-CN"], pages["ja"], pages["en-US"]
    log_start = len(app_server.log_text())
    WebDriverWait(zh, 20).until(lambda d: "生成" in d.find_element(By.CSS_SELECTOR, "#generate").text)
    han, kana = counts(page_text(zh))
    assert han > 150 and kana == 0, (han, kana)
    han, kana = counts(page_text(ja))
    assert kana > 150, kana
    assert counts(page_text(en)) == (0, 0)
    for label, driver in (("zh", zh), ("ja", ja)):  # the tabs, the buttons, the settings
        tabs = " ".join(t.text for t in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]"))
        assert counts(tabs)[0 if label == "zh" else 1] > 10, tabs
    assert "Explore the steps" in " ".join(t.text for t in en.find_elements(By.CSS_SELECTOR, "button[role=tab]"))

    # two sessions at once, in two languages: each run's status, diagram and captions in its own
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, (zh, ja)))
    assert "完成" in status_text(zh) and "步" in status_text(zh) and counts(status_text(zh))[1] == 0
    assert "完了" in status_text(ja) and "ステップ" in status_text(ja)
    for driver in (zh, ja):  # the explorer drew the run: its menus send their choices, not their words
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#x0-view img"))
    live_zh = zh.find_element(By.CSS_SELECTOR, "#live").text
    assert "预测的 x0" in live_zh and "潜在表示" in live_zh
    assert "画像デコーダ" in ja.find_element(By.CSS_SELECTOR, "#diagram").text
    zh.save_screenshot(str(shots / "language-zh.png"))
    ja.save_screenshot(str(shots / "language-ja.png"))

    # the walk, written by the server for the session when its tab opens
    ja.find_element(By.CSS_SELECTOR, "#walk-tab-button").click()
    WebDriverWait(ja, 30).until(lambda d: "ノイズから画像へ" in d.find_element(By.CSS_SELECTOR, "#walk-text-3").text)
    assert counts(ja.find_element(By.CSS_SELECTOR, "#walk-text-1").text)[1] > 20

    # the switch: English to Chinese, the labels at once and the server's next update
    run(en)
    assert "finished" in status_text(en)
    en.find_element(By.XPATH, "//*[@id='language']//label[contains(., '简体中文')]").click()
    WebDriverWait(en, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, "#generate").text == "生成")
    run(en)
    assert "完成" in status_text(en) and counts(page_text(en))[0] > 150
    assert "finished" in status_text(ja) or "完了" in status_text(ja)  # the other sessions keep theirs
    assert "完了" in status_text(ja)
    assert "refused" not in app_server.log_text()[log_start:]  # no event of any session was refused
