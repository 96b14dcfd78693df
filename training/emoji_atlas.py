"""Builds the object atlas the object model trains on, from Microsoft's Fluent Emoji (flat style, MIT licence).

The SVGs come from the npm package `@iconify-json/fluent-emoji-flat` (its `icons.json`); each chosen object
is rendered once with resvg into an RGBA tile, and the tiles are written as one PNG grid with the names,
so that training and evaluation need no SVG renderer:

    npm pack @iconify-json/fluent-emoji-flat@1.2.6 && tar xzf iconify-json-fluent-emoji-flat-1.2.6.tgz
    pip install resvg-py
    python -m training.emoji_atlas package/icons.json --out training/atlas

Every object's name is one token of CLIP's vocabulary (checked against the embedded model's tokenizer),
and most are whole animals, foods and things rather than faces or symbols.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SIDE = 64  # pixels of a tile
PACKAGE = "@iconify-json/fluent-emoji-flat@1.2.6"

# name in the prompt -> Fluent Emoji icon name (the same where the emoji's own name is one word)
OBJECTS = {
    # animals, whole
    "ant": "ant", "bat": "bat", "beetle": "beetle", "bird": "bird",
    "butterfly": "butterfly", "camel": "camel", "cat": "cat", "chicken": "chicken", "cow": "cow",
    "crab": "crab", "crocodile": "crocodile", "deer": "deer", "dog": "dog", "dolphin": "dolphin",
    "dragon": "dragon", "duck": "duck", "eagle": "eagle", "elephant": "elephant",
    "fish": "fish", "flamingo": "flamingo", "goat": "goat", "gorilla": "gorilla",
    "hedgehog": "hedgehog", "horse": "horse", "jellyfish": "jellyfish", "kangaroo": "kangaroo",
    "lizard": "lizard",
    "monkey": "monkey", "octopus": "octopus", "otter": "otter", "owl": "owl",
    "parrot": "parrot", "penguin": "penguin", "pig": "pig", "rabbit": "rabbit",
    "rooster": "rooster", "scorpion": "scorpion", "seal": "seal",
    "shark": "shark", "shrimp": "shrimp", "snail": "snail", "snake": "snake",
    "spider": "spider", "squid": "squid", "swan": "swan", "tiger": "tiger", "turkey": "turkey", "turtle": "turtle",
    "whale": "spouting-whale", "worm": "worm", "zebra": "zebra", "mouse": "mouse", "sheep": "ewe",
    # food and plants
    "apple": "red-apple", "avocado": "avocado", "banana": "banana",
    "bread": "bread", "broccoli": "broccoli", "cactus": "cactus", "carrot": "carrot",
    "cherries": "cherries", "croissant": "croissant",
    "cupcake": "cupcake", "doughnut": "doughnut", "egg": "egg", "eggplant": "eggplant",
    "grapes": "grapes", "hamburger": "hamburger", "lemon": "lemon",
    "mushroom": "mushroom", "onion": "onion", "peach": "peach", "pear": "pear",
    "pineapple": "pineapple", "pizza": "pizza", "popcorn": "popcorn", "potato": "potato", "pretzel": "pretzel",
    "sandwich": "sandwich", "strawberry": "strawberry", "taco": "taco", "tomato": "tomato",
    "watermelon": "watermelon", "rose": "rose", "tulip": "tulip", "sunflower": "sunflower",
    "tree": "deciduous-tree", "palm": "palm-tree", "leaf": "maple-leaf",
    # things
    "airplane": "airplane", "ambulance": "ambulance", "anchor": "anchor", "backpack": "backpack",
    "balloon": "balloon", "basket": "basket", "bell": "bell", "bicycle": "bicycle", "bomb": "bomb",
    "bus": "bus", "camera": "camera", "candle": "candle", "car": "automobile",
    "castle": "castle", "chair": "chair", "cloud": "cloud", "crown": "crown", "drum": "drum",
    "feather": "feather", "guitar": "guitar", "hammer": "hammer", "helicopter": "helicopter",
    "house": "house", "key": "key", "kite": "kite", "ladder": "ladder", "lollipop": "lollipop",
    "microscope": "microscope", "motorcycle": "motorcycle", "rocket": "rocket", "robot": "robot", "ship": "ship",
    "skateboard": "skateboard", "snowman": "snowman-without-snow", "star": "star", "sun": "sun",
    "telescope": "telescope", "tent": "tent", "tractor": "tractor", "train": "locomotive", "trophy": "trophy",
    "trumpet": "trumpet", "umbrella": "umbrella", "violin": "violin", "volcano": "volcano", "rainbow": "rainbow",
    "scissors": "scissors", "shield": "shield", "skull": "skull", "teapot": "teapot", "heart": "red-heart",
    "moon": "crescent-moon", "clock": "alarm-clock", "ball": "soccer-ball", "boat": "sailboat", "lamp": "light-bulb",
    "book": "blue-book", "gift": "wrapped-gift", "hat": "top-hat", "shoe": "running-shoe",
    "truck": "delivery-truck",
}


def render(icons: dict, name: str, side: int = SIDE) -> np.ndarray:
    """One icon as RGBA uint8 (side, side, 4), rendered by resvg from its SVG body."""
    import io

    import resvg_py
    from PIL import Image

    icon = icons["icons"][name]
    width, height = icon.get("width", icons.get("width", 16)), icon.get("height", icons.get("height", 16))
    extent = max(width, height)  # a square canvas, the icon centred in it
    left, top = icon.get("left", 0) - (extent - width) / 2, icon.get("top", 0) - (extent - height) / 2
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
           f'viewBox="{left} {top} {extent} {extent}">{icon["body"]}</svg>')
    png = resvg_py.svg_to_bytes(svg_string=svg, width=side, height=side)
    return np.asarray(Image.open(io.BytesIO(bytes(png))).convert("RGBA"))


def check_tokens(names, tokenizer_folder: Path) -> None:
    """Every object name is one token of CLIP's vocabulary."""
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_folder)
    split = {name: tokenizer.tokenize(name) for name in names}
    several = {name: tokens for name, tokens in split.items() if len(tokens) != 1}
    if several:
        raise ValueError(f"these names are not one CLIP token: {several}")


def build(icons_path: Path, out: Path, tokenizer_folder: Path) -> dict:
    from PIL import Image

    icons = json.loads(icons_path.read_text())
    missing = [icon for icon in OBJECTS.values() if icon not in icons["icons"]]
    if missing:
        raise ValueError(f"icons missing from {icons_path}: {missing}")
    check_tokens(OBJECTS, tokenizer_folder)
    names = sorted(OBJECTS)
    columns = math.ceil(math.sqrt(len(names)))
    rows = math.ceil(len(names) / columns)
    atlas = np.zeros((rows * SIDE, columns * SIDE, 4), np.uint8)
    for index, name in enumerate(names):
        r, c = divmod(index, columns)
        atlas[r * SIDE:(r + 1) * SIDE, c * SIDE:(c + 1) * SIDE] = render(icons, OBJECTS[name])
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(atlas).save(out / "atlas.png", optimize=True)
    index = {"source": f"Microsoft Fluent Emoji (flat), from the npm package {PACKAGE}",
             "licence": "MIT", "side": SIDE, "columns": columns,
             "objects": {name: {"tile": i, "icon": OBJECTS[name]} for i, name in enumerate(names)}}
    (out / "atlas.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("icons", type=Path, help=f"icons.json of {PACKAGE}")
    parser.add_argument("--out", type=Path, default=Path("training/atlas"))
    parser.add_argument("--tokenizer", type=Path, default=Path("assets/sdviz-shapes/tokenizer"))
    args = parser.parse_args()
    index = build(args.icons, args.out, args.tokenizer)
    print(f"{len(index['objects'])} objects -> {args.out / 'atlas.png'}")


if __name__ == "__main__":
    main()
