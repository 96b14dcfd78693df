"""Forking a run: continue a trajectory from after any of its steps with new settings.

A fork keeps the parent's first `at` records and goes on from the exact state after them.
That state is the scheduler's (step index, multistep history, the stage of a second-order
step) and the random generator's (ancestral and eta noise), and both are rebuilt the way
they were first built: the fork starts as the parent started (same seed, same starting
latents) and replays the parent's first `at` scheduler steps with the UNet outputs the
parent recorded, with no UNet call. So a fork that changes nothing reproduces its parent
bit for bit, and a saved trajectory holds everything a fork needs.

What may change: the prompt and negative prompt (prompt switching: the layout made so far
stays, the details follow the new words), guidance, eta, the preview and how often it
decodes. What may not: the model, scheduler, steps, seed, size and img2img strength. A
scheduler's history is tied to its own timesteps and formulas, so another scheduler cannot
take it over, and the others define the schedule and the noise themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdviz.sampling.errors import InputError
from sdviz.sampling.settings import Settings

KEPT = ("scheduler", "steps", "seed", "width", "height", "strength")  # a fork runs on the parent's schedule and noise
WHY_KEPT = {
    "scheduler": "a scheduler's state (its step index, multistep history, second-order stage) belongs to that "
                 "scheduler and does not carry over to another",
    "steps": "the number of steps sets the schedule the parent's steps were taken on",
    "seed": "the seed sets the noise the parent's steps were taken with",
    "width": "the latents the parent made have its size",
    "height": "the latents the parent made have its size",
    "strength": "the strength sets where on the schedule the parent started",
}


@dataclass(frozen=True)
class Fork:
    """Where a run forks: after the first `at` scheduler entries of `parent` (a Trajectory)."""

    parent: Any  # sdviz.sampling.trajectory.Trajectory
    at: int

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "parent": self.parent.settings.to_dict()}


def parent_settings(parent) -> Settings:
    """The parent run's Settings, read back from its trajectory."""
    return parent.settings.asked()


def fork_settings(parent, **changes) -> Settings:
    """The parent's settings with `changes`; None values mean "as the parent"."""
    from dataclasses import replace

    return replace(parent_settings(parent), **{k: v for k, v in changes.items() if v is not None})


def check(fork: Fork, settings: Settings, model_name: str, img2img: bool) -> None:
    """Refuses a fork that cannot continue its parent: a step outside the parent's, or a kept setting changed."""
    from sdviz.sampling.settings import check_int

    parent = fork.parent
    check_int("fork step (at)", fork.at, 0, len(parent.steps))
    if parent.settings.model != model_name:
        raise InputError(f"model {model_name!r} differs from the parent run's {parent.settings.model!r}; "
                         "a fork continues on the parent's model")
    if parent.settings.img2img != img2img:
        raise InputError("img2img: a fork starts as its parent started (the parent "
                         f"{'was' if parent.settings.img2img else 'was not'} an img2img run)")
    check_kept(parent, settings)


def check_kept(parent, settings: Settings) -> None:
    """Refuses a change of what a fork keeps (needs no model: the command line checks before loading one)."""
    img2img = parent.settings.img2img
    for name in KEPT:
        if name == "strength" and not img2img:
            continue
        new, old = getattr(settings, name), getattr(parent.settings, name)
        if name == "scheduler":
            from sdviz.sampling.schedulers import resolve

            new = resolve(new).name  # a class name or alias of the same scheduler is the same
        if new != old:
            raise InputError(f"{name} {new!r} differs from the parent run's {old!r}; a fork keeps the parent's "
                             f"{name}: {WHY_KEPT[name]}")
