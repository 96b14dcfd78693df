"""An edit's sheet: the source image's chain, the edited chain and their difference, step by step
(see `sdviz.analysis.edit`)."""

from __future__ import annotations

import numpy as np
import torch

from sdviz.drawing import sheets
from sdviz.drawing.views import difference
from sdviz.messages import text

COLUMNS = 6  # steps shown side by side


def source_frame(traj, index: int, previewer) -> np.ndarray:
    """The source chain's latents after step `index`, decoded by the run's previewer (uint8 (H, W, 3))."""
    latents = torch.from_numpy(traj.steps[index].source_x_next * traj.steps[index].next_vp_scale)[None]
    return previewer.decode(latents.to(previewer.model.device, previewer.model.dtype))[0]


def sheet(traj, previewer, at: int | None = None, columns: int = COLUMNS):
    """The source's chain, the edit's and their difference at `columns` steps (and step `at`, marked)."""
    count = len(traj.steps)
    chosen = sorted({*sheets.pick(count, columns), *([at] if at is not None else [])})
    source, edited, changed = [], [], []
    for k in chosen:
        caption = text("filmstrip.step", step=k + 1)
        frame, mine = source_frame(traj, k, previewer), traj.step_frames(k, previewer)[0]
        source.append((caption, frame))
        edited.append((caption, mine))
        changed.append((caption, difference(mine, frame)))
    marked = {chosen.index(at): text("plot.this_step")} if at is not None else None
    rows = [(text("sheet.source"), source), (text("sheet.edit"), edited), ("|edit - source|", changed)]
    return sheets.sheet(rows, f"'{traj.settings.source_prompt}' -> '{traj.settings.prompt}'", marked)
