"""The app as a public host meets it: hostile values, limits, cancelled and dropped clients, a soak.

Everything here goes through HTTP to `python app.py` (gradio_client, and raw requests
where gradio_client refuses to send a value, such as NaN), the way it was found.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdviz.sampling.limits import Limits
from sdviz.sampling.models import SHAPES_MODEL
from tests.conftest import AppServer

gradio_client = pytest.importorskip("gradio_client")
LIMITS = Limits()  # the defaults: the test server sets none


def client(url):
    return gradio_client.Client(url, verbose=False)


def refusal(url, **values) -> str:
    """The message /generate answers `values` with (it must refuse them)."""
    started = time.perf_counter()
    with pytest.raises(Exception) as error:
        client(url).predict(api_name="/generate", **values)
    assert time.perf_counter() - started < 10, "refused only after model work"
    return str(error.value)


def raw_generate(url, body: str) -> tuple[str, str]:
    """POSTs a hand-written JSON body (NaN and Infinity are valid to Python's parser) to /generate;
    returns the last server-sent event and its data."""
    request = urllib.request.Request(url + "gradio_api/call/generate", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(url + f"gradio_api/call/generate/{event_id}", timeout=60) as response:
        text = response.read().decode()
    events = [block for block in text.strip().split("\n\n") if block.strip()]
    last = dict(line.split(": ", 1) for line in events[-1].splitlines() if ": " in line)
    data = json.loads(last.get("data", "null"))
    return last.get("event", ""), data.get("error", "") if isinstance(data, dict) else str(data)


def upload(url, path: Path) -> urllib.request.Request:
    """A multipart POST of one file to gradio's upload route, as the page sends it."""
    boundary = "sdvizboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return urllib.request.Request(url + "gradio_api/upload", data=body,
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def write_images(folder: Path) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 50)
    (folder / "text.png").write_text("hello, I am not an image")
    Image.new("L", (6000, 5000)).save(folder / "bomb.png")  # 30 megapixels, a few kB on disk
    Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "ok.png")
    return {p.stem: str(p) for p in folder.iterdir()}


# (values for /generate, the words the answer must contain: the parameter, the value, what is allowed)
HOSTILE = [
    ({"steps": 0}, "steps 0 is out of range; allowed: 1..1000"),
    ({"steps": -3}, "steps -3 is out of range"),
    ({"steps": 2.5}, "steps 2.5 is not a whole number"),
    ({"steps": "abc"}, "steps 'abc' is not a whole number"),
    ({"steps": True}, "steps True is not a whole number"),
    ({"steps": None}, "steps None is not a whole number"),
    ({"steps": [5]}, "steps [5] is not a whole number"),
    ({"steps": LIMITS.steps + 1},
     f"steps {LIMITS.steps + 1} is over this server's limit; allowed: 1..{LIMITS.steps} (SDVIZ_MAX_STEPS)"),
    ({"steps": 5000}, "steps 5000 is out of range"),
    ({"guidance": -1}, "guidance -1 is out of range; allowed: [0, 100]"),
    ({"guidance": 1e9}, "guidance 1000000000.0 is out of range"),
    ({"guidance": "x"}, "guidance 'x' is not a number"),
    ({"guidance": None}, "guidance None is not a number"),
    ({"seed": -1}, "seed -1 is out of range"),
    ({"seed": 2**64}, "seed 18446744073709551616 is out of range"),
    ({"seed": 1.5}, "seed 1.5 is not a whole number"),
    ({"seed": "7"}, "seed '7' is not a whole number"),
    ({"seed": {"a": 1}}, "seed {'a': 1} is not a whole number"),
    ({"width": 65}, "width 65 is not a multiple of the model's VAE factor"),
    ({"width": 0}, "width 0 is out of range"),
    ({"width": -64}, "width -64 is out of range"),
    ({"width": 3.5}, "width 3.5 is not a whole number"),
    ({"width": "wide"}, "width 'wide' is not a whole number"),
    ({"height": 63}, "height 63 is not a multiple"),
    ({"height": 10**6}, "height 1000000 is out of range"),
    ({"width": 512, "height": 512}, "is over this server's limit; allowed: up to"),
    ({"width": 2048, "height": 4}, "size 2048 x 4 has an aspect ratio of 512:1; allowed: at most 4:1"),
    ({"eta": -0.1}, "eta -0.1 is out of range; allowed: [0, 1]"),
    ({"eta": 1.5}, "eta 1.5 is out of range"),
    ({"eta": "e"}, "eta 'e' is not a number"),
    ({"preview": "sketch"}, "preview 'sketch' is not one of the choices; allowed: full, approx, taesd"),
    ({"preview": 5}, "preview 5 is not one of the choices"),
    ({"preview": None}, "preview None is not one of the choices"),
    ({"every": 0}, "every 0 is out of range"),
    ({"every": 1.5}, "every 1.5 is not a whole number"),
    ({"every": "n"}, "every 'n' is not a whole number"),
    ({"scheduler": "nope"}, "unknown scheduler 'nope'; allowed: ddim"),
    ({"scheduler": "<img src=x onerror=alert(1)>"}, "unknown scheduler '<img src=x onerror=alert(1)>'"),  # as written
    ({"scheduler": 7}, "scheduler 7 is not a name; allowed: ddim"),
    ({"scheduler": ["ddim"]}, "scheduler ['ddim'] is not a name"),
    ({"scheduler": "flow_euler"}, "scheduler 'flow_euler' does not fit this model (sd): it samples sd3, flux models"),
    ({"true_cfg": 3.0}, "true cfg 3.0 applies to Flux only"),
    ({"true_cfg": "x"}, "true cfg 'x' is not a number"),
    ({"model": "someone/any-weights"},
     "model 'someone/any-weights' is not offered here; allowed: sdviz-objects, sdviz-shapes"),
    ({"model": "../../../etc"}, "model '../../../etc' is not offered here"),
    ({"model": 5}, "model 5 is not text"),
    ({"prompt": "x" * 5000}, "prompt has 5000 characters; allowed: up to 2000"),
    ({"negative_prompt": "n" * 3000}, "negative prompt has 3000 characters"),
    ({"guidance": [1]}, "guidance [1] is not a number"),
    ({"eta": None}, "eta None is not a number"),
    ({"every": None}, "every None is not a whole number"),
]

# values gradio_client cannot send (it refuses NaN/Infinity), written as JSON by hand: position, literal
RAW = [
    (0, '"a red \\ud800 circle"', "prompt has an invalid character '\\ud800' at position 6"),
    (4, "NaN", "steps nan is not a whole number"),
    (5, "NaN", "guidance nan is not finite"),
    (5, "Infinity", "guidance inf is not finite"),
    (6, "Infinity", "seed inf is not a whole number"),
    (7, "NaN", "width nan is not a whole number"),
    (9, "-Infinity", "eta -inf is not finite"),
    (11, "NaN", "every nan is not a whole number"),
    (13, "NaN", "strength nan is not finite"),
    (14, '"a \\udfff"', "source prompt has an invalid character '\\udfff' at position 2"),
    (16, "NaN", "true cfg nan is not finite"),
]


@pytest.mark.parametrize("values, answer", HOSTILE,
                         ids=[f"{k}={str(v)[:20]}" for case, _ in HOSTILE for k, v in list(case.items())[:1]])
def test_every_hostile_value_is_answered_with_its_parameter_and_the_server_keeps_serving(app_url, values, answer):
    assert answer in refusal(app_url, prompt=values.pop("prompt", "a red circle"), **values)


def test_values_gradio_client_cannot_send_are_answered_too(app_url, tmp_path):
    with urllib.request.urlopen(upload(app_url, Path(write_images(tmp_path)["ok"])), timeout=30) as response:
        image = json.loads(response.read())[0]  # the server's path of the upload
    for position, literal, answer in RAW:
        values = [json.dumps(v) for v in ("a red circle", "", "sdviz-shapes", "ddim", 4, 7.5, 0, 64, 64, 0, "full", 1,
                                          None, 0.5, "", 1.0, 1.0)]
        values[position] = literal
        if position == 13:  # strength only counts with an image
            values[12] = json.dumps({"path": image, "meta": {"_type": "gradio.FileData"}})
        event, data = raw_generate(app_url, '{"data": [' + ", ".join(values) + "]}")
        if position == 13 and event == "error" and "not uploaded" in data:
            continue  # gradio refuses a path it did not receive as an upload: also an answer
        assert event == "error" and answer in data, (literal, event, data)


def test_bad_init_images_are_refused_by_name_before_any_model_work(app_url, tmp_path):
    images = write_images(tmp_path)
    api = client(app_url)
    answers = {
        "empty": "init image 'empty.png' is empty (0 bytes)",
        "corrupt": "init image 'corrupt.png' is not a readable image",
        "text": "init image 'text.png' is not a readable image",
        "bomb": "init image 6000 x 5000 (30.0 megapixels) is over this server's limit; allowed: up to 25 megapixels "
                "(SDVIZ_MAX_IMAGE_MEGAPIXELS)",
    }
    for name, answer in answers.items():
        with pytest.raises(Exception) as error:
            api.predict(prompt="a red circle", init_image=gradio_client.handle_file(images[name]), api_name="/generate")
        message = str(error.value)
        assert answer in message and "/tmp" not in message and str(tmp_path) not in message, message
    for strength, answer in ((0, "strength 0 is out of range; allowed: (0, 1]"), (1.5, "strength 1.5 is out of range")):
        with pytest.raises(Exception) as error:
            api.predict(prompt="a red circle", init_image=gradio_client.handle_file(images["ok"]), strength=strength,
                        api_name="/generate")
        assert answer in str(error.value)
    final, _, _ = api.predict(prompt="a red circle", init_image=gradio_client.handle_file(images["ok"]), strength=0.5,
                           steps=4, api_name="/generate")
    assert Image.open(final).size == (64, 64)


def test_uploads_over_the_limit_are_refused(app_url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (LIMITS.upload_bytes + 1))
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(upload(app_url, big), timeout=60)
    assert error.value.code == 413
    assert f"maximum allowed size of {LIMITS.upload_bytes} bytes" in error.value.read().decode()


def test_refusals_leave_no_traceback_in_the_log_and_no_path_in_the_api(app_server):
    before = app_server.log_text().count("Traceback")
    refusal(app_server.url, prompt="a red circle", steps=0)
    refusal(app_server.url, prompt="a red circle", width=65)
    time.sleep(0.5)
    log = app_server.log_text()
    assert log.count("Traceback") == before, log[-3000:]
    assert "refused" in log and "steps 0 is out of range" in log  # one line each
    repo = str(Path(__file__).resolve().parent.parent)
    for route in ("config", "gradio_api/info"):
        with urllib.request.urlopen(app_server.url + route, timeout=30) as response:
            assert repo not in response.read().decode(), route


def test_only_sdviz_refusals_reach_the_user_as_messages():
    """A ValueError sdviz raises for bad input is the user's message; one from inside diffusers (or torch,
    numpy) is a failure: logged, and answered with one line that shows nothing of it."""
    import gradio as gr
    from diffusers import DDIMScheduler

    from sdviz import Settings
    from sdviz.sampling.checks import validate
    from ui.errors import user_errors

    @user_errors
    def refused():
        validate(Settings(prompt="a red circle", steps=0))

    @user_errors
    def failed():
        DDIMScheduler().set_timesteps(5000)  # diffusers' own ValueError, about its internals

    with pytest.raises(gr.Error, match="steps 0 is out of range"):
        refused()
    with pytest.raises(gr.Error) as error:
        failed()
    assert error.value.message == "the request failed (ValueError); the server logged the details"


def test_a_run_is_armed_before_it_is_queued_and_stop_reaches_it_queued_or_running():
    """The page's script arms each run as its button is pressed (ui.session.Arming): a new run stops the
    session's earlier ones at once, Stop reaches a run still queued, another session's runs go on, and a run
    sent with no token (a raw client) gets its own signal, which Stop reaches too."""
    from sdviz.sampling.errors import InputError
    from ui.session import ARMED_KEPT, Arming

    arming = Arming()
    first, elsewhere = arming.arm("page"), arming.arm("another page")
    queued = arming.take("page", first)
    assert not queued.event.is_set() and arming.take("page", first) is queued
    second = arming.arm("page")  # Generate again, the first run still queued
    assert queued.event.is_set() and not arming.take("page", second).event.is_set()
    assert not arming.take("another page", elsewhere).event.is_set()
    arming.stop("page")  # Stop before the second run has started: it starts stopped
    assert arming.take("page", second).event.is_set()
    assert not arming.take("another page", elsewhere).event.is_set()
    raw = arming.take("page", None)
    assert not raw.event.is_set() and arming.take("page", "not a token it gave") is not raw
    arming.stop("page")
    assert raw.event.is_set()
    for _ in range(3 * ARMED_KEPT):  # a session keeps its newest runs only
        arming.arm("page")
    assert len(arming._sessions["page"]) == ARMED_KEPT
    for hostile in (7, ["a list"], {"object": 1}, "x" * 5000):
        with pytest.raises(InputError, match="run token .* allowed"):
            arming.take("page", hostile)


def busy_seconds(server: AppServer, seconds: float) -> float:
    """CPU seconds the server uses over the next `seconds` of wall time."""
    before = server.cpu_seconds()
    time.sleep(seconds)
    return server.cpu_seconds() - before


LONG_RUN = {"prompt": "a red circle", "steps": LIMITS.steps, "width": 128, "height": 128}


def test_a_cancelled_job_stops_its_run(app_server):
    api = client(app_server.url)
    job = api.submit(api_name="/generate", **LONG_RUN)
    time.sleep(3)
    assert busy_seconds(app_server, 1.0) > 0.5  # the run is working
    cancelled = time.perf_counter()
    job.cancel()
    deadline = time.perf_counter() + 10
    while busy_seconds(app_server, 0.5) > 0.15:  # idle: under 30 % of a core
        assert time.perf_counter() < deadline, "the server stayed busy after the cancel"
    idle_after = time.perf_counter() - cancelled
    print(f"cancel to idle: {idle_after:.2f} s")
    assert idle_after < 5
    final, _, _ = api.predict(prompt="a blue square", steps=4, api_name="/generate")  # and it serves the next
    assert Path(final).is_file()


def test_a_client_that_goes_away_stops_its_run(app_server):
    script = textwrap.dedent(f"""
        from gradio_client import Client
        Client({app_server.url!r}, verbose=False).submit(api_name="/generate", **{LONG_RUN!r})
        import time; time.sleep(600)
    """)
    gone = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.perf_counter() + 30
        while busy_seconds(app_server, 0.5) < 0.25:
            assert time.perf_counter() < deadline, "the run never started"
        time.sleep(1)
    finally:
        gone.kill()
        gone.wait()
    killed = time.perf_counter()
    deadline = killed + 10
    while busy_seconds(app_server, 0.5) > 0.15:
        assert time.perf_counter() < deadline, "the server stayed busy after the client went away"
    print(f"disconnect to idle: {time.perf_counter() - killed:.2f} s")
    final, _, _ = client(app_server.url).predict(prompt="a blue square", steps=4, api_name="/generate")
    assert Path(final).is_file()


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """One server with a host's caps: runs stop after 4 s (the soak's short runs end well inside it on a slow,
    shared machine; the long run does not), files may take 15 MB for 20 s. It serves the shapes model, the
    fastest."""
    server = AppServer(tmp_path_factory.mktemp("capped") / "tmp", SDVIZ_MAX_RUN_SECONDS="4", SDVIZ_CACHE_MB="15",
                       SDVIZ_CACHE_SECONDS="20", SDVIZ_MODEL=str(SHAPES_MODEL))
    yield server
    server.stop()


def test_the_widest_allowed_size_keeps_the_servers_peak_memory_bounded(app_server):
    """2048 x 4 passed the pixel limit and its exports took the server to 8.8 GB; it is refused, and the widest
    size allowed (4:1 at the pixel limit) with every file written moves the server's peak RSS by little."""
    assert "aspect ratio of 512:1; allowed: at most 4:1" in refusal(app_server.url, width=2048, height=4)
    peak = app_server.rss_bytes("VmHWM")
    final, files, status = client(app_server.url).predict(prompt="a red circle", steps=3, width=256, height=64,
                                                      api_name="/generate")
    grown = app_server.rss_bytes("VmHWM") - peak
    assert status == "finished: 3 steps"
    assert {"trajectory.gif", "trajectory.mp4", "run.html"} <= {Path(f).name for f in files}
    assert grown < 300 * 2**20, grown
    print(f"server peak RSS {peak / 2**20:.0f} MB before, grew by {grown / 2**20:.0f} MB for 256 x 64 with its files")


def test_a_run_past_the_time_limit_stops_is_kept_and_says_so(capped):
    started = time.perf_counter()
    final, files, status = client(capped.url).predict(api_name="/generate", **LONG_RUN)
    assert time.perf_counter() - started < 12
    assert final is None  # stopped: no final image, but the partial trajectory comes back
    assert {"trajectory.zip", "run.html"} <= {Path(f).name for f in files}
    assert status.startswith("cut short by this server's run-time limit (4 s for a request, its files included; "
                             "SDVIZ_MAX_RUN_SECONDS): stopped after step "), status


def test_the_page_says_when_the_run_time_limit_cut_its_run_short(capped):
    """The page's own Generate (sent as the page sends it) past the limit: its status line names the limit."""
    from tests.test_page_events import PageSession

    page = PageSession(capped.url)
    labels = {"Steps": LONG_RUN["steps"], "Width": LONG_RUN["width"], "Height": LONG_RUN["height"]}
    ended = page.named("stream_1", **labels)
    assert ended["success"]
    status = next(v for v in ended["output"]["data"] if isinstance(v, str) and "sdviz-status" in v)
    assert "cut short by this server&#x27;s run-time limit (4 s for a request" in status or (
        "cut short by this server's run-time limit (4 s for a request" in status), status


LARGEST_COMPARISON = dict(LONG_RUN, steps=LIMITS.compare_steps // 2, vary="guidance=1,5", api_name="/compare")


def test_the_longest_comparison_ends_within_the_limit_files_included_and_says_it_was_cut_short(capped):
    """The largest comparison the limits allow (two variants of the most steps, at the most pixels): the limit
    bounds the whole request, its files included; the answer says it was cut short, naming the limit."""
    started = time.perf_counter()
    grid, files, status = client(capped.url).predict(**LARGEST_COMPARISON)
    seconds = time.perf_counter() - started
    assert Path(grid).is_file() and {"compare.json", "compare.gif", "compare.html"} <= {Path(f).name for f in files}
    assert status.startswith("cut short by this server's run-time limit (4 s for a request"), status
    assert "variant 1 (guidance=1.0) stopped after step" in status and "variant 2 (guidance=5.0) did not run" in status
    assert seconds < 4 + 2  # files included (a file begun before the end is written whole); the client's own time
    print(f"longest comparison: {seconds:.1f} s, limit 4 s")


def test_a_short_request_is_answered_while_the_longest_one_goes_on(app_server):
    """One model thread, the largest comparison allowed running on it (minutes at the default limit): a one-step
    request is answered within seconds, its run taking turns with the comparison's (ui.model_threads)."""
    long_job = client(app_server.url).submit(**LARGEST_COMPARISON)
    time.sleep(2.0)  # the comparison holds the model
    started = time.perf_counter()
    final, _, short_status = client(app_server.url).predict(prompt="a blue square", steps=1, api_name="/generate")
    waited = time.perf_counter() - started
    still_running = not long_job.done()
    long_job.cancel()
    assert short_status == "finished: 1 steps" and Path(final).is_file()
    assert still_running and waited < 15, waited
    print(f"a 1-step request sent 2 s into the largest comparison answered after {waited:.1f} s")


SOAK_RUNS = 25


@pytest.mark.slow
def test_soak_of_25_runs_keeps_memory_and_disk_bounded(capped):
    """25 runs over the API (each writes its GIF, MP4, zip and page) on a server whose files may take 15 MB
    for 20 s: disk stays near the cap, memory stops growing, and nothing is left on disk after the server stops."""
    server = capped
    api = gradio_client.Client(server.url, verbose=False, download_files=False)  # the server is measured
    for seed in range(5):  # warm up: imports, ffmpeg, first allocations
        api.predict(prompt="a red circle", seed=seed, steps=4, api_name="/generate")
    rss, disk = [server.rss_bytes()], [server.disk_bytes()]
    started = time.perf_counter()
    for seed in range(SOAK_RUNS):
        final, _, _ = api.predict(prompt="a small blue square on the left", seed=seed, steps=4, api_name="/generate")
        assert final is not None  # well within the time limit
        if seed % 5 == 4:
            rss.append(server.rss_bytes())
            disk.append(server.disk_bytes())
    seconds = time.perf_counter() - started
    growth_mb = (rss[-1] - rss[0]) / 2**20
    second_half_mb = (rss[-1] - rss[len(rss) // 2]) / 2**20
    report = {"runs": SOAK_RUNS, "seconds": round(seconds, 1), "rss_mb": [round(r / 2**20) for r in rss],
              "disk_mb": [round(d / 2**20, 1) for d in disk], "rss_growth_mb": round(growth_mb, 1)}
    print(json.dumps(report))
    assert growth_mb < 100 and second_half_mb < 40, report
    assert max(disk) < 40 * 2**20, report  # the 15 MB cap plus what 30 s of runs adds between prunes
    server.stop()
    leftovers = [p for p in server.tmp.iterdir() if p.name.startswith(("sdviz-", "gradio"))]
    assert not leftovers, leftovers


def test_frames_are_written_once_under_their_content_and_pruned_by_age_and_size(tmp_path):
    """gradio rewrote identical images in place while browsers read them (ERR_CONTENT_LENGTH_MISMATCH):
    each frame is now written once, atomically, and found again by its content. A prune spares a file just
    handed to gradio and a handler's folder not yet written to (the soak once failed on such a folder)."""
    import os

    from ui.files import GRACE_SECONDS, FileStore

    store = FileStore(max_age=60, max_bytes=10**9)
    try:
        frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        first = store.image(frame)
        inode = os.stat(first).st_ino
        again = store.image(frame.copy())
        assert again == first and os.stat(again).st_ino == inode  # not rewritten
        other = store.image(255 - frame)
        old = time.time() - 120
        os.utime(first, (old, old))
        store.prune()
        assert not Path(first).exists() and Path(other).exists()  # older than max_age
        store.max_bytes = 0
        store.prune()
        assert Path(other).exists()  # over the size cap, but just handed to gradio
        folder = store.new_folder()  # a handler's, before it writes there
        recent = time.time() - 2 * GRACE_SECONDS
        os.utime(other, (recent, recent))
        store.prune()
        assert not Path(other).exists() and folder.is_dir()  # over the size cap: the oldest go; the folder waits
        os.utime(folder, (old, old))
        store.prune()
        assert not folder.exists()  # empty and older than max_age
    finally:
        store.remove()
    assert not store.root.exists()


def test_a_second_sigterm_while_the_files_are_removed_is_ignored(tmp_path):
    """A host stops the app with SIGTERM, and may send it again: the second one, arriving while the
    atexit handlers run, is ignored; they finish, the store's folder goes, nothing is printed."""
    script = textwrap.dedent("""
        import atexit, sys, time
        from ui.files import FileStore, exit_on_sigterm
        store = FileStore(max_age=60, max_bytes=10**9)
        (store.new_folder() / "frame.png").write_bytes(b"x")
        exit_on_sigterm()
        def slow_hook():  # registered last, so run first: the store's removal comes after it
            print("exiting", flush=True)
            time.sleep(1.5)
        atexit.register(slow_hook)
        print(store.root, flush=True)
        while True:
            time.sleep(0.05)
    """)
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={"TMPDIR": str(tmp_path), "PATH": ""})
    store_root = Path(process.stdout.readline().strip())
    assert store_root.is_dir() and any(store_root.rglob("frame.png"))
    process.terminate()
    assert process.stdout.readline().strip() == "exiting"
    process.terminate()  # during the atexit handlers
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and stderr == "", stderr
    assert not store_root.exists()
