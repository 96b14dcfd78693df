"""An edit against its source: where CycleDiffusion's edited chain departs from the source image's own.

An edit (`Settings.source_prompt`) keeps, at every step, the source image's noised latents beside the
edited ones (`StepRecord.source_x_next`): both chains start from the same noised image and share their
noise (the edit's noise is the one the source's step implies), so wherever they differ, the prompts made
the difference.
"""

from __future__ import annotations

import numpy as np

from sdviz.sampling.errors import InputError


def is_edit(traj) -> bool:
    return bool(traj.steps) and traj.steps[0].source_x_next is not None


def departure(traj) -> list[float]:
    """Per step, the mean |edited latents - source latents| after it (0 where the chains agree)."""
    if not is_edit(traj):
        raise InputError.said("error.not_an_edit")
    return [float(np.abs(record.x_next - record.source_x_next).mean()) for record in traj.steps]
