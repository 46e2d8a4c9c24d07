"""Training of hac's own learned codecs (CompressAI architectures and ComDefend), resumable on a CPU.

The default codec, ``hac-hyperprior``, is the mean-scale hyperprior of Minnen, Ballé
and Toderici, "Joint Autoregressive and Hierarchical Priors for Learned Image
Compression" (NeurIPS 2018), ``compressai.models.MeanScaleHyperprior`` (CompressAI's
``mbt2018-mean``) without the autoregressive context model. It is trained with the
rate–distortion loss of CompressAI's example::

    loss = lambda * 255**2 * MSE(x, x_hat) + bpp(likelihoods)

plus the auxiliary loss that fits the entropy bottleneck's quantiles, minimised by a
second optimizer over the ``quantiles`` parameters only.

Data is a folder of images (searched recursively, jpg/jpeg/png), decoded once into
uint8 tensors in memory; batches are seeded random crops with horizontal flips.
A run lives in one folder (``run_dir``) holding::

    checkpoint.pt            latest checkpoint (model, both optimizers, LR scheduler, step, RNG, config)
    checkpoint-<step>.pt     snapshots every ``snapshot_every`` steps
    train.log                the log (also sent to stdout by the CLI)
    metrics.jsonl            one JSON record per log interval and per evaluation

Checkpoints are written atomically (temporary file, then ``os.replace``) every
``checkpoint_every`` steps, at the end, and when SIGTERM/SIGINT arrives.
``python -m hac.train --resume RUN_DIR`` continues where the run stopped.

Architectures live in :data:`ARCHITECTURES`, each with its own loss. Besides the
CompressAI models there is ``comdefend`` (Jia et al., CVPR 2019,
:mod:`hac.codecs.comdefend`): ComCNN + RecCNN trained with ComDefend's unified loss
``MSE + λ·mean(b²)`` on the soft code ``b = sigmoid(ComCNN(x) − N(0, 20²))``, no
auxiliary optimizer, exported as ``hac-comdefend-cifar10.safetensors``. New runs from
the CLI start from the architecture's :attr:`Architecture.defaults` (ComDefend:
32px crops, λ = 1e-4, lr 1e-3)::

    python -m hac.train --architecture comdefend --data ../shared/data/cifar10/train --run-dir RUN
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import io
import json
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Registry

__all__ = [
    "TrainConfig",
    "Architecture",
    "ARCHITECTURES",
    "ImageBank",
    "CheckpointError",
    "build_model",
    "rd_loss",
    "lr_factor",
    "load_checkpoint",
    "load_model_weights",
    "evaluate_model",
    "jpeg_reference",
    "train",
    "export",
    "main",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CHECKPOINT_FORMAT = "hac-train-checkpoint/1"
CODEC_NAME = "hac-hyperprior"
# Buffers whose size is data-dependent (set by `model.update()`); CompressAI resizes them on load.
_DYNAMIC_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


class CheckpointError(ValueError):
    """A checkpoint or weights file is unreadable or does not fit the model."""


# --------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class Architecture:
    """A trainable codec architecture.

    Attributes:
        name: CompressAI zoo name (or ``"comdefend"``), stored in exported metadata.
        build: ``build(N, M) -> nn.Module`` (a model with CompressAI's ``update`` /
            ``compress`` / ``decompress``, used by :func:`evaluate_model`).
        multiple: input height/width must be a multiple of this (total down-sampling).
        paper: the work that introduced it.
        loss: ``loss(model, x, config) -> {"loss", "mse", ...}`` (scalars); ``None``
            means CompressAI's rate–distortion loss :func:`rd_loss`. Models with
            ``quantiles`` parameters also get the auxiliary optimizer.
        loss_text: the loss, for the exported model card.
        export_stem: file stem of the exported weights; ``{quality}`` is filled in.
        defaults: :class:`TrainConfig` values for new runs started from the CLI.
    """

    name: str
    build: Callable[[int, int], nn.Module]
    multiple: int = 64
    paper: str = ""
    loss: Callable[[nn.Module, Tensor, "TrainConfig"], dict[str, Tensor]] | None = None
    loss_text: str = "λ·255²·MSE + bpp"
    export_stem: str = CODEC_NAME + "-q{quality}"
    defaults: Mapping[str, object] = field(default_factory=dict)


def _mean_scale_hyperprior(N: int, M: int) -> nn.Module:
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior(N, M)


def _scale_hyperprior(N: int, M: int) -> nn.Module:
    from compressai.models import ScaleHyperprior

    return ScaleHyperprior(N, M)


ARCHITECTURES: Registry[Architecture] = Registry("architecture")
ARCHITECTURES.add(
    "mbt2018-mean",
    Architecture("mbt2018-mean", _mean_scale_hyperprior, 64, "Minnen, Ballé, Toderici, NeurIPS 2018"),
)
ARCHITECTURES.add(
    "bmshj2018-hyperprior",
    Architecture("bmshj2018-hyperprior", _scale_hyperprior, 64, "Ballé et al., ICLR 2018"),
)


def _comdefend(N: int, M: int) -> nn.Module:
    from .codecs.comdefend import ComDefend

    return ComDefend()  # fixed widths: N and M do not apply


def _comdefend_loss(model: nn.Module, x: Tensor, config: "TrainConfig") -> dict[str, Tensor]:
    from .codecs.comdefend import training_loss

    return training_loss(model, x, config.lmbda)


ARCHITECTURES.add(
    "comdefend",
    Architecture(
        "comdefend",
        _comdefend,
        1,
        "Jia, Wei, Cao, Foroosh, CVPR 2019",
        loss=_comdefend_loss,
        loss_text="MSE + λ·mean(b²), b = sigmoid(ComCNN(x) − e), e ~ N(0, 20²)",
        export_stem="hac-comdefend-cifar10",
        # The official CIFAR-10 weights: λ = 1e-4, Adam 1e-3; whole 32x32 images.
        defaults={"crop": 32, "batch_size": 32, "lmbda": 1e-4, "lr": 1e-3, "eval_every": 1000, "eval_images": 500},
    ),
)


def _loss(arch: Architecture, model: nn.Module, x: Tensor, config: "TrainConfig") -> dict[str, Tensor]:
    if arch.loss is None:
        return rd_loss(model(x), x, config.lmbda)
    return arch.loss(model, x, config)


def build_model(architecture: str, N: int, M: int) -> nn.Module:
    """A freshly initialised model of a registered architecture (``ValueError`` if unknown)."""
    return ARCHITECTURES.get(architecture).build(N, M)


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    Attributes:
        data: image folder for training (recursive jpg/jpeg/png).
        run_dir: folder for checkpoints, log and metrics.
        architecture: key of :data:`ARCHITECTURES`.
        N, M: channel widths of the CompressAI model.
        lmbda: rate–distortion trade-off λ (loss = λ·255²·MSE + bpp).
        quality: rate-point label (q1..q3), used by :func:`export`.
        crop, batch_size: random crop side (a multiple of 64) and batch size.
        steps: total optimiser steps of the run (may be raised on resume).
        lr, aux_lr: Adam learning rates of the main and auxiliary optimizers.
        warmup_steps: linear LR warm-up from 0.
        lr_schedule: ``"step"`` (×``lr_decay_factor`` from ``lr_decay_at``·steps),
            ``"cosine"`` (to ``lr_decay_factor``·lr at ``steps``) or ``"constant"``.
        clip_max_norm: gradient-norm clipping of the main loss (0 disables).
        log_every, checkpoint_every, snapshot_every, eval_every: cadences in steps (0 disables).
        eval_dir: folder of evaluation images (e.g. Kodak), coded for real.
        eval_images: evaluate on the first K images only (``None``: all).
        seed: seeds initialisation, quantisation noise and crops.
        threads: ``torch.set_num_threads`` (``None``: all cores).
        init_from: checkpoint or exported weights to start from (fine-tuning another λ).
        device: torch device to train on (``"cpu"``, ``"cuda"``); checkpoints are device-independent.
        adversarial, adv_eps, adv_steps, adv_objective, adv_fraction: adversarial fine-tuning of a
            CompressAI codec (:mod:`hac.adversarial_training`): ``adv_fraction`` of each batch is
            attacked by ``adv_steps``-step PGD within ``adv_eps`` on ``adv_objective``
            (``distortion``, ``rate`` or both, comma-separated); the loss compares with the clean batch.
    """

    data: str
    run_dir: str
    architecture: str = "mbt2018-mean"
    N: int = 128
    M: int = 192
    lmbda: float = 0.0130
    quality: int | None = None
    crop: int = 128
    batch_size: int = 8
    steps: int = 100_000
    lr: float = 1e-4
    aux_lr: float = 1e-3
    warmup_steps: int = 0
    lr_schedule: str = "step"
    lr_decay_at: float = 0.9
    lr_decay_factor: float = 0.1
    clip_max_norm: float = 1.0
    log_every: int = 100
    checkpoint_every: int = 500
    snapshot_every: int = 10_000
    eval_every: int = 5_000
    eval_dir: str | None = None
    eval_images: int | None = None
    seed: int = 0
    threads: int | None = None
    init_from: str | None = None
    device: str = "cpu"
    adversarial: bool = False
    adv_eps: float = 4 / 255
    adv_steps: int = 3
    adv_objective: str = "distortion,rate"
    adv_fraction: float = 0.5

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""
        arch = ARCHITECTURES.get(self.architecture)
        if self.crop <= 0 or self.crop % arch.multiple:
            raise ValueError(
                f"crop={self.crop} must be a positive multiple of {arch.multiple} for {self.architecture} "
                f"(its latents are {arch.multiple}x smaller than the image); try {max(arch.multiple, self.crop // arch.multiple * arch.multiple)}"
            )
        if self.lr_schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}; valid: step, cosine, constant")
        for name in ("batch_size", "steps", "N", "M"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if not 0 < self.lr_decay_at <= 1:
            raise ValueError(f"lr_decay_at={self.lr_decay_at} must be a fraction in (0, 1]")
        if self.lmbda <= 0:
            raise ValueError(f"lmbda={self.lmbda} must be positive")

    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**dict(values))


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` for optimiser step ``step`` (0-based)."""
    factor = 1.0
    if config.warmup_steps and step < config.warmup_steps:
        factor = (step + 1) / config.warmup_steps
    if config.lr_schedule == "step":
        if step >= int(config.lr_decay_at * config.steps):
            factor *= config.lr_decay_factor
    elif config.lr_schedule == "cosine":
        t = min(step / config.steps, 1.0)
        floor = config.lr_decay_factor
        factor *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return factor


# --------------------------------------------------------------------------- data


def list_images(folder: str | Path) -> list[Path]:
    """All jpg/jpeg/png files under ``folder`` (recursive, sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {folder}")
    return files


def read_image(path: Path) -> Tensor:
    """An image file as a uint8 (3, H, W) tensor."""
    from PIL import Image

    with Image.open(path) as image:
        data = image.convert("RGB").tobytes()
        width, height = image.size
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(height, width, 3).permute(2, 0, 1).contiguous()


class ImageBank:
    """A folder of images decoded once into memory, sampled as random crops.

    Images of equal size are stacked into one uint8 (K, 3, H, W) tensor; mixed sizes
    are kept as a list. Images smaller than the crop are skipped (logged).

    Args:
        folder: image folder (recursive).
        crop: side of the square crops.
    """

    def __init__(self, folder: str | Path, crop: int) -> None:
        files = list_images(folder)
        images = [read_image(path) for path in files]
        usable = [img for img in images if img.shape[1] >= crop and img.shape[2] >= crop]
        if len(usable) < len(images):
            logger.warning("skipping %d of %d images smaller than the %dpx crop", len(images) - len(usable), len(images), crop)
        if not usable:
            raise ValueError(f"no image under {folder} is at least {crop}x{crop}; use a smaller --crop")
        self.crop = crop
        self.images: Tensor | list[Tensor]
        if len({tuple(img.shape) for img in usable}) == 1:
            self.images = torch.stack(usable)
        else:
            self.images = usable
        self.count = len(usable)
        nbytes = sum(img.numel() for img in usable)
        logger.info("decoded %d images from %s (%.1f MB in memory)", self.count, folder, nbytes / 1e6)

    def sample(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A float (batch_size, 3, crop, crop) batch in [0, 1]: random crops, random h-flips."""
        index = torch.randint(self.count, (batch_size,), generator=generator)
        draws = torch.rand(batch_size, 3, generator=generator)
        crops = []
        for i, (u, v, flip) in zip(index.tolist(), draws.tolist()):
            image = self.images[i]
            height, width = image.shape[-2:]
            top = int(u * (height - self.crop + 1))
            left = int(v * (width - self.crop + 1))
            patch = image[:, top : top + self.crop, left : left + self.crop]
            crops.append(patch.flip(-1) if flip < 0.5 else patch)
        return torch.stack(crops).float().div_(255.0)


# --------------------------------------------------------------------------- loss


def rd_loss(out: Mapping, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """CompressAI's rate–distortion loss: ``λ·255²·MSE + bpp``.

    Args:
        out: model output with ``x_hat`` (N, 3, H, W) and ``likelihoods`` (dict of tensors).
        x: the input batch (N, 3, H, W) in [0, 1].
        lmbda: the trade-off λ.

    Returns:
        ``loss``, ``bpp`` and ``mse`` (scalars).
    """
    num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(torch.log(lik).sum() for lik in out["likelihoods"].values()) / (-math.log(2) * num_pixels)
    mse = F.mse_loss(out["x_hat"], x)
    return {"loss": lmbda * 255**2 * mse + bpp, "bpp": bpp, "mse": mse}


def _split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Main parameters and the entropy bottleneck's ``quantiles`` (aux optimizer only)."""
    main, aux = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else main).append(param)
    return main, aux


# --------------------------------------------------------------------------- checkpoints


def _atomic_save(obj: object, path: Path) -> None:
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


# --------------------------------------------------------------------------- evaluation


def _psnr(x: Tensor, y: Tensor) -> float:
    mse = F.mse_loss(x, y).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


@torch.no_grad()
def evaluate_model(model: nn.Module, folder: str | Path, max_images: int | None = None, multiple: int = 64) -> dict:
    """Real entropy-coded rate and quality of ``model`` on the images of ``folder``.

    Calls ``model.update(force=True)`` and codes each image with ``compress``/``decompress``;
    the reconstruction is rounded to 8 bits. Returns the means over images of ``bpp``
    (from the bitstream length) and ``psnr`` (dB), and ``images``.
    """
    files = list_images(folder)[:max_images]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.update(force=True)
    bpps, psnrs = [], []
    for path in files:
        x = read_image(path).float().div(255.0).unsqueeze(0).to(device)
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        enc = model.compress(padded)
        bits = 8 * sum(len(s) for strings in enc["strings"] for s in strings)
        x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"][..., :height, :width]
        x_hat = x_hat.clamp(0, 1).mul(255).round().div(255)
        bpps.append(bits / (height * width))
        psnrs.append(_psnr(x_hat, x))
    model.train(was_training)
    return {"bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs), "images": len(files)}


def jpeg_reference(
    folder: str | Path,
    qualities: Sequence[int] = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 90),
    max_images: int | None = None,
) -> list[dict]:
    """JPEG (Pillow, default settings) mean bpp/PSNR per quality on the (first K) images of ``folder``."""
    from PIL import Image

    files = list_images(folder)[:max_images]
    images = [read_image(path) for path in files]
    curve = []
    for quality in qualities:
        bpps, psnrs = [], []
        for img in images:
            buffer = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
            bpps.append(8 * buffer.tell() / (img.shape[1] * img.shape[2]))
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                rec = torch.frombuffer(bytearray(decoded.convert("RGB").tobytes()), dtype=torch.uint8)
            rec = rec.view(img.shape[1], img.shape[2], 3).permute(2, 0, 1)
            psnrs.append(_psnr(rec.float() / 255, img.float() / 255))
        curve.append({"quality": quality, "bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs)})
    return curve


def _jpeg_psnr_at(curve: list[dict], bpp: float) -> float | None:
    """JPEG PSNR linearly interpolated at ``bpp`` (``None`` outside the curve)."""
    points = sorted((c["bpp"], c["psnr"]) for c in curve)
    for (b0, p0), (b1, p1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            return p0 + (p1 - p0) * (bpp - b0) / (b1 - b0)
    return None


# --------------------------------------------------------------------------- training


class _StopFlag:
    """Set by SIGTERM/SIGINT; the loop saves a checkpoint and returns."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: no signal handling
                pass
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _format_terms(mean: Mapping[str, float], psnr: float) -> str:
    """``loss L bpp B psnr P [other terms] [aux A]`` (the CompressAI log line keeps its historic form)."""
    parts = [f"loss {mean['loss']:.4f}"]
    if "bpp" in mean:
        parts.append(f"bpp {mean['bpp']:.4f}")
    parts.append(f"psnr {psnr:.2f}")
    parts += [f"{key} {value:.4g}" for key, value in mean.items() if key not in ("loss", "bpp", "mse", "aux")]
    if "aux" in mean:
        parts.append(f"aux {mean['aux']:.1f}")
    return " ".join(parts)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _resolve_config(config: TrainConfig, resume: bool) -> tuple[TrainConfig, dict | None]:
    """The config to run with and the checkpoint to resume from (if any)."""
    ckpt_path = Path(config.run_dir) / "checkpoint.pt"
    if not resume:
        if ckpt_path.exists():
            raise FileExistsError(f"{ckpt_path} exists; pass resume=True (--resume) to continue it, or choose a new run_dir")
        return config, None
    ckpt = load_checkpoint(ckpt_path)
    saved = TrainConfig.from_dict(ckpt["config"])
    for name in ("architecture", "N", "M"):
        if getattr(saved, name) != getattr(config, name):
            raise ValueError(
                f"cannot resume {ckpt_path} with {name}={getattr(config, name)!r}: it was trained with "
                f"{getattr(saved, name)!r}; use --init-from in a new run_dir to start a different model from it"
            )
    return config, ckpt


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train (or resume) a codec; returns the path of the latest checkpoint.

    Stops after ``config.steps`` steps, or early on SIGTERM/SIGINT (after saving).
    On resume, the model, optimizers, scheduler, step and RNG state come from
    ``run_dir/checkpoint.pt``; ``config`` may change cadences, ``steps`` and the LR
    schedule (the LR is a pure function of step and config), not the model shape.
    """
    config.validate()
    config, ckpt = _resolve_config(config, resume)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    previous_level, previous_threads = logger.level, torch.get_num_threads()
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        return _train(config, ckpt, run_dir)
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous_level)
        torch.set_num_threads(previous_threads)


def _train(config: TrainConfig, ckpt: dict | None, run_dir: Path) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = torch.device(config.device)
    arch = ARCHITECTURES.get(config.architecture)
    model = build_model(config.architecture, config.N, config.M).to(device)
    main_params, aux_params = _split_parameters(model)
    optimizer = torch.optim.Adam(main_params, lr=config.lr)
    # Only CompressAI's entropy bottleneck has quantiles to fit; ComDefend has no aux loss.
    aux_optimizer = torch.optim.Adam(aux_params, lr=config.aux_lr) if aux_params else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    step = 0
    if ckpt is not None:
        check_state_dict(model, ckpt["model"], str(run_dir / "checkpoint.pt"))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if aux_optimizer is not None:
            aux_optimizer.load_state_dict(ckpt["aux_optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        # The LR is a pure function of (step, config), so a resumed run may change lr/schedule/steps.
        scheduler.base_lrs = [config.lr for _ in scheduler.base_lrs]
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(int(ckpt["step"]), config)
        for group in aux_optimizer.param_groups if aux_optimizer is not None else []:
            group["lr"] = config.aux_lr
        step = int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        generator.set_state(ckpt["rng"]["data"])
        logger.info("resumed %s at step %d", run_dir, step)
    elif config.init_from:
        load_model_weights(model, config.init_from)
        logger.info("initialised from %s", config.init_from)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    sizes = f" N={config.N} M={config.M}" if arch.loss is None else ""  # ComDefend's widths are fixed
    logger.info(
        "training %s%s (%.2fM params) lambda=%g crop=%d batch=%d steps %d->%d lr=%g threads=%d",
        config.architecture, sizes, n_params / 1e6, config.lmbda, config.crop,
        config.batch_size, step, config.steps, config.lr, torch.get_num_threads(),
    )
    bank = ImageBank(config.data, config.crop)
    metrics_path = run_dir / "metrics.jsonl"
    ckpt_path = run_dir / "checkpoint.pt"

    def save(reason: str) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": dataclasses.asdict(config),
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer is not None else None,
            "scheduler": scheduler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "data": generator.get_state()},
        }
        _atomic_save(state, ckpt_path)
        if config.snapshot_every and step % config.snapshot_every == 0 and step > 0:
            _atomic_save(state, run_dir / f"checkpoint-{step}.pt")
        logger.info("checkpoint at step %d (%s) -> %s", step, reason, ckpt_path)

    def evaluate() -> None:
        result = evaluate_model(model, config.eval_dir, config.eval_images, ARCHITECTURES.get(config.architecture).multiple)
        logger.info("eval step %d on %s (%d images): bpp %.4f psnr %.2f dB", step, config.eval_dir, result["images"], result["bpp"], result["psnr"])
        _append_jsonl(metrics_path, {"kind": "eval", "step": step, **result, "time": time.time()})

    adversarial = None
    if config.adversarial:
        if arch.loss is not None:
            raise ValueError(f"--adversarial fine-tunes CompressAI codecs; {config.architecture} has its own loss")
        from .adversarial_training import AdversarialTrainingSettings, adversarial_batch

        adversarial = AdversarialTrainingSettings(config.adv_eps, config.adv_steps, config.adv_objective, config.adv_fraction)
    model.train()
    window: dict[str, float] = {"n": 0}
    window_start = time.time()
    skipped = 0
    with _StopFlag() as stop:
        while step < config.steps and stop.signal is None:
            x = bank.sample(config.batch_size, generator).to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            if aux_optimizer is not None:
                aux_optimizer.zero_grad(set_to_none=True)
            if adversarial is not None:  # attacked inputs, clean targets
                terms = rd_loss(model(adversarial_batch(model, x, adversarial, generator)), x, config.lmbda)
            else:
                terms = _loss(arch, model, x, config)
            if not torch.isfinite(terms["loss"]):
                skipped += 1
                logger.warning("non-finite loss at step %d; batch skipped (%d so far)", step, skipped)
                if skipped > 50:
                    raise RuntimeError("more than 50 non-finite losses: training diverged; lower --lr and resume")
                continue
            terms["loss"].backward()
            if config.clip_max_norm > 0:
                torch.nn.utils.clip_grad_norm_(main_params, config.clip_max_norm)
            optimizer.step()
            values = {key: value.item() for key, value in terms.items()}
            if aux_optimizer is not None:
                aux = model.aux_loss()
                aux.backward()
                aux_optimizer.step()
                values["aux"] = aux.item()
            scheduler.step()
            step += 1
            for key, value in values.items():
                window[key] = window.get(key, 0.0) + value
            window["n"] += 1
            if config.log_every and step % config.log_every == 0:
                n = window.pop("n")
                mean = {k: v / n for k, v in window.items()}
                psnr = 10 * math.log10(1 / mean["mse"]) if mean["mse"] > 0 else float("inf")
                rate = (time.time() - window_start) / n  # wall time per step over this window
                window_start = time.time()
                logger.info("step %d %s lr %.2e (%.3f s/step)", step, _format_terms(mean, psnr), optimizer.param_groups[0]["lr"], rate)
                _append_jsonl(metrics_path, {"kind": "train", "step": step, **mean, "psnr": psnr,
                                             "lr": optimizer.param_groups[0]["lr"], "s_per_step": rate, "time": time.time()})
                window = {"n": 0}
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save("periodic")
            if config.eval_dir and config.eval_every and step % config.eval_every == 0:
                eval_start = time.time()
                evaluate()
                window_start += time.time() - eval_start  # keep s/step about training only
        if stop.signal is not None:
            logger.info("received signal %d; saving and stopping at step %d", stop.signal, step)
        save("signal" if stop.signal is not None else "end")
    if stop.signal is None and config.eval_dir and not (config.eval_every and step % config.eval_every == 0):
        evaluate()
    return ckpt_path


# --------------------------------------------------------------------------- export


def export(
    checkpoint: str | Path,
    out_dir: str | Path,
    quality: int | None = None,
    eval_dir: str | Path | None = None,
    eval_images: int | None = None,
) -> Path:
    """Write the exported weights and their model card into ``out_dir``.

    The file is named by the architecture's ``export_stem``:
    ``hac-hyperprior-q{quality}.safetensors`` for the CompressAI models (``quality``
    defaults to the run's ``--quality``), ``hac-comdefend-cifar10.safetensors`` for
    ComDefend. The state dict is saved after ``model.update(force=True)`` (CDF tables
    included) with metadata ``architecture``, ``N``, ``M``, ``lambda``, ``steps``. With
    ``eval_dir`` the card reports the real bpp/PSNR there and JPEG at the same rate.

    Raises:
        ValueError: the architecture's file name needs a quality and none is known.

    Returns:
        The path of the safetensors file.
    """
    from safetensors.torch import save_file

    ckpt = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(ckpt["config"])
    arch = ARCHITECTURES.get(config.architecture)
    model = build_model(config.architecture, config.N, config.M)
    check_state_dict(model, ckpt["model"], str(checkpoint))
    model.load_state_dict(ckpt["model"])
    model.eval()
    model.update(force=True)
    quality = quality if quality is not None else config.quality
    if quality is None and "{quality}" in arch.export_stem:
        raise ValueError(f"{checkpoint} was trained without --quality; pass the rate point to export (--quality Q)")
    stem = arch.export_stem.format(quality=quality)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"architecture": arch.name, "N": str(config.N), "M": str(config.M),
                "lambda": str(config.lmbda), "steps": str(ckpt["step"])}
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    weights_path = out_dir / f"{stem}.safetensors"
    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)
    os.replace(tmp, weights_path)

    has_aux = bool(_split_parameters(model)[1])
    if arch.loss is None:
        intro = (f"hac's own learned codec, rate point q{quality}: CompressAI `{arch.name}` ({arch.paper}), "
                 f"N={config.N}, M={config.M}, trained by `hac.train` on {config.device}.")
    else:
        intro = f"hac's own `{arch.name}` ({arch.paper}), trained by `hac.train` on {config.device}."
    aux_text = f", aux Adam {config.aux_lr:g}" if has_aux else ""
    lines = [
        f"# {stem}",
        "",
        intro,
        "",
        "| | |",
        "|---|---|",
        f"| training data | `{Path(config.data).name}` ({config.data}) |",
        f"| steps | {ckpt['step']} |",
        f"| λ (loss = {arch.loss_text}) | {config.lmbda} |",
        f"| crop / batch | {config.crop}px random crops + h-flips / {config.batch_size} |",
        f"| optimiser | Adam lr {config.lr:g} ({config.lr_schedule} schedule, warm-up {config.warmup_steps}){aux_text}, grad clip {config.clip_max_norm:g} |",
        f"| initialised from | {config.init_from or 'scratch'} |",
        f"| file | `{weights_path.name}`, {weights_path.stat().st_size / 1e6:.1f} MB |",
        f"| exported | {_dt.date.today().isoformat()} |",
        "",
    ]
    if eval_dir is not None:
        result = evaluate_model(model, eval_dir, eval_images, arch.multiple)
        curve = jpeg_reference(eval_dir, max_images=eval_images)
        jpeg_psnr = _jpeg_psnr_at(curve, result["bpp"])
        lines += [
            f"## Measured on `{Path(eval_dir).name}` ({result['images']} images, real bitstreams, 8-bit output)",
            "",
            f"- {stem}: **{result['bpp']:.3f} bpp, {result['psnr']:.2f} dB** PSNR (mean over images)",
            (f"- JPEG (Pillow) at the same rate: {jpeg_psnr:.2f} dB, so {result['psnr'] - jpeg_psnr:+.2f} dB vs JPEG"
             if jpeg_psnr is not None else "- JPEG: the rate is outside the measured JPEG curve"),
            "",
            "JPEG curve on the same images: " + ", ".join(f"q{c['quality']} {c['bpp']:.3f}/{c['psnr']:.2f}" for c in curve),
            "",
        ]
    (out_dir / f"{stem}.md").write_text("\n".join(lines))
    logger.info("exported %s (step %d) -> %s", checkpoint, ckpt["step"], weights_path)
    return weights_path


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hac.train", description="Train hac's learned codecs (resumable).")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="train a new run, or continue one with --resume (the default command)")
    run.add_argument("--run-dir", required=True, help="folder for checkpoints, train.log and metrics.jsonl")
    run.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt (step count continues)")
    defaults = TrainConfig(data="", run_dir="")
    options = {
        "--data": (str, "training image folder (recursive jpg/jpeg/png)"),
        "--architecture": (str, f"one of {', '.join(ARCHITECTURES.names())}"),
        "--N": (int, "channels N (CompressAI models)"), "--M": (int, "channels M (CompressAI models)"),
        "--lmbda": (float, "rate-distortion lambda"), "--quality": (int, "rate-point label"),
        "--crop": (int, "crop side, a multiple of the down-sampling (64; comdefend: any)"), "--batch-size": (int, "batch size"),
        "--steps": (int, "total steps of the run"), "--lr": (float, "Adam learning rate"),
        "--aux-lr": (float, "aux Adam learning rate"), "--warmup-steps": (int, "linear warm-up steps"),
        "--lr-schedule": (str, "step, cosine or constant"), "--lr-decay-at": (float, "fraction of steps where the step decay starts"),
        "--lr-decay-factor": (float, "decay factor"), "--clip-max-norm": (float, "gradient clipping (0: off)"),
        "--log-every": (int, "log interval"), "--checkpoint-every": (int, "checkpoint interval"),
        "--snapshot-every": (int, "keep checkpoint-<step>.pt every this many steps"),
        "--eval-every": (int, "evaluation interval"), "--eval-dir": (str, "evaluation image folder (e.g. Kodak)"),
        "--eval-images": (int, "evaluate on the first K images"), "--seed": (int, "seed"),
        "--threads": (int, "torch threads (default: all cores)"),
        "--init-from": (str, "start from this checkpoint/.safetensors (fine-tune another lambda)"),
        "--device": (str, "torch device, e.g. cuda"),
        "--adv-eps": (lambda text: float(Fraction(text)), "adversarial L-inf budget, e.g. 4/255"),
        "--adv-steps": (int, "PGD steps per adversarial batch"),
        "--adv-objective": (str, "distortion, rate, or distortion,rate"),
        "--adv-fraction": (float, "attacked share of each batch"),
    }
    run.add_argument("--adversarial", action="store_true", default=None,
                     help="fine-tune on a mix of clean and attacked inputs (hac.adversarial_training)")
    comdefend_defaults = ARCHITECTURES.get("comdefend").defaults
    for flag, (kind, text) in options.items():
        name = flag[2:].replace("-", "_")
        default = f"{getattr(defaults, name)}"
        if name in comdefend_defaults:
            default += f"; comdefend: {comdefend_defaults[name]}"
        run.add_argument(flag, dest=name, type=kind, default=None, help=f"{text} (default: {default})")
    exp = sub.add_parser("export", help="export a checkpoint to weights/ (hac-hyperprior-q{q} or hac-comdefend-cifar10) + card")
    exp.add_argument("checkpoint")
    exp.add_argument("--quality", type=int, help="rate point of hac-hyperprior exports (default: the run's --quality)")
    exp.add_argument("--out-dir", default="weights")
    exp.add_argument("--eval-dir", default=None, help="measure bpp/PSNR (and JPEG) on these images for the card")
    exp.add_argument("--eval-images", type=int, default=None)
    exp.add_argument("--threads", type=int, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m hac.train [run] --run-dir DIR --data DIR ...`` or ``... export CKPT --quality Q``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "export", "-h", "--help"):
        argv = ["run", *argv]
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    if args.command == "export":
        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            export(args.checkpoint, args.out_dir, args.quality, args.eval_dir, args.eval_images)
        except (ValueError, FileNotFoundError) as error:
            logger.error("%s", error)
            return 2
        return 0
    given = {k: v for k, v in vars(args).items() if k not in ("command", "resume") and v is not None}
    try:
        if args.resume:
            saved = load_checkpoint(Path(args.run_dir) / "checkpoint.pt")["config"]
            config = TrainConfig.from_dict({**saved, **given})
        else:
            if "data" not in given:
                raise ValueError("--data is required for a new run")
            arch = ARCHITECTURES.get(given.get("architecture", TrainConfig.architecture))
            config = TrainConfig.from_dict({**arch.defaults, **given})
        train(config, resume=args.resume)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
