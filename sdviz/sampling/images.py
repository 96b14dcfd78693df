"""Reading an img2img input: any common image, converted to 8-bit RGB at the run's size.

Odd but valid images are converted, not refused: RGBA and LA are composited on
white, greyscale and palette images expanded, CMYK converted, 16-bit and float
images rescaled to 8 bits. Missing, empty and corrupt files are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdviz.messages import text
from sdviz.sampling.errors import InputError


def _to_rgb(image):
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I") and values.max() > 255 else 255.0
        if image.mode == "F":
            peak = max(float(values.max()), 1.0) if values.max() > 1 else 1.0
        grey = np.clip(values / peak * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source, check_size=None, name: str | None = None):
    """A PIL RGB image from a path, a PIL image or an array (H, W[, C]) of uint8/uint16/float.

    check_size(width, height), when given, sees a file's size from its header before
    any pixel is decoded (and may raise), so an image bomb is refused cheaply. Messages call the
    image `name` (the parameter it came in).
    """
    from PIL import Image, UnidentifiedImageError

    name = text("error.init_image") if name is None else name
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, np.ndarray):
        array = source
        if array.dtype == np.uint16:
            array = (array / 257.0).round().astype(np.uint8)
        elif array.dtype.kind == "f":
            array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
        if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)):
            return _to_rgb(Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[2] == 1 else array))
        raise InputError.said("error.image_array_shape", name=name, shape=array.shape)
    if not isinstance(source, (str, Path)):
        raise InputError.said("error.not_an_image", name=name, type=type(source).__name__)
    path = Path(str(source)).expanduser()
    if not path.is_file():
        raise InputError.said("error.image_missing", name=name, file=repr(path.name))
    if path.stat().st_size == 0:
        raise InputError.said("error.image_empty", name=name, file=repr(path.name))
    try:
        with Image.open(path) as opened:
            if check_size is not None:
                check_size(*opened.size)
            opened.load()
            return _to_rgb(opened)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        reason = str(error).replace(str(path), path.name)  # no server path in the message
        raise InputError.said("error.unreadable_image", name=f"{name} {path.name!r}", reason=reason) from None


def prepare_init_image(source, width: int, height: int):
    """The img2img input as the run uses it: RGB, resized to width x height."""
    from PIL import Image

    image = load_image(source)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image
