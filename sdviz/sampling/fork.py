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
take it over, and the others define the schedule and the noise themselves. The checks that
refuse such a fork are `sdviz.sampling.checks.check_fork` and `check_kept`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdviz.sampling.settings import Settings


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
