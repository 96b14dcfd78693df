"""Clicks on pictures. gradio's Image reports a click (its select event's `index`) in the pixels of the picture
it was sent, but only while the page shows that picture no larger than it is: a click on a small picture shown
enlarged is not scaled back (and outside its middle, not reported at all). So a picture meant to be clicked is
sent at least CLICK_SIDE high, enlarged by a whole factor (nearest neighbour, as the page draws small frames),
and a click is brought back to the frame's own pixels here."""

from __future__ import annotations

import gradio as gr
import numpy as np

from sdviz.drawing.sheets import enlarge, enlarge_factor
from sdviz.sampling.checks import check_int
from sdviz.sampling.errors import InputError, shortened

CLICK_SIDE = 256  # pixels: no picture a click is read on is sent smaller (the page shows them up to ~220 high)


def clickable(frame: np.ndarray) -> np.ndarray:
    """The frame as a picture to click on: enlarged to CLICK_SIDE high at least."""
    return enlarge(frame, CLICK_SIDE)


def clicked(event: gr.EventData, height: int, width: int, enlarged: bool = True) -> tuple[int, int]:
    """The frame's pixel (x, y) that a click on its picture (sent `clickable` when `enlarged`) reports, checked
    like any value the page sends."""
    factor = enlarge_factor((height, width), CLICK_SIDE) if enlarged else 1
    data = getattr(event, "_data", None)
    pixel = data.get("index") if isinstance(data, dict) else None
    if not isinstance(pixel, (list, tuple)) or len(pixel) != 2:
        raise InputError.said("error.not_a_pixel", value=shortened(pixel))
    x = check_int("pixel x", pixel[0], 0, width * factor - 1)
    y = check_int("pixel y", pixel[1], 0, height * factor - 1)
    return x // factor, y // factor
