"""Procedural shape scenes: the prompt grammar, the renderer and the analyser.

The embedded model is trained on these scenes, and the same module scores what
it generates. A scene is one shape on a flat background:

    a [small|large] <colour> <shape> [on the left|on the right|at the top|
      at the bottom|in the center] [on a <colour> background]

`render` draws a scene anti-aliased (4x supersampling) and returns its exact
coverage mask; `analyse` reads a generated RGB image back into the same
attributes, so evaluation needs no labels beyond the prompt.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle")
# Half of the shape's bounding box, as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.13, "large": 0.22}
# Centre of the shape's bounding box, (x, y) as fractions of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
    "center": (0.5, 0.5),
}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
JITTER = 0.04  # uniform jitter of the centre, fraction of the image side
SIZE_JITTER = 0.015  # uniform jitter of the half-extent
SUPERSAMPLE = 4
HELD_OUT_PERCENT = 15  # share of attribute combinations never drawn for training
# How often a training caption keeps each optional phrase (see random_caption).
KEEP_SIZE, KEEP_POSITION, KEEP_BACKGROUND = 0.5, 0.85, 0.85


@dataclass(frozen=True)
class Scene:
    """One shape on a background; `cx`, `cy`, `half` are fractions of the side."""

    colour: str
    shape: str
    size: str
    position: str
    background: str
    cx: float
    cy: float
    half: float

    @property
    def combo(self) -> tuple[str, str, str, str, str]:
        return (self.colour, self.shape, self.size, self.position, self.background)


@dataclass(frozen=True)
class Caption:
    """A prompt and which optional attributes it states."""

    text: str
    says_size: bool
    says_position: bool
    says_background: bool


def all_combos() -> list[tuple[str, str, str, str, str]]:
    """Every (colour, shape, size, position, background) with background != colour."""
    return [
        combo
        for combo in itertools.product(COLOURS, SHAPES, SIZES, POSITIONS, COLOURS)
        if combo[0] != combo[4]
    ]


def is_held_out(combo: tuple[str, ...]) -> bool:
    """A fixed, seed-free split: about HELD_OUT_PERCENT % of combos are for evaluation only."""
    digest = hashlib.sha256(" ".join(combo).encode()).digest()
    return digest[0] * 100 // 256 < HELD_OUT_PERCENT


def make_scene(combo: tuple[str, str, str, str, str], rng: np.random.Generator) -> Scene:
    colour, shape, size, position, background = combo
    x, y = POSITIONS[position]
    return Scene(
        colour=colour,
        shape=shape,
        size=size,
        position=position,
        background=background,
        cx=x + rng.uniform(-JITTER, JITTER),
        cy=y + rng.uniform(-JITTER, JITTER),
        half=SIZES[size] + rng.uniform(-SIZE_JITTER, SIZE_JITTER),
    )


def sample_scene(rng: np.random.Generator, held_out: bool = False) -> Scene:
    """A random scene from the training split (or the held-out split)."""
    while True:
        combo = (
            str(rng.choice(list(COLOURS))),
            str(rng.choice(SHAPES)),
            str(rng.choice(list(SIZES))),
            str(rng.choice(list(POSITIONS))),
            str(rng.choice(list(COLOURS))),
        )
        if combo[0] != combo[4] and is_held_out(combo) == held_out:
            return make_scene(combo, rng)


def caption(
    scene: Scene, says_size: bool = True, says_position: bool = True, says_background: bool = True
) -> Caption:
    words = ["a"]
    if says_size:
        words.append(scene.size)
    words += [scene.colour, scene.shape]
    if says_position:
        words.append(POSITION_PHRASES[scene.position])
    if says_background:
        words.append(f"on a {scene.background} background")
    return Caption(" ".join(words), says_size, says_position, says_background)


def random_caption(scene: Scene, rng: np.random.Generator) -> Caption:
    """Optional parts dropped at random, so the model learns each on its own."""
    return caption(
        scene,
        says_size=rng.random() < KEEP_SIZE,
        says_position=rng.random() < KEEP_POSITION,
        says_background=rng.random() < KEEP_BACKGROUND,
    )


def parse_prompt(prompt: str) -> dict[str, str]:
    """The attributes a grammar prompt states: keys colour, shape, size, position, background."""
    text = " " + " ".join(prompt.lower().split()) + " "
    found: dict[str, str] = {}
    for name in COLOURS:
        if f" on a {name} background " in text:
            found["background"] = name
            text = text.replace(f" on a {name} background ", " ")
    for key, phrase in POSITION_PHRASES.items():
        if f" {phrase} " in text:
            found["position"] = key
    for name in SIZES:
        if f" {name} " in text:
            found["size"] = name
    for name in SHAPES:
        if f" {name} " in text:
            found["shape"] = name
    for name in COLOURS:
        if f" {name} " in text:
            found["colour"] = name
    return found


# --- rendering -------------------------------------------------------------------


def shape_coverage(shape: str, cx: float, cy: float, half: float, size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of `shape` on a size x size grid, float32 (H, W)."""
    fine = size * SUPERSAMPLE
    coords = (np.arange(fine, dtype=np.float32) + 0.5) / fine
    y, x = np.meshgrid(coords, coords, indexing="ij")
    if shape == "circle":
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= half**2
    elif shape == "square":
        inside = (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half)
    elif shape == "triangle":
        # Apex up; at height y the half-width grows linearly from 0 at the top to `half` at the base.
        t = (y - (cy - half)) / (2 * half)
        inside = (t >= 0) & (t <= 1) & (np.abs(x - cx) <= half * t)
    else:
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")
    pooled = inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    return pooled.astype(np.float32)


def render(scene: Scene, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The scene as uint8 RGB (H, W, 3) and its exact coverage mask float32 (H, W)."""
    coverage = shape_coverage(scene.shape, scene.cx, scene.cy, scene.half, size)
    fg = np.array(COLOURS[scene.colour], np.float32)
    bg = np.array(COLOURS[scene.background], np.float32)
    rgb = bg + coverage[..., None] * (fg - bg)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), coverage


# --- analysis --------------------------------------------------------------------

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _PALETTE_NAMES], np.float32)  # (colours, 3)
FOREGROUND_DISTANCE = 70.0  # RGB distance from the background that counts as shape


def nearest_colour(rgb: np.ndarray) -> str:
    distances = np.linalg.norm(_PALETTE - np.asarray(rgb, np.float32), axis=1)
    return _PALETTE_NAMES[int(np.argmin(distances))]


@dataclass(frozen=True)
class Analysis:
    """What an image shows, read back into the grammar's attributes."""

    background: str
    colour: str | None
    shape: str | None
    size: str | None
    position: str | None
    mask: np.ndarray  # bool (H, W): pixels that are not background

    def matches(self, stated: dict[str, str]) -> dict[str, bool]:
        """For each attribute a prompt states, whether the image shows it."""
        return {key: getattr(self, key) == value for key, value in stated.items()}


def analyse(image: np.ndarray) -> Analysis:
    """Reads a uint8 RGB image (H, W, 3) back into background, colour, shape, size, position."""
    pixels = np.asarray(image, np.float32)
    height, width = pixels.shape[:2]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    bg_rgb = np.median(border, axis=0)
    background = nearest_colour(bg_rgb)
    mask = np.linalg.norm(pixels - bg_rgb, axis=-1) > FOREGROUND_DISTANCE
    if mask.sum() < 4:
        return Analysis(background, None, None, None, None, mask)
    colour = nearest_colour(np.median(pixels[mask], axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    cx, cy = (left + right) / 2 / width, (top + bottom) / 2 / height
    half = max(right - left, bottom - top) / 2 / width
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    size = min(SIZES, key=lambda s: abs(SIZES[s] - half))
    # The shape whose template, fitted to the mask's bounding box, overlaps it best.
    box = mask[top:bottom, left:right]
    best, best_iou = None, -1.0
    for shape in SHAPES:
        template = _box_template(shape, bottom - top, right - left)
        iou = (box & template).sum() / max((box | template).sum(), 1)
        if iou > best_iou:
            best, best_iou = shape, iou
    return Analysis(background, colour, best, size, position, mask)


def _box_template(shape: str, height: int, width: int) -> np.ndarray:
    """`shape` filling a height x width box, bool."""
    y, x = np.meshgrid(
        (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij"
    )
    if shape == "circle":
        return (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25
    if shape == "square":
        return np.ones((height, width), bool)
    return np.abs(x - 0.5) <= 0.5 * y  # triangle, apex up


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of the same shape."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
