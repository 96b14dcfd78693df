"""What one request may ask of a shared host, and the checks that refuse more up front.

A public app serves many people from one model; one request for 2048 x 2048
pixels or 1000 steps would hold the queue for everyone. The limits scale with
the model (pixels are a multiple of its native size), are read from the
environment in one place (`Limits.from_env`), and every refusal names the
limit, its value and the variable that sets it. The core's own ranges
(`sdviz.sampling.settings`) still apply beneath them; the CLI and the Python API, run by
their own user, use only those.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from sdviz.messages import text
from sdviz.sampling.errors import InputError


@dataclass(frozen=True)
class Deadline:
    """When a request must have ended: `seconds` after it began (`Limits.deadline()`)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def passed(self) -> bool:
        return time.monotonic() - self.started >= self.seconds


@dataclass(frozen=True)
class Limits:
    pixels_factor: float = 4.0  # width x height at most this many times the model's native pixels
    steps: int = 200  # denoising steps per run
    run_seconds: float = 300.0  # a request (its runs and its files) ends within this; a run is kept as far as it got
    upload_mb: float = 10.0  # one uploaded file
    image_megapixels: float = 25.0  # an init image's own size, before it is resized to the run's
    compare_steps: int = 400  # steps asked for, summed over a comparison's variants (which share run_seconds)

    ENV = {  # the variable that sets each limit
        "pixels_factor": "SDVIZ_MAX_PIXELS",
        "steps": "SDVIZ_MAX_STEPS",
        "run_seconds": "SDVIZ_MAX_RUN_SECONDS",
        "upload_mb": "SDVIZ_MAX_UPLOAD_MB",
        "image_megapixels": "SDVIZ_MAX_IMAGE_MEGAPIXELS",
        "compare_steps": "SDVIZ_MAX_COMPARE_STEPS",
    }
    WHOLE = ("steps", "compare_steps")  # limits that are whole numbers
    FILES_SHARE = 0.1  # of run_seconds, kept for writing a request's files once its runs have ended,
    FILES_SECONDS = 5.0  # and at least this (at most half the limit): a GIF and an MP4 take seconds on a CPU

    @classmethod
    def from_env(cls, environ=None) -> Limits:
        environ = os.environ if environ is None else environ
        values = {}
        for name, variable in cls.ENV.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                number = float(text)
            except ValueError:
                number = float("nan")
            if not number > 0 or number == float("inf") or (name in cls.WHOLE and number != int(number)):
                raise InputError.said("error.env_not_positive_whole" if name in cls.WHOLE else "error.env_not_positive",
                                      variable=variable, value=repr(text))
            values[name] = int(number) if name in cls.WHOLE else number
        return cls(**values)

    @property
    def files_seconds(self) -> float:
        """The part of `run_seconds` kept for a request's files: 10 %, at least 5 s or half the limit."""
        return max(self.run_seconds * self.FILES_SHARE, min(self.FILES_SECONDS, self.run_seconds / 2))

    @property
    def model_seconds(self) -> float:
        """How long a request's runs may take, all of them together: `run_seconds` less the files' part, so
        that the whole request ends within `run_seconds` (a file begun before the end is written whole)."""
        return self.run_seconds - self.files_seconds

    def deadline(self) -> Deadline:
        """A request's deadline, from now: its runs stop at `model_seconds`, its files are written until then."""
        return Deadline(self.run_seconds)

    def files_left_out(self, left: list) -> str:
        """'' or the note that the files `left` were not written within the limit."""
        return text("limit.files_left_out", seconds=f"{self.run_seconds:g}", variable=self.ENV["run_seconds"],
                    files=", ".join(map(str, left))) if left else ""

    def cut_short(self, trajectories, labels=None) -> str:
        """'' when every run ended; else one line saying the request was cut short, naming the limit and how
        far each run got (`labels`: a comparison's variants; a run with no steps did not run)."""
        if all(traj.complete for traj in trajectories):
            return ""
        labels = labels or [""] * len(trajectories)
        parts = [(text("limit.variant", number=n, label=label) if len(labels) > 1 else "")
                 + (text("limit.stopped_after", step=len(t.steps)) if t.steps else text("limit.did_not_run"))
                 for n, (t, label) in enumerate(zip(trajectories, labels), 1) if not t.complete]
        return text("limit.cut_short", seconds=f"{self.run_seconds:g}", variable=self.ENV["run_seconds"],
                    parts=text("limit.parts_gap").join(parts))

    def max_pixels(self, facts) -> int:
        return int(self.pixels_factor * facts.native_width * facts.native_height)

    def check(self, settings, facts) -> None:
        """Refuses settings (resolved: width and height set) beyond these limits, naming the limit."""
        if settings.steps > self.steps:
            raise InputError.said("error.steps_limit", steps=settings.steps, most=self.steps,
                                  variable=self.ENV["steps"])
        pixels = settings.width * settings.height
        if pixels > self.max_pixels(facts):
            raise InputError.said("error.size_limit", width=settings.width, height=settings.height, pixels=pixels,
                                  most=self.max_pixels(facts), factor=f"{self.pixels_factor:g}",
                                  native=f"{facts.native_width} x {facts.native_height}",
                                  variable=self.ENV["pixels_factor"])

    def check_comparison(self, steps: list[int]) -> None:
        """Refuses a comparison whose variants' steps add up to more than the limit."""
        if sum(steps) > self.compare_steps:
            raise InputError.said("error.compare_limit", count=len(steps), sum=" + ".join(map(str, steps)),
                                  total=sum(steps), most=self.compare_steps, variable=self.ENV["compare_steps"])

    def check_image(self, width: int, height: int) -> None:
        """Refuses an init image whose own size is beyond the limit (read from its header, before decoding)."""
        if width * height > self.image_megapixels * 1e6:
            raise InputError.said(
                "error.image_limit", width=width, height=height, megapixels=f"{width * height / 1e6:.1f}",
                most=f"{self.image_megapixels:g}", variable=self.ENV["image_megapixels"]
            )

    @property
    def upload_bytes(self) -> int:
        return int(self.upload_mb * 1024 * 1024)
