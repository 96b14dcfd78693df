"""Loading a Stable Diffusion model and reading its facts (the real tensor shapes).

A model is a diffusers pipeline folder or a hub id. The default is the embedded
model shipped in `assets/sdviz-shapes` (override with `SDVIZ_MODEL`). Weights
load from safetensors only. The loaded `Model` is shared and read-only: a run
never stores anything on it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EMBEDDED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "sdviz-shapes"
MODEL_COMPONENTS = ("unet", "vae", "text_encoder")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_model() -> str:
    """The model used when none is named: $SDVIZ_MODEL, else the embedded one."""
    return os.environ.get("SDVIZ_MODEL") or str(EMBEDDED_MODEL)


def display_name(source: str) -> str:
    """What runs, menus and messages call a model: a local folder's name (never its path), a hub id as is."""
    path = Path(source).expanduser()
    return path.name if path.exists() else source


def pick_device(requested: str | None = None):
    """CUDA, then MPS, then CPU, unless `requested` names one."""
    import torch

    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class ModelFacts:
    """What a model is, read from its own components: the shapes a run will have."""

    name: str
    tokens: int  # the tokenizer's window (77 for SD)
    text_width: int  # width of each token embedding (768 for SD 1.x)
    latent_channels: int  # UNet input channels (4)
    vae_factor: int  # pixels per latent pixel (8 for SD)
    native_height: int  # pixels, as diffusers defaults them: sample_size * vae_factor
    native_width: int
    scaling_factor: float  # latents * scaling_factor is what the UNet sees
    prediction_type: str  # epsilon, v_prediction or sample
    parameters: dict[str, int]  # per component

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latents for an image of height x width pixels."""
        return (self.latent_channels, height // self.vae_factor, width // self.vae_factor)

    def image_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (3, height, width)

    def token_shape(self) -> tuple[int, int]:
        return (self.tokens, self.text_width)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Model:
    """A loaded pipeline's components on one device, plus their facts."""

    source: str
    pipe: Any  # diffusers StableDiffusionPipeline: components only, its scheduler is never stepped
    device: Any
    dtype: Any
    facts: ModelFacts
    latent_rgb: Any  # (C + 1, 3) linear map latent -> RGB in [-1, 1], last row the bias
    # A fast (Rust) tokenizer keeps its padding/truncation mode on itself between calls, so
    # overlapping runs tokenize one at a time, or one run's prompt is cut by another's mode.
    text_lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def name(self) -> str:
        """What runs and pages call the model: a local folder's name (never its path) or the hub id."""
        return self.facts.name

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def tokenizer(self):
        return self.pipe.tokenizer

    @property
    def text_encoder(self):
        return self.pipe.text_encoder

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.pipe.scheduler.config)

    def components(self, scheduler) -> dict[str, Any]:
        """Keyword arguments for a diffusers SD pipeline sharing these weights with `scheduler`."""
        return dict(
            vae=self.pipe.vae,
            text_encoder=self.pipe.text_encoder,
            tokenizer=self.pipe.tokenizer,
            unet=self.pipe.unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


def check_source(source: str) -> str:
    """Refuses what cannot be a safetensors diffusers pipeline; returns 'local' or 'hub'."""
    path = Path(source).expanduser()
    if path.is_file():
        kind = "pickle" if path.suffix in PICKLE_SUFFIXES else "single-file"
        raise ValueError(
            f"model {source!r} is a {kind} checkpoint file; sdviz loads diffusers pipeline "
            "folders (model_index.json + safetensors) or hub ids"
        )
    if path.exists():
        index = path / "model_index.json"
        if not index.is_file():
            raise ValueError(f"model path {source!r} is not a diffusers pipeline: no model_index.json")
        pipeline_class = json.loads(index.read_text()).get("_class_name", "")
        if pipeline_class not in SUPPORTED_PIPELINES:
            raise ValueError(
                f"model {source!r} is a {pipeline_class}; supported: {', '.join(SUPPORTED_PIPELINES)}"
            )
        for component in MODEL_COMPONENTS:
            folder = path / component
            if not any(folder.glob("*.safetensors")):
                pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
                found = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights"
                raise ValueError(
                    f"model {source!r}: {component}/ has {found}; sdviz loads safetensors only"
                )
        return "local"
    if _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        return "hub"
    raise ValueError(f"model path {source!r} does not exist and is not a hub id (owner/name)")


def load_model(source: str | None = None, device: str | None = None, dtype: str | None = None) -> Model:
    """Loads a Stable Diffusion 1.x/2.x pipeline (folder or hub id) from safetensors.

    fp16 on GPUs, fp32 on the CPU; a VAE whose config asks for upcasting
    (`force_upcast`) stays in fp32 so fp16 runs never decode to NaN/black.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    source = str(source or default_model())
    kind = check_source(source)
    target = pick_device(device)
    if dtype is None:
        torch_dtype = torch.float16 if target.type in ("cuda", "mps") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            source,
            dtype=torch_dtype,
            use_safetensors=True,
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=kind == "local",
        )
    except (OSError, ValueError, EnvironmentError) as error:
        raise ValueError(f"could not load model {source!r}: {str(error).splitlines()[0]}") from error
    pipe.to(target)
    if torch_dtype != torch.float32 and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)
    return from_pipeline(pipe, source)


def from_pipeline(pipe, source: str = "in-memory pipeline") -> Model:
    """Wraps an already loaded diffusers StableDiffusionPipeline (a notebook's `pipe`) for sdviz.

    Its weights are shared, not copied; runs never step its own scheduler.
    """
    from sdviz.attention.layers import trace
    from sdviz.previews import fit_latent_rgb

    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.eval().requires_grad_(False)
    trace(pipe.unet)  # observable per call, with no state of any run on it
    facts = read_facts(source, pipe)
    return Model(
        source=source,
        pipe=pipe,
        device=pipe.unet.device,
        dtype=pipe.unet.dtype,
        facts=facts,
        latent_rgb=fit_latent_rgb(pipe.vae, facts),
    )


def read_facts(name: str, pipe) -> ModelFacts:
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    sample_size = pipe.unet.config.sample_size
    height, width = (sample_size, sample_size) if isinstance(sample_size, int) else sample_size

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    return ModelFacts(
        name=display_name(name),
        tokens=pipe.tokenizer.model_max_length,
        text_width=pipe.text_encoder.config.hidden_size,
        latent_channels=pipe.unet.config.in_channels,
        vae_factor=vae_factor,
        native_height=height * vae_factor,
        native_width=width * vae_factor,
        scaling_factor=float(pipe.vae.config.scaling_factor),
        prediction_type=pipe.scheduler.config.get("prediction_type", "epsilon"),
        parameters={
            "text_encoder": count(pipe.text_encoder),
            "unet": count(pipe.unet),
            "vae": count(pipe.vae),
        },
    )


class ModelCache:
    """Loaded models by source, shared read-only between requests; loads each once.

    At most `most` models stay loaded: loading one more evicts the least recently
    used, except the pinned default. A run that still holds an evicted model keeps
    it alive until it ends; the memory is freed then.
    """

    def __init__(self, device: str | None = None, most: int = 2, pinned: str | None = None, load=None):
        """load(source, device=...) loads one model (default `load_model`; the app loads on its model threads)."""
        from collections import OrderedDict

        self.device, self.most, self.pinned = device, max(1, most), pinned
        self._load = load or load_model
        self._models: OrderedDict[str, Model] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, source: str | None = None) -> Model:
        """The loaded model; a model being loaded for one request does not hold up the others."""
        source = str(source or default_model())
        with self._lock:
            if source in self._models:
                self._models.move_to_end(source)
                return self._models[source]
            loading = self._loading.setdefault(source, threading.Lock())
        with loading:  # one load per source, however many ask at once
            with self._lock:
                if source in self._models:
                    return self._models[source]
            try:
                model = self._load(source, device=self.device)
            except BaseException:
                with self._lock:
                    self._loading.pop(source, None)
                raise
            with self._lock:
                self._loading.pop(source, None)
                evictable = [s for s in self._models if s != self.pinned]
                while len(self._models) >= self.most and evictable:
                    del self._models[evictable.pop(0)]
                self._models[source] = model
            return model

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)
