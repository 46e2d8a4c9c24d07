"""Safe loading of a weights file: safetensors, else ``torch.load(weights_only=True)``; hashes checked.

A pickle that needs arbitrary code is refused: a weights file is untrusted input.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import pickletools
import zipfile
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
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as error:
            raise ValueError(
                f"{path} is not a safetensors file ({error}); it {_looks_like(path)}. Give a real .safetensors "
                "file, or convert a torch checkpoint on a trusted machine with `python -m hac convert`."
            ) from error
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = _foreign_globals(path)
        what = f"imports {', '.join(blocked)}" if blocked else "needs more than tensors and plain containers"
        raise UnsafeWeightsError(
            f"refusing to load {path}: its pickle {what}, and hac never unpickles arbitrary objects. "
            "Convert the checkpoint to safetensors on a trusted machine: `python -m hac convert`."
        ) from error
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError, OSError) as error:
        # torch's readers raise any of these for a file that is not a checkpoint at all
        raise ValueError(f"{path} is not a readable torch checkpoint: it {_looks_like(path)}") from error
    return _unwrap_state_dict(obj, path)


_PLAIN_MODULES = ("torch", "collections", "builtins", "_codecs", "numpy")


def _foreign_globals(path: Path) -> list[str]:
    """The globals (``module.name``) a pickle or torch zip checkpoint imports from outside torch and the
    standard containers, read with :mod:`pickletools` (nothing is executed)."""
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.endswith(".pkl")]
            data = archive.read(members[0]) if members else b""
    found, strings = [], []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except (ValueError, EOFError):  # a damaged pickle: report what was read before the damage
        pass
    return list(dict.fromkeys(name for name in found if name.split(".")[0] not in _PLAIN_MODULES))


def _looks_like(path: Path) -> str:
    """What the first bytes of ``path`` say it is, for error messages."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK"):
        return "is a zip archive (a torch checkpoint, or something else zipped)"
    if head[:1] == b"\x80":
        return "is a Python pickle (a legacy torch checkpoint)"
    if not head:
        return "is empty"
    return "is neither safetensors nor a torch checkpoint"


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
