"""The trajectory map as a picture (`sdviz.analysis.path.trajectory_map`), drawn with Pillow: each run's x_t
path from its start (a ring) through every step (a line and dots), its x0 points as small squares, one colour
a run, the chosen step ringed; and where each point lies in the picture, so a click on it finds its step.

    picture, where = map_picture(path_map, labels, marked=(0, 5))   # run 0's step index 5 ringed
    nearest(where, x, y)                                            # (run, kind, step index) of a click
"""

from __future__ import annotations

import numpy as np

from sdviz.drawing.plots import COLOURS
from sdviz.messages import text

SIZE = (480, 360)  # pixels
MARGIN = 28  # around the plotted points (the axis titles sit in it)


def map_picture(path_map, labels: list[str], marked: tuple[int, int] | None = None, size: tuple[int, int] = SIZE):
    """(PIL image, where): `where` is a list of (run, kind, step index or -1 for the start, x, y) for every point
    drawn, kind "x_t" or "x0". `marked`: (run, step index) ringed on its x_t and x0 points."""
    from PIL import Image, ImageDraw

    from sdviz.drawing.fonts import text_font

    width, height = size
    everything = np.concatenate([*path_map.points, *[p for p in path_map.x0_points if len(p)]])
    low, high = everything.min(axis=0), everything.max(axis=0)
    span = np.where(high - low > 1e-9, high - low, 1.0)

    def at(point) -> tuple[float, float]:
        x, y = (np.asarray(point, np.float64) - low) / span
        return MARGIN + x * (width - 2 * MARGIN), height - MARGIN - y * (height - 2 * MARGIN)

    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    names = "".join(labels)
    font = text_font(12, names + "".join(map_axes(path_map)) + "x_t x0")
    where = []
    for run, (points, x0_points) in enumerate(zip(path_map.points, path_map.x0_points)):
        colour = COLOURS[run % len(COLOURS)]
        light = tuple(int(c + (255 - c) * 0.55) for c in colour)
        xy = [at(p) for p in points]
        draw.line(xy, fill=colour, width=2)
        for step, (x, y) in enumerate(xy):
            radius = 6 if step == 0 else 3
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour,
                         fill="white" if step == 0 else colour, width=2)
            where.append((run, "x_t", step - 1, x, y))
        for step, point in enumerate(x0_points):
            x, y = at(point)
            draw.rectangle((x - 2.5, y - 2.5, x + 2.5, y + 2.5), fill=light, outline=colour)
            where.append((run, "x0", step, x, y))
        if marked is not None and marked[0] == run and 0 <= marked[1] < len(x0_points):
            for x, y in (xy[marked[1] + 1], at(x0_points[marked[1]])):
                draw.ellipse((x - 9, y - 9, x + 9, y + 9), outline=(0, 0, 0), width=2)
        legend_y = height - 18 - 15 * (len(path_map.points) - 1 - run)  # bottom left: a page's label covers the top
        draw.text((6, legend_y), f"— {labels[run]}" if run < len(labels) else "", fill=colour, font=font)
    first, second = map_axes(path_map)  # at the axes' ends
    draw.text((width - MARGIN - 110, height - 18), first, fill=(90, 90, 90), font=font)
    draw.text((width - MARGIN - 110, 4), second, fill=(90, 90, 90), font=font)
    return picture, where


def map_axes(path_map) -> tuple[str, str]:
    """A path map's axis labels: 'PC1 (61.2 %)' and 'PC2 (20.3 %)' for PCA, 'UMAP 1' and 'UMAP 2' for UMAP."""
    if not path_map.explained:
        return tuple(text("page.map_umap_axis", axis=k) for k in (1, 2))
    return tuple(text("page.map_axis", axis=k + 1, percent=f"{100 * share:.1f}")
                 for k, share in enumerate(path_map.explained[:2]))


def nearest(where: list, x: float, y: float, kind: str | None = None) -> tuple[int, str, int] | None:
    """(run, kind, step index) of the drawn point nearest to the picture's pixel (x, y); the start of a path
    counts as its first step. None when nothing was drawn."""
    candidates = [w for w in where if kind is None or w[1] == kind]
    if not candidates:
        return None
    run, kind, step, _, _ = min(candidates, key=lambda w: (w[3] - x) ** 2 + (w[4] - y) ** 2)
    return run, kind, max(step, 0)
