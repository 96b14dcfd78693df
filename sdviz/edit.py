"""An edit against its source: where CycleDiffusion's edited chain departs from the source image's own.

An edit (`Settings.source_prompt`) keeps, at every step, the source image's noised latents beside the
edited ones (`StepRecord.source_x_next`): both chains start from the same noised image and share their
noise (the edit's noise is the one the source's step implies), so wherever they differ, the prompts made
the difference.
"""

from __future__ import annotations

import numpy as np
import torch

from sdviz import export

COLUMNS = 6  # steps shown side by side


def is_edit(traj) -> bool:
    return bool(traj.steps) and traj.steps[0].source_x_next is not None


def departure(traj) -> list[float]:
    """Per step, the mean |edited latents - source latents| after it (0 where the chains agree)."""
    if not is_edit(traj):
        raise ValueError("this run is not an edit: it kept no source chain; allowed: a run with a source prompt")
    return [float(np.abs(record.x_next - record.source_x_next).mean()) for record in traj.steps]


def source_frame(traj, index: int, previewer) -> np.ndarray:
    """The source chain's latents after step `index`, decoded by the run's previewer (uint8 (H, W, 3))."""
    latents = torch.from_numpy(traj.steps[index].source_x_next * traj.steps[index].next_vp_scale)[None]
    return previewer.decode(latents.to(previewer.model.device, previewer.model.dtype))[0]


def difference(edited: np.ndarray, source: np.ndarray) -> np.ndarray:
    """|edited - source| per pixel as a grey image, stretched so the largest change is white."""
    change = np.abs(edited.astype(np.float32) - source.astype(np.float32)).mean(axis=2)
    peak = max(float(change.max()), 1.0)
    return np.repeat((change / peak * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def sheet(traj, previewer, decode, at: int | None = None, columns: int = COLUMNS):
    """The source's chain, the edit's and their difference at `columns` steps (and step `at`, marked)."""
    count = len(traj.steps)
    chosen = sorted({*export.pick(count, columns), *([at] if at is not None else [])})
    source, edited, changed = [], [], []
    for k in chosen:
        caption = f"step {k + 1}"
        frame, mine = source_frame(traj, k, previewer), traj.step_frames(k, decode)[0]
        source.append((caption, frame))
        edited.append((caption, mine))
        changed.append((caption, difference(mine, frame)))
    marked = {chosen.index(at): "this step"} if at is not None else None
    rows = [("source", source), ("edit", edited), ("|edit - source|", changed)]
    return export.sheet(rows, f"'{traj.settings.source_prompt}' -> '{traj.settings.prompt}'", marked)
