"""The font text drawn into images is set in: one that has every character of it (Latin, Greek, Chinese,
Japanese), found at run time.

Searched in order: $SDVIZ_FONT, Noto Sans CJK (Debian's and Ubuntu's `fonts-noto-cjk`; on a Hugging Face
Space, `packages.txt`), Noto Sans, DejaVu Sans, then Pillow's own font. A font is taken for a text only when
it has a glyph for each of its characters (none of them renders as the font's missing-glyph box, its
`.notdef`); where no font has them all, the one missing the fewest is used. For Chinese text the Simplified
Chinese face of a CJK collection is taken, for any other its Japanese face.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from sdviz.messages import current

SEARCHED = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts",
            "/System/Library/Fonts", "/Library/Fonts", "C:/Windows/Fonts")
FILES = ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansCJKjp-Regular.otf", "NotoSans-Regular.ttf",
         "DejaVuSans.ttf", "msyh.ttc", "PingFang.ttc")
NOT_A_CHARACTER = "\U0010fffd"  # a code point no font draws: its mask is the font's .notdef


@functools.cache
def font_files() -> tuple[Path, ...]:
    """The font files found, in the order they are tried ($SDVIZ_FONT first)."""
    found = [Path(os.environ["SDVIZ_FONT"])] if os.environ.get("SDVIZ_FONT") else []
    for name in FILES:
        for folder in SEARCHED:
            root = Path(folder).expanduser()
            if root.is_dir():
                match = next(iter(sorted(root.rglob(name))), None)
                if match is not None:
                    found.append(match)
                    break
    return tuple(path for path in found if path.is_file())


@functools.cache
def _faces(path: Path, size: int, chinese: bool) -> list:
    """The file's faces at `size`, the one for the text's language first (a collection's SC or JP face)."""
    from PIL import ImageFont

    faces = []
    for index in range(16):
        try:
            faces.append(ImageFont.truetype(str(path), size, index=index))
        except OSError:
            break
    wanted = "SC" if chinese else "JP"
    faces.sort(key=lambda face: wanted not in " ".join(face.getname()))
    return faces[:1]


def missing(font, text: str) -> int:
    """How many characters of `text` the font draws as its missing-glyph box."""
    notdef = font.getmask(NOT_A_CHARACTER)
    box = (notdef.size, bytes(notdef))
    count = 0
    for character in set(text):
        if character.isspace():
            continue
        mask = font.getmask(character)
        count += (mask.size, bytes(mask)) == box
    return count


def _default(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


@functools.lru_cache(maxsize=256)
def text_font(size: int, text: str = ""):
    """A font at `size` with a glyph for every character of `text` (see the module's note)."""
    chinese = current() == "zh"
    best, fewest = None, None
    for path in font_files():
        for face in _faces(path, size, chinese):
            count = missing(face, text)
            if count == 0:
                return face
            if fewest is None or count < fewest:
                best, fewest = face, count
    default = _default(size)
    if best is None or (hasattr(default, "getmask2") and missing(default, text) < fewest):
        return default
    return best
