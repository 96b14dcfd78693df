"""The app's settings, read from the environment in one place.

    SDVIZ_MODEL                 default model: folder or hub id (default: the embedded model)
    SDVIZ_MODELS                more models offered in the menu after the embedded ones,
                                comma-separated (any family: SD 1.x/2.x, SDXL, SD3, Flux)
    SDVIZ_LORAS                 LoRAs offered on the default model, each a menu entry of its own,
                                comma-separated PATH_OR_ID[:scale] (LCM-LoRA, TCD-LoRA, Hyper-SD;
                                safetensors only); fused into a copy, the default model untouched
    SDVIZ_OFFLOAD               1/true keeps weights on the CPU and moves each component to the
                                GPU while it runs (for GPUs that cannot hold a whole model)
    SDVIZ_ALLOW_CUSTOM_MODELS   1/true lets users type any hub id or local path (off: a
                                public Space must not load arbitrary weights)
    SDVIZ_QUEUE_SIZE            requests that may wait in the queue (default 16)
    SDVIZ_CONCURRENCY           model threads (default 1); each admits 4 requests, stepping in turns
    SDVIZ_DEVICE                cuda, mps or cpu (default: the best available)
    SDVIZ_CACHE_SECONDS         how long streamed frames and exports are kept (default 3600)
    SDVIZ_CACHE_MB              most disk the app's frames, downloads and uploads take (default 1000)
    SDVIZ_MAX_MODELS            models kept loaded at once; the default model always (default 2)
    SDVIZ_MAX_PIXELS, SDVIZ_MAX_STEPS, SDVIZ_MAX_RUN_SECONDS, SDVIZ_MAX_UPLOAD_MB,
    SDVIZ_MAX_IMAGE_MEGAPIXELS, SDVIZ_MAX_COMPARE_STEPS  what one request may ask for (see sdviz.sampling.limits)
GRADIO_SERVER_NAME and GRADIO_SERVER_PORT set the host and port, as in any gradio app.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sdviz.sampling.errors import InputError
from sdviz.sampling.limits import Limits
from sdviz.sampling.loras import Lora, adapted_name
from sdviz.sampling.models import EMBEDDED_MODELS, default_model, display_name

ADMITTED_PER_THREAD = 4  # requests in progress per model thread, their runs stepping in turns


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise InputError.said("error.env_not_whole", variable=name, value=repr(value))
    return int(value)


@dataclass(frozen=True)
class AppConfig:
    default_model: str
    models: tuple[str, ...] = field(default_factory=tuple)
    loras: tuple[Lora, ...] = field(default_factory=tuple)  # each offered on the default model
    allow_custom_models: bool = False
    queue_size: int = 16
    concurrency: int = 1
    device: str | None = None
    cache_seconds: int = 3600
    cache_mb: int = 1000
    max_models: int = 2
    limits: Limits = field(default_factory=Limits)

    @property
    def admitted(self) -> int:
        """Requests that may hold the model at once: the model threads (`concurrency`) take their runs' steps in
        turns (ui.model_threads), so a short request starts while a long one goes on; the rest wait in the
        queue."""
        return self.concurrency * ADMITTED_PER_THREAD

    @property
    def default_name(self) -> str:
        """The default model as the menu names it (a folder's name, never its path)."""
        return display_name(self.default_model)

    def menu(self) -> dict[str, tuple[str, tuple[Lora, ...]]]:
        """The model menu: name -> (folder or hub id, LoRAs fused into it), the default first, then each LoRA on
        the default model, then the other models."""
        menu = {self.default_name: (self.default_model, ())}
        menu.update({adapted_name(self.default_name, (lora,)): (self.default_model, (lora,)) for lora in self.loras})
        for source in self.models:
            menu.setdefault(display_name(source), (source, ()))
        return menu

    @classmethod
    def from_env(cls) -> AppConfig:
        default = default_model()
        extra = [m.strip() for m in os.environ.get("SDVIZ_MODELS", "").split(",") if m.strip()]
        return cls(
            default_model=default,
            models=tuple(dict.fromkeys([default, *map(str, EMBEDDED_MODELS), *extra])),
            loras=tuple(Lora.parse(text) for text in os.environ.get("SDVIZ_LORAS", "").split(",") if text.strip()),
            allow_custom_models=_flag("SDVIZ_ALLOW_CUSTOM_MODELS"),
            queue_size=_int("SDVIZ_QUEUE_SIZE", 16),
            concurrency=_int("SDVIZ_CONCURRENCY", 1),
            device=os.environ.get("SDVIZ_DEVICE") or None,
            cache_seconds=_int("SDVIZ_CACHE_SECONDS", 3600),
            cache_mb=_int("SDVIZ_CACHE_MB", 1000),
            max_models=_int("SDVIZ_MAX_MODELS", 2),
            limits=Limits.from_env(),
        )
