"""The page's own events, sent by hand the way a hostile client sends them: raw HTTP to gradio's queue, by
event index, in a session that has a finished run, every value a client can set replaced in turn by values
the page never sends. Each is refused with one message naming the parameter, the value shortened and what
is allowed, with no traceback in the server's log; the server serves the page's run afterwards.

The table below names, for each of the page's inputs (by its label), the parameter its message must name;
every event that takes the input is probed with it (`test_every_page_event_answers_hostile_values_by_name`).
"""

from __future__ import annotations

import json
import math
import urllib.request
import uuid

import pytest

from tests.conftest import post_json

# the input's label -> the parameter its refusal names
NAMED = {
    "Prompt": "prompt", "Negative prompt": "negative prompt", "What it should show instead (the edit)": "prompt",
    "What the image shows (source prompt)": "prompt", "source_prompt": "source prompt",  # an inversion's prompt
    "Model": "model", "Scheduler": "scheduler", "Steps": "steps", "Guidance scale": "guidance", "Seed": "seed",
    "Width": "width", "Height": "height", "eta (DDIM noise; TCD's gamma)": "eta", "Preview decoder": "preview",
    "Decode every N steps": "every", "Capture attention (heat maps, self-attention probe)": "attention",
    "True CFG (Flux: real guidance with the negative prompt, above 1)": "true cfg",
    "Strength (share of the schedule run)": "strength", "Source guidance": "source guidance",
    "source_guidance": "source guidance", "Start image": "image", "The image": "image",
    "or noise an image of your own": "upload", "or encode an image of your own": "upload",
    "Step": "step", "Word": "word", "Resolution": "resolution", "Language": "language",
    "Self-attention resolution": "self-attention resolution",
    "Vary": "vary", "and vary": "vary", "its values": "values", "vary": "vary", "align": "align",
    "Line the runs up by": "align", "Where along the runs (% of the way from the noise to the image)": "position",
    "where they part, against variant": "against variant", "Run token": "run token",
}
# a valid value where the page's own default is none (the images: an upload of the test's), so that each
# hostile value is the only thing wrong with its request
VALID = {"vary": "steps=1,2", "What the image shows (source prompt)": "a red circle",
         "What it should show instead (the edit)": "a blue square"}
KEPT_WHEN_NONE = {"stream_fork"}  # a fork's none: the parent's value (`sdviz.sampling.fork.fork_settings`)
MESSAGE_CHARS = 400  # a refusal shortens the value it shows: a 5,000-character value is not echoed back


def hostile(component: dict, outside_png: str, event: str) -> list:
    """Values the page never sends for this input of `event`."""
    kind = component["type"]
    if kind == "textbox":
        return [{"object": 1}, ["a list"], 7, "x" * 5000]
    if kind in ("number", "slider"):
        empty = [None]
        if component["props"].get("label") in ("Width", "Height") or event in KEPT_WHEN_NONE:
            empty = []  # none: the model's size; a fork's: the parent's
        return ["abc", math.nan, *empty, 1e300, True, {"a": 1}, "9" * 5000]
    if kind in ("dropdown", "radio"):
        if component["props"].get("label") == "Steps":  # the attention tab's span, a radio
            return ["9" * 5000, 999999, {"a": 1}, math.nan]
        return ["9" * 5000, 999999, {"a": 1}, math.nan, "negative:abc"]
    if kind == "checkbox":
        return ["yes", 1, None, math.nan]
    if kind == "image":
        return ["abc", 5, {"path": "/etc/passwd"}, {"path": outside_png},
                {"path": outside_png, "meta": {"_type": "gradio.FileData"}}]
    raise AssertionError(f"an input of the page with no hostile values in this table: {kind}")


class PageSession:
    """One browser session sending the page's own events by hand: raw HTTP to gradio's queue, by event index."""

    def __init__(self, url: str):
        self.url, self.hash = url, uuid.uuid4().hex[:12]
        with urllib.request.urlopen(url + "config", timeout=30) as response:
            config = json.load(response)
        components = {c["id"]: c for c in config["components"]}
        self.events = [(index, event, [components[i] for i in event["inputs"]])
                       for index, event in enumerate(config["dependencies"]) if event.get("backend_fn")]
        self.by_name = {event["api_name"]: (index, event, inputs) for index, event, inputs in self.events}

    def upload(self, path) -> dict:
        """Uploads a file as the page does; returns the value the page then sends for it."""
        boundary = "sdvizboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "gradio_api/upload", data=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            uploaded = json.loads(response.read())[0]
        return {"path": uploaded, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def call(self, index: int, data: list, event_data=None) -> dict:
        """Sends event `index` with `data`; returns gradio's last message for it (process_completed)."""
        body = json.dumps({"data": data, "fn_index": index, "session_hash": self.hash, "event_data": event_data})
        request = urllib.request.Request(self.url + "gradio_api/queue/join", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            event_id = json.loads(response.read())["event_id"]
        with urllib.request.urlopen(self.url + f"gradio_api/queue/data?session_hash={self.hash}",
                                    timeout=120) as stream:
            for line in stream:
                if line.startswith(b"data:"):
                    message = json.loads(line[5:])
                    if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                        return message
        raise AssertionError(f"event {index} never completed")

    def named(self, name: str, **values) -> dict:
        """Event `name` with its page defaults, `values` (by input label) replaced."""
        index, _, inputs = self.by_name[name]
        return self.call(index, [values.get(c["props"].get("label"), default(c)) for c in inputs])


def default(component: dict):
    if component["type"] == "state":
        return None
    return VALID.get(component["props"].get("label"), component["props"].get("value"))


def distinct(events: list) -> list:
    """One of each event that differs in its handler or its inputs: the page wires the same handler to several
    triggers (the step drawn again after each kind of run), which a hostile value meets the same way."""
    seen, kept = set(), []
    for index, event, inputs in events:
        key = (event["api_name"].rstrip("0123456789").rstrip("_"), tuple(c["id"] for c in inputs))
        if key not in seen:
            seen.add(key)
            kept.append((index, event, inputs))
    return kept


def answer(message: dict) -> str | None:
    return None if message.get("success") else (message.get("output") or {}).get("error")


@pytest.fixture(scope="module")
def page(app_server):
    """A session with a finished run (attention captured) of the embedded model, as the page leaves it."""
    session = PageSession(app_server.url)
    finished = session.named("stream_1", Steps=4)
    assert finished["success"], answer(finished)
    assert session.named("finish_1")["success"]  # the explorer's finish: the run's choices
    return session


def test_stop_reaches_a_run_armed_but_not_yet_started_and_a_new_run_stops_the_earlier(app_server):
    """The page's script arms a run as its button is pressed (the feed's "arm" server function), then sends the
    run with the token it was given: Stop pressed in between (the run still queued) stops it before its first
    step, and arming again stops the earlier run; another session's run is not touched."""
    session, other = PageSession(app_server.url), PageSession(app_server.url)
    feed = next(c["id"] for c in json.load(urllib.request.urlopen(app_server.url + "config", timeout=30))["components"]
                if c["props"].get("elem_id") == "live-feed")

    def arm(page: PageSession, language: str = "en-US") -> dict:
        body = json.dumps({"component_id": feed, "fn_name": "arm", "session_hash": page.hash, "data": [{}]})
        status, text = post_json(app_server.url + "gradio_api/component_server", body, Accept_Language=language)
        assert status == 200, text
        return json.loads(text)

    def status_of(message: dict) -> str:
        assert message["success"], answer(message)
        return message["output"]["data"][1]

    armed, elsewhere = arm(session), arm(other)
    assert len(armed["token"]) == 32 and "queued" in armed["status"]
    assert "排队中" in arm(PageSession(app_server.url), "zh-CN")["status"]  # in the page's language
    assert session.named("stop")["success"]  # Stop, the run armed but not yet sent
    stopped = status_of(session.named("stream_1", Steps=4, **{"Run token": armed["token"]}))
    assert "stopped" in stopped and 'data-step="0"' in stopped, stopped
    earlier = arm(session)["token"]
    arm(session)  # Generate again before the earlier run was sent
    assert "stopped" in status_of(session.named("stream_1", Steps=4, **{"Run token": earlier}))
    ran = status_of(other.named("stream_1", Steps=4, **{"Run token": elsewhere["token"]}))
    assert "finished" in ran and 'data-step="4"' in ran, ran


def test_every_page_event_answers_hostile_values_by_name(page, app_server, tmp_path):
    """Every input of every event the page uses, each hostile value in turn: one message naming the parameter,
    shortened, saying what is allowed; no traceback logged; a file value outside the uploads is refused."""
    from PIL import Image

    outside_png = tmp_path / "outside.png"  # a real image on the server's disk, never uploaded
    Image.new("RGB", (64, 64), (10, 200, 10)).save(outside_png)
    uploaded = page.upload(outside_png)
    click = {"index": [3, 4], "value": None}  # the probe's event data: a pixel
    log_start = len(app_server.log_text())
    tried, wrong, events = 0, [], distinct(page.events)
    for index, event, inputs in events:
        defaults = [uploaded if c["type"] == "image" else default(c) for c in inputs]
        for slot, component in enumerate(inputs):
            if component["type"] == "state":
                continue  # held by the server: no request sets it
            name = NAMED[component["props"]["label"]]
            for value in hostile(component, str(outside_png), event["api_name"]):
                data = list(defaults)
                data[slot] = value
                error = answer(page.call(index, data, click if event["api_name"] == "probe" else None))
                tried += 1
                if not (isinstance(error, str) and name in error.lower() and "allowed" in error
                        and len(error) <= MESSAGE_CHARS):
                    wrong.append((event["api_name"], component["props"]["label"], str(value)[:40], error))
    assert not wrong, f"{len(wrong)} of {tried} hostile values answered wrongly: " + "\n".join(map(str, wrong))
    assert len(events) > 30 and tried > 300
    logged = app_server.log_text()[log_start:]
    assert "Traceback" not in logged and "failed" not in logged, logged[-3000:]
    print(f"{tried} hostile values over {len(events)} distinct events, each refused by name")


def test_a_request_with_the_wrong_number_of_values_is_refused_for_every_event(page):
    """Too few values (gradio: no message and a traceback) or too many (gradio: ignored)."""
    for index, event, inputs in distinct(page.events):
        for data in ([None] * (len(inputs) + 1), [None] * max(len(inputs) - 1, 0)):
            if len(data) == len(inputs):
                continue
            error = answer(page.call(index, data))
            assert error is not None and f"the request sends {len(data)} values; allowed: {len(inputs)}" in error, (
                event["api_name"], error)


def test_the_self_attention_probe_checks_the_click_it_is_sent(page):
    """The click comes as the event's data: missing, not a pixel, outside the image: refused by name."""
    index, _, inputs = page.by_name["probe"]
    finished = page.named("finish_1")["output"]["data"]  # the run's choices: the probe's resolution, first
    data = [default(c) for c in inputs]
    data[2] = finished[4]["value"]
    for event_data, named in ((None, "pixel"), ({"index": "abc"}, "pixel"), ({"index": [10**9, 1]}, "pixel x"),
                              ({"index": [0, math.nan]}, "pixel y"), ({"index": [1, 2, 3]}, "pixel")):
        error = answer(page.call(index, data, event_data))
        assert error is not None and error.startswith(named) and "allowed" in error, (event_data, error)
    assert page.call(index, data, {"index": [3, 4], "value": None})["success"]


def test_messages_are_escaped_for_the_page_only(app_server):
    """The page draws a message as HTML; an API client reads it as written."""
    from gradio_client import Client

    with pytest.raises(Exception) as error:
        Client(app_server.url, verbose=False).predict(api_name="/generate", prompt="<b>x</b>", guidance="<b>")
    assert "guidance '<b>' is not a number" in str(error.value)
    session = PageSession(app_server.url)
    index, _, inputs = session.by_name["stream_1"]
    data = [{"Guidance scale": "<b>"}.get(c["props"].get("label"), default(c)) for c in inputs]
    body = json.dumps({"data": data, "fn_index": index, "session_hash": session.hash})
    request = urllib.request.Request(session.url + "gradio_api/queue/join", data=body.encode(),
                                     headers={"Content-Type": "application/json", "x-gradio-user": "app"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(session.url + f"gradio_api/queue/data?session_hash={session.hash}") as stream:
        for line in stream:
            if line.startswith(b"data:") and json.loads(line[5:]).get("event_id") == event_id:
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    break
    assert answer(message) == "guidance '&lt;b&gt;' is not a number; allowed: [0, 100]"


def test_the_page_passes_through_in_the_browser_what_needs_no_server(page):
    """Copying a clicked example into the prompt and the explorer's x0 into the probe are done by the page
    itself: no server event a client could send them to."""
    with urllib.request.urlopen(page.url + "config", timeout=30) as response:
        config = json.load(response)
    by_id = {c["id"]: c["props"] for c in config["components"]}
    passed = [event for event in config["dependencies"]
              if any(by_id[i].get("label") == "Try a prompt" or by_id[i].get("elem_id") == "x0-view"
                     for i in event["inputs"])]
    assert len(passed) == 2 and all(not e["backend_fn"] and e["js"] for e in passed)


def test_every_handler_is_under_the_error_policy_and_takes_values_as_sent():
    """Built page, no server: each event's handler is wrapped by ui.errors.user_errors (a refusal is a
    message, anything else one line), and each of its inputs hands the value on untouched to the handler's
    checks (gradio's own checks answer without the parameter's name)."""
    import app
    from ui.components import takes_values_as_sent
    from ui.errors import guarded

    functions = [fn for fn in app.demo.fns.values() if fn.fn is not None]
    assert len(functions) > 50
    assert [fn.name for fn in functions if not guarded(fn.fn)] == []
    assert [(fn.name, type(c).__name__) for fn in functions for c in fn.inputs if not takes_values_as_sent(c)] == []


def test_malformed_bodies_and_unknown_endpoints_are_answered_in_one_line(app_server):
    """gradio answers these with `{"error": null}`, a plain "Internal Server Error", or a dump of the body."""
    def post(path: str, body: str) -> tuple[int, str]:
        return post_json(app_server.url + path, body)

    status, text = post("gradio_api/call/nothing", '{"data": ["a fish"]}')
    assert status == 404 and json.loads(text) == {
        "error": "endpoint '/nothing' does not exist; allowed: /invert, /generate, /compare"}
    status, text = post("gradio_api/call/generate", '{"dat": [' + '"x",' * 2000 + '"x"]}')
    assert status == 422 and json.loads(text)["error"].startswith("the request's body.data is malformed")
    assert len(text) < 300
    status, text = post("gradio_api/call/generate", "not json")
    assert status == 422 and "malformed" in json.loads(text)["error"]
    status, text = post("gradio_api/call/generate", '{"data": ["a fish"]}')
    event_id = json.loads(text)["event_id"]
    with urllib.request.urlopen(app_server.url + f"gradio_api/call/generate/{event_id}", timeout=30) as response:
        streamed = response.read().decode()
    assert "the request sends 1 values; allowed: 17 (prompt, negative prompt, model" in streamed
