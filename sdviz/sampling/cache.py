"""The loaded models an app shares between requests: each loaded once, the least recently used evicted.

A model with LoRAs is a model of its own (`sdviz.sampling.loras.adapted`), cached beside its base.
"""

from __future__ import annotations

import threading

from sdviz.sampling.loras import Lora, adapted
from sdviz.sampling.models import Model, default_model, load_model


class ModelCache:
    """Loaded models by source, shared read-only between requests; loads each once.

    At most `most` models stay loaded: loading one more evicts the least recently
    used, except the pinned default. A run that still holds an evicted model keeps
    it alive until it ends; the memory is freed then.
    """

    def __init__(self, device: str | None = None, most: int = 2, pinned: str | None = None, load=None, adapt=None):
        """load(source, device=...) loads one model (default `load_model`), adapt(model, loras) fuses LoRAs into
        a copy of it (default `loras.adapted`); the app does both on its model threads."""
        from collections import OrderedDict

        self.device, self.most, self.pinned = device, max(1, most), pinned
        self._load = load or load_model
        self._adapt = adapt or adapted
        self._models: OrderedDict[str, Model] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, source: str | None = None, loras: tuple[Lora, ...] = ()) -> Model:
        """The loaded model (with these LoRAs fused into its own copy: `loras.adapted`, the base model loaded
        first and left as it is); a model being loaded for one request does not hold up the others."""
        source = str(source or default_model())
        if loras:
            key = (source, tuple(loras))
            return self._get(key, lambda: self._adapt(self.get(source), tuple(loras)))
        return self._get(source, lambda: self._load(source, device=self.device))

    def _get(self, source, load) -> Model:
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
                model = load()
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

    def loaded(self) -> list:
        with self._lock:
            return list(self._models)
