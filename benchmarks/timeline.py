"""`python app.py` with a timeline: where the page's run spends its time on the server.

    SDVIZ_TIMELINE=/tmp/timeline.jsonl python benchmarks/timeline.py

The app as `python app.py` launches it, plus one JSON line per moment (wall-clock seconds, comparable with
the browser's `performance.timeOrigin + performance.now()` on the same machine):

    {"at": ..., "what": "handler"}                       a run's streaming handler starts
    {"at": ..., "what": "record", "step": i, "seconds": s}  the model thread has step i (its own seconds)
    {"at": ..., "what": "batch", "steps": [...]}           the handler takes the records that arrived
    {"at": ..., "what": "sent", "msg": ..., "fn": ..., "bytes": n}  gradio queues a message for the page
    {"at": ..., "what": "answered", "bytes": n}           the live feed answers the page's script (ui.live_feed)

Used by `benchmarks/benchmark_app.py --breakdown`; the ratios it reports come from the plain app.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = open(os.environ["SDVIZ_TIMELINE"], "a", buffering=1)  # noqa: SIM115 - written until the server stops
LOCK = threading.Lock()


def note(what: str, **fields) -> None:
    line = json.dumps({"at": time.time(), "what": what, **fields})
    with LOCK:
        OUT.write(line + "\n")


class Timed:
    """A run whose records are noted as the model thread makes them; everything else is the run's."""

    def __init__(self, run):
        self._run = run

    def __iter__(self):
        for record in self._run:
            note("record", step=record.index, seconds=record.seconds)
            yield record

    def __getattr__(self, name):
        return getattr(self._run, name)


def hook() -> None:
    import gradio.queueing

    import ui.tabs.run

    follow = ui.tabs.run.follow

    async def followed(run, *args, **kwargs):
        note("handler")
        async for records in follow(Timed(run), *args, **kwargs):
            note("batch", steps=[r.index for r in records])
            yield records

    ui.tabs.run.follow = followed
    send = gradio.queueing.Queue.send_message

    def sent(self, event, message):
        kind = str(getattr(message, "msg", ""))
        size = len(message.model_dump_json()) if "process" in kind else 0
        note("sent", msg=kind.rsplit(".", 1)[-1], fn=event.fn.fn.__qualname__ if event.fn else None, bytes=size)
        return send(self, event, message)

    gradio.queueing.Queue.send_message = sent
    try:
        import ui.live_feed
    except ImportError:  # an app from before the live feed (a before-and-after comparison)
        return
    ask = ui.live_feed.LiveFeeds.ask

    async def asked(self, session, question):
        answer = await ask(self, session, question)
        if len(answer) > 2:  # more than where the run is: panels
            note("answered", bytes=len(json.dumps(answer)))
        return answer

    ui.live_feed.LiveFeeds.ask = asked


if __name__ == "__main__":
    if not os.environ.get("GRADIO_TEMP_DIR"):  # as app.py does, before gradio reads it; removed at exit
        import atexit
        import shutil
        import tempfile

        own = tempfile.mkdtemp(prefix="sdviz-gradio-")
        os.environ["GRADIO_TEMP_DIR"] = own
        atexit.register(shutil.rmtree, own, True)
    hook()
    os.chdir(ROOT)
    sys.argv = [str(ROOT / "app.py")]
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
