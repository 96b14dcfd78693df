"""Every check a run's inputs pass, in one place, before any model work.

Each check raises `InputError` (a ValueError) naming the parameter, the value and what is allowed;
the CLI prints it as one line, the app shows it as a message; any other exception is a failure.

    check_int, check_float, check_text, check_choice    one value against its range
    validate(settings, img2img)                         the settings alone (no model)
    resolve(settings, facts)                            the size and scheduler filled in from the
                                                        model and checked against it (`Settings.resolved`)
    check_settings(settings, facts, img2img, limits)    both, then the host's limits
    check_kept(parent, settings), check_fork(...)       a fork against its parent
    check_run(model, settings, init_image, fork, ...)   everything a `Run` is given
"""

from __future__ import annotations

import math
import numbers
from dataclasses import replace
from typing import Any, NamedTuple

from sdviz.messages import text
from sdviz.sampling import schedulers
from sdviz.sampling.errors import InputError, listed, shortened
from sdviz.sampling.families import FAMILIES

PREVIEW_MODES = ("full", "approx", "taesd")
MAX_STEPS = 1000
MAX_SIDE = 2048  # pixels; beyond this a single SD-family run no longer fits common GPUs
MAX_ASPECT = 4  # the longer side at most this many times the shorter: the models are trained near square
# (SDXL's widest buckets are about 4:1), and the exports enlarge a frame by its shorter side
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 100.0
MAX_PROMPT_CHARS = 2000  # far beyond any text encoder's window; longer text is refused, not cut
INVERTING = ("ddim", "flow_euler")  # the scheduler an inversion reverses: DDIM's step; flow models' Euler step

KEPT = ("scheduler", "steps", "seed", "width", "height", "strength")  # a fork runs on the parent's schedule and noise
WHY_KEPT = {  # why a fork keeps each: the reason's key in the message catalogue
    "scheduler": "error.why_kept_scheduler",  # a scheduler's state belongs to it and does not carry over
    "steps": "error.why_kept_steps",  # the schedule the parent's steps were taken on
    "seed": "error.why_kept_seed",  # the noise they were taken with
    "width": "error.why_kept_size",  # the latents' size
    "height": "error.why_kept_size",
    "strength": "error.why_kept_strength",  # where on the schedule the parent started
}

# -- one value ---------------------------------------------------------------------------------


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """A whole number in [low, high]: ints, and floats with no fraction (3.0); nothing rounded."""
    whole = not isinstance(value, bool) and (isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value)))
    if not whole:
        raise InputError.said("error.not_whole", name=name, value=shortened(value), low=low, high=high)
    if not low <= value <= high:
        raise InputError.said("error.out_of_range", name=name, value=shortened(value), allowed=f"{low}..{high}")
    return int(value)


def check_float(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    """A finite real number in [low, high] (in (low, high] when `low_open`)."""
    allowed = _range(low, high, low_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError.said("error.not_number", name=name, value=shortened(value), allowed=allowed)
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        raise InputError.said("error.out_of_range", name=name, value=shortened(value), allowed=allowed) from None
    if not math.isfinite(number):
        raise InputError.said("error.not_finite", name=name, value=shortened(value), allowed=allowed)
    if number < low or number > high or (low_open and number == low):
        raise InputError.said("error.out_of_range", name=name, value=shortened(value), allowed=allowed)
    return number


def check_text(name: str, value: Any, most: int = MAX_PROMPT_CHARS) -> str:
    """Text of at most `most` characters that encodes as UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        raise InputError.said("error.not_text", name=name, value=shortened(value), most=most)
    if len(value) > most:
        raise InputError.said("error.too_long", name=name, count=len(value), most=most)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError.said("error.bad_character", name=name, character=repr(value[error.start]),
                              position=error.start) from None
    return value


def check_choice(name: str, value: Any, allowed) -> Any:
    """One of the values in `allowed` (strings, or the page's choice values)."""
    if isinstance(value, (bool, float, list, dict)) or value not in allowed:
        raise InputError.said("error.not_a_choice", name=name, value=shortened(value), allowed=listed(allowed))
    return value


def _range(low: float, high: float, low_open: bool) -> str:
    return f"{'(' if low_open else '['}{low:g}, {high:g}]"


# -- the settings ------------------------------------------------------------------------------


def validate(settings, img2img: bool = False):
    """Checks everything in `settings` (a `Settings`) that needs no model; returns them with numbers normalised.

    img2img: whether the run starts from an init image (strength, edits and inversions need one).
    """
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
    strength = check_float("strength", settings.strength, 0.0, 1.0, low_open=True)
    if img2img and settings.invert is not True and int(steps * strength) < 1:  # an inversion has no strength
        raise InputError.said("error.strength_no_step", strength=settings.strength, steps=steps,
                              least=f"{1 / steps:.3g}")
    source_guidance = check_float("source guidance", settings.source_guidance, 0.0, MAX_GUIDANCE)
    if settings.source_prompt is not None:
        source_guidance = _check_edit(settings, scheduler, img2img)
    if not isinstance(settings.invert, bool):
        raise InputError.said("error.not_bool", name="invert", value=shortened(settings.invert))
    if settings.invert:
        _check_inversion(settings, scheduler, eta, img2img)
    return replace(
        settings, steps=steps, guidance=guidance, eta=eta, seed=seed, every=every,
        scheduler=scheduler, strength=strength, source_guidance=source_guidance, true_cfg=true_cfg,
    )


def _check_edit(settings, scheduler: str | None, img2img: bool) -> float:
    """An edit's own settings (CycleDiffusion); returns its source guidance."""
    check_text("source prompt", settings.source_prompt)
    source_guidance = check_float("source guidance", settings.source_guidance, 0.0, MAX_GUIDANCE)
    if not img2img:
        raise InputError.said("error.edit_needs_image")
    if scheduler != "ddim":
        raise InputError.said("error.edit_scheduler", name=repr(scheduler))
    if settings.negative_prompt:
        raise InputError.said("error.edit_negative")
    return source_guidance


def _check_inversion(settings, scheduler: str | None, eta: float, img2img: bool) -> None:
    if not img2img:
        raise InputError.said("error.invert_needs_image")
    if scheduler not in (None, *INVERTING):
        raise InputError.said("error.invert_scheduler", name=repr(scheduler),
                              allowed=text("error.either", first=INVERTING[0], second=INVERTING[1]))
    if eta != 0:
        raise InputError.said("error.invert_eta", eta=eta)
    if settings.source_prompt is not None:
        raise InputError.said("error.invert_and_edit")


def resolve(settings, facts):
    """`settings` with the size and scheduler filled in from the model (its `ModelFacts`) and checked against it."""
    width = settings.width if settings.width is not None else facts.native_width
    height = settings.height if settings.height is not None else facts.native_height
    multiple = facts.size_multiple or facts.vae_factor
    what = text("error.what_vae_factor" if multiple == facts.vae_factor else "error.what_vae_patch")
    for name, value in (("width", width), ("height", height)):
        check_int(name, value, multiple, MAX_SIDE)
        if value % multiple:
            raise InputError.said("error.not_multiple", name=name, value=value, what=what, multiple=multiple,
                                  most=MAX_SIDE)
    longer, shorter = max(width, height), min(width, height)
    if longer > MAX_ASPECT * shorter:
        raise InputError.said("error.aspect", width=width, height=height, ratio=f"{longer / shorter:g}",
                              most=MAX_ASPECT)
    family = facts.family
    if settings.invert:  # the one scheduler whose step the family's inversion reverses
        inverting = "flow_euler" if FAMILIES[family].flow else "ddim"
        if settings.scheduler not in (None, inverting):
            raise InputError.said("error.invert_scheduler_family", name=repr(settings.scheduler),
                                  family=FAMILIES[family].label, allowed=inverting)
        scheduler = inverting
    else:
        scheduler = schedulers.check_fits(settings.scheduler or facts.scheduler or schedulers.for_family(family)[0],
                                          family)
    if settings.true_cfg != 1 and family != "flux":
        raise InputError.said("error.true_cfg_flux", value=settings.true_cfg, family=family)
    return replace(settings, width=width, height=height, scheduler=scheduler)


def check_settings(settings, facts, img2img: bool = False, limits=None):
    """`validate`, then `resolve` against the model's facts, then, on a shared host, its `Limits`.
    Returns the settings as a run takes them."""
    settings = resolve(validate(settings, img2img=img2img), facts)
    if limits is not None:
        limits.check(settings, facts)
    return settings


# -- a fork ------------------------------------------------------------------------------------


def check_kept(parent, settings) -> None:
    """Refuses a change of what a fork keeps from its parent (a Trajectory). Needs no model: the command line
    checks before loading one."""
    img2img = parent.settings.img2img
    for name in KEPT:
        if name == "strength" and not img2img:
            continue
        new, old = getattr(settings, name), getattr(parent.settings, name)
        if name == "scheduler":
            new = schedulers.resolve(new).name  # a class name or alias of the same scheduler is the same
        if new != old:
            raise InputError.said("error.fork_kept", name=name, new=repr(new), old=repr(old),
                                  why=text(WHY_KEPT[name]))


def check_fork(fork, settings, model_name: str, img2img: bool) -> None:
    """Refuses a fork (an `sdviz.sampling.fork.Fork`) that cannot continue its parent: a step outside the
    parent's, another model, or a kept setting changed."""
    parent = fork.parent
    check_int("fork step (at)", fork.at, 0, len(parent.steps))
    if parent.settings.model != model_name:
        raise InputError.said("error.fork_model", name=repr(model_name), parent=repr(parent.settings.model))
    if parent.settings.img2img != img2img:
        raise InputError.said("error.fork_img2img_was" if parent.settings.img2img else "error.fork_img2img_was_not")
    check_kept(parent, settings)


# -- a run -------------------------------------------------------------------------------------


class RunInputs(NamedTuple):
    """A run's inputs as it runs them."""

    settings: Any  # Settings, validated and resolved against the model
    init_image: Any  # the image given, or a fork's parent's; None for text to image
    start_latents: Any  # np.ndarray (C, h, w) given, or a fork's parent's; None for the seed's noise


def check_run(model, settings, init_image=None, fork=None, start_latents=None, limits=None) -> RunInputs:
    """Everything `sampler.Run` is given, checked before any model work.

    Args:
        model: the loaded model (`sdviz.sampling.models`), whose family and facts the run must fit.
        settings: the `Settings` asked for.
        init_image: image to image from this image (any form `images.load_image` reads), or None.
        fork: an `sdviz.sampling.fork.Fork` to continue; it brings its parent's init image and start latents.
        start_latents: text to image from these latents (C, h, w) instead of the seed's noise.
        limits: a shared host's `limits.Limits`, or None.
    """
    if fork is not None:
        if init_image is not None:
            raise InputError.said("error.fork_init_image", name=text("error.init_image"))
        init_image = fork.parent.init_image
    img2img = init_image is not None
    _check_task(model.family, settings, img2img)
    settings = check_settings(settings, model.facts, img2img, limits)
    if fork is not None:
        _check_forkable(fork, settings)
        if start_latents is not None:
            raise InputError.said("error.fork_start_latents")
        if fork.parent.settings.start_latents:
            start_latents = fork.parent.x_start  # the parent started from given latents (a reconstruction)
    if start_latents is not None:
        _check_start_latents(start_latents, model.facts.latent_shape(settings.height, settings.width), img2img)
    if fork is not None:
        check_fork(fork, settings, model.name, img2img)
    return RunInputs(settings, init_image, start_latents)


def _check_task(family, settings, img2img: bool) -> None:
    """Refuses an init image for what the model's family does not trace from one yet."""
    edit, inversion = settings.source_prompt is not None, settings.invert is True
    if img2img and (not family.img2img or (edit and not family.edits) or (inversion and not family.inverts)):
        what = "error.task_edit" if edit else "error.task_inversion" if inversion else "error.task_img2img"
        allowed = "error.allowed_img2img_no_edit" if family.img2img else "error.allowed_txt2img"
        raise InputError.said("error.task_not_traced", what=text(what), family=family.label, allowed=text(allowed))


def _check_forkable(fork, settings) -> None:
    """Refuses forking an edit or an inversion, or forking into one."""
    if settings.source_prompt is not None or fork.parent.settings.source_prompt:
        raise InputError.said("error.fork_edit")
    if settings.invert or fork.parent.settings.invert:
        raise InputError.said("error.fork_inversion")


def _check_start_latents(start_latents, shape, img2img: bool) -> None:
    import numpy as np

    shape = tuple(shape)
    if img2img:
        raise InputError.said("error.start_latents_img2img")
    if not isinstance(start_latents, np.ndarray) or tuple(start_latents.shape) != shape:
        got = getattr(start_latents, "shape", type(start_latents).__name__)
        raise InputError.said("error.start_latents_shape", got=got, shape=shape)
