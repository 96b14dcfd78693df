"""Recording the UNet's attention at every step of a run (DAAM, Tang et al., ACL 2023).

`AttentionCapture` is handed to a `Run`, one per run. It installs nothing: the
run passes its `record` as the observer of its own UNet calls (through
`cross_attention_kwargs`, see `layers.observing`), so runs that overlap on one
shared model, or a layer table taken meanwhile, never see each other's. Each
layer's processor runs unchanged first, so the UNet's output is bit-for-bit what
it is without capture; then, for the conditional half of the guidance batch (the
last sample: an edit's batch ends with its edit prompt's), `record` recomputes
softmax(QK^T / sqrt(d)) and keeps its mean over heads:

    cross-attention  (query positions, prompt tokens): summed over the layers of
                     each resolution, as DAAM sums them; the padding slots are
                     left out, so memory grows with the prompt, not the window
    self-attention   (query positions, key positions), on request, for
                     resolutions of at most `self_max_positions` positions
    joint attention  SD3's and Flux's MMDiT blocks attend over image and text
                     tokens at once: the block of image queries x text keys of
                     that softmax is their cross-attention, kept as above (Flux's
                     single-stream blocks too, whose sequence starts with the text)

With a negative prompt, the unconditional half of the batch (the sample just before
the conditional ones) attends to the negative prompt's words: their cross-attention is
kept the same way, from that half, as the maps' `negative`.

At the end of each step the sums move to the CPU as float16.
"""

from __future__ import annotations

import numpy as np
import torch

from sdviz.sampling.attention.layers import Layer, grid_for, observing
from sdviz.sampling.attention.maps import AttentionMaps, grid_key


def attention_probs(attn, hidden_states: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """softmax(QK^T / sqrt(d)) of one sample, as diffusers computes it: (heads, queries, keys)."""
    if hidden_states.ndim == 4:  # (B, C, H, W) -> (B, HW, C)
        hidden_states = hidden_states.flatten(2).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if context is None:
        context = hidden_states
    elif attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    query = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (heads, queries, head_dim)
    key = attn.head_to_batch_dim(attn.to_k(context))  # (heads, keys, head_dim)
    if getattr(attn, "norm_q", None) is not None:
        query = attn.norm_q(query)
    if getattr(attn, "norm_k", None) is not None:
        key = attn.norm_k(key)
    return attn.get_attention_scores(query, key, None)


def joint_probs(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None, image_rotary_emb,
                text_tokens: int, keep: int, image_keys: bool = False):
    """An MMDiT layer's attention from each image query to the first `keep` text keys, averaged over heads:
    (image queries, keep), for one sample, as diffusers' SD3 and Flux processors compute the softmax (over
    image and text keys together, with Flux's rotary embedding); with `image_keys`, also its attention to the
    image keys, (image queries, image queries), else None. `text_tokens`: the text's length in a single-stream
    sequence (Flux's single blocks), whose text comes first."""
    if type(attn).__name__ == "FluxAttention":
        from diffusers.models.embeddings import apply_rotary_emb
        from diffusers.models.transformers.transformer_flux import _get_qkv_projections

        query, key, _, text_query, text_key, _ = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))  # (1, S, heads, head_dim)
        key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
        if encoder_hidden_states is not None:  # double-stream: the text's own projections, put first
            text_tokens = encoder_hidden_states.shape[1]
            query = torch.cat([attn.norm_added_q(text_query.unflatten(-1, (-1, attn.head_dim))), query], dim=1)
            key = torch.cat([attn.norm_added_k(text_key.unflatten(-1, (-1, attn.head_dim))), key], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        image_queries, text_keys, image_part = query[0, text_tokens:], slice(0, keep), slice(text_tokens, None)
    else:  # SD3's joint attention: image tokens first, then the text's
        heads = attn.heads
        query = attn.to_q(hidden_states).unflatten(-1, (heads, -1))  # (1, S, heads, head_dim)
        key = attn.to_k(hidden_states).unflatten(-1, (heads, -1))
        if attn.norm_q is not None:
            query, key = attn.norm_q(query), attn.norm_k(key)
        text_key = attn.add_k_proj(encoder_hidden_states).unflatten(-1, (heads, -1))
        if attn.norm_added_k is not None:
            text_key = attn.norm_added_k(text_key)
        image = query.shape[1]
        key = torch.cat([key, text_key], dim=1)
        image_queries, text_keys, image_part = query[0], slice(image, image + keep), slice(0, image)
    key = key[0]
    scale = query.shape[-1] ** -0.5
    heads = image_queries.shape[1]
    text_total = image_total = 0
    for head in range(heads):  # one head at a time: a whole (heads, queries, keys) can be GBs
        scores = (image_queries[:, head].float() @ key[:, head].float().T) * scale  # (image queries, all keys)
        probs = scores.softmax(-1)
        text_total = text_total + probs[:, text_keys]
        if image_keys:
            image_total = image_total + probs[:, image_part]
    return text_total / heads, (image_total / heads if image_keys else None)


class AttentionCapture:
    """Per-step attention maps of one run. Create one per run; pass it to `Run(capture=...)`.

    per_layer       also keep each cross-attention layer's own map
    self_attention  also keep self-attention, per resolution, where a layer
                    has at most self_max_positions query positions
    """

    def __init__(self, model=None, *, per_layer: bool = False, self_attention: bool = False,
                 self_max_positions: int = 1024):
        self.per_layer = per_layer
        self.self_attention = self_attention
        self.self_max_positions = self_max_positions
        self._begun = False
        self._keep = 0  # token slots kept: start, words, end
        self._latent_hw = (0, 0)
        self._step: dict[str, dict[str, torch.Tensor]] = {}
        self._counts: dict[str, int] = {}
        self._steps: list[int] = []
        self._stored: dict[str, dict[str, list[np.ndarray]]] = {"cross": {}, "layer": {}, "self": {}, "negative": {}}
        self._negative = None  # the negative prompt's kept slots, when the run has one and is guided

    def begin(self, unet, trajectory, negative_tokens: dict | None = None) -> dict:
        """Readies this capture for one run; returns the `cross_attention_kwargs` of its UNet calls.
        negative_tokens: the negative prompt's `TokenView.to_dict()`, when the run is guided with one.

        A capture records one run: beginning it twice raises, since a second run's
        steps would be appended to the first's.
        """
        if self._begun:
            raise RuntimeError("this AttentionCapture has already recorded a run; create one per run")
        self._begun = True
        slots = trajectory.tokens["slots"]
        self._keep = sum(1 for s in slots if s["kind"] != "padding")
        self._tokens = [s["token"] for s in slots[: self._keep]]
        self._kinds = [s["kind"] for s in slots[: self._keep]]
        self._latent_hw = tuple(trajectory.shapes["latents"][1:])
        self._text_tokens = trajectory.facts.tokens
        self._image_hw = tuple(trajectory.shapes["image"][1:])
        if negative_tokens is not None:
            kept = [slot for slot in negative_tokens["slots"] if slot["kind"] != "padding"]
            self._negative = ([slot["token"] for slot in kept], [slot["kind"] for slot in kept])
        return observing(unet, self.record)

    def record(self, layer: Layer, attn, hidden_states, encoder_hidden_states, image_rotary_emb=None) -> None:
        """The observer of one attention call: adds its head-averaged map to this step's sums."""
        if layer.kind == "self" and not self.self_attention:
            return
        if layer.kind in ("joint", "single"):
            self._record_joint(layer, attn, hidden_states, encoder_hidden_states, image_rotary_emb)
            return
        sample = hidden_states[-1:]  # the conditional half of the guidance batch (or the only sample)
        queries = sample.shape[1] if sample.ndim == 3 else sample.shape[2] * sample.shape[3]
        grid = grid_for(queries, *self._latent_hw)
        if layer.kind == "cross":
            probs = attention_probs(attn, sample, encoder_hidden_states[-1:])  # (heads, HW, tokens)
            token_map = probs[:, :, : self._keep].float().mean(0).T.reshape(self._keep, *grid)  # (T, h, w)
            self._add("cross", grid_key(grid), token_map)
            if self.per_layer:
                self._step.setdefault("layer", {})[layer.name] = token_map
            if self._negative is not None:  # the unconditional half: its last sample, just before the conditional
                half = hidden_states.shape[0] // 2 - 1
                keep = len(self._negative[0])
                probs = attention_probs(attn, hidden_states[half : half + 1], encoder_hidden_states[half : half + 1])
                self._add("negative", grid_key(grid), probs[:, :, :keep].float().mean(0).T.reshape(keep, *grid))
        elif queries <= self.self_max_positions:
            probs = attention_probs(attn, sample, None)  # (heads, HW, HW)
            self._add("self", grid_key(grid), probs.float().mean(0))

    def _record_joint(self, layer: Layer, attn, hidden_states, encoder_hidden_states, image_rotary_emb) -> None:
        """An MMDiT layer: its image-query x text-key block, kept as a cross-attention map (and, on request, its
        image-query x image-key block as self-attention: shares of the joint softmax, so rows sum below 1)."""
        def sample(index: int):
            text = None if encoder_hidden_states is None else encoder_hidden_states[index : index + 1]
            return hidden_states[index : index + 1], text

        samples = [("cross", hidden_states.shape[0] - 1, self._keep)]  # the conditional half, the last sample
        if self._negative is not None:
            samples.append(("negative", hidden_states.shape[0] // 2 - 1, len(self._negative[0])))
        for kind, index, keep in samples:
            image = hidden_states.shape[1] - (self._text_tokens if encoder_hidden_states is None else 0)
            with_image = kind == "cross" and self.self_attention and image <= self.self_max_positions
            probs, image_probs = joint_probs(attn, *sample(index), image_rotary_emb, self._text_tokens, keep,
                                             with_image)  # (HW, keep), (HW, HW)
            grid = grid_for(probs.shape[0], *self._latent_hw)
            if image_probs is not None:  # the image-image block: what the self-attention probe reads
                self._add("self", grid_key(grid), image_probs)
            token_map = probs.T.reshape(keep, *grid)  # (T, h, w)
            self._add(kind, grid_key(grid), token_map)
            if self.per_layer and kind == "cross":
                self._step.setdefault("layer", {})[layer.name] = token_map

    def _add(self, kind: str, key: str, value: torch.Tensor) -> None:
        bucket = self._step.setdefault(kind, {})
        bucket[key] = bucket[key] + value if key in bucket else value
        self._counts[f"{kind}:{key}"] = self._counts.get(f"{kind}:{key}", 0) + 1

    def finish_step(self, index: int) -> None:
        """Moves this step's sums to the CPU (float16); the self-attention sums become means."""
        layers_per_step = {k: v for k, v in self._counts.items()}
        for kind, bucket in self._step.items():
            for key, value in bucket.items():
                if kind == "self":
                    value = value / layers_per_step[f"self:{key}"]
                self._stored[kind].setdefault(key, []).append(value.to(torch.float16).cpu().numpy())
        if not self._steps:
            self._layer_counts = {k.split(":", 1)[1]: v for k, v in layers_per_step.items() if k.startswith("cross:")}
        self._steps.append(index)
        self._step, self._counts = {}, {}

    def maps(self, trajectory=None) -> AttentionMaps:
        """Everything recorded so far, stacked over steps."""
        stack = {kind: {key: np.stack(values) for key, values in bucket.items()}
                 for kind, bucket in self._stored.items()}
        negative = None
        if self._negative is not None:
            negative = AttentionMaps(tokens=list(self._negative[0]), kinds=list(self._negative[1]),
                                     steps=list(self._steps), latent_hw=tuple(self._latent_hw),
                                     image_hw=tuple(self._image_hw), cross=stack["negative"],
                                     layer_counts=dict(getattr(self, "_layer_counts", {})))
        return AttentionMaps(
            tokens=list(self._tokens),
            kinds=list(self._kinds),
            steps=list(self._steps),
            latent_hw=tuple(self._latent_hw),
            image_hw=tuple(self._image_hw),
            cross=stack["cross"],
            layers=stack["layer"],
            self_attn=stack["self"],
            layer_counts=dict(getattr(self, "_layer_counts", {})),
            negative=negative,
        )
