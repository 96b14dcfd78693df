"""Captured attention and the heat maps computed from it (DAAM, Tang et al., ACL 2023).

DAAM's recipe: each layer's cross-attention for a word, averaged over heads,
is upsampled (bicubic) to the latent grid and summed over layers and time
steps; the sum is upsampled to the image and min-max normalised, and
thresholding it at 0.4 segments the word. Here the same sum is available for
any step or step range and any resolution, and self-attention for a chosen
pixel (as DiffSeg reads it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sdviz.sampling.errors import InputError
from sdviz.sampling.tokens import shown

DAAM_THRESHOLD = 0.4  # the paper's threshold for segmenting a word from its normalised map


def grid_key(grid: tuple[int, int]) -> str:
    return f"{grid[0]}x{grid[1]}"


def parse_grid(key: str) -> tuple[int, int]:
    h, w = key.split("x")
    return int(h), int(w)


def resize_maps(maps: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """(N, h, w) float -> (N, H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return torch.nn.functional.interpolate(maps[None].float(), size=size, mode=mode,
                                           align_corners=False)[0]


def normalise(heat: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1], as DAAM does before thresholding."""
    low, high = float(heat.min()), float(heat.max())
    return (heat - low) / (high - low + 1e-8)


@dataclass
class AttentionMaps:
    """Per-step attention of one run, on the CPU (float16).

    cross:  grid key ('16x16') -> (steps, tokens, h, w), summed over that grid's layers, heads averaged
    layers: layer name -> (steps, tokens, h, w), when captured per layer
    self_attn: grid key -> (steps, h*w, h*w), averaged over layers and heads, when captured
    tokens are the kept slots (start, words, end) as the tokenizer spells them.
    negative: the same maps (cross-attention only) for the negative prompt's words, where the run had one
    """

    tokens: list[str]
    kinds: list[str]
    steps: list[int]
    latent_hw: tuple[int, int]
    image_hw: tuple[int, int]
    cross: dict[str, np.ndarray]
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    self_attn: dict[str, np.ndarray] = field(default_factory=dict)
    layer_counts: dict[str, int] = field(default_factory=dict)
    negative: AttentionMaps | None = None  # the negative prompt's words, from the unconditional half

    @property
    def nbytes(self) -> int:
        arrays = [*self.cross.values(), *self.layers.values(), *self.self_attn.values()]
        return int(sum(a.nbytes for a in arrays)) + (self.negative.nbytes if self.negative is not None else 0)

    @property
    def resolutions(self) -> list[str]:
        """Grid keys of the captured cross-attention, finest first."""
        return sorted(self.cross, key=lambda k: -np.prod(parse_grid(k)))

    def word_slots(self) -> list[int]:
        """Indices (into tokens) of the prompt's words."""
        return [i for i, kind in enumerate(self.kinds) if kind == "word"]

    def _step_rows(self, steps) -> np.ndarray:
        if steps is None:
            return np.arange(len(self.steps))
        if isinstance(steps, int):
            steps = [steps]
        elif isinstance(steps, range | slice):
            steps = range(len(self.steps))[steps] if isinstance(steps, slice) else steps
        rows = [self.steps.index(s) for s in steps if s in self.steps]
        if not rows:
            raise InputError.said("error.steps_not_captured", steps=repr(steps), first=self.steps[0],
                                  last=self.steps[-1])
        return np.array(rows)

    def aggregate(self, steps=None, resolution: str | None = None) -> np.ndarray:
        """(tokens, h, w) float32 on the latent grid: DAAM's sum over layers and the chosen steps.

        steps: None (all), a step index, a list/range of them; resolution: a grid
        key such as '16x16', or None for all resolutions.
        """
        keys = self.resolutions if resolution in (None, "all") else [resolution]
        if any(k not in self.cross for k in keys):
            raise InputError.said("error.resolution_not_captured", resolution=repr(resolution),
                                  allowed=", ".join(self.resolutions))
        rows = self._step_rows(steps)
        total = torch.zeros(len(self.tokens), *self.latent_hw)
        for key in keys:
            summed = torch.from_numpy(self.cross[key][rows].astype(np.float32)).sum(0)  # (tokens, h, w)
            total += resize_maps(summed, self.latent_hw)
        return total.numpy()

    def per_step(self) -> np.ndarray:
        """(steps, tokens, h, w) float32: every step's all-resolution sum on the latent grid."""
        return np.stack([self.aggregate(steps=s) for s in self.steps])

    def heat_map(self, token: int, steps=None, resolution: str | None = None,
                 size: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) in [0, 1]: token `token`'s map, upsampled (bicubic) to the image and normalised."""
        if not 0 <= token < len(self.tokens):
            raise InputError.said("error.out_of_range", name="token", value=token, allowed=f"0..{len(self.tokens) - 1}")
        latent = torch.from_numpy(self.aggregate(steps, resolution)[token : token + 1])
        return normalise(resize_maps(latent, size or self.image_hw)[0].numpy())

    def word_heat_map(self, word: str, steps=None, resolution: str | None = None) -> np.ndarray:
        """A word's map; a word split into several tokens gets their mean (as DAAM merges them)."""
        matches = [i for i in self.word_slots() if shown(self.tokens[i]).lower() == word.lower()]
        if not matches:
            words = [shown(self.tokens[i]) for i in self.word_slots()]
            raise InputError.said("error.word_not_in_prompt", word=repr(word), allowed=", ".join(words))
        return normalise(np.mean([self.heat_map(i, steps, resolution) for i in matches], axis=0))

    def self_attention_probe(self, y: int, x: int, step: int | None = None,
                             resolution: str | None = None) -> np.ndarray:
        """(H, W) in [0, 1]: where image pixel (y, x) attends, at one step (default: the last)."""
        if not self.self_attn:
            raise InputError.said("error.self_attention_not_captured")
        key = resolution or sorted(self.self_attn, key=lambda k: -np.prod(parse_grid(k)))[0]
        if key not in self.self_attn:
            raise InputError.said("error.self_attention_grid", grid=repr(key), allowed=", ".join(self.self_attn))
        height, width = self.image_hw
        if not (0 <= y < height and 0 <= x < width):
            raise InputError.said("error.pixel_outside", y=y, x=x, last_y=height - 1, last_x=width - 1)
        h, w = parse_grid(key)
        row = self._step_rows(self.steps[-1] if step is None else step)[0]
        position = (y * h // height) * w + (x * w // width)
        attends = torch.from_numpy(self.self_attn[key][row, position].astype(np.float32)).reshape(1, h, w)
        return normalise(resize_maps(attends, self.image_hw, mode="bilinear")[0].numpy())

    # --- saving ---------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """attention.npz: `maps` (steps, tokens, h, w) and `tokens`, plus the raw captures."""
        arrays = {
            "maps": self.per_step(),
            "tokens": np.array(self.tokens),
            "kinds": np.array(self.kinds),
            "steps": np.array(self.steps, np.int64),
            "latent_hw": np.array(self.latent_hw, np.int64),
            "image_hw": np.array(self.image_hw, np.int64),
            "layer_count_keys": np.array(list(self.layer_counts), dtype=str),
            "layer_count_values": np.array(list(self.layer_counts.values()), np.int64),
        }
        buckets = [("cross", self.cross), ("layer", self.layers), ("self", self.self_attn)]
        if self.negative is not None:
            arrays["negative_tokens"] = np.array(self.negative.tokens)
            arrays["negative_kinds"] = np.array(self.negative.kinds)
            arrays["negative_maps"] = self.negative.per_step()
            buckets.append(("negative", self.negative.cross))
        for prefix, bucket in buckets:
            for key, value in bucket.items():
                arrays[f"{prefix}:{key}"] = value
        np.savez_compressed(path, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, steps: int | None = None, latent_hw: tuple[int, int] | None = None,
             image_hw: tuple[int, int] | None = None, tokens: int | None = None) -> AttentionMaps:
        """attention.npz as `save` wrote it, checked (`sdviz.sampling.saved.read_attention`): any fault is an
        InputError naming the member. A trajectory's gives its step count, grids and token slots to match."""
        from sdviz.sampling.saved import MAX_TOKENS, read_attention

        saved = read_attention(path, steps, latent_hw, image_hw, MAX_TOKENS if tokens is None else tokens)
        shared = {"steps": saved["steps"], "latent_hw": saved["latent_hw"], "image_hw": saved["image_hw"]}
        negative = None
        if saved["negative"] is not None:
            negative = cls(tokens=saved["negative"]["tokens"], kinds=saved["negative"]["kinds"],
                           cross=saved["negative"]["cross"], **shared)
        return cls(tokens=saved["tokens"], kinds=saved["kinds"], cross=saved["cross"], layers=saved["layers"],
                   self_attn=saved["self_attn"], layer_counts=saved["layer_counts"], negative=negative, **shared)
