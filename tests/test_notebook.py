"""sdviz in a notebook: the example notebook run top to bottom in a real Jupyter kernel (nbclient), the live
widget driven through its traits from Python, a run's inline page opened in headless Chromium, and sdviz
without anywidget."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sdviz
from sdviz.messages import speaking
from tests.test_page import browser, decoded, requests_made, slides

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "examples" / "tour.ipynb"
NETWORK = re.compile(r"(src|href)\s*=\s*[\"']?(https?:)?//")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def python(code: str) -> str:
    """What `code` prints, run by a fresh Python on this checkout."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return out.stdout


def page_inside(frame_html: str) -> str:
    """The page a sandboxed frame holds (its srcdoc)."""
    match = re.fullmatch(r'<iframe sandbox="allow-scripts" title="[^"]*" srcdoc="([^"]*)" style="[^"]*"></iframe>',
                         frame_html)
    assert match, frame_html[:200]
    return html.unescape(match.group(1))


def page_data(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="sdviz-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(block)


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """The example notebook, executed in a real kernel with the widgets' state kept, and each cell's seconds."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("anywidget")
    notebook = nbformat.read(TOUR, as_version=4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the kernel is a child process: it imports this checkout
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", store_widget_state=True,
                                     record_timing=True, resources={"metadata": {"path": str(ROOT)}})
    started = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - started
    out = tmp_path_factory.mktemp("tour") / "tour.ipynb"
    nbformat.write(notebook, out)
    print(f"the example notebook ran in {seconds:.1f} s")
    return notebook


def outputs(cell, mime: str) -> list:
    return [o["data"][mime] for o in cell.get("outputs", []) if mime in o.get("data", {})]


def cell_with(notebook, source: str):
    return next(c for c in notebook.cells if c.cell_type == "code" and source in c.source)


@pytest.mark.slow
def test_the_example_notebook_runs_in_a_kernel_and_shows_each_run(tour):
    for cell in tour.cells:
        assert not [o for o in cell.get("outputs", []) if o.get("output_type") == "error"], cell.source
    # the trajectory cell: the rich page, every step of the 20, nothing from the network, bounded
    cell = cell_with(tour, "trajectory = sdviz.generate(")
    [frame] = outputs(cell, "text/html")
    [plain] = outputs(cell, "text/plain")
    assert "\n" not in plain and plain.startswith("<sdviz.Trajectory 'a fish on the left")  # one line
    page = page_inside(frame)
    data = page_data(page)
    assert [s["index"] for s in data["steps"]] == list(range(20)) and data["complete"]
    assert data["heat"] is not None and "x0_uncond" in data["steps"][5]  # attention and guidance, decomposed
    assert data["distance"] is not None  # where the picture is decided
    assert not NETWORK.search(frame) and not NETWORK.search(page)
    assert len(frame.encode()) < 6 * 2**20
    # the comparisons show their side-by-side pages
    for source, count in (('{"guidance": [1, 3, 7.5]}', 3), ('"scheduler": ["ddim"', 3)):
        [frame] = outputs(cell_with(tour, source), "text/html")
        assert len(page_data(page_inside(frame))["variants"]) == count
    # the live cell's output is a widget view, and the run it started ended in the kernel, 30 steps
    [view] = outputs(cell_with(tour, "live = sdviz.live("), WIDGET_VIEW)
    assert view["model_id"] in tour.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    [printed] = [o["text"] for o in cell_with(tour, "run = live.wait()").outputs if o.get("name") == "stdout"]
    assert printed.startswith("finished: 30 steps")


def test_the_live_widget_streams_through_a_real_kernel_and_its_stop_button_acts_while_the_run_goes():
    """A kernel and a client speaking the widget protocol as a front end does: the widget's updates arrive as
    the run goes, and a Stop sent from the client mid-run (the kernel's message loop is free) ends it."""
    pytest.importorskip("anywidget")
    from jupyter_client import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        client.execute("import sdviz\nmodel = sdviz.load_model()\n"
                       "live = sdviz.live(model, sdviz.Settings(prompt='a rocket', steps=60))\nlive")
        comm, steps, frames, states, stopped_at = None, [], 0, [], None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (states and states[-1] in ("stopped", "finished", "failed")):
            try:
                message = client.get_iopub_msg(timeout=1)
            except Exception:  # queue.Empty: nothing yet
                continue
            content = message["content"]
            if message["msg_type"] == "comm_open" and "stop_requested" in content["data"].get("state", {}):
                comm = content["comm_id"]
            elif message["msg_type"] == "comm_msg" and content["comm_id"] == comm:
                state = content["data"].get("state", {})
                steps += [state["step"]] if "step" in state else []
                frames += "x0" in state
                states += [state["state"]] if "state" in state else []
                if len(steps) >= 8 and stopped_at is None:  # the Stop button: the widget's trait, set by the page
                    stopped_at = steps[-1]
                    client.shell_channel.send(client.session.msg("comm_msg", {"comm_id": comm, "data": {
                        "method": "update", "state": {"stop_requested": True}, "buffer_paths": []}}))
        assert steps[:8] == list(range(1, 9)) and frames >= 8  # each step's frames, as the run went
        assert states[-2:] == ["stopping", "stopped"]
        assert stopped_at <= steps[-1] <= stopped_at + 1 < 60  # ended after the step in flight
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def model(default):
    return default


def test_a_trajectory_shows_its_page_and_its_repr_is_one_line(model):
    traj = sdviz.generate(model, sdviz.Settings(prompt="a rocket", steps=6, every=3), attention=True)
    assert "\n" not in repr(traj) and "6 steps" in repr(traj)
    from sdviz.notebook import html_of

    data = page_data(page_inside(html_of(traj)))
    assert [s["index"] for s in data["steps"]] == list(range(6))  # the steps not decoded, decoded again
    for step, index in zip(data["steps"], range(6)):
        x_t, x0 = traj.step_frames(index, traj.decoder())
        np.testing.assert_array_equal(decoded(step["x0"]), x0)
    assert data["heat"] is not None and "x0_cond" in data["steps"][0]
    # a pickled copy (what ZeroGPU sends) carries no model; it shows the steps it kept
    import pickle

    copy = pickle.loads(pickle.dumps(traj))
    assert copy.decoder() is None
    assert [s["index"] for s in page_data(page_inside(html_of(copy)))["steps"]] == [2, 5]
    with speaking("ja"):
        assert 'lang="ja"' in page_inside(html_of(traj))


def test_the_live_widget_streams_stops_within_a_step_and_explores_what_ran(model):
    pytest.importorskip("anywidget")
    settings = sdviz.Settings(prompt="a fish on the left and a star on the right", steps=40, seed=5)
    live = sdviz.live(model, settings, attention=False)
    assert live.running  # the call returned while the run goes on: the kernel's loop stays free
    seen = []
    live.observe(lambda change: seen.append((live.step, change["new"])), names="x0")
    deadline = time.monotonic() + 120
    while live.step < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    live.stop_requested = True  # what the page's Stop button sets
    at_stop = live.step
    trajectory = live.wait(120)
    assert live.state == "stopped" and not trajectory.complete
    assert at_stop <= len(trajectory.steps) <= at_stop + 1 < 40  # ended after the step in flight
    assert len({uri for _, uri in seen}) >= 3 and [s for s, _ in seen] == sorted(s for s, _ in seen)  # as it went
    data = page_data(live.page)
    assert [s["index"] for s in data["steps"]] == list(range(len(trajectory.steps)))
    assert f"{len(trajectory.steps)} of 40" in live.status


def test_two_live_widgets_run_independently_and_each_explores_its_own_run(model):
    pytest.importorskip("anywidget")
    first = sdviz.live(model, sdviz.Settings(prompt="a rocket", steps=30, seed=1), attention=True)
    second = sdviz.live(model, sdviz.Settings(prompt="a star on the left", steps=8, seed=2), lang="zh")
    first.stop()
    one, two = first.wait(120), second.wait(120)
    assert first.state == "stopped" and second.state == "finished" and two.complete and len(two.steps) == 8
    assert one.settings.prompt == "a rocket" and two.settings.prompt == "a star on the left"
    assert re.search(r"[\u4e00-\u9fff]", second.status) and not re.search(r"[\u4e00-\u9fff]", first.status)
    reference = sdviz.generate(model, sdviz.Settings(prompt="a star on the left", steps=8, seed=2))
    np.testing.assert_array_equal(two.final_image, reference.final_image)  # the widget ran exactly this run
    data = page_data(second.page)
    assert data["prompt"] == "a star on the left" and len(data["steps"]) == 8 and 'lang="zh"' in second.page


def test_bad_settings_are_refused_before_a_widget_is_made(model):
    pytest.importorskip("anywidget")
    with pytest.raises(sdviz.InputError, match="steps"):
        sdviz.live(model, sdviz.Settings(prompt="a rocket", steps=0))
    assert not [t for t in threading.enumerate() if t.name == "sdviz-live"]  # no run was started for it


def test_in_an_ipython_shell_a_run_shows_its_page_and_sdviz_needs_no_anywidget():
    """A fresh Python without anywidget: importing sdviz in an IPython shell registers the HTML formatter (a run
    shows its page, its plain repr one line), and sdviz.live says what to install."""
    code = ("import sys\n"
            "sys.modules['anywidget'] = None\n"  # as if not installed
            "from IPython.core.interactiveshell import InteractiveShell\n"
            "shell = InteractiveShell.instance()\n"
            "import sdviz\n"
            "model = sdviz.load_model()\n"
            "traj = sdviz.generate(model, sdviz.Settings(prompt='a star', steps=3))\n"
            "data, _ = shell.display_formatter.format(traj)\n"
            "print(sorted(data), data['text/plain'][:17], data['text/html'][:31])\n"
            "try:\n"
            "    sdviz.live(model, sdviz.Settings(prompt='a star', steps=2))\n"
            "except ImportError as error:\n"
            "    print(error)\n")
    formatted, refused = python(code).strip().splitlines()[-2:]
    assert formatted == "['text/html', 'text/plain'] <sdviz.Trajectory <iframe sandbox=\"allow-scripts\""
    assert 'pip install "sdviz[notebook]"' in refused and "anywidget" in refused


@pytest.mark.browser
def test_the_inline_page_from_the_kernel_plays_in_a_browser(tour, tmp_path, shots):
    from selenium.webdriver.common.by import By

    [frame] = outputs(cell_with(tour, "trajectory = sdviz.generate("), "text/html")
    path = tmp_path / "output.html"  # the cell's rich output, as a notebook front end puts it in its page
    path.write_text(f"<!DOCTYPE html><html><body><h3>Out[3]:</h3>{frame}</body></html>", encoding="utf-8")
    driver = browser(tmp_path)
    try:
        driver.get(path.as_uri())
        inner = driver.find_element(By.TAG_NAME, "iframe")
        driver.switch_to.frame(inner)
        slides(driver, 20, 5)
        # the frame's script cannot reach the page around it (an origin of its own)
        assert driver.execute_script("try { return parent.document.title; } catch (e) { return 'blocked'; }") \
            == "blocked"
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots / "30-notebook-output.png"))
        assert requests_made(driver) == []
    finally:
        driver.quit()
