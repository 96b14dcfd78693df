"""Lining runs up: runs with different step counts, or second-order schedulers with their doubled
entries, are compared at a position from 0 (the noise) to 1 (the image):

    progress  the same share of the run's scheduler entries done
    sigma     the same noise level: the step whose log sigma is nearest to the level that
              lies `position` of the way from the highest starting level to the lowest end
"""

from __future__ import annotations

import numpy as np

from sdviz.sampling.errors import InputError, shortened

ALIGNMENTS = ("progress", "sigma")
GRID_ROWS = 6  # lined-up points in a grid: the noise side to the image


def check_alignment(by: str) -> str:
    if by not in ALIGNMENTS:
        raise InputError.said("error.align_not_choice", value=shortened(by), allowed=", ".join(ALIGNMENTS))
    return by


def _log_sigmas(trajectory) -> np.ndarray:
    return np.log([max(s.sigma, 1e-8) for s in trajectory.steps])


def _sigma_range(trajectories) -> tuple[float, float]:
    """(highest starting log sigma, lowest final log sigma) over the runs that have steps."""
    logs = [_log_sigmas(t) for t in trajectories if t.steps]
    return max(float(v[0]) for v in logs), min(float(v[-1]) for v in logs)


def at(trajectories, position: float, by: str = "progress") -> list[int | None]:
    """Each trajectory's step index at `position` (0: the noise side, 1: the image); None for a run
    with no steps."""
    check_alignment(by)
    position = min(max(float(position), 0.0), 1.0)
    if by == "progress":
        return [round(position * (len(t.steps) - 1)) if t.steps else None for t in trajectories]
    if not any(t.steps for t in trajectories):
        return [None] * len(trajectories)
    high, low = _sigma_range(trajectories)
    target = high + (low - high) * position
    return [int(np.abs(_log_sigmas(t) - target).argmin()) if t.steps else None for t in trajectories]


def positions(trajectories, by: str = "progress") -> list[list[float]]:
    """Each step's position from 0 to 1 in each trajectory, as `at` reads positions: the x axis on
    which the runs' curves line up."""
    check_alignment(by)
    if by == "progress":
        return [[i / max(len(t.steps) - 1, 1) for i in range(len(t.steps))] for t in trajectories]
    high, low = _sigma_range(trajectories) if any(t.steps for t in trajectories) else (0.0, 0.0)
    span = (low - high) or 1.0
    return [[float(v) for v in (_log_sigmas(t) - high) / span] if t.steps else [] for t in trajectories]


def align(trajectories, rows: int = GRID_ROWS, by: str = "progress") -> list[list[int]]:
    """For each of `rows` points from the start to the end, each trajectory's step index there."""
    return [at(trajectories, k / max(rows - 1, 1), by) for k in range(rows)]
