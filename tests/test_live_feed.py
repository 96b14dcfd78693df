"""The live panels' side channel (ui.live_feed): what a page's question is answered with, when, and that a run
no page follows is streamed through its event as before; the server function refuses what the page never asks."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest

from tests.conftest import post_json
from ui import html, live_feed
from ui.live_feed import LiveFeeds


def ask(feeds, session, question, timeout=None):
    async def asked():
        return await feeds.ask(session, question)
    if timeout is not None:
        live_feed.WAIT_SECONDS, old = timeout, live_feed.WAIT_SECONDS
        try:
            return asyncio.run(asked())
        finally:
            live_feed.WAIT_SECONDS = old
    return asyncio.run(asked())


def test_a_question_is_answered_with_what_changed_since_it_and_a_new_run_starts_over():
    feeds = LiveFeeds()
    run = feeds.start("s1")
    run.publish(diagram="<d1>", status="<s0>", live="<l0>", strip="")
    first = ask(feeds, "s1", {"run": 0, "at": 0})
    assert first == {"run": 1, "at": 1, "diagram": "<d1>", "status": "<s0>", "live": "<l0>", "strip": ""}
    run.publish(status="<s1>", live="<l1>", figures="<f1>")
    run.publish(diagram="<d2>", status="<s2>", live=None, figures="<f2>")
    news = ask(feeds, "s1", {"run": 1, "at": first["at"]})
    # the newest of each panel, the figures added since, in order; a panel not sent again is not repeated
    assert news == {"run": 1, "at": 3, "diagram": "<d2>", "status": "<s2>", "live": "<l1>", "figures": "<f1><f2>"}
    run.publish(strip="<f0><f2>", status="<s3>")  # the row drawn whole (its stride doubled)
    assert ask(feeds, "s1", {"run": 1, "at": 3}) == {"run": 1, "at": 4, "status": "<s3>", "strip": "<f0><f2>"}
    # another session sees nothing of this one
    assert ask(feeds, "s2", {"run": 0, "at": 0}, timeout=0.05) == {"run": 0, "at": 0}
    # the session's next run: a page still on the last one is sent the new run whole
    second = feeds.start("s1")
    second.publish(status="<n0>", live="<m0>", strip="")
    run.publish(status="<late>")  # the earlier run ending after the new one began: dropped
    assert ask(feeds, "s1", {"run": 1, "at": 4}) == {"run": 2, "at": 5, "status": "<n0>", "live": "<m0>", "strip": ""}


def test_a_question_waits_for_news_and_marks_the_session_followed():
    feeds = LiveFeeds()
    run = feeds.start("s")
    run.publish(status="<s0>")
    assert not run.followed()  # no page has asked yet: the event must carry the updates

    async def scenario():
        waiting = asyncio.ensure_future(feeds.ask("s", {"run": 1, "at": 1}))
        await asyncio.sleep(0.05)
        assert not waiting.done() and run.followed()  # a question waits for news; the page follows
        started = time.perf_counter()
        run.publish(status="<s1>")
        answer = await waiting
        return answer, time.perf_counter() - started

    answer, seconds = asyncio.run(scenario())
    assert answer == {"run": 1, "at": 2, "status": "<s1>"} and seconds < 0.05
    assert run.followed()  # answered just now
    live_feed.FOLLOW_SECONDS, old = 0.0, live_feed.FOLLOW_SECONDS
    try:
        assert not run.followed()  # a page that stopped asking (a closed tab): the event carries them again
    finally:
        live_feed.FOLLOW_SECONDS = old
    # a question with no news is answered with where the run stands, after the wait
    started = time.perf_counter()
    assert ask(feeds, "s", {"run": 1, "at": 2}, timeout=0.1) == {"run": 1, "at": 2}
    assert 0.09 < time.perf_counter() - started < 1


def test_a_run_no_page_follows_publishes_nowhere():
    run = LiveFeeds().start(None)  # a run called in process (the API's, a test's)
    run.publish(status="<s>")
    assert not run.followed()


@pytest.mark.parametrize("question", [None, 7, "run", ["run", 1], {"run": "1", "at": 0}, {"run": 1},
                                      {"run": 1.5, "at": 0}, {"run": -1, "at": 0}, {"run": 0, "at": 2**60}])
def test_a_question_the_page_never_asks_is_refused_naming_it(question):
    from sdviz.sampling.errors import InputError

    with pytest.raises(InputError) as refused:
        ask(LiveFeeds(), "s", question, timeout=0.01)
    message = str(refused.value)
    assert "allowed" in message and ("run" in message or "at" in message or "live question" in message)


def test_idle_feeds_are_dropped_and_their_number_is_bounded(monkeypatch):
    feeds = LiveFeeds()
    feeds.start("old").publish(status="<s>")
    monkeypatch.setattr(live_feed, "IDLE_SECONDS", 0.0)
    feeds.start("new")
    assert set(feeds._feeds) == {"new"}
    monkeypatch.setattr(live_feed, "IDLE_SECONDS", 1e9)
    monkeypatch.setattr(live_feed, "MOST_FEEDS", 3)
    for name in "abcde":
        feeds.start(name)
    assert len(feeds._feeds) <= 3 and "e" in feeds._feeds


def test_the_pages_script_draws_every_panel_the_feed_sends():
    """The script's selectors are the roots of the panels' own HTML, so a swap replaces the panel, not more."""
    import numpy as np

    frame = np.zeros((8, 8, 3), np.uint8)
    panels = (("#status .sdviz-status", html.status()), ("#live .sdviz-live", html.live(frame, frame, 1)),
              ("#filmstrip .sdviz-filmstrip", html.FILMSTRIP_TEMPLATE),
              *(("#compare-columns .sdviz-compare-row", html.compare_columns(figures))
                for figures in ([html.compare_column(1, "ddim", "waiting")], [])))
    for selector, markup in panels:
        assert selector in html.FEED_SCRIPT
        assert markup.startswith(f'<div class="{selector.split(".")[-1]}"') and markup.endswith("</div>")
    assert "server.live(" in html.FEED_SCRIPT


def feed_call(url: str, session: str, data) -> tuple[int, str]:
    """The page's question to the server function, sent by hand (as `server.live(...)` sends it)."""
    config = json.load(urllib.request.urlopen(url + "config", timeout=30))
    feed = next(c["id"] for c in config["components"] if c["props"].get("elem_id") == "live-feed")
    body = json.dumps({"component_id": feed, "fn_name": "live", "session_hash": session, "data": data})
    return post_json(url + "gradio_api/component_server", body)


def test_the_server_function_refuses_hostile_questions_by_name_and_keeps_serving(app_server):
    for data in ({"run": "x" * 5000, "at": 0}, [1, 2], None, {"run": 0, "at": -5}):
        status, text = feed_call(app_server.url, "hostile-session", data)
        assert status == 200, text
        answer = json.loads(text)
        assert set(answer) == {"error"} and "allowed" in answer["error"] and len(answer["error"]) < 400, answer
    status, text = feed_call(app_server.url, "quiet-session", {"run": 0, "at": 0})
    assert status == 200 and json.loads(text) == {"run": 0, "at": 0}  # nothing ran in it: after the wait, nothing
    assert "Traceback" not in app_server.log_text()
