"""The app's session service, without gradio: what every tab's handlers share and ask for.

The shared objects are read-only or thread-safe: the model cache (looked up by the menu's names),
the model threads every torch call runs on, and the file store. Per-request data stays in the
handlers' locals and in `gr.State` (the trajectory, the run's `StopSignal`), never here.

A run is built here and only here (`build_run`, `build_fork`): every value checked, then the host's
limits, before any model work. A finished run's frames are decoded again by its one decoder object
(`decoder`), built from the run's own settings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sdviz.sampling.attention import AttentionCapture
from sdviz.sampling.checks import check_int, check_settings, check_text
from sdviz.sampling.errors import InputError, shortened
from sdviz.sampling.images import load_image
from sdviz.sampling.previews import Previewer
from sdviz.sampling.sampler import Run
from sdviz.sampling.settings import Settings
from ui.live_feed import LiveFeeds
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


def stop_event(stop_signal) -> threading.Event | None:
    """The event a run watches for the session's Stop (none when the page sent no StopSignal)."""
    return stop_signal.event if isinstance(stop_signal, StopSignal) else None


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
