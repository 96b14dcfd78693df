"""Loading a diffusion model and reading its facts (the real tensor shapes).

A model is a diffusers pipeline folder or a hub id, of any family in
`sdviz.sampling.families` (SD 1.x/2.x, SDXL, SD3, Flux), named by its `model_index.json`.
The default is the embedded object model shipped in `assets/sdviz-objects`
(override with `SDVIZ_MODEL`); the embedded shapes model, `assets/sdviz-shapes`,
is offered beside it. Weights load from safetensors only. The loaded `Model` is
shared and read-only: a run never stores anything on it.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sdviz.sampling.errors import InputError
from sdviz.sampling.families import BY_PIPELINE, FAMILIES, Family, family_of

ASSETS = Path(__file__).resolve().parents[2] / "assets"  # the checkout's (an editable install reads it there)
EMBEDDED_MODEL = ASSETS / "sdviz-objects"  # the default: emoji objects where the words say, one or two at a time
SHAPES_MODEL = ASSETS / "sdviz-shapes"  # one shape in a colour on a flat background: the mechanics, barest
EMBEDDED_MODELS = (EMBEDDED_MODEL, SHAPES_MODEL)  # shipped in the repo: offered in every app
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
SUPPORTED_PIPELINES = tuple(BY_PIPELINE)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GENERAL_EXAMPLES = (  # for a model whose card names none
    "a photograph of an astronaut riding a horse",
    "a watercolour painting of a lighthouse at dawn",
    "a red apple on the left and a green pear on the right, studio photo",
)


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
    tokens: int  # the window of the tokenizer whose tokens the attention reads (77 for CLIP, 512 for Flux's T5)
    text_width: int  # width of each token embedding the denoiser reads (768 for SD 1.x, 2048 for SDXL)
    latent_channels: int  # the VAE's latent channels (4; 16 for SD3 and Flux)
    vae_factor: int  # pixels per latent pixel (8 for SD)
    native_height: int  # pixels, as diffusers defaults them: sample_size * vae_factor
    native_width: int
    scaling_factor: float  # (latents - shift_factor) * scaling_factor is what the denoiser sees
    prediction_type: str  # epsilon, v_prediction, sample, or flow (the velocity eps - x0)
    parameters: dict[str, int]  # per component
    family: str = "sd"  # a key of sdviz.sampling.families.FAMILIES
    denoiser: str = "unet"  # unet or transformer
    shift_factor: float = 0.0
    size_multiple: int = 0  # image sides are multiples of this (0: the VAE factor)
    scheduler: str = ""  # the model's own scheduler (its config's class), as a registered name
    denoiser_class: str = "UNet2DConditionModel"
    encoders: tuple = ()  # per text encoder: {name, class, tokens, width}, in the order the pipeline runs them
    context_tokens: int = 0  # length of the text sequence the denoiser reads (0: `tokens`); SD3: CLIP's + T5's
    pooled_width: int = 0  # width of the pooled text embedding the denoiser also takes (SDXL, SD3, Flux)
    added: str = ""  # what else each denoiser call takes, in words (SDXL's size and crop ids, Flux's guidance)
    guidance_embedded: bool = False  # the denoiser takes the guidance scale as an input (LCM, Flux-dev): one pass

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latents for an image of height x width pixels."""
        return (self.latent_channels, height // self.vae_factor, width // self.vae_factor)

    def image_tokens(self, height: int, width: int) -> int:
        """Image positions the denoiser's attention sees (SD3's patches, Flux's packed latents): for a UNet,
        its latent pixels."""
        multiple = self.size_multiple or self.vae_factor
        return (height // multiple) * (width // multiple)

    def image_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (3, height, width)

    def token_shape(self) -> tuple[int, int]:
        """(tokens, width) of the text sequence the denoiser reads."""
        return (self.context_tokens or self.tokens, self.text_width)

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON keeps them (lists, not tuples)."""
        return {**asdict(self), "encoders": [dict(encoder) for encoder in self.encoders]}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> ModelFacts:
        """The facts of a saved run (`to_dict`); a field an older file lacks takes its default."""
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in saved.items() if k in names},
                      "encoders": tuple(dict(e) for e in saved.get("encoders", ()))})


@dataclass
class Model:
    """A loaded pipeline's components on one device, plus their facts."""

    source: str
    pipe: Any  # the family's diffusers pipeline: components only, its scheduler is never stepped
    device: Any
    dtype: Any
    facts: ModelFacts
    latent_rgb: Any  # (C + 1, 3) linear map latent -> RGB in [-1, 1], last row the bias
    examples: tuple[str, ...] = GENERAL_EXAMPLES  # prompts to try: its model card's, else general ones
    # A fast (Rust) tokenizer keeps its padding/truncation mode on itself between calls, so
    # overlapping runs tokenize one at a time, or one run's prompt is cut by another's mode.
    text_lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)
    loras: tuple = ()  # the LoRAs fused into its own copies of the base's modules (`sdviz.sampling.loras`)

    @property
    def name(self) -> str:
        """What runs and pages call the model: a local folder's name (never its path) or the hub id."""
        return self.facts.name

    @property
    def family(self) -> Family:
        return FAMILIES[self.facts.family]

    @property
    def denoiser(self):
        """The UNet, or the transformer of SD3 and Flux."""
        return self.family.denoiser_module(self.pipe)

    @property
    def unet(self):
        """The denoiser (the UNet, or the transformer of SD3 and Flux)."""
        return self.denoiser

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def tokenizer(self):
        return self.pipe.tokenizer

    @property
    def token_tokenizer(self):
        """The tokenizer whose slots the denoiser's attention reads (Flux: T5's; the first CLIP's otherwise)."""
        return getattr(self.pipe, self.family.token_tokenizer)

    @property
    def text_encoder(self):
        return self.pipe.text_encoder

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.pipe.scheduler.config)

    def components(self, scheduler) -> dict[str, Any]:
        """The loaded pipeline's components with `scheduler`: a pipeline built from them shares these weights."""
        return dict(self.pipe.components, scheduler=scheduler)

    def pipeline(self, scheduler, pipeline_class=None, **extra):
        """A pipeline of this model's family (or of `pipeline_class`) sharing these weights, with `scheduler`."""
        cls = pipeline_class or self.family.pipeline_class(img2img=False)
        return self.family.pipeline(cls, self.components(scheduler), **extra)


def check_source(source: str) -> str:
    """Refuses what cannot be a safetensors diffusers pipeline; returns 'local' or 'hub'."""
    path = Path(source).expanduser()
    if path.is_file():
        pickled = path.suffix in PICKLE_SUFFIXES
        raise InputError.said("error.model_pickle_file" if pickled else "error.model_single_file", source=repr(source))
    if path.exists():
        index = path / "model_index.json"
        if not index.is_file():
            raise InputError.said("error.model_no_index", source=repr(source))
        pipeline_class = json.loads(index.read_text()).get("_class_name", "")
        if pipeline_class not in SUPPORTED_PIPELINES:
            raise InputError.said("error.model_pipeline_unsupported", source=repr(source), pipeline=pipeline_class,
                                  supported=", ".join(SUPPORTED_PIPELINES))
        weighted = sorted(folder.name for folder in path.iterdir() if (folder / "config.json").is_file())
        for component in weighted:  # the models (a scheduler or tokenizer folder has no config.json)
            folder = path / component
            if not any(folder.glob("*.safetensors")):
                pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
                if pickles:
                    raise InputError.said("error.model_pickle_weights", source=repr(source), component=component,
                                          files=", ".join(pickles))
                raise InputError.said("error.model_no_weights", source=repr(source), component=component)
        return "local"
    if _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        return "hub"
    raise InputError.said("error.model_missing", source=repr(source))


def pipeline_class_of(source: str, kind: str) -> str:
    """The `_class_name` in a folder's model_index.json; for a hub id, read from the hub (or its cache)."""
    if kind == "local":
        return json.loads((Path(source).expanduser() / "model_index.json").read_text()).get("_class_name", "")
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.load_config(source).get("_class_name", "")
    except (OSError, ValueError) as error:
        raise InputError.said("error.model_load", source=repr(source), reason=str(error).splitlines()[0]) from error


def load_model(source: str | None = None, device: str | None = None, dtype: str | None = None,
               offload: bool | None = None) -> Model:
    """Loads a pipeline of any supported family (folder or hub id) from safetensors.

    fp16 on GPUs (bf16 for Flux, whose activations overflow fp16), fp32 on the CPU;
    a VAE whose config asks for upcasting (`force_upcast`, SD 1.x's and SDXL's) stays
    in fp32 so fp16 runs never decode to NaN/black. `offload` (default $SDVIZ_OFFLOAD)
    keeps the weights on the CPU and moves each component to the GPU while it runs
    (diffusers' `enable_model_cpu_offload`): slower, for GPUs that cannot hold the model.
    """
    import torch

    source = str(source or default_model())
    kind = check_source(source)
    family = family_of(pipeline_class_of(source, kind))
    target = pick_device(device)
    if dtype is None:
        torch_dtype = getattr(torch, family.gpu_dtype) if target.type in ("cuda", "mps") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    if offload is None:
        offload = os.environ.get("SDVIZ_OFFLOAD", "") not in ("", "0")
    try:
        pipe = family.pipeline_class(img2img=False).from_pretrained(
            source, dtype=torch_dtype, use_safetensors=True, local_files_only=kind == "local", **family.load_kwargs)
    except (OSError, ValueError) as error:
        raise InputError.said("error.model_load", source=repr(source), reason=str(error).splitlines()[0]) from error
    if offload and target.type != "cpu":
        pipe.enable_model_cpu_offload(device=target)
    else:
        pipe.to(target)
    if torch_dtype != torch.float32 and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)
    return from_pipeline(pipe, source)


def from_pipeline(pipe, source: str = "in-memory pipeline") -> Model:
    """Wraps an already loaded diffusers pipeline of a supported family (a notebook's `pipe`) for sdviz.

    Its weights are shared, not copied; runs never step its own scheduler.
    """
    import torch

    from sdviz.sampling.attention.layers import trace
    from sdviz.sampling.previews import fit_latent_rgb

    family = family_of(type(pipe).__name__)
    pipe.set_progress_bar_config(disable=True)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)
    denoiser = family.denoiser_module(pipe)
    trace(denoiser)  # observable per call, with no state of any run on it
    facts = read_facts(source, pipe, family)
    return Model(
        source=source,
        pipe=pipe,
        device=pipe._execution_device,
        dtype=denoiser.dtype,
        facts=facts,
        latent_rgb=fit_latent_rgb(pipe.vae, facts),
        examples=card_examples(source) or GENERAL_EXAMPLES,
    )


def card_examples(source: str) -> tuple[str, ...]:
    """The example prompts of a model's card: the `widget` entries of its README.md's metadata, as the
    Hugging Face hub reads them. A folder's own card; for a hub id, the card in the local cache or fetched
    (nothing when offline). Empty when there is no card or it names no prompts."""
    import yaml
    from huggingface_hub import hf_hub_download, metadata_load

    path = Path(source).expanduser()
    if path.exists():
        card = path / "README.md"
    elif _HUB_ID.match(source):
        try:
            card = Path(hf_hub_download(source, "README.md"))
        except Exception:  # noqa: BLE001 - no network, no card, a gated repo: no examples, the run goes on
            return ()
    else:
        return ()
    if not card.is_file():
        return ()
    try:
        metadata = metadata_load(card) or {}
    except (ValueError, yaml.YAMLError):  # front matter that is not YAML
        return ()
    widget = metadata.get("widget") if isinstance(metadata, dict) else None
    if not isinstance(widget, list):
        return ()
    return tuple(entry["text"].strip() for entry in widget
                 if isinstance(entry, dict) and isinstance(entry.get("text"), str) and entry["text"].strip())


def read_facts(name: str, pipe, family: Family | None = None) -> ModelFacts:
    import torch

    from sdviz.sampling import schedulers

    family = family or family_of(type(pipe).__name__)
    vae_factor = pipe.vae_scale_factor
    height, width = family.native_side(pipe)

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    parameters = {name: count(module) for name, module in pipe.components.items()
                  if isinstance(module, torch.nn.Module)}
    shift = pipe.vae.config.get("shift_factor", None)
    encoders = tuple(
        {"name": encoder, "class": type(getattr(pipe, encoder)).__name__, "tokens": window,
         "width": getattr(pipe, encoder).config.hidden_size}
        for _, encoder, window in family.encoder_windows(pipe))
    return ModelFacts(
        name=display_name(name),
        tokens=family.text_window(pipe),
        text_width=family.text_width(pipe),
        latent_channels=pipe.vae.config.latent_channels,
        vae_factor=vae_factor,
        native_height=height,
        native_width=width,
        scaling_factor=float(pipe.vae.config.scaling_factor),
        prediction_type=family.prediction_type(pipe),
        parameters=parameters,
        family=family.name,
        denoiser=family.denoiser,
        shift_factor=float(shift or 0.0),
        size_multiple=family.size_multiple(pipe),
        scheduler=schedulers.model_default(family.name, {"_class_name": type(pipe.scheduler).__name__,
                                                         **pipe.scheduler.config}),
        denoiser_class=type(family.denoiser_module(pipe)).__name__,
        encoders=encoders,
        context_tokens=family.context_tokens(pipe),
        pooled_width=family.pooled_width(pipe),
        added=family.added_conditioning(pipe),
        guidance_embedded=family.guidance_embedded(pipe),
    )
