"""Attention in the UNet: per-step cross-attention heat maps (DAAM), self-attention, and the layer inventory."""

from sdviz.sampling.attention.capture import AttentionCapture, attention_probs
from sdviz.sampling.attention.layers import attention_layers, layer_table, model_layer_table
from sdviz.sampling.attention.maps import DAAM_THRESHOLD, AttentionMaps

__all__ = [
    "DAAM_THRESHOLD", "AttentionCapture", "AttentionMaps", "attention_layers", "attention_probs",
    "layer_table", "model_layer_table",
]
