"""LoRA adapters on a loaded model: LCM-LoRA, TCD-LoRA, Hyper-SD's and any other in diffusers' LoRA format.

A LoRA is loaded by diffusers' own `load_lora_weights` (safetensors only), at its scale, and fused into
copies of the modules it changes (the denoiser, the text encoders): the result is a model of its own that
shares the rest (the VAE, the tokenizers) with the base. The base model, which other users' runs share, is
never touched, and no adapter state lives on a shared object.

    lora = Lora.parse("latent-consistency/lcm-lora-sdv1-5:1.0")    # PATH_OR_ID[:scale]
    fast = adapted(model, (lora,))                                # "sd15 + lcm-lora-sdv1-5"
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from pathlib import Path

from sdviz import messages
from sdviz.sampling.errors import InputError, shortened
from sdviz.sampling.models import _HUB_ID, PICKLE_SUFFIXES, Model, from_pipeline

MAX_LORA_SCALE = 4.0
_SCALE = re.compile(r"^(.*):(-?\d+(?:\.\d*)?|-?\.\d+)$")


@dataclass(frozen=True)
class Lora:
    """One adapter: a .safetensors file, a folder holding one (diffusers' `pytorch_lora_weights.safetensors`),
    or a hub id; and the scale its change is added at."""

    source: str
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Lora:
        """PATH_OR_ID[:scale] (scale default 1), checked: safetensors only, a scale within [-4, 4]."""
        if not isinstance(text, str) or not text.strip():
            raise InputError.said("error.lora_empty", value=shortened(text))
        text = text.strip()
        match = _SCALE.match(text)
        source, scale = (match.group(1), float(match.group(2))) if match else (text, 1.0)
        if not -MAX_LORA_SCALE <= scale <= MAX_LORA_SCALE:
            raise InputError.said("error.out_of_range", name="lora scale", value=f"{scale:g}",
                                  allowed=f"[-{MAX_LORA_SCALE:g}, {MAX_LORA_SCALE:g}]")
        lora = cls(source, scale)
        lora.where()  # refused here, before any model work, when it cannot be a safetensors LoRA
        return lora

    @property
    def name(self) -> str:
        """What menus and runs call it: a file's stem, a folder's name or the hub id; its scale when not 1."""
        path = Path(self.source).expanduser()
        stem = path.stem if path.is_file() else path.name if path.exists() else self.source
        return stem if self.scale == 1 else f"{stem}:{self.scale:g}"

    def where(self) -> tuple[str, dict]:
        """(what `load_lora_weights` is given, its keyword arguments)."""
        path = Path(self.source).expanduser()
        if path.is_file():
            if path.suffix != ".safetensors":
                kind = (messages.text("error.kind_pickle_file") if path.suffix in PICKLE_SUFFIXES
                        else messages.text("error.kind_suffix_file", suffix=path.suffix) if path.suffix
                        else messages.text("error.kind_plain_file"))
                raise InputError.said("error.lora_not_safetensors", source=repr(self.source), kind=kind)
            return str(path.parent), {"weight_name": path.name, "local_files_only": True}
        if path.is_dir():
            if not any(path.glob("*.safetensors")):
                raise InputError.said("error.lora_no_safetensors", source=repr(self.source))
            return str(path), {"local_files_only": True}
        if _HUB_ID.match(self.source) and not self.source.startswith((".", "/", "~")):
            return self.source, {}
        raise InputError.said("error.lora_missing", source=repr(self.source))


def adapted_name(base: str, loras: tuple[Lora, ...]) -> str:
    """The adapted model's name: 'sdviz-objects + lcm-lora'."""
    return " + ".join([base, *(lora.name for lora in loras)])


def adapted(model: Model, loras: tuple[Lora, ...], in_place: bool = False) -> Model:
    """A model of its own: `model` with the LoRAs fused at their scales into copies of the modules they change.

    The copies are made before loading (the denoiser and each text encoder), so `model`, shared by other runs,
    keeps its weights and holds no adapter; the adapted model shares the VAE and the tokenizers with it.
    `in_place` fuses into `model`'s own modules instead (a model loaded for one command, shared with nobody).
    """
    if not loras:
        return model
    pipe, family = model.pipe, model.family
    copied = {} if in_place else {name: copy.deepcopy(getattr(pipe, name))
                                  for name in (family.denoiser, *family.text_encoders)
                                  if getattr(pipe, name, None) is not None}
    own = family.pipeline(type(pipe), {**pipe.components, **copied})
    names = [f"sdviz_lora_{index}" for index in range(len(loras))]
    for name, lora in zip(names, loras):
        where, kwargs = lora.where()
        try:
            own.load_lora_weights(where, adapter_name=name, use_safetensors=True, **kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise InputError.said("error.lora_load", source=repr(lora.source),
                                  reason=str(error).splitlines()[0][:300]) from error
    own.set_adapters(names, adapter_weights=[lora.scale for lora in loras])
    own.fuse_lora(adapter_names=names, lora_scale=1.0)
    own.unload_lora_weights()  # the fused weights stay; no adapter is left on the modules
    result = from_pipeline(own, adapted_name(model.name, loras))
    # the tokenizers are the base's: its lock keeps their calls one at a time across both models' runs
    return replace(result, source=model.source, examples=model.examples, loras=tuple(loras),
                   text_lock=model.text_lock)
