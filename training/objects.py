"""Object scenes: the prompt grammar, the renderer and the analyser of the object model.

A scene is one object, or two at opposite positions, from the emoji atlas (`training/atlas`, Microsoft's
Fluent Emoji, MIT) on a flat background whose colour is far from the objects' own:

    a [small|large] <object> [<position>] [on a <colour> background]
    a <object> <position> and a <object> <opposite position> [on a <colour> background]

with nine positions (left, right, top, bottom, center and the four corners) and four opposite pairs.
`render` composites the atlas tiles and returns each object's mask; `analyse` reads an image back into
background, objects and positions by nearest-template classification against the same atlas, so
evaluation needs no labels beyond the prompt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from training import scenes

ATLAS = Path(__file__).resolve().parent / "atlas"
COLOURS: dict[str, tuple[int, int, int]] = {**scenes.COLOURS, "pink": (240, 130, 190), "gray": (128, 128, 128)}
# Centre of an object, (x, y) as fractions of the image side, and how a caption says it.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "center": (0.5, 0.5),
    "top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75), "bottom right": (0.75, 0.75),
}
POSITION_PHRASES = {
    "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
    "center": "in the center", "top left": "at the top left", "top right": "at the top right",
    "bottom left": "at the bottom left", "bottom right": "at the bottom right",
}
OPPOSITE = {"left": "right", "top": "bottom", "top left": "bottom right", "top right": "bottom left"}
OPPOSITE.update({b: a for a, b in list(OPPOSITE.items())})
SIZES: dict[str, float] = {"small": 0.34, "large": 0.5}  # an object's side, fraction of the image side
PAIR_SIZE = 0.44  # each object's side in a two-object scene
JITTER = 0.03  # uniform jitter of a centre, fraction of the side
BACKGROUND_CLASH = 0.08  # most share of an object's pixels that may lie near the background colour
NEAR = 80.0  # RGB distance that counts as near
HELD_OUT_PERCENT = 10  # share of (object, position, background) and of object pairs kept for evaluation
KEEP_SIZE, KEEP_POSITION, KEEP_BACKGROUND = 0.5, 0.85, 0.85  # how often a caption keeps each phrase
TWO_OBJECTS = 0.5  # share of training scenes with two objects


# --- the atlas ---------------------------------------------------------------------


@lru_cache(maxsize=1)
def atlas() -> tuple[list[str], np.ndarray]:
    """(object names, RGBA tiles float32 (N, side, side, 4) in [0, 1]) from training/atlas."""
    from PIL import Image

    index = json.loads((ATLAS / "atlas.json").read_text())
    image = np.asarray(Image.open(ATLAS / "atlas.png").convert("RGBA"), np.float32) / 255
    side, columns = index["side"], index["columns"]
    names = sorted(index["objects"], key=lambda name: index["objects"][name]["tile"])
    tiles = []
    for name in names:
        row, column = divmod(index["objects"][name]["tile"], columns)
        tiles.append(image[row * side:(row + 1) * side, column * side:(column + 1) * side])
    return names, np.stack(tiles)


def objects() -> list[str]:
    return atlas()[0]


@lru_cache(maxsize=1)
def backgrounds_for() -> dict[str, tuple[str, ...]]:
    """Per object, the background colours few of its pixels come near (so it stands out on them)."""
    names, tiles = atlas()
    allowed = {}
    for name, tile in zip(names, tiles):
        opaque = tile[..., 3] > 0.5
        pixels = tile[..., :3][opaque] * 255
        allowed[name] = tuple(colour for colour, rgb in COLOURS.items()
                              if np.mean(np.linalg.norm(pixels - np.array(rgb), axis=1) < NEAR) <= BACKGROUND_CLASH)
    return allowed


@lru_cache(maxsize=8)
def resized_tiles(side: int) -> np.ndarray:
    """Every tile resized to side x side pixels (premultiplied area resampling), float32 RGBA."""
    import torch

    tiles = torch.from_numpy(atlas()[1]).permute(0, 3, 1, 2)
    premultiplied = torch.cat([tiles[:, :3] * tiles[:, 3:], tiles[:, 3:]], 1)
    small = torch.nn.functional.interpolate(premultiplied, size=(side, side), mode="area")
    alpha = small[:, 3:]
    rgb = torch.where(alpha > 0, small[:, :3] / alpha.clamp(min=1e-6), torch.zeros_like(small[:, :3]))
    return torch.cat([rgb, alpha], 1).permute(0, 2, 3, 1).numpy()


# --- scenes and captions -----------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """One object in a scene: its name, its position's name, its centre and side (fractions of the image)."""

    name: str
    position: str
    cx: float
    cy: float
    side: float


@dataclass(frozen=True)
class Scene:
    objects: tuple[Placed, ...]  # one or two
    background: str
    size: str | None  # one-object scenes: small or large


def _fraction(key: str) -> int:
    return hashlib.sha256(key.encode()).digest()[0] * 100 // 256


def is_held_out(names: tuple[str, ...], position: str, background: str) -> bool:
    """A fixed split: a share of one-object (object, position, background) triples and of object pairs."""
    if len(names) == 2:
        return _fraction(" + ".join(sorted(names))) < HELD_OUT_PERCENT
    return _fraction(f"{names[0]} | {position} | {background}") < HELD_OUT_PERCENT


def _placed(name: str, position: str, side: float, rng: np.random.Generator) -> Placed:
    x, y = POSITIONS[position]
    return Placed(name, position, x + rng.uniform(-JITTER, JITTER), y + rng.uniform(-JITTER, JITTER), side)


def sample_scene(rng: np.random.Generator, held_out: bool = False, two: bool | None = None) -> Scene:
    """A random scene from the training split (or the held-out one): one object, or two (TWO_OBJECTS)."""
    names, allowed = objects(), backgrounds_for()
    two = rng.random() < TWO_OBJECTS if two is None else two
    while True:
        if two:
            first, second = (str(n) for n in rng.choice(names, 2, replace=False))
            colours = sorted(set(allowed[first]) & set(allowed[second]))
            position = str(rng.choice(sorted(OPPOSITE)))
            if not colours:
                continue
            background = str(rng.choice(colours))
            if is_held_out((first, second), position, background) != held_out:
                continue
            pair = (_placed(first, position, PAIR_SIZE, rng), _placed(second, OPPOSITE[position], PAIR_SIZE, rng))
            return Scene(pair, background, None)
        name = str(rng.choice(names))
        if not allowed[name]:
            continue
        position, background = str(rng.choice(list(POSITIONS))), str(rng.choice(allowed[name]))
        size = str(rng.choice(list(SIZES)))
        if is_held_out((name,), position, background) == held_out:
            return Scene((_placed(name, position, SIZES[size], rng),), background, size)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene, says_size: bool = True, says_position: bool = True, says_background: bool = True) -> str:
    """The scene's prompt with the optional phrases asked for."""
    parts = []
    for placed in scene.objects:
        words = []
        if says_size and scene.size is not None:
            words.append(scene.size)
        words.append(placed.name)
        if says_position:
            words.append(POSITION_PHRASES[placed.position])
        parts.append(" ".join([article(words[0]), *words]))
    text = " and ".join(parts)
    if says_background:
        text += f" on {article(scene.background)} {scene.background} background"
    return text


def random_caption(scene: Scene, rng: np.random.Generator) -> str:
    """Optional phrases dropped at random; a two-object scene names its objects in either order."""
    if len(scene.objects) == 2 and rng.random() < 0.5:
        scene = Scene(scene.objects[::-1], scene.background, scene.size)
    return caption(scene, rng.random() < KEEP_SIZE, rng.random() < KEEP_POSITION, rng.random() < KEEP_BACKGROUND)


def parse_prompt(prompt: str) -> dict:
    """What a grammar prompt states: {'objects': [(name, position or None), ...], 'background', 'size'}."""
    text = " ".join(prompt.lower().split())
    stated: dict = {"objects": []}
    for name in COLOURS:
        for said in (f" on a {name} background", f" on an {name} background"):
            if text.endswith(said):
                stated["background"] = name
                text = text[: -len(said)]
    for part in text.split(" and "):
        words = part.split()
        if len(words) < 2 or words[0] not in ("a", "an"):
            continue
        rest = words[1:]
        if rest[0] in SIZES:
            stated["size"] = rest[0]
            rest = rest[1:]
        if not rest:
            continue
        phrase = " ".join(rest[1:])
        position = next((key for key, said in POSITION_PHRASES.items() if said == phrase), None)
        stated["objects"].append((rest[0], position))
    return stated


# --- rendering -----------------------------------------------------------------------


def render(scene: Scene, size: int = 128) -> tuple[np.ndarray, list[np.ndarray]]:
    """The scene as uint8 RGB (size, size, 3) and each object's coverage, float32 (size, size)."""
    names = objects()
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = np.array(COLOURS[scene.background], np.float32) / 255
    masks = []
    for placed in scene.objects:
        side = max(2, round(placed.side * size))
        tile = resized_tiles(side)[names.index(placed.name)]
        left, top = round(placed.cx * size - side / 2), round(placed.cy * size - side / 2)
        coverage = np.zeros((size, size), np.float32)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + side, size), min(left + side, size)
        piece = tile[y0 - top:y1 - top, x0 - left:x1 - left]
        alpha = piece[..., 3:]
        canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - alpha) + piece[..., :3] * alpha
        coverage[y0:y1, x0:x1] = alpha[..., 0]
        masks.append(coverage)
    return np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8), masks


# --- analysis ------------------------------------------------------------------------

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _PALETTE_NAMES], np.float32)
FOREGROUND_DISTANCE = 60.0  # RGB distance from the background that counts as object
TEMPLATE_SIDE = 24  # objects are compared with the atlas at this size


def nearest_colour(rgb) -> str:
    return _PALETTE_NAMES[int(np.argmin(np.linalg.norm(_PALETTE - np.asarray(rgb, np.float32), axis=1)))]


@dataclass(frozen=True)
class Found:
    """An object read from an image: the nearest atlas template, where it is, and its mask."""

    name: str
    position: str
    cx: float
    cy: float
    mask: np.ndarray  # bool (H, W)


def classify(image: np.ndarray, mask: np.ndarray, background: np.ndarray) -> str:
    """The atlas object nearest to the image inside the mask's bounding box: each template cut to its own
    glyph's bounding box and composited on the background, both stretched to one square, compared by mean
    squared difference."""
    from PIL import Image

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    crop = Image.fromarray(np.asarray(image, np.uint8)).crop(box).resize((TEMPLATE_SIDE, TEMPLATE_SIDE),
                                                                        Image.Resampling.BOX)
    glyphs = glyph_templates()
    composed = glyphs[..., :3] * glyphs[..., 3:] + background / 255 * (1 - glyphs[..., 3:])
    difference = ((composed - np.asarray(crop, np.float32) / 255) ** 2).mean(axis=(1, 2, 3))
    return objects()[int(np.argmin(difference))]


@lru_cache(maxsize=1)
def glyph_templates() -> np.ndarray:
    """Each tile cut to its glyph's bounding box (alpha over the foreground threshold) and stretched to
    TEMPLATE_SIDE square: float32 RGBA (N, T, T, 4)."""
    from PIL import Image

    templates = []
    for tile in atlas()[1]:
        rows, cols = np.flatnonzero((tile[..., 3] > 0.3).any(axis=1)), np.flatnonzero((tile[..., 3] > 0.3).any(axis=0))
        premultiplied = np.concatenate([tile[..., :3] * tile[..., 3:], tile[..., 3:]], axis=2)
        cut = premultiplied[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        channels = [np.asarray(Image.fromarray(cut[..., c]).resize((TEMPLATE_SIDE, TEMPLATE_SIDE),
                                                                    Image.Resampling.BOX)) for c in range(4)]
        stack = np.stack(channels, axis=2)
        alpha = stack[..., 3:]
        templates.append(np.concatenate([np.where(alpha > 0, stack[..., :3] / np.maximum(alpha, 1e-6), 0), alpha], 2))
    return np.stack(templates).astype(np.float32)


def _nearest_position(cx: float, cy: float) -> str:
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)


def _halves(position: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The image split between a position and its opposite: (the position's side, the other's)."""
    y, x = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij")
    px, py = POSITIONS[position]
    ox, oy = POSITIONS[OPPOSITE[position]]
    nearer = (x - px) ** 2 + (y - py) ** 2 < (x - ox) ** 2 + (y - oy) ** 2
    return nearer, ~nearer


def analyse(image: np.ndarray, stated: dict) -> dict:
    """What an image shows, against what a prompt states (`parse_prompt`): the background; for one object,
    the object found and its position; for two at opposite positions, the object found in each one's half.

    Returns {'background': name, 'found': [Found, ...] (one per stated object, in order; None where its
    part of the image is empty)}."""
    pixels = np.asarray(image, np.float32)
    height, width = pixels.shape[:2]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background_rgb = np.median(border, axis=0)
    foreground = np.linalg.norm(pixels - background_rgb, axis=-1) > FOREGROUND_DISTANCE
    regions = [foreground]
    placed = stated["objects"]
    if len(placed) == 2 and placed[0][1] is not None and OPPOSITE.get(placed[0][1]) == placed[1][1]:
        own, other = _halves(placed[0][1], height, width)
        regions = [foreground & own, foreground & other]
    found = []
    for region in regions:
        if region.sum() < 6:
            found.append(None)
            continue
        ys, xs = np.nonzero(region)
        cx, cy = (xs.mean() + 0.5) / width, (ys.mean() + 0.5) / height
        found.append(Found(classify(image, region, background_rgb), _nearest_position(cx, cy), cx, cy, region))
    return {"background": nearest_colour(background_rgb), "found": found}


def scores(image: np.ndarray, prompt: str) -> dict[str, bool]:
    """Per stated attribute, whether the image shows it: background; object (one-object prompts) and
    position; for two objects, both objects right, each on its side."""
    stated = parse_prompt(prompt)
    read = analyse(image, stated)
    result = {}
    if "background" in stated:
        result["background"] = read["background"] == stated["background"]
    placed, found = stated["objects"], read["found"]
    if len(placed) == 1:
        result["object"] = found[0] is not None and found[0].name == placed[0][0]
        if placed[0][1] is not None:
            result["position"] = found[0] is not None and found[0].position == placed[0][1]
    elif len(placed) == 2 and len(found) == 2:
        result["both objects"] = all(f is not None and f.name == p[0] for f, p in zip(found, placed))
    return result


def scenes_json() -> dict:
    """The grammar's vocabularies, for the model folder: objects (name -> Fluent icon name), colours
    (name -> RGB), positions (name -> centre as fractions of the side)."""
    index = json.loads((ATLAS / "atlas.json").read_text())
    return {"objects": {name: entry["icon"] for name, entry in sorted(index["objects"].items())},
            "colours": {name: list(rgb) for name, rgb in COLOURS.items()},
            "positions": {name: list(centre) for name, centre in POSITIONS.items()},
            "position_phrases": POSITION_PHRASES, "opposite": OPPOSITE}
