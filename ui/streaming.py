"""A run on a worker thread, followed from an async handler, and stopped when nobody follows.

gradio cannot stop a thread: a cancelled or disconnected request used to leave its
run working for minutes, beyond the concurrency limit. Here the run steps on its own
thread while the handler, an async generator, waits for its records. gradio cancels
the handler (CancelledError at its await) when the client cancels, and closes it
(GeneratorExit at its yield) when the client goes away; either way `finally` stops
the run, which ends after the step in flight, and the handler waits for that end, so
the concurrency slot is held until the work has really stopped.

On the model threads a run steps in turns (`ui.model_threads.SLICE_SECONDS`): when other runs wait,
the rest of this one is handed back to the threads and queues behind them.

Updates go out at display rate: records that arrive within `interval` of the last
update (and any that arrive while the page is busy) are handed over together, so a
fast model is not slowed by a page redrawn at every step. Every step is still kept
in the trajectory; the page shows the latest. The first record and the end are
handed over at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator

from ui.model_threads import SLICE_SECONDS

_END = object()


async def follow(run, iterate=None, interval: float = 0.0, threads=None) -> AsyncIterator[list]:
    """Yields lists of the StepRecords that arrived since the last yield, at most one list per
    `interval` seconds, then ends with the run.

    iterate(run, emit) runs on the worker thread and calls emit(record) per step
    (default: iterates the run); its exceptions are raised here. The worker thread is one
    of `threads` (ui.model_threads.ModelThreads), which serve their short calls between
    the steps, or else a new thread. A run iterated here (`iterate` None, or one marked
    `in_process`) on `threads` takes turns with the other runs; one handed to another
    process as a whole (ZeroGPU) does not.
    """
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue = asyncio.Queue()
    ended: concurrent.futures.Future = concurrent.futures.Future()
    last_end = asyncio.Event()  # the run's end (or error) arrived: no more waiting for display rate

    def put(item) -> None:
        arrived.put_nowait(item)
        if item is _END or isinstance(item, BaseException):
            last_end.set()

    def emit(item) -> None:
        loop.call_soon_threadsafe(put, item)
        if threads is not None:
            threads.serve_calls()

    def work() -> None:
        try:
            if iterate is None:
                for record in run:
                    emit(record)
            else:
                iterate(run, emit)
            emit(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the handler, which raises it
            emit(error)
        finally:
            ended.set_result(None)

    steps = iter(run)

    def turn() -> None:
        """One turn of the run on a model thread; its rest goes behind the runs that wait, if any."""
        try:
            ends = time.monotonic() + SLICE_SECONDS
            for record in steps:
                emit(record)
                if time.monotonic() > ends and threads.others_waiting():
                    threads.start(turn)
                    return
            emit(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the handler, which raises it
            emit(error)
        ended.set_result(None)

    if threads is not None and (iterate is None or getattr(iterate, "in_process", False)):
        threads.start(turn)
    elif threads is not None:
        threads.start(work)
    else:
        threading.Thread(target=work, name="sdviz-run", daemon=True).start()
    shown = -float("inf")  # when the last list was handed over (the loop's clock)
    try:
        while True:
            batch = [await arrived.get()]
            delay = shown + interval - loop.time()
            if delay > 0 and not last_end.is_set():  # too soon after the last update: gather until it is time
                waiter = asyncio.ensure_future(last_end.wait())
                try:
                    await asyncio.wait([waiter], timeout=delay)
                finally:
                    waiter.cancel()
            while not arrived.empty():
                batch.append(arrived.get_nowait())
            records = [item for item in batch if item is not _END and not isinstance(item, BaseException)]
            if records:
                shown = loop.time()
                yield records
            for item in batch:
                if isinstance(item, BaseException):
                    raise item
                if item is _END:
                    return
    finally:
        run.stop()
        await asyncio.shield(asyncio.wrap_future(ended))


class PartStop:
    """The stop of one run among several that one request makes (a comparison's variants, an inversion and
    its reconstruction): set by that run's own end (`follow` stops every run it followed) or by the
    session's Stop, which must reach every later run too, while one run's end must not stop the next."""

    def __init__(self, session: threading.Event | None):
        self.own, self.session = threading.Event(), session

    def set(self) -> None:
        self.own.set()

    def is_set(self) -> bool:
        return self.own.is_set() or (self.session is not None and self.session.is_set())
