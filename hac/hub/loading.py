"""Safe loading of a weights file: safetensors, else ``torch.load(weights_only=True)``; hashes checked.

A pickle that needs arbitrary code is refused: a weights file is untrusted input.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path
from typing import Mapping

import torch

from .resolve import resolve_weights
from .specs import UnsafeWeightsError, WeightSpec

__all__ = ["load_state_dict", "load_weights", "sha256_of"]

logger = logging.getLogger(__name__)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict safely from safetensors or a weights-only torch file.

    Nested checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.

    Raises:
        UnsafeWeightsError: hash mismatch, or a pickle needing arbitrary objects.
        ValueError: the file holds no tensor mapping.
    """
    path = Path(path)
    if sha256:
        actual = sha256_of(path)
        if not actual.startswith(sha256.lower()):
            raise UnsafeWeightsError(
                f"sha256 mismatch for {path}: expected {sha256}, got {actual}. "
                "The file is corrupt or not the published one; delete it and fetch it again."
            )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeWeightsError(
            f"refusing to load {path}: it is a pickle that needs more than tensors and plain "
            f"containers (torch.load weights_only=True said: {str(error).splitlines()[0]}). "
            "hac never unpickles arbitrary objects; convert the checkpoint to safetensors "
            "on a trusted machine (`python -m hac convert`)."
        ) from error
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable torch checkpoint: {error}") from error
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return dict(obj)


def load_weights(spec: WeightSpec | str, path: str | Path | None = None, **kwargs) -> dict[str, torch.Tensor]:
    """Resolve and safely load the state dict for ``spec``; logs where it came from."""
    resolved = resolve_weights(spec, path, **kwargs)
    state = load_state_dict(resolved.path, sha256=resolved.spec.expected_sha256(resolved.origin))
    logger.info("loaded %s weights from %s (%s)", resolved.spec.name, resolved.path, resolved.origin)
    return state
