"""Training checkpoints: what they hold, atomic writing, safe reading, and weight checks.

A checkpoint is a plain dict of tensors, numbers and strings (``format``, ``config`` as a
dict, ``step``, the state dicts of the model, both optimizers and the LR scheduler, and the
RNG states), so it loads with ``torch.load(weights_only=True)``. It is written to a
temporary file and moved into place (:mod:`hac.core.files`), so a crash never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from ..core.files import atomic_write
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
    "half_precision",
    "compact_training_state",
    "pack_run",
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
    discriminator: nn.Module | None = None,
    disc_optimizer: torch.optim.Optimizer | None = None,
) -> dict:
    """Everything a resumed run needs, as the checkpoint dict (with a realism run's discriminator)."""
    realism = {} if discriminator is None else {
        "discriminator": discriminator.state_dict(), "disc_optimizer": disc_optimizer.state_dict()}
    return {
        "format": CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(config),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer is not None else None,
        "scheduler": scheduler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "data": generator.get_state()},
        **realism,
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
    discriminator: nn.Module | None = None,
    disc_optimizer: torch.optim.Optimizer | None = None,
) -> int:
    """Load a :func:`training_state` dict (read from ``source``) back in place; returns its step.

    Raises:
        CheckpointError: the saved model does not fit ``model``.
    """
    check_state_dict(model, ckpt["model"], source)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    _restart_dropped_first_moments(optimizer)
    if aux_optimizer is not None:
        aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        _restart_dropped_first_moments(aux_optimizer)
    if discriminator is not None:
        check_state_dict(discriminator, ckpt["discriminator"], f"{source} (discriminator)")
        discriminator.load_state_dict(ckpt["discriminator"])
        disc_optimizer.load_state_dict(ckpt["disc_optimizer"])
        _restart_dropped_first_moments(disc_optimizer)
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    generator.set_state(ckpt["rng"]["data"])
    return int(ckpt["step"])


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (:func:`hac.core.files.atomic_write`)."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


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


ENTROPY_MODULES = ("entropy_bottleneck", "gaussian_conditional")
"""Kept in float32 by :func:`half_precision`: the entropy models' quantiles and scale tables
define the coding tables, so they are kept exactly as trained."""

_SECOND_MOMENTS = ("exp_avg_sq", "max_exp_avg_sq")


def half_precision(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with the transforms' floating tensors in float16 (half the file), the entropy models untouched.

    A float32 model that loads it is float32 again (``load_state_dict`` copies into its parameters).
    """
    return {
        key: value.half() if value.is_floating_point() and not key.startswith(ENTROPY_MODULES) else value
        for key, value in state.items()
    }


def compact_training_state(ckpt: Mapping) -> dict:
    """A checkpoint small enough to carry, from which a run resumes on another machine.

    The model goes through :func:`half_precision`. Of the Adam state, the second moments are kept
    in bfloat16 (float32's range, so they do not underflow) and the first moments are dropped:
    they average only the last ~10 gradients (beta1 = 0.9), and a resumed run starts them from
    zero (:func:`restore_training_state`), which makes its first steps smaller, not larger.
    Everything else (step, config, scheduler, RNG) is unchanged; resuming casts back to float32.
    For mbt2018-mean N=96/M=192 it is 22 MB instead of 65 MB.
    """

    def compact_optimizer(state: Mapping | None) -> dict | None:
        if state is None:
            return None
        per_param = {
            index: {key: value.bfloat16() if key in _SECOND_MOMENTS else value
                    for key, value in entry.items() if key != "exp_avg"}
            for index, entry in state["state"].items()
        }
        return {**state, "state": per_param}

    return {
        **ckpt,
        "model": half_precision(ckpt["model"]),
        "optimizer": compact_optimizer(ckpt["optimizer"]),
        "aux_optimizer": compact_optimizer(ckpt["aux_optimizer"]),
        **({"disc_optimizer": compact_optimizer(ckpt["disc_optimizer"])} if "disc_optimizer" in ckpt else {}),
        "compact": "model transforms float16, entropy models float32, Adam second moments bfloat16, first moments dropped",
    }


def _restart_dropped_first_moments(optimizer: torch.optim.Optimizer) -> None:
    """Zero Adam first moments where a :func:`compact_training_state` checkpoint left them out."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)
            if state and "exp_avg_sq" in state and "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)


RUN_RECORDS = ("config.json", "metrics.jsonl", "train.log")


def pack_run(run_dir: str | Path, out_dir: str | Path, checkpoint_dir: str | Path | None = None) -> Path | None:
    """Copy a run folder's records (:data:`RUN_RECORDS`) into ``out_dir``, e.g. ``training-state/<run>`` to commit.

    The checkpoint stays in ``run_dir`` (outside git). With ``checkpoint_dir``, the latest checkpoint,
    compacted (:func:`compact_training_state`), and the records are also written there: a run folder of
    its own that ``python -m hac train --resume --run-dir CHECKPOINT_DIR`` continues, small enough to
    carry to another machine. Returns the compacted checkpoint's path, or None without ``checkpoint_dir``.

    Raises:
        FileNotFoundError, CheckpointError: ``run_dir`` holds no readable checkpoint (checked before anything is written).
    """
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    _copy_records(run_dir, Path(out_dir))
    if checkpoint_dir is None:
        return None
    checkpoint_dir = Path(checkpoint_dir)
    _copy_records(run_dir, checkpoint_dir)
    packed = checkpoint_dir / "checkpoint.pt"
    atomic_save(compact_training_state(ckpt), packed)
    return packed


def _copy_records(run_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_RECORDS:
        if (run_dir / name).is_file() and (run_dir / name).resolve() != (out_dir / name).resolve():
            shutil.copyfile(run_dir / name, out_dir / name)
