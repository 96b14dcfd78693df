"""A run on a worker thread, followed from an async handler, and stopped when nobody follows.

gradio cannot stop a thread: a cancelled or disconnected request used to leave its
run working for minutes, beyond the concurrency limit. Here the run steps on its own
thread while the handler, an async generator, waits for its records. gradio cancels
the handler (CancelledError at its await) when the client cancels, and closes it
(GeneratorExit at its yield) when the client goes away; either way `finally` stops
the run, which ends after the step in flight, and the handler waits for that end, so
the concurrency slot is held until the work has really stopped.

When the page is slower than the model, the records that arrived meanwhile are
handed over together: every step is kept in the trajectory, the page shows the latest.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import AsyncIterator

_END = object()


async def follow(run, iterate=None) -> AsyncIterator[list]:
    """Yields lists of the StepRecords that arrived since the last yield, then ends with the run.

    iterate(run, emit) runs on the worker thread and calls emit(record) per step
    (default: iterates the run); its exceptions are raised here.
    """
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue = asyncio.Queue()
    ended: concurrent.futures.Future = concurrent.futures.Future()

    def emit(item) -> None:
        loop.call_soon_threadsafe(arrived.put_nowait, item)

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

    threading.Thread(target=work, name="sdviz-run", daemon=True).start()
    try:
        while True:
            batch = [await arrived.get()]
            while not arrived.empty():
                batch.append(arrived.get_nowait())
            records = [item for item in batch if item is not _END and not isinstance(item, BaseException)]
            if records:
                yield records
            for item in batch:
                if isinstance(item, BaseException):
                    raise item
                if item is _END:
                    return
    finally:
        run.stop()
        await asyncio.shield(asyncio.wrap_future(ended))
