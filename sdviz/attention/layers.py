"""Locating the UNet's attention layers, and the layer inventory with real tensor shapes.

Locating is separate from recording: `attention_layers` names the layers,
`layer_table` runs the UNet once with processors that note each call's shapes,
in execution order, then restores the originals.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

CLIP_CONTEXT = 77  # CLIP's context length: the default text length for a bare UNet with no tokenizer
SD_VAE_FACTOR = 8  # SD's VAE factor: the default for a bare UNet with no VAE at hand


@dataclass(frozen=True)
class Layer:
    """One attention layer of the UNet."""

    name: str  # processor key without '.processor', e.g. 'down_blocks.0.attentions.0.transformer_blocks.0.attn2'
    kind: str  # 'self' or 'cross'


def attention_layers(unet) -> list[Layer]:
    """Every attention layer, in registration order (not execution order: see layer_table)."""
    layers = []
    for key in unet.attn_processors:
        name = key.removesuffix(".processor")
        module = unet.get_submodule(name)
        layers.append(Layer(name, "cross" if module.is_cross_attention else "self"))
    return layers


@contextlib.contextmanager
def wrapped_processors(unet, make_wrapper):
    """Installs make_wrapper(layer, original) on every attention layer; always restores the originals."""
    originals = dict(unet.attn_processors)
    layers = {layer.name: layer for layer in attention_layers(unet)}
    wrapped = {key: make_wrapper(layers[key.removesuffix(".processor")], processor)
               for key, processor in originals.items()}
    unet.set_attn_processor(wrapped)
    try:
        yield
    finally:
        unet.set_attn_processor(originals)


def grid_for(tokens: int, latent_h: int, latent_w: int) -> tuple[int, int]:
    """(h, w) of a layer whose sequence has `tokens` positions, from the latent's aspect ratio."""
    factor = math.sqrt(latent_h * latent_w / tokens)
    return round(latent_h / factor), round(latent_w / factor)


class _ShapeRecorder:
    def __init__(self, layer: Layer, original, rows: list, latent_hw: tuple[int, int]):
        self.layer, self.original, self.rows, self.latent_hw = layer, original, rows, latent_hw

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        batch, queries = hidden_states.shape[0], hidden_states.shape[1]
        context = encoder_hidden_states if encoder_hidden_states is not None else hidden_states
        keys = context.shape[1]
        heads = attn.heads
        head_dim = attn.to_q.out_features // heads
        value_dim = attn.to_v.out_features // heads
        h, w = grid_for(queries, *self.latent_hw)
        self.rows.append({
            "name": self.layer.name,
            "kind": self.layer.kind,
            "resolution": h,
            "grid": [h, w],
            "query_shape": [batch * heads, queries, head_dim],
            "key_shape": [batch * heads, keys, head_dim],
            "value_shape": [batch * heads, keys, value_dim],
            "probs_shape": [batch * heads, queries, keys],
        })
        return self.original(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


@torch.no_grad()
def layer_table(unet, height: int, width: int, *, guidance: bool = True,
                vae_factor: int = SD_VAE_FACTOR, text_tokens: int = CLIP_CONTEXT) -> list[dict]:
    """Runs the UNet once at height x width pixels and lists its attention layers in execution order.

    Each row: index (from 1, counted separately for self and cross layers, as
    DiffSeg's table counts them), order (from 1, over all layers), name, kind,
    resolution (latent height at that layer), grid [h, w], and the query, key,
    value and attention-probability shapes with the guidance batch and the
    heads folded into the first dimension.
    """
    latent_h, latent_w = height // vae_factor, width // vae_factor
    param = next(unet.parameters())
    batch = 2 if guidance else 1
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(batch, unet.config.in_channels, latent_h, latent_w, generator=generator)
    context = torch.randn(batch, text_tokens, unet.config.cross_attention_dim, generator=generator)
    rows: list[dict] = []
    with wrapped_processors(unet, lambda layer, original: _ShapeRecorder(layer, original, rows, (latent_h, latent_w))):
        unet(sample.to(param.device, param.dtype), torch.tensor(999, device=param.device),
             encoder_hidden_states=context.to(param.device, param.dtype))
    counters = {"self": 0, "cross": 0}
    for order, row in enumerate(rows, start=1):
        counters[row["kind"]] += 1
        row["index"], row["order"] = counters[row["kind"]], order
    keys = ("index", "order", "name", "kind", "resolution", "grid",
            "query_shape", "key_shape", "value_shape", "probs_shape")
    return [{k: row[k] for k in keys} for row in rows]
