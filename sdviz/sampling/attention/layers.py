"""Locating the UNet's attention layers, observing them per call, and the layer inventory.

Locating is separate from recording: `attention_layers` names the layers;
`trace` wraps each layer's processor once, at load, in a `TracedProcessor` that
calls the original unchanged and holds no state of any run. A run that wants to
see its attention passes an observer with its own UNet calls, through
`cross_attention_kwargs` (`observing(observer)`), so runs that overlap on one
shared model never see each other's. `layer_table` is such an observer: it runs
the UNet once and notes each call's shapes, in execution order.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

CLIP_CONTEXT = 77  # CLIP's context length: the default text length for a bare UNet with no tokenizer
SD_VAE_FACTOR = 8  # SD's VAE factor: the default for a bare UNet with no VAE at hand


@dataclass(frozen=True)
class Layer:
    """One attention layer of the denoiser (a UNet or an MMDiT transformer)."""

    name: str  # processor key without '.processor', e.g. 'down_blocks.0.attentions.0.transformer_blocks.0.attn2'
    kind: str  # 'self', 'cross', 'joint' (MMDiT: image and text streams, concatenated inside) or
    # 'single' (Flux's single-stream blocks: one sequence, the text tokens first)


def layer_kind(name: str, module) -> str:
    if getattr(module, "add_k_proj", None) is not None:
        return "joint"
    if "single_transformer_blocks" in name:
        return "single"
    return "cross" if getattr(module, "is_cross_attention", False) else "self"


def attention_layers(denoiser) -> list[Layer]:
    """Every attention layer, in registration order (not execution order: see layer_table)."""
    layers = []
    for key in denoiser.attn_processors:
        name = key.removesuffix(".processor")
        layers.append(Layer(name, layer_kind(name, denoiser.get_submodule(name))))
    return layers


OBSERVER = "sdviz_observer"  # the cross_attention_kwargs key that carries a call's observer
_tracing = threading.Lock()  # two first runs on a fresh model must not both wrap it


class TracedProcessor:
    """One layer's own processor, called unchanged, then the observer its call carries (if any).

    The observer is `observer(layer, attn, hidden_states, encoder_hidden_states, image_rotary_emb)`
    (the last None but for Flux); it arrives with each call, so this object never holds anything of a run.
    """

    POSITIONAL = ("encoder_hidden_states", "attention_mask", "image_rotary_emb")  # diffusers' processors' order

    def __init__(self, layer: Layer, original):
        self.layer, self.original = layer, original

    def __call__(self, attn, hidden_states, *args, sdviz_observer=None, **kwargs):
        output = self.original(attn, hidden_states, *args, **kwargs)
        if sdviz_observer is not None:
            call = {**dict(zip(self.POSITIONAL, args)), **kwargs}
            sdviz_observer(self.layer, attn, hidden_states, call.get("encoder_hidden_states"),
                           call.get("image_rotary_emb"))
        return output


def trace(unet) -> None:
    """Wraps every attention processor in a TracedProcessor, once; a no-op when all are wrapped.

    Done at load; checked again before each observed call, in case the processors
    were replaced since (e.g. by `set_default_attn_processor`).
    """
    with _tracing:
        processors = unet.attn_processors
        if all(isinstance(p, TracedProcessor) for p in processors.values()):
            return
        layers = {layer.name: layer for layer in attention_layers(unet)}
        unet.set_attn_processor({
            key: p if isinstance(p, TracedProcessor) else TracedProcessor(layers[key.removesuffix(".processor")], p)
            for key, p in processors.items()
        })


def observing(unet, observer) -> dict:
    """The `cross_attention_kwargs` of a UNet call whose attention layers report to `observer`."""
    trace(unet)
    return {OBSERVER: observer}


def grid_for(tokens: int, latent_h: int, latent_w: int) -> tuple[int, int]:
    """(h, w) of a layer whose sequence has `tokens` positions, from the latent's aspect ratio."""
    factor = math.sqrt(latent_h * latent_w / tokens)
    return round(latent_h / factor), round(latent_w / factor)


class _ShapeRecorder:
    """Observer that notes each attention call's shapes, in execution order."""

    def __init__(self, rows: list, latent_hw: tuple[int, int], text_tokens: int = 0):
        self.rows, self.latent_hw, self.text_tokens = rows, latent_hw, text_tokens

    def __call__(self, layer: Layer, attn, hidden_states, encoder_hidden_states, image_rotary_emb=None) -> None:
        batch, queries = hidden_states.shape[0], hidden_states.shape[1]
        context = encoder_hidden_states if encoder_hidden_states is not None else hidden_states
        keys = context.shape[1]
        heads = attn.heads
        head_dim = attn.to_q.out_features // heads
        value_dim = attn.to_v.out_features // heads
        image = queries
        if layer.kind == "joint":  # image and text tokens attend together: both are queries and keys
            queries = keys = image + encoder_hidden_states.shape[1]
        elif layer.kind == "single":  # one sequence, the text first
            image, keys = queries - self.text_tokens, queries
        h, w = grid_for(image, *self.latent_hw)
        self.rows.append({
            "name": layer.name,
            "kind": layer.kind,
            "resolution": h,
            "grid": [h, w],
            "query_shape": [batch * heads, queries, head_dim],
            "key_shape": [batch * heads, keys, head_dim],
            "value_shape": [batch * heads, keys, value_dim],
            "probs_shape": [batch * heads, queries, keys],
        })


@torch.no_grad()
def model_layer_table(model, height: int, width: int, *, guidance: bool = True) -> list[dict]:
    """`layer_table` of a loaded model of any family: its denoiser called once as a run calls it (through the
    family: SDXL's added conditioning, SD3's and Flux's transformers), on an empty prompt's encoding."""
    from sdviz.sampling import schedulers
    from sdviz.sampling.settings import Settings

    family, facts = model.family, model.facts
    settings = Settings(guidance=7.5 if guidance else 1.0, width=width, height=height).resolved(facts)
    scheduler = schedulers.create(settings.scheduler, model.scheduler_config)
    pipe = model.pipeline(scheduler)
    guided = family.guided(pipe, settings)
    generator = torch.Generator("cpu").manual_seed(0)
    with model.text_lock:
        cond = family.encode(pipe, settings, model.device, guided)
    latents, positions = family.prepare_latents(pipe, settings, facts.latent_channels, cond.embeddings.dtype,
                                                model.device, generator)
    cond.extra.update(positions)
    timestep = family.timesteps(scheduler, 1, model.device, facts.image_tokens(height, width))[0]
    model_input = family.scale_input(scheduler, torch.cat([latents] * 2) if guided else latents, timestep)
    rows: list[dict] = []
    latent_hw = tuple(facts.latent_shape(height, width)[1:])
    observer = _ShapeRecorder(rows, latent_hw, facts.tokens)
    family.denoise(model.denoiser, model_input, timestep, cond, observing(model.denoiser, observer))
    return _numbered(rows)


def _numbered(rows: list[dict]) -> list[dict]:
    counters: dict[str, int] = {}
    for order, row in enumerate(rows, start=1):
        counters[row["kind"]] = counters.get(row["kind"], 0) + 1
        row["index"], row["order"] = counters[row["kind"]], order
    keys = ("index", "order", "name", "kind", "resolution", "grid",
            "query_shape", "key_shape", "value_shape", "probs_shape")
    return [{k: row[k] for k in keys} for row in rows]


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
    unet(sample.to(param.device, param.dtype), torch.tensor(999, device=param.device),
         encoder_hidden_states=context.to(param.device, param.dtype),
         cross_attention_kwargs=observing(unet, _ShapeRecorder(rows, (latent_h, latent_w))))
    return _numbered(rows)
