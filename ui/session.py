"""The app's session service, without gradio: what every tab's handlers share and ask for.

The shared objects are read-only or thread-safe: the model cache (looked up by the menu's names),
the model threads every torch call runs on, and the file store. Per-request data stays in the
handlers' locals and in `gr.State` (the trajectory); a run's `StopSignal` is kept by session and token
(`Arming`), so that Stop reaches it queued or running.

A run is built here and only here (`build_run`, `build_fork`): every value checked, then the host's
limits, before any model work. A finished run's frames are decoded again by its one decoder object
(`decoder`), built from the run's own settings.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from sdviz.sampling.attention import AttentionCapture
from sdviz.sampling.checks import check_int, check_settings, check_text
from sdviz.sampling.errors import InputError, shortened
from sdviz.sampling.images import load_image
from sdviz.sampling.previews import Previewer
from sdviz.sampling.sampler import Run
from sdviz.sampling.settings import Settings
from ui.live_feed import LiveFeeds, server_function, session_asking, session_of
from ui.model_threads import ModelThreads
from ui.zerogpu import decode_latents, decode_record, denoised_frame, guidance_frames

SELF_ATTENTION_POSITIONS = 256  # self-attention kept up to 16 x 16 positions (SD 1.5: 0.14 MB a step)


class StopSignal:
    """A run's Stop: a threading.Event in the session's state.

    ZeroGPU runs handlers in another process, where no event set here can reach; it pickles
    as a fresh one, and there Stop goes through gradio's cancel instead (see ui.tabs.run).
    """

    def __init__(self):
        self.event = threading.Event()

    def __reduce__(self):
        return (StopSignal, ())


TOKEN_CHARS = 32  # a run token: uuid4's hex
ARMED_KEPT = 8  # a session's newest runs kept by token (the earlier ones, superseded, stay stopped)
MOST_SESSIONS = 10_000  # sessions kept at once at most: the one armed longest ago goes first


class Arming:
    """Each session's runs, armed by the page's script before they are queued (`server_function`, called by
    `ui.html.FEED_SCRIPT` as Generate is pressed, its answer the run's token in the run's request), so that
    Stop reaches a run queued or running and a new run stops the session's earlier ones at once, without an
    event of gradio's of its own: every event's messages cost the page a walk of its components."""

    def __init__(self):
        self._sessions: OrderedDict[str, OrderedDict[str, StopSignal]] = OrderedDict()
        self._lock = threading.Lock()

    def _runs(self, session: str) -> OrderedDict[str, StopSignal]:
        runs = self._sessions.get(session)
        if runs is None:
            runs = self._sessions[session] = OrderedDict()
            while len(self._sessions) > MOST_SESSIONS:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(session)
        return runs

    def arm(self, session: str) -> str:
        """A new run of `session`, its token; the session's earlier runs, queued or running, stop."""
        token = uuid.uuid4().hex
        with self._lock:
            runs = self._runs(session)
            for signal in runs.values():
                signal.event.set()
            self._keep(runs, token, StopSignal())
        return token

    @staticmethod
    def _keep(runs: OrderedDict, token: str, signal: StopSignal) -> StopSignal:
        runs[token] = signal
        while len(runs) > ARMED_KEPT:
            runs.popitem(last=False)
        return signal

    def take(self, session: str | None, token) -> StopSignal:
        """The stop signal of the run armed as `token`. A run its page did not arm (no token, or one this
        server did not give: a raw client of the page's events) gets its own, which Stop reaches too."""
        if token is not None and not (isinstance(token, str) and len(token) <= TOKEN_CHARS):
            raise InputError.said("error.run_token", value=shortened(token), chars=TOKEN_CHARS)
        if session is None:  # a run called in process: nothing to stop it but its caller
            return StopSignal()
        with self._lock:
            runs = self._runs(session)
            signal = runs.get(token) if token else None
            return signal if signal is not None else self._keep(runs, uuid.uuid4().hex, StopSignal())

    def stop(self, session: str | None) -> None:
        """Stop: the session's runs, queued or running, end after their current step."""
        if session is None:
            return
        with self._lock:
            for signal in self._runs(session).values():
                signal.event.set()

    def server_function(self, queued):
        """The server function the page's script calls as a run's button is pressed (`ui.html.FEED_SCRIPT`):
        the run's token, and the status `queued(request)` (in the session's language)."""
        async def arm(asked, request):
            return {"token": self.arm(await session_asking(request)), "status": queued(request)}
        return server_function(arm)


def check_attention(attention) -> None:
    """Attention capture is asked for with true or false, nothing else."""
    if not isinstance(attention, bool):
        raise InputError.said("error.not_bool", name="attention", value=shortened(attention))


def step_index(traj, step) -> int:
    """The record index of the slider's step: a whole number counted from 1 (as the status counts) up to the
    run's steps. A run still going has recorded fewer: a step it has not reached shows its newest."""
    last = max(len(traj.steps), traj.settings.steps)
    return min(check_int("step", step, 1, last), len(traj.steps)) - 1


@dataclass(frozen=True)
class RunDecoder:
    """A run's own preview decoder, for frames no longer kept: the `Previewer` of the run's model, preview mode
    and size, with its calls made on the model threads (on ZeroGPU, in the GPU process). It stands in for the
    Previewer wherever the library takes one (`Trajectory.step_frames`, the sheets, the run page, the
    workflows): the frames are bit for bit the run's."""

    previewer: Previewer
    threads: ModelThreads

    @property
    def model(self):
        return self.previewer.model

    def record_frames(self, record, alone: bool = False):
        """A step's x_t and x0 frames, uint8 (H, W, 3), decoded again from its latents."""
        return self.threads.call(decode_record, self.previewer, record, alone)

    def guidance_frames(self, record):
        """The x0 frames of the guidance batch's unconditional (negative) half and of the prompt's half."""
        return self.threads.call(guidance_frames, self.previewer, record)

    def denoised_frame(self, record):
        """LCM's denoised estimate of a step, decoded; None for a step that has none."""
        return self.threads.call(denoised_frame, self.previewer, record)

    def decode(self, latents):
        """(B, C, h, w) latents to uint8 (B, H, W, 3) frames."""
        return self.threads.call(decode_latents, self.previewer, latents)


class Session:
    """The model cache by menu name, the model threads, the file store, the host's limits and the sessions' live
    feeds; builds runs."""

    def __init__(self, config, cache, files, threads: ModelThreads | None = None):
        self.config, self.cache, self.files, self.limits = config, cache, files, config.limits
        self.threads = threads or ModelThreads(config.concurrency)  # where every torch call of a handler runs
        self.sources = config.menu()  # menu name -> (folder or hub id, LoRAs)
        self.feeds = LiveFeeds()  # each session's live panels, for its page's script (ui.live_feed)
        self.arming = Arming()  # each session's runs, armed by its page's script: what Stop reaches

    def stop_event(self, given) -> threading.Event:
        """The event a run watches for its session's Stop: the StopSignal a caller in process gave, else the
        one the page's script armed for the run token `given` (`Arming`)."""
        if isinstance(given, StopSignal):
            return given.event
        return self.arming.take(session_of(), given).event

    def model(self, name):
        """The loaded model a menu name (or, where allowed, any hub id or folder) stands for."""
        name = check_text("model", self.config.default_name if name is None else name, 300).strip()
        source, loras = self.sources.get(name, (None, ()))
        if source is None:
            if not self.config.allow_custom_models:
                raise InputError.said(
                    "error.model_not_offered", name=repr(name), allowed=", ".join(self.sources)
                )
            source = name
        model = self.cache.get(source, loras)
        self.sources.setdefault(model.name, (source, loras))
        return model

    @staticmethod
    def capture(model, attention: bool) -> AttentionCapture | None:
        """A run's attention capture (cross- and self-attention), or none."""
        return (AttentionCapture(model, self_attention=True, self_max_positions=SELF_ATTENTION_POSITIONS)
                if attention else None)

    def build_run(self, model=None, attention=False, init_image=None, *, img2img=False, stop_event=None,
                  **settings) -> Run:
        """A run of `settings` (`Settings`' fields by name; a field not given takes its default) on the
        model of that menu name, capturing attention or not. Checks every value, then the host's limits,
        before any model work."""
        model = self.model(model)
        check_attention(attention)
        settings = check_settings(Settings(**settings), model.facts, img2img, self.limits)
        image = None
        if img2img:
            if init_image is None:
                raise InputError.said("error.no_init_image")
            image = load_image(init_image, check_size=self.limits.check_image)
        return Run(model, settings, init_image=image, capture=self.capture(model, attention), stop_signal=stop_event,
                   time_limit=self.limits.model_seconds)

    def build_fork(self, parent, step, attention=False, stop_event=None, **changes) -> Run:
        """The run `parent` continued after the slider's `step` with `changes` (prompt, negative prompt,
        guidance, eta, preview settings; model, scheduler, steps, seed and size stay the parent's, and a
        change of those is refused). Checks every value, then the host's limits, before any model work."""
        from sdviz.sampling.fork import Fork, fork_settings

        if parent is None or not parent.steps:
            raise InputError.said("error.no_fork_parent")
        check_attention(attention)
        model = self.model(parent.settings.model)
        at = check_int("step", step, 1, len(parent.steps))  # the slider's step is kept; the fork takes the next
        settings = check_settings(fork_settings(parent, **changes), model.facts, parent.settings.img2img, self.limits)
        return Run(model, settings, capture=self.capture(model, attention), stop_signal=stop_event,
                   time_limit=self.limits.model_seconds, fork=Fork(parent, at))

    def decoder(self, traj) -> RunDecoder:
        """The run's own preview decoder (its model, preview mode and size), the one place a finished
        run's `Previewer` is built."""
        return RunDecoder(Previewer.of(self.model(traj.settings.model), traj.settings), self.threads)
