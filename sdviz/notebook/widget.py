"""The live widget (`sdviz.live`): an anywidget that runs a run in a thread of its own and follows it.

Its synced traits are the whole conversation with the page: the thread sets the step's frames and numbers
as each step comes (`x_t`, `x0`, `step`, `total`, `timestep`, `sigma`, `status`), the page's Stop button
sets `stop_requested`, and when the run ends the thread sets `page`, the finished run's explorer (the page
`sdviz html` writes), which the widget shows in a sandboxed frame in place of the live view.
"""

from __future__ import annotations

import contextvars
import threading
import time
from pathlib import Path

import anywidget
import traitlets

from sdviz.drawing.page import image_uri
from sdviz.messages import speaking, text
from sdviz.sampling.errors import InputError

FOLDER = Path(__file__).resolve().parent
LIVE_SIDE = 256  # frames higher than this are scaled down for the live view
STATES = ("running", "stopping", "finished", "stopped", "failed")
WORDS = ("notebook.stop", "explore.x_t", "explore.x0")  # what the widget's script writes


class Live(anywidget.AnyWidget):
    """A run followed live; see `sdviz.notebook.live`."""

    _esm = FOLDER / "live.js"
    _css = FOLDER / "live.css"

    state = traitlets.Unicode("running").tag(sync=True)  # one of STATES
    status = traitlets.Unicode("").tag(sync=True)  # the line under the pictures, in the widget's language
    step = traitlets.Int(0).tag(sync=True)  # steps done (the slider's count: 1..total)
    total = traitlets.Int(0).tag(sync=True)  # entries in the scheduler's timesteps, once known
    timestep = traitlets.Float(0.0).tag(sync=True)
    sigma = traitlets.Float(0.0).tag(sync=True)
    x_t = traitlets.Unicode("").tag(sync=True)  # the latest decoded step's frames, as data URIs
    x0 = traitlets.Unicode("").tag(sync=True)
    words = traitlets.Dict().tag(sync=True)  # the script's labels, in the widget's language
    page = traitlets.Unicode("").tag(sync=True)  # the finished run's explorer, a sandboxed frame's srcdoc
    stop_requested = traitlets.Bool(False).tag(sync=True)  # set by the Stop button (or `stop()`)

    def __init__(self, model, settings, init_image=None, *, attention: bool = True, lang: str | None = None,
                 fork=None):
        from sdviz.sampling.sampler import Run

        with speaking(lang) as language:
            capture = None
            if attention:
                from sdviz.sampling.attention import AttentionCapture

                capture = AttentionCapture(model)
            self._run = Run(model, settings, init_image=init_image, capture=capture, fork=fork)  # checks first
            super().__init__(words={key: text(key) for key in WORDS}, status=text("notebook.starting"),
                             total=settings.steps)
            self.language = language
            context = contextvars.copy_context()  # the thread writes in the widget's language
        self.trajectory = None  # the run's trajectory, once it has ended
        self._ended = threading.Event()
        self._thread = threading.Thread(target=context.run, args=(self._follow,),
                                        name="sdviz-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends the run after the step in flight (what the Stop button does)."""
        self.stop_requested = True

    @traitlets.observe("stop_requested")
    def _stop_requested(self, change) -> None:
        if change["new"] and not self._ended.is_set():
            self._run.stop()
            with speaking(self.language):
                self._update(state="stopping", status=text("notebook.stopping"))

    def wait(self, timeout: float | None = None):
        """Blocks until the run has ended (or `timeout` seconds) and returns its trajectory (None if not ended).
        While a cell waits, the kernel reads no message: the Stop button acts once it returns."""
        self._ended.wait(timeout)
        return self.trajectory

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    def _follow(self) -> None:
        """The thread: the run's steps into the traits, then its page."""
        run, started = self._run, time.perf_counter()
        try:
            for record in run:
                self._show_step(record)
            trajectory = run.trajectory
            from sdviz.notebook.show import trajectory_page

            page = trajectory_page(trajectory, run.previewer) if trajectory.steps else ""  # stopped before a step
            seconds = time.perf_counter() - started
            done = trajectory.complete
            status = (text("notebook.finished", steps=len(trajectory.steps), seconds=f"{seconds:.1f}") if done
                      else text("notebook.stopped", steps=len(trajectory.steps), total=run.total or 0))
            self.trajectory = trajectory
            self._update(page=page, state="finished" if done else "stopped", status=status)
        except InputError as error:
            self._update(state="failed", status=str(error))
        except Exception as error:  # noqa: BLE001 - shown in the widget: the kernel goes on
            self._update(state="failed", status=text("notebook.failed", error=f"{type(error).__name__}: {error}"))
        finally:
            self._ended.set()

    def _show_step(self, record) -> None:
        run = self._run
        values = {"step": record.index + 1, "total": run.total or 0, "timestep": float(record.timestep),
                  "sigma": float(record.sigma),
                  "status": text("notebook.step", step=record.index + 1, total=run.total or 0,
                                 timestep=f"{float(record.timestep):.0f}", sigma=f"{float(record.sigma):.3g}")}
        if record.x_t_image is not None:
            values["x_t"] = image_uri(record.x_t_image, LIVE_SIDE)
            values["x0"] = image_uri(record.x0_image, LIVE_SIDE)
        if self.state == "stopping":
            values.pop("status")
        self._update(**values)

    def _update(self, **values) -> None:
        """Sets several traits as one update to the page."""
        with self.hold_sync():
            for name, value in values.items():
                setattr(self, name, value)
