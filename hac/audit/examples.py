"""Adversarial examples that every audit of the same classifier and images can share.

An attack that sees only the bare classifier (the oblivious PGD, and its eps
sweep) makes the same examples whatever purifier is audited after it, so they
are made once for a whole batch and kept on disk as 8-bit images, one
safetensors file per :func:`example_key`: the classifier's weights, the attack
and its seed, and the images and labels themselves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..core.files import atomic_path

__all__ = ["ExampleCache", "classifier_fingerprint", "example_key"]


def classifier_fingerprint(classifier: nn.Module) -> str:
    """sha256 of the classifier's class, parameter and buffer names, shapes and values."""
    digest = hashlib.sha256(type(classifier).__qualname__.encode())
    for name, tensor in classifier.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def example_key(fingerprint: str, attack: str, seed: int, x: Tensor, y: Tensor) -> str:
    """A file-name-safe key of the examples of ``attack`` (its description) with ``seed`` on ``x``, ``y``."""
    digest = hashlib.sha256(f"{fingerprint}|{attack}|{seed}".encode())
    digest.update(to_bytes(x).numpy().tobytes())
    digest.update(y.detach().cpu().to(torch.int64).numpy().tobytes())
    return digest.hexdigest()[:24]


def to_bytes(x: Tensor) -> Tensor:
    """(N, 3, H, W) 8-bit valued images in [0, 1] -> uint8 on the CPU."""
    return (x.detach().cpu() * 255).round().clamp(0, 255).to(torch.uint8)


class ExampleCache:
    """Shared adversarial examples on disk (``folder=None``: none kept, every call makes them)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = None if folder is None else Path(folder)
        self.hits = self.misses = 0

    def get(self, key: str, make: Callable[[], Tensor]) -> Tensor:
        """The examples under ``key``, made by ``make()`` (8-bit valued in [0, 1]) and kept if not yet there."""
        from safetensors.torch import load_file, save_file

        path = None if self.folder is None else self.folder / f"{key}.safetensors"
        if path is not None and path.exists():
            self.hits += 1
            return load_file(str(path))["x"].float() / 255
        self.misses += 1
        x_adv = make()
        if path is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({"x": to_bytes(x_adv)}, str(tmp))
        return x_adv
