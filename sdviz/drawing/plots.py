"""Line charts and path maps as PNG files for the command line's exports, drawn with Pillow (the app draws
its plots with gradio's own plot components): axes, a few ticks, one coloured line per series, a legend
and an optional vertical marker; a path map's runs as lines of x_t from a circled start, with their x0
as dots. Nothing more; no plotting library needed."""

from __future__ import annotations

import math
from pathlib import Path

from sdviz.sampling.errors import InputError

COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207))
SIZE = (720, 420)  # pixels
MARGIN = (70, 40, 20, 50)  # left, top, right, bottom


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * k / (count - 1) for k in range(count)]


def _frame(points: list[tuple[float, float]], x_label: str, y_label: str, title: str, words: str = "",
           pad: float = 0.0):
    """A white sheet with a plot's box, ticks and labels fitted to `points` (and `pad` of their range more on
    every side): (sheet, draw, at, font), `at(x, y)` the pixel of a value; `words` (legend text) given so the
    font has their glyphs."""
    from PIL import Image, ImageDraw

    from sdviz.drawing.fonts import text_font

    if not points:
        raise InputError.said("error.chart_empty")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    x_low, x_high = x_low - pad * (x_high - x_low), x_high + pad * (x_high - x_low)
    y_low, y_high = y_low - pad * (y_high - y_low), y_high + pad * (y_high - y_low)
    width, height = SIZE
    left, top, right, bottom = MARGIN
    plot_w, plot_h = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_low) / (x_high - x_low) * plot_w, top + (1 - (y - y_low) / (y_high - y_low)) * plot_h)

    sheet = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(sheet)
    font = text_font(13, f"{title}{x_label}{y_label}{words}0123456789.e-")
    draw.rectangle((left, top, left + plot_w, top + plot_h), outline=(0, 0, 0))
    for value in _ticks(y_low, y_high):
        _, y = at(x_low, value)
        draw.line((left - 4, y, left, y), fill=(0, 0, 0))
        draw.text((4, y - 7), f"{value:.3g}", fill=(0, 0, 0), font=font)
    for value in _ticks(x_low, x_high):
        x, _ = at(value, y_low)
        draw.line((x, top + plot_h, x, top + plot_h + 4), fill=(0, 0, 0))
        draw.text((x - 12, top + plot_h + 6), f"{value:.3g}", fill=(0, 0, 0), font=font)
    draw.text((left, height - 18), x_label, fill=(0, 0, 0), font=font)
    draw.text((left, top - 34), title, fill=(0, 0, 0), font=font)
    draw.text((4, top - 18), y_label, fill=(0, 0, 0), font=font)
    return sheet, draw, at, font


def _legend(draw, font, k: int, name: str, colour) -> None:
    """The legend's line k: a stroke of the series' colour and its name, at the plot's top right."""
    left, top, right, _ = MARGIN
    edge = SIZE[0] - right
    draw.line((edge - 170, top + 12 + 16 * k, edge - 150, top + 12 + 16 * k), fill=colour, width=3)
    draw.text((edge - 145, top + 5 + 16 * k), name, fill=(0, 0, 0), font=font)


def line_chart(series: dict[str, list[tuple[float, float]]], path, x_label: str = "", y_label: str = "",
               title: str = "", marker: float | None = None) -> Path:
    """series: name -> [(x, y), ...]; writes a PNG to `path` and returns it."""
    points = [p for values in series.values() for p in values]
    sheet, draw, at, font = _frame(points, x_label, y_label, title, "".join(series))
    if marker is not None:
        x, _ = at(marker, 0.0)
        draw.line((x, MARGIN[1], x, SIZE[1] - MARGIN[3]), fill=(120, 120, 120), width=2)
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        if len(values) > 1:
            draw.line([at(x, y) for x, y in values], fill=colour, width=2)
        for x, y in values:
            cx, cy = at(x, y)
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=colour)
        _legend(draw, font, k, name, colour)
    path = Path(path)
    sheet.save(path)
    return path


def schedule_plot(tables: dict[str, list[dict[str, float]]], path, marked: int | None = None, title: str = ""):
    """A PNG of log10 sigma over the fraction of the run done, one line per scheduler; `marked`
    (an index into the first table) drawn as a vertical line."""
    series = {}
    for name, table in tables.items():
        last = max(len(table) - 1, 1)
        series[name] = [(r["index"] / last, math.log10(r["sigma"])) for r in table if r["sigma"] > 0]
    first = next(iter(tables.values()))
    mark = marked / max(len(first) - 1, 1) if marked is not None else None
    return line_chart(series, path, x_label="share of the run's steps done", y_label="log10 sigma",
                      title=title, marker=mark)
