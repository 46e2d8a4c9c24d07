"""The app's one cache of loaded models, shared by every request.

Models are built on first use and kept, least recently used first out, so a
Space serves many requests without reloading weights and without growing
without bound. Loading happens under a lock: two requests that want the same
model at once load it once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

import torch

from ..models.classifiers import Classifier, create_classifier
from ..codecs import Codec, create_codec
from ..core.specs import format_spec, parse_chain

__all__ = ["ModelCache"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _LRU(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.items: OrderedDict[str, T] = OrderedDict()

    def get_or_build(self, key: str, build: Callable[[], T]) -> T:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = build()
        self.items[key] = value
        while len(self.items) > self.capacity:
            evicted, _ = self.items.popitem(last=False)
            logger.info("model cache: dropped %s", evicted)
        return value


class ModelCache:
    """Classifiers by name and codecs by spec, built lazily and reused across requests.

    Thread-safe: Gradio runs handlers on worker threads. Cached modules are in
    eval mode and only ever used for inference and input gradients, so sharing
    them between concurrent requests is safe.

    Args:
        device: where models live.
        max_classifiers: classifiers kept at once (a ViT-B/16 is ~350 MB).
        max_codecs: codecs kept at once (learned codecs are 10-100 MB each).
    """

    def __init__(self, device: str | torch.device = "cpu", max_classifiers: int = 2, max_codecs: int = 8) -> None:
        self.device = torch.device(device)
        self._lock = threading.Lock()
        self._classifiers: _LRU[Classifier] = _LRU(max_classifiers)
        self._codecs: _LRU[Codec] = _LRU(max_codecs)

    def classifier(self, name: str) -> Classifier:
        """The pretrained classifier ``name`` (see :func:`hac.models.classifiers.create_classifier` for errors)."""
        with self._lock:
            return self._classifiers.get_or_build(name, lambda: create_classifier(name, device=self.device))

    def chain(self, text: str) -> list[Codec]:
        """The codecs of a chain such as ``"jpeg:q=25+webp:q=80"``, one cached module per spec.

        Raises:
            ValueError: a malformed chain, unknown codec or bad parameter.
            hac.hub.MissingWeightsError: a learned codec's weights are not on this machine.
        """
        specs = parse_chain(text)
        codecs = []
        with self._lock:
            for spec in specs:
                key = format_spec(spec)
                codecs.append(self._codecs.get_or_build(key, lambda: create_codec(spec).to(self.device).eval()))
        return codecs

    def move_to(self, device: str | torch.device) -> None:
        """Move every loaded model to ``device``, where models built from now on go too (on ZeroGPU: the GPU,
        inside a call's forked worker, so the main process keeps its CPU copies)."""
        with self._lock:
            self.device = torch.device(device)
            for model in [*self._classifiers.items.values(), *self._codecs.items.values()]:
                model.to(self.device)

    def loaded(self) -> dict[str, list[str]]:
        """Names of what is loaded now, for diagnostics."""
        with self._lock:
            return {"classifiers": list(self._classifiers.items), "codecs": list(self._codecs.items)}

    def clear(self) -> None:
        with self._lock:
            self._classifiers.items.clear()
            self._codecs.items.clear()
