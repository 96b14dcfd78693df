"""The live panels by a side channel: a run's updates, asked for by the page's own script.

gradio's page handles each message of an event at a cost that grows with the page: every message
updates the loading status of every component an event has touched, each found by walking the
whole component tree. On two CPU cores that work, about 0.1 s of the browser's CPU an update,
slowed the run it showed to twice the core's time. So a run the page follows publishes its live
panels (the diagram, the status, x_t and x0, the filmstrip's new figures) here, and the page's
script (`ui.html.FEED_SCRIPT`, in a gr.HTML of its own) asks for them through a server function:
one small request an update, outside the queue, with no loading status. The run's event still
sends its first update (the final image cleared) and its last (the finished panels, which are
the last ones published too, so the two ways agree whichever comes last).

A session whose page is not asking (a raw client of the event, a tab closed) is sent every update
through the event as before; that is also how gradio notices a client gone (at a yield).
"""

from __future__ import annotations

import asyncio
import threading
import time

from sdviz.sampling.checks import check_int
from sdviz.sampling.errors import InputError

WAIT_SECONDS = 5.0  # a question with no news is answered after this long, and asked again
FOLLOW_SECONDS = 2.0  # a page answered this recently (or waiting now) is following its session's runs
IDLE_SECONDS = 600.0  # a session's feed not asked for or written to this long is dropped
MOST_FEEDS = 10_000  # sessions followed at once at most: the oldest idle one goes first


class Feed:
    """One session's live panels: the newest of each, and the filmstrip's figures since it was last set whole."""

    def __init__(self):
        self.run = 0  # the session's runs published so far; a page asking about another starts over
        self.seq = 0  # changes published so far (every run's)
        self.first = 1  # the first change of the current run
        self.panels: dict[str, tuple[int, str]] = {}  # name -> (change, HTML)
        self.row_set = 0  # the change at which the filmstrip was last set whole
        self.row: list[tuple[int, str]] = []  # (change, figures) since then
        self.waiting = 0  # questions waiting now
        self.answered = -float("inf")  # when the page was last answered
        self.touched = time.monotonic()  # last asked, answered or written to
        self.news = asyncio.Event()

    def start(self) -> int:
        self.run += 1
        self.first = self.seq + 1
        self.panels, self.row, self.row_set = {}, [], 0
        return self.run

    def publish(self, run: int, strip: str | None = None, figures: str | None = None, **panels: str | None) -> None:
        if run != self.run:  # an earlier run of the session ending after a newer one started
            return
        self.seq += 1
        for name, markup in panels.items():
            if markup is not None:
                self.panels[name] = (self.seq, markup)
        if strip is not None:
            self.row, self.row_set = [(self.seq, strip)], self.seq
        elif figures:
            self.row.append((self.seq, figures))
        self.touched = time.monotonic()
        news, self.news = self.news, asyncio.Event()
        news.set()

    def has_news(self, run: int, seen: int) -> bool:
        return self.run > 0 and (run != self.run or self.seq > seen)

    def answer(self, run: int, seen: int) -> dict:
        """What changed in the current run after change `seen` of run `run` (everything, for another run)."""
        if run != self.run:
            seen = self.first - 1
        out: dict = {"run": self.run, "at": self.seq}
        out.update({name: markup for name, (change, markup) in self.panels.items() if change > seen})
        if self.row_set > seen:
            out["strip"] = "".join(figures for _, figures in self.row)
        else:
            added = "".join(figures for change, figures in self.row if change > seen)
            if added:
                out["figures"] = added
        return out

    def followed(self) -> bool:
        return self.waiting > 0 or time.monotonic() - self.answered < FOLLOW_SECONDS


class Publisher:
    """One run's side of its session's feed (`LiveFeeds.start`)."""

    def __init__(self, feed: Feed | None):
        self.feed = feed
        self.run = feed.start() if feed is not None else 0

    def followed(self) -> bool:
        """Whether the page is asking for this session's updates: if not, the event must carry them."""
        return self.feed is not None and self.feed.run == self.run and self.feed.followed()

    def publish(self, strip: str | None = None, figures: str | None = None, **panels: str | None) -> None:
        if self.feed is not None:
            self.feed.publish(self.run, strip, figures, **panels)


class LiveFeeds:
    """The sessions' feeds, by gradio's session hash."""

    def __init__(self):
        self._feeds: dict[str, Feed] = {}
        self._lock = threading.Lock()

    def _feed(self, session: str) -> Feed:
        with self._lock:
            feed = self._feeds.get(session)
            if feed is None:
                self._prune()
                feed = self._feeds[session] = Feed()
            return feed

    def _prune(self) -> None:
        now = time.monotonic()
        idle = [key for key, feed in self._feeds.items() if not feed.waiting and now - feed.touched > IDLE_SECONDS]
        for key in idle:
            del self._feeds[key]
        if len(self._feeds) >= MOST_FEEDS:
            oldest = min((f.touched, key) for key, f in self._feeds.items() if not f.waiting)
            del self._feeds[oldest[1]]

    def start(self, session: str | None) -> Publisher:
        """A new run of `session` (None: a run no page follows, such as one called in process)."""
        return Publisher(self._feed(session) if session else None)

    def server_function(self):
        """The server function the page's script asks (`ui.html.FEED_SCRIPT`), named as it calls it. A question
        it cannot read is answered with the refusal, in the script's terms."""
        async def live(asked, request):
            return await self.ask(await session_asking(request), asked)
        return server_function(live)

    async def ask(self, session: str, asked) -> dict:
        """The page's question {"run": r, "at": n}: what changed after change n of run r, once there is
        something (or after WAIT_SECONDS, nothing)."""
        if not isinstance(asked, dict):
            raise InputError.said("error.live_question", value=repr(asked)[:80])
        run = check_int("run", asked.get("run"), 0, 2**53)
        seen = check_int("at", asked.get("at"), 0, 2**53)
        feed = self._feed(session)
        if not feed.has_news(run, seen):
            news = feed.news
            feed.waiting += 1
            try:
                await asyncio.wait_for(news.wait(), WAIT_SECONDS)
            except TimeoutError:
                pass
            finally:
                feed.waiting -= 1
        feed.touched = feed.answered = time.monotonic()
        return feed.answer(run, seen) if feed.has_news(run, seen) else {"run": feed.run, "at": feed.seq}


def server_function(answer):
    """`answer(asked, request)` as a server function of the page's script (a gr.HTML's): gradio hands it the
    request (by the annotation, resolved here), and a question it refuses is answered with the refusal, in the
    script's terms ({"error": ...}), never a traceback."""
    import gradio as gr

    async def answered(asked=None, request: gr.Request = None):
        try:
            return await answer(asked, request)
        except InputError as error:
            return {"error": str(error)}
    answered.__name__ = answered.__qualname__ = answer.__name__  # as the script calls it: server.live, server.arm
    answered.__annotations__["request"] = gr.Request
    return answered


async def session_asking(request) -> str:
    """The session a server function's request comes from: gradio hands it the HTTP request, whose body
    names the page's session."""
    session = getattr(request, "session_hash", None)
    raw = getattr(request, "request", request)
    if not session and raw is not None and callable(getattr(raw, "json", None)):
        body = await raw.json()
        session = body.get("session_hash") if isinstance(body, dict) else None
    if not isinstance(session, str) or not session:
        raise InputError.said("error.live_question", value="(no session)")
    return session


def session_of() -> str | None:
    """The session hash of the request being served, if any."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) or None
