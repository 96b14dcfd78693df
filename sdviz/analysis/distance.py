"""Where the picture is decided: how far each step's predicted x0 and x_t still are from the final image."""

from __future__ import annotations

import numpy as np

from sdviz.sampling.errors import InputError

SETTLED_DISTANCE = 0.05  # the layout has settled once x0 stays this close to the final image (mean |diff| of 1)


def distance_to_final(trajectory, previewer=None) -> dict[str, list[float]]:
    """For every step, the mean absolute pixel difference (in [0, 1]) of its decoded x0 and of its
    x_t (after the step) to the run's last x_t frame: the final image itself with the full preview,
    its preview otherwise. Frames not kept are decoded again by the run's `previewer` (see Trajectory.step_frames)."""
    if not trajectory.steps:
        raise InputError.said("error.no_steps")
    last = len(trajectory.steps) - 1
    final = trajectory.step_frames(last, previewer)[0].astype(np.float32) / 255.0
    distances: dict[str, list[float]] = {"x0": [], "x_t": []}
    for index in range(len(trajectory.steps)):
        x_t, x0 = trajectory.step_frames(index, previewer)
        distances["x_t"].append(float(np.abs(x_t.astype(np.float32) / 255.0 - final).mean()))
        distances["x0"].append(float(np.abs(x0.astype(np.float32) / 255.0 - final).mean()))
    return distances


def settled_step(distances: list[float], threshold: float = SETTLED_DISTANCE) -> int | None:
    """The first step index from which every distance stays at or below `threshold` (None if never)."""
    settled = None
    for index, distance in enumerate(distances):
        if distance > threshold:
            settled = None
        elif settled is None:
            settled = index
    return settled
