"""Frames as data URIs, for pages that carry their pictures inline (the run page, the app's live view).

    data_uri(frame, side=256, lossless_side=128)    # WebP: lossless up to 128 high, lossy above
    data_uri(frame, side=96, lossless="PNG", lossy="JPEG", enlarge=True)
"""

from __future__ import annotations

import base64
import io

import numpy as np

from sdviz.drawing.sheets import enlarge as enlarged

SAVE = {  # each format's options: the fastest effort that keeps the page's files as small
    "PNG": {"compress_level": 1},
    "WEBP": {"lossless": True, "quality": 0, "method": 1},
}
LOSSY = {"WEBP": {"quality": 75, "method": 4}, "JPEG": {"quality": 90}}


def data_uri(frame: np.ndarray, side: int, lossless_side: int | None = None, lossless: str = "WEBP",
             lossy: str | None = "WEBP", enlarge: bool = False) -> str:
    """A uint8 (H, W, 3) frame as a data URI no higher than `side` (scaled down, bilinear; with `enlarge`, a
    smaller frame is first enlarged by a whole factor to `side` high at least). A frame up to `lossless_side`
    high (default `side`: one that needs no scaling) is stored `lossless`, a higher one `lossy` (None: every
    frame lossless)."""
    from PIL import Image

    if enlarge and frame.shape[0] < side:
        frame = enlarged(frame, side)
    exact = lossy is None or frame.shape[0] <= (side if lossless_side is None else lossless_side)
    image = Image.fromarray(frame)
    if frame.shape[0] > side:
        image = image.resize((max(1, side * frame.shape[1] // frame.shape[0]), side), Image.Resampling.BILINEAR,
                             reducing_gap=2.0)
    kind = lossless if exact else lossy
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **(SAVE[kind] if exact else LOSSY[kind]))
    return f"data:image/{kind.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()
