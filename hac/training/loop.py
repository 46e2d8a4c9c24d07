"""The training loop: :func:`train` runs (or resumes) a run in one folder, ``run_dir``, outside git (e.g. ``runs/<run>``)::

    checkpoint.pt            latest checkpoint (model, both optimizers, LR scheduler, step, RNG, config)
    checkpoint-<step>.pt     snapshots every ``snapshot_every`` steps
    config.json              the config of the latest start or resume
    train.log                the log of every :mod:`hac.training` module (also sent to stdout by the CLI)
    metrics.jsonl            one JSON record per log interval and per evaluation

Checkpoints are written every ``checkpoint_every`` steps, at the end, and when
SIGTERM/SIGINT arrives; ``python -m hac train --resume --run-dir RUN_DIR`` continues
where the run stopped. ``hac train pack RUN_DIR --out training-state/<run>`` copies the three records
into the repository; the checkpoints stay in ``run_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Mapping

import torch

from ..evaluation.datasets import read_id_lines
from .architectures import ARCHITECTURES, build_model
from .checkpoint import atomic_save, load_checkpoint, load_model_weights, restore_training_state, training_state
from .config import TrainConfig, lr_factor
from .crops import ImageBank
from .objectives import create_objective
from .validation import evaluate_model

__all__ = ["train"]

logger = logging.getLogger(__name__)
_package_logger = logging.getLogger(__package__)  # train.log collects the records of every hac.training module


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
    for name, what in (("realism_weight", "a realism run trains the decoder against a discriminator"),
                       ("decoder_only", "a decoder-only run trains the decoder alone")):
        if bool(getattr(saved, name)) != bool(getattr(config, name)):
            raise ValueError(
                f"cannot resume {ckpt_path} with {name}={getattr(config, name)}: it was trained with "
                f"{getattr(saved, name)} ({what}, a plain run the whole codec); use --init-from in a new run_dir to switch"
            )
    return config, ckpt


def train(config: TrainConfig, resume: bool = False, max_minutes: float | None = None) -> Path:
    """Train (or resume) a codec; returns the path of the latest checkpoint.

    Stops after ``config.steps`` steps, or early (after saving) on SIGTERM/SIGINT or
    once ``max_minutes`` of wall time have passed (a limit of this call, not of the run).
    On resume, the model, optimizers, scheduler, step and RNG state come from
    ``run_dir/checkpoint.pt``; ``config`` may change cadences, ``steps`` and the LR
    schedule (the LR is a pure function of step and config), not the model shape.
    """
    config.validate()
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes={max_minutes} must be positive")
    deadline = time.monotonic() + 60 * max_minutes if max_minutes is not None else math.inf
    config, ckpt = _resolve_config(config, resume)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _package_logger.addHandler(handler)
    previous_level, previous_threads = _package_logger.level, torch.get_num_threads()
    if _package_logger.getEffectiveLevel() > logging.INFO:
        _package_logger.setLevel(logging.INFO)
    try:
        return _train(config, ckpt, run_dir, deadline)
    finally:
        _package_logger.removeHandler(handler)
        handler.close()
        _package_logger.setLevel(previous_level)
        torch.set_num_threads(previous_threads)


def _train(config: TrainConfig, ckpt: dict | None, run_dir: Path, deadline: float) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = torch.device(config.device)
    arch = ARCHITECTURES.get(config.architecture)
    # Channels-last: oneDNN runs GDN's 1x1 convolutions ~40% faster that way; a whole step of mbt2018-mean
    # (N=96, M=192, batch 8 x 128², 2 threads) went from ~0.42 to ~0.40 s on this CPU.
    model = build_model(config.architecture, config.N, config.M).to(device, memory_format=torch.channels_last)
    objective = create_objective(config, model, device, generator)
    main_params, aux_params = objective.parameters()
    optimizer = torch.optim.Adam(main_params, lr=config.lr, betas=objective.adam_betas)
    # Only CompressAI's entropy bottleneck has quantiles to fit; ComDefend and decoder-alone runs have no aux loss.
    aux_optimizer = torch.optim.Adam(aux_params, lr=config.aux_lr) if aux_params else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    resumable = {"model": model, "optimizer": optimizer, "aux_optimizer": aux_optimizer, "scheduler": scheduler,
                 "generator": generator, **objective.state()}
    step = 0
    if ckpt is not None:
        step = restore_training_state(ckpt, str(run_dir / "checkpoint.pt"), **resumable)
        # The LR is a pure function of (step, config), so a resumed run may change lr/schedule/steps.
        scheduler.base_lrs = [config.lr for _ in scheduler.base_lrs]
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        for group in aux_optimizer.param_groups if aux_optimizer is not None else []:
            group["lr"] = config.aux_lr
        logger.info("resumed %s at step %d", run_dir, step)
    elif config.init_from:
        load_model_weights(model, config.init_from)
        logger.info("initialised from %s", config.init_from)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    sizes = f" N={config.N} M={config.M}" if arch.loss is None else ""  # ComDefend's widths are fixed
    logger.info(
        "training %s%s (%.2fM params, %s) lambda=%g crop=%d batch=%d steps %d->%d lr=%g threads=%d",
        config.architecture, sizes, n_params / 1e6, objective.name, config.lmbda, config.crop,
        config.batch_size, step, config.steps, config.lr, torch.get_num_threads(),
    )
    bank = ImageBank(config.data, config.crop, read_id_lines(config.exclude) if config.exclude else [])
    metrics_path = run_dir / "metrics.jsonl"
    ckpt_path = run_dir / "checkpoint.pt"

    def save(reason: str) -> None:
        checkpoint = training_state(config=config, step=step, **resumable)
        atomic_save(checkpoint, ckpt_path)
        if config.snapshot_every and step % config.snapshot_every == 0 and step > 0:
            atomic_save(checkpoint, run_dir / f"checkpoint-{step}.pt")
        logger.info("checkpoint at step %d (%s) -> %s", step, reason, ckpt_path)

    def evaluate() -> None:
        result = evaluate_model(model, config.eval_dir, config.eval_images, arch.multiple)
        logger.info("eval step %d on %s (%d images): bpp %.4f psnr %.2f dB", step, config.eval_dir, result["images"], result["bpp"], result["psnr"])
        _append_jsonl(metrics_path, {"kind": "eval", "step": step, **result, "time": time.time()})

    model.train()
    window: dict[str, float] = {"n": 0}
    window_start = time.time()
    skipped = 0
    with _StopFlag() as stop:
        while step < config.steps and stop.signal is None and time.monotonic() < deadline:
            x = bank.sample(config.batch_size, generator).to(device, non_blocking=True, memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            if aux_optimizer is not None:
                aux_optimizer.zero_grad(set_to_none=True)
            terms = objective.terms(x)
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
        timed_out = step < config.steps and stop.signal is None
        if stop.signal is not None:
            logger.info("received signal %d; saving and stopping at step %d", stop.signal, step)
        elif timed_out:
            logger.info("time limit reached; saving and stopping at step %d", step)
        save("signal" if stop.signal is not None else "time limit" if timed_out else "end")
    if stop.signal is None and not timed_out and config.eval_dir and not (config.eval_every and step % config.eval_every == 0):
        evaluate()
    return ckpt_path
