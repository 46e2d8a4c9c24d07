"""Training checkpoints: what they hold, atomic writing, safe reading, and weight checks.

A checkpoint is a plain dict of tensors, numbers and strings (``format``, ``config`` as a
dict, ``step``, the state dicts of the model, both optimizers and the LR scheduler, and the
RNG states), so it loads with ``torch.load(weights_only=True)``. It is written to a
temporary file and moved into place with ``os.replace``, so a crash never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from .config import TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "training_state",
    "restore_training_state",
    "atomic_save",
    "load_checkpoint",
    "check_state_dict",
    "load_model_weights",
]

CHECKPOINT_FORMAT = "hac-train-checkpoint/1"
# Buffers whose size is data-dependent (set by `model.update()`); CompressAI resizes them on load.
_DYNAMIC_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


class CheckpointError(ValueError):
    """A checkpoint or weights file is unreadable or does not fit the model."""


def training_state(
    *,
    config: TrainConfig,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    aux_optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> dict:
    """Everything a resumed run needs, as the checkpoint dict."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(config),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer is not None else None,
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state()},
    }


def restore_training_state(
    ckpt: Mapping,
    source: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    aux_optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> int:
    """Load a :func:`training_state` dict (read from ``source``) back in place; returns its step.

    Raises:
        CheckpointError: the saved model does not fit ``model``.
    """
    check_state_dict(model, ckpt["model"], source)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if aux_optimizer is not None:
        aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    generator.set_state(ckpt["rng"]["data"])
    return int(ckpt["step"])


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file, flushed to disk, then moved onto ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint safely (``torch.load(weights_only=True)``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is corrupt, truncated or not a hac training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        raise CheckpointError(
            f"checkpoint {path} is unreadable (corrupt or truncated?): {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}. "
            f"Use an earlier snapshot (checkpoint-<step>.pt) from the same folder."
        ) from error
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a hac training checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return ckpt


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "") if keys else "none"

        raise CheckpointError(
            f"weights in {source} do not fit {type(model).__name__}: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}. Check --architecture (and that the file is a model of this kind)."
        )
    wrong = [
        f"{key} has shape {tuple(state_dict[key].shape)}, the model expects {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key.rsplit(".", 1)[-1] not in _DYNAMIC_BUFFERS and tuple(state_dict[key].shape) != tuple(tensor.shape)
    ]
    if wrong:
        more = f"; ... ({len(wrong)} in all)" if len(wrong) > 4 else ""
        raise CheckpointError(
            f"weights in {source} do not fit {type(model).__name__}: {'; '.join(wrong[:4])}{more}. "
            "Check --architecture, --N and --M."
        )


def load_model_weights(model: nn.Module, path: str | Path) -> None:
    """Load model weights from a training checkpoint (``.pt``) or exported ``.safetensors``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if not path.is_file():
            raise FileNotFoundError(f"weights not found: {path}")
        try:
            state = load_file(str(path))
        except Exception as error:
            raise CheckpointError(f"weights file {path} is unreadable: {error}") from error
    else:
        state = load_checkpoint(path)["model"]
    check_state_dict(model, state, str(path))
    model.load_state_dict(state)
