"""The threads that do all of the app's torch work: runs, frames decoded again, layer tables, loading.

On a CPU, torch spreads each operation over an OpenMP team, one team per calling
thread. A team left idle in another thread (the one that loaded the model, or a
handler's thread that decoded a frame) still counts against the machine's cores,
and libgomp then stops spinning between operations: the embedded model's default
run took 1.0 s on the thread that loaded the model and 1.8 s on any other (2 cores).
So every torch call of the app goes to these threads, which keep one team each.

Short calls (a frame for the explorer) are served between a run's steps (`serve_calls`), so
they never wait for a run to end. Runs take their turns: a run (`start`) that has held a thread
for `SLICE_SECONDS` while others wait goes on behind them (`ui.streaming.follow` hands its rest
back with `start` when `others_waiting`), so a one-step request waits for a slice, not for a
comparison of 400 steps; and a comparison's next variant queues behind the runs that came
meanwhile. On these threads nothing needs gradients: they are off for good.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable
from typing import Any

SLICE_SECONDS = 1.0  # a run's turn on a thread while other runs wait for it


class ModelThreads:
    """`count` long-lived threads (the app's run concurrency): `start` a run, `call` anything short."""

    def __init__(self, count: int = 1):
        self._runs: collections.deque = collections.deque()
        self._calls: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._threads = [threading.Thread(target=self._serve, name=f"sdviz-model-{n}", daemon=True)
                         for n in range(max(1, count))]
        for thread in self._threads:
            thread.start()

    def start(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Runs fn (a whole run) on a model thread; it should call `serve_calls` between its steps."""
        return self._submit(self._runs, fn)

    def call(self, fn: Callable, *args, **kwargs):
        """fn(*args, **kwargs) on a model thread, between a run's steps if one is running; waits for it."""
        if threading.current_thread() in self._threads:
            return fn(*args, **kwargs)
        context = contextvars.copy_context()  # the request's: what it writes is in its session's language
        return self._submit(self._calls, lambda: context.run(fn, *args, **kwargs)).result()

    def others_waiting(self) -> bool:
        """Whether a run waits for a thread: the one in flight should let it have its turn."""
        with self._ready:
            return bool(self._runs)

    def serve_calls(self) -> None:
        """Does the short calls waiting now (from a run, between two of its steps)."""
        while True:
            with self._ready:
                if not self._calls:
                    return
                job = self._calls.popleft()
            job()

    def _submit(self, queue: collections.deque, fn) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as error:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(error)

        with self._ready:
            queue.append(job)
            self._ready.notify()
        return future

    def _serve(self) -> None:
        import torch

        torch.set_grad_enabled(False)  # per thread: a run resumed on another thread is still without gradients
        while True:
            with self._ready:
                while not (self._calls or self._runs):
                    self._ready.wait()
                job = (self._calls or self._runs).popleft()
            job()
