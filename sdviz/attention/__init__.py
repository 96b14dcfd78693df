"""Attention in the UNet: per-step cross-attention heat maps (DAAM), self-attention, and the layer inventory."""

from sdviz.attention.capture import AttentionCapture, attention_probs
from sdviz.attention.layers import attention_layers, layer_table, model_layer_table
from sdviz.attention.maps import DAAM_THRESHOLD, AttentionMaps, colourise, overlay, write_overlays

__all__ = [
    "DAAM_THRESHOLD", "AttentionCapture", "AttentionMaps", "attention_layers", "attention_probs",
    "colourise", "layer_table", "model_layer_table", "overlay", "write_overlays",
]
