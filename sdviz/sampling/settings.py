"""What a run is asked to do, and the checks that refuse bad values up front.

Every check raises `InputError` (a ValueError) naming the value and what is allowed;
the CLI prints it as one line, the app shows it as `gr.Error`; any other exception is a failure. Checks that need the model (image size) take its `ModelFacts`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sdviz.sampling import schedulers
from sdviz.sampling.errors import InputError
from sdviz.sampling.families import FAMILIES

PREVIEW_MODES = ("full", "approx", "taesd")
MAX_STEPS = 1000
MAX_SIDE = 2048  # pixels; beyond this a single SD-family run no longer fits common GPUs
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 100.0
MAX_PROMPT_CHARS = 2000  # far beyond any text encoder's window; longer text is refused, not cut
INVERTING = ("ddim", "flow_euler")  # the scheduler an inversion reverses: DDIM's step; flow models' Euler step


@dataclass(frozen=True)
class Settings:
    """One run's parameters. width/height None mean the model's native size, scheduler None the model's own."""

    prompt: str = ""
    negative_prompt: str = ""
    scheduler: str | None = None
    steps: int = 20
    guidance: float = 7.5
    eta: float = 0.0
    seed: int = 0
    width: int | None = None
    height: int | None = None
    strength: float = 0.8  # img2img only: how much of the schedule to run
    preview: str = "full"
    every: int = 1  # decode previews every N steps (the last step always)
    source_prompt: str | None = None  # an edit (CycleDiffusion, img2img only): the text the init image shows
    source_guidance: float = 1.0  # an edit: guidance of the source prompt's half of the batch
    invert: bool = False  # inversion (init image only): the image run backwards to noise (DDIM; flow: Euler)
    true_cfg: float = 1.0  # Flux only: real classifier-free guidance with the negative prompt when above 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, facts) -> "Settings":
        """These settings with the size and scheduler filled in from the model and checked against it."""
        width = self.width if self.width is not None else facts.native_width
        height = self.height if self.height is not None else facts.native_height
        multiple = facts.size_multiple or facts.vae_factor
        what = "VAE factor" if multiple == facts.vae_factor else "VAE factor times its patch size"
        for name, value in (("width", width), ("height", height)):
            check_int(name, value, multiple, MAX_SIDE)
            if value % multiple:
                raise InputError(
                    f"{name} {value} is not a multiple of the model's {what} {multiple}; "
                    f"allowed: multiples of {multiple} from {multiple} to {MAX_SIDE}"
                )
        family = facts.family
        if self.invert:  # the one scheduler whose step the family's inversion reverses
            inverting = "flow_euler" if FAMILIES[family].flow else "ddim"
            if self.scheduler not in (None, inverting):
                raise InputError(f"scheduler {self.scheduler!r} cannot invert a {FAMILIES[family].label} model; "
                                 f"allowed: {inverting}")
            scheduler = inverting
        else:
            scheduler = schedulers.check_fits(self.scheduler or facts.scheduler or schedulers.for_family(family)[0],
                                              family)
        if self.true_cfg != 1 and family != "flux":
            raise InputError(f"true cfg {self.true_cfg} applies to Flux only (this model is {family}, whose "
                             "guidance is classifier-free already); allowed: 1")
        return replace(self, width=width, height=height, scheduler=scheduler)


@dataclass(frozen=True)
class RunSettings(Settings):
    """A run's settings as it ran (a trajectory's): its size and scheduler resolved, and what else it was."""

    model: str = ""  # the model's display name
    img2img: bool = False
    forked_from: dict[str, Any] | None = None  # {"at": step index, "parent": the parent run's settings}
    start_latents: bool = False  # the run started from given latents (its x_start), not the seed's noise

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "RunSettings":
        """A saved run's settings (`to_dict`); a field an older file lacks takes its default."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def asked(self) -> Settings:
        """The Settings the run was asked for, as a new run takes them."""
        return Settings(**{f.name: getattr(self, f.name) for f in fields(Settings)})


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """A whole number in [low, high]: ints, and floats with no fraction (3.0); nothing rounded."""
    whole = (not isinstance(value, bool) and isinstance(value, numbers.Real)
             and math.isfinite(value) and value == int(value))
    if not whole:
        raise InputError(f"{name} {_shown(value)} is not a whole number; allowed: {low}..{high}")
    if not low <= value <= high:
        raise InputError(f"{name} {_shown(value)} is out of range; allowed: {low}..{high}")
    return int(value)


def check_text(name: str, value: Any, most: int = MAX_PROMPT_CHARS) -> str:
    """Text of at most `most` characters that encodes as UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        raise InputError(f"{name} {_shown(value)} is not text; allowed: text of up to {most} characters")
    if len(value) > most:
        raise InputError(f"{name} has {len(value)} characters; allowed: up to {most}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(
            f"{name} has an invalid character {value[error.start]!r} at position {error.start} "
            "(a lone UTF-16 surrogate); allowed: any Unicode text"
        ) from None
    return value


def check_choice(name: str, value: Any, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{name} {_shown(value)} is not one of the choices; allowed: {', '.join(allowed)}")
    return value


def _shown(value: Any, most: int = 60) -> str:
    """A bad value as an error message shows it: repr, shortened."""
    text = repr(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def check_float(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} {_shown(value)} is not a number; allowed: {_range(low, high, low_open)}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} {_shown(value)} is not a number; allowed: {_range(low, high, low_open)}")
    if not math.isfinite(number):
        raise InputError(f"{name} {value} is not finite; allowed: {_range(low, high, low_open)}")
    if number < low or number > high or (low_open and number == low):
        raise InputError(f"{name} {value} is out of range; allowed: {_range(low, high, low_open)}")
    return number


def _range(low: float, high: float, low_open: bool) -> str:
    return f"{'(' if low_open else '['}{low:g}, {high:g}]"


def validate(settings: Settings, img2img: bool = False) -> Settings:
    """Checks everything that needs no model; returns the settings with numbers normalised."""
    check_text("prompt", settings.prompt)
    check_text("negative prompt", settings.negative_prompt)
    steps = check_int("steps", settings.steps, 1, MAX_STEPS)
    guidance = check_float("guidance", settings.guidance, 0.0, MAX_GUIDANCE)
    eta = check_float("eta", settings.eta, 0.0, 1.0)
    seed = check_int("seed", settings.seed, 0, MAX_SEED)
    every = check_int("every", settings.every, 1, MAX_STEPS)
    if settings.scheduler is None and settings.source_prompt is not None:
        settings = replace(settings, scheduler="ddim")  # the only scheduler an edit runs
    scheduler = None if settings.scheduler is None else schedulers.resolve(settings.scheduler).name
    true_cfg = check_float("true cfg", settings.true_cfg, 0.0, MAX_GUIDANCE)
    check_choice("preview", settings.preview, PREVIEW_MODES)
    strength = settings.strength
    if img2img:
        strength = check_float("strength", settings.strength, 0.0, 1.0, low_open=True)
        if int(steps * strength) < 1:
            raise InputError(
                f"strength {settings.strength} with {steps} steps keeps no denoising step "
                f"(int(steps * strength) = 0); allowed: strength >= {1 / steps:.3g} for {steps} steps"
            )
    source_guidance = settings.source_guidance
    if settings.source_prompt is not None:
        check_text("source prompt", settings.source_prompt)
        source_guidance = check_float("source guidance", settings.source_guidance, 0.0, MAX_GUIDANCE)
        if not img2img:
            raise InputError("source prompt: an edit starts from an image that the source prompt describes; "
                             "allowed: a source prompt with an init image, or no source prompt")
        if scheduler != "ddim":
            raise InputError(f"scheduler {scheduler!r} cannot edit: CycleDiffusion samples DDIM's posterior; "
                             "allowed: ddim")
        if settings.negative_prompt:
            raise InputError("negative prompt: an edit contrasts both prompts with the empty prompt, as "
                             "CycleDiffusion does; allowed: no negative prompt with a source prompt")
    if not isinstance(settings.invert, bool):
        raise InputError(f"invert {_shown(settings.invert)} is not true or false; allowed: true, false")
    if settings.invert:
        if not img2img:
            raise InputError("invert: an inversion runs an image backwards to noise; allowed: invert with an "
                             "init image")
        if scheduler not in (None, *INVERTING):
            raise InputError(f"scheduler {scheduler!r} cannot invert: the inversion reverses a deterministic "
                             "step (DDIMInverseScheduler; flow models: the flow's Euler step); allowed: "
                             f"{' or '.join(INVERTING)}")
        if eta != 0:
            raise InputError(f"eta {eta} cannot invert: only DDIM without noise (eta 0) can be run backwards; "
                             "allowed: 0")
        if settings.source_prompt is not None:
            raise InputError("source prompt: an inversion has one prompt; allowed: invert or edit, not both")
    return replace(
        settings, steps=steps, guidance=guidance, eta=eta, seed=seed, every=every,
        scheduler=scheduler, strength=strength, source_guidance=source_guidance, true_cfg=true_cfg,
    )
