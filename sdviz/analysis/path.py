"""The path a run takes: a map of its steps, the words behind a region, and where two runs part.

    trajectory_map([traj])                 every step's x_t and x0 of one run or several, in one shared 2-D plane
    region_words(traj, step, box)          the prompt's words ranked by the share of their map inside a box
    parting(a, b)                          per step, how far two runs' x0 and x_t lie apart, and where they part

The map is a projection of the latents themselves in their variance-preserving form (the scale the
denoiser sees, so a run with an Euler scheduler and one with DDIM lie on one scale): PCA by default
(exact and deterministic, numpy's SVD), UMAP where umap-learn is installed. Runs from the same starting
noise start at the same point, whatever the order they are given in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdviz.analysis.align import at, check_alignment
from sdviz.sampling.errors import InputError, shortened

METHODS = ("pca", "umap")
SPANS = ("step", "upto", "run")  # a region's words: at this step, over the steps up to it, over the whole run
PARTED = 0.02  # two runs have parted once the mean absolute difference of their x0 frames (in [0, 1]) passes this


def start_vp(trajectory) -> np.ndarray:
    """The starting latents in their variance-preserving form. A variance-exploding scheduler (Euler, LMS,
    Heun) starts from x0 + σ ε, the denoiser's view of which is that divided by sqrt(1 + σ²); the steps say
    which it is (their next_vp_scale is 1 throughout for the others), and a run of one step by the scale
    of its start (σ ε against ε)."""
    x, steps = trajectory.x_start, trajectory.steps
    if not steps:
        return x
    exploding = any(s.next_vp_scale != 1.0 for s in steps[:-1])
    if len(steps) == 1:
        rms, sigma = float(np.sqrt(np.mean(np.square(x)))), float(steps[0].sigma)
        exploding = abs(np.log(rms / np.sqrt(1 + sigma * sigma))) < abs(np.log(max(rms, 1e-8)))
    return x / np.sqrt(1 + float(steps[0].sigma) ** 2) if exploding else x


def path_latents(trajectory) -> tuple[np.ndarray, np.ndarray]:
    """(steps + 1, D) x_t from the start through every step, and (steps, D) x0 of every step, flattened, in the
    variance-preserving form."""
    x_t = [start_vp(trajectory)] + [s.x_next * np.float32(s.next_vp_scale) for s in trajectory.steps]
    x0 = [s.x0_pred for s in trajectory.steps]
    flat = lambda arrays: np.stack([np.asarray(a, np.float32).ravel() for a in arrays])  # noqa: E731
    return flat(x_t), (flat(x0) if x0 else np.zeros((0, x_t[0].size), np.float32))


@dataclass
class PathMap:
    """Every run's points in one plane: `points[r]` (steps + 1, 2), the start then x_t after each step;
    `x0_points[r]` (steps, 2); `explained` the share of the variance each axis holds (PCA)."""

    method: str
    points: list[np.ndarray]
    x0_points: list[np.ndarray]
    explained: list[float]

    def to_dict(self, names: list[str] | None = None) -> dict:
        names = names or [str(i) for i in range(len(self.points))]
        return {"method": self.method, "explained": self.explained,
                "runs": [{"folder": name, "points": np.round(p, 5).tolist(), "x0_points": np.round(q, 5).tolist()}
                         for name, p, q in zip(names, self.points, self.x0_points)]}


def trajectory_map(trajectories, method: str = "pca") -> PathMap:
    """One shared 2-D projection of every step's x_t and x0 of `trajectories` (runs of one latent shape)."""
    if method not in METHODS:
        raise InputError.said("error.not_a_choice", name="method", value=shortened(method), allowed=", ".join(METHODS))
    trajectories = list(trajectories)
    if not trajectories:
        raise InputError.said("error.map_no_runs")
    shapes = {tuple(t.x_start.shape) for t in trajectories}
    if len(shapes) > 1:
        raise InputError.said("error.map_shapes", shapes=", ".join(str(list(s)) for s in sorted(shapes)))
    parts = [path_latents(t) for t in trajectories]
    rows = np.concatenate([block for pair in parts for block in pair])  # every x_t and x0 point of every run
    if method == "umap":
        flat, explained = _umap(rows), []
    else:
        flat, explained = _pca(rows)
    points, x0_points, start = [], [], 0
    for x_t, x0 in parts:
        points.append(flat[start:start + len(x_t)])
        x0_points.append(flat[start + len(x_t):start + len(x_t) + len(x0)])
        start += len(x_t) + len(x0)
    return PathMap(method, points, x0_points, explained)


def _pca(rows: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The rows on their first two principal axes, and each axis's share of the variance. The sign of an
    axis is the one that makes its largest loading positive: the same whatever order the rows are in."""
    centred = rows.astype(np.float64) - rows.mean(axis=0, dtype=np.float64)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    for k, axis in enumerate(axes):
        if axis[np.abs(axis).argmax()] < 0:
            axes[k] = -axis
    variance = singular ** 2
    explained = (variance[:2] / variance.sum()).tolist() if variance.sum() > 0 else [0.0, 0.0]
    flat = centred @ axes.T
    if flat.shape[1] < 2:  # a single point: one axis
        flat = np.pad(flat, ((0, 0), (0, 2 - flat.shape[1])))
    return flat.astype(np.float32), [float(e) for e in explained] + [0.0] * (2 - len(explained))


def _umap(rows: np.ndarray) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise InputError.said("error.map_needs_umap") from None
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, max(2, len(rows) - 1)), random_state=0)
    return reducer.fit_transform(rows).astype(np.float32)


# --- words for a region ----------------------------------------------------------------------------


def check_box(box, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in image pixels, x1 > x0 and y1 > y0, inside the image."""
    height, width = image_hw
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise InputError.said("error.box_form", value=shortened(box)) from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError.said("error.box_outside", value=f"{x0},{y0},{x1},{y1}", width=width, height=height)
    return x0, y0, x1, y1


def _span_steps(maps, step: int, span: str) -> list[int]:
    if span not in SPANS:
        raise InputError.said("error.not_a_choice", name="span", value=shortened(span), allowed=", ".join(SPANS))
    if step not in maps.steps:
        raise InputError.said("error.out_of_range", name="step", value=step + 1,
                              allowed=f"1..{len(maps.steps)}")
    position = maps.steps.index(step)
    return {"step": [step], "upto": maps.steps[:position + 1], "run": list(maps.steps)}[span]


def region_shares(maps, steps: list[int], box: tuple[int, int, int, int]) -> np.ndarray:
    """(tokens,) each token's share of its own attention map (summed over `steps` and the layers, upsampled
    to the image, made a distribution) that falls inside `box`."""
    import torch

    from sdviz.sampling.attention.maps import resize_maps

    latent = torch.from_numpy(maps.aggregate(steps=steps))  # (tokens, h, w)
    heat = resize_maps(latent, maps.image_hw).numpy().clip(min=0).astype(np.float64)
    x0, y0, x1, y1 = box
    totals = heat.sum(axis=(1, 2))
    inside = heat[:, y0:y1, x0:x1].sum(axis=(1, 2))
    return np.where(totals > 0, inside / np.maximum(totals, 1e-12), 0.0)


def region_words(trajectory, step: int, box, span: str = "step") -> list[dict]:
    """The prompt's words (and the start and end tokens, and the negative prompt's words where the run had
    one) ranked by the share of their own attention map inside `box` (x0, y0, x1, y1 in image pixels) at
    step index `step`, over the steps up to it, or over the run (`span`): [{"index", "word", "kind",
    "negative", "share"}] in rank order. A token's share inside a box and outside it sum to 1."""
    from sdviz.sampling.tokens import shown

    maps = trajectory.attention
    if maps is None:
        raise InputError.said("error.words_no_attention")
    box = check_box(box, maps.image_hw)
    steps = _span_steps(maps, step, span)
    ranked = []
    for source, negative in ((maps, False), (maps.negative, True)):
        if source is None:
            continue
        shares = region_shares(source, steps, box)
        for index, (token, kind) in enumerate(zip(source.tokens, source.kinds)):
            if kind in ("word", "start", "end"):
                ranked.append({"index": index, "word": shown(token), "kind": kind, "negative": negative,
                               "share": float(shares[index])})
    return sorted(ranked, key=lambda item: (-item["share"], item["negative"], item["index"]))


# --- where two runs part ---------------------------------------------------------------------------


def parting(first, second, previewers=(None, None), threshold: float = PARTED, by: str = "progress") -> dict:
    """Per step of the longer run, the mean absolute difference (pixels in [0, 1]) of the two runs' x0 frames
    and of their x_t frames, lined up `by` progress or sigma, and the step (counted from 1, in the longer
    run) from which the x0 difference stays above `threshold`: where they part (None: they never do).
    Frames not kept are decoded again by each run's previewer."""
    check_alignment(by)
    if not first.steps or not second.steps:
        raise InputError.said("error.parting_no_steps")
    longer = max(len(first.steps), len(second.steps))
    x0_curve, x_t_curve, pairs = [], [], []
    for k in range(longer):
        i, j = at([first, second], k / max(longer - 1, 1), by)
        (a_t, a0), (b_t, b0) = first.step_frames(i, previewers[0]), second.step_frames(j, previewers[1])
        if a0.shape != b0.shape:
            raise InputError.said("error.parting_sizes", first=f"{a0.shape[1]} x {a0.shape[0]}",
                                  second=f"{b0.shape[1]} x {b0.shape[0]}")
        x0_curve.append(_difference(a0, b0))
        x_t_curve.append(_difference(a_t, b_t))
        pairs.append([i + 1, j + 1])
    parted = None
    for k, value in enumerate(x0_curve):
        if value <= threshold:
            parted = None
        elif parted is None:
            parted = k + 1
    return {"x0": x0_curve, "x_t": x_t_curve, "steps": pairs, "threshold": threshold, "parted_at": parted, "by": by}


def difference_map(first_frame: np.ndarray, second_frame: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1]: the mean absolute difference of two uint8 frames over the colour channels."""
    return np.abs(first_frame.astype(np.float32) - second_frame.astype(np.float32)).mean(axis=2) / 255.0


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(difference_map(a, b).mean())
