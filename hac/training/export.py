"""Export of a training checkpoint: safetensors weights plus a Markdown model card."""

from __future__ import annotations

import datetime as _dt
import logging
import re
from pathlib import Path

from ..core.files import atomic_path
from .architectures import ARCHITECTURES, build_model, split_parameters
from .checkpoint import check_state_dict, half_precision, load_checkpoint
from .config import TrainConfig
from .validation import evaluate_model, jpeg_psnr_at, jpeg_reference

__all__ = ["export"]

logger = logging.getLogger(__name__)

def export(
    checkpoint: str | Path,
    out_dir: str | Path,
    quality: int | None = None,
    eval_dir: str | Path | None = None,
    eval_images: int | None = None,
    half: bool = False,
    name: str | None = None,
) -> Path:
    """Write the exported weights and their model card into ``out_dir``.

    The file is named by the architecture's ``export_stem``:
    ``hac-hyperprior-q{quality}.safetensors`` for the CompressAI models (``quality``
    defaults to the run's ``--quality``), ``hac-comdefend-cifar10.safetensors`` for
    ComDefend; ``name`` replaces that stem (e.g. ``hac-hyperprior-adv-q2`` for an
    adversarially fine-tuned variant, loaded with the codec's ``weights=PATH``). ``half`` stores the transforms in float16 (:func:`half_precision`). The state dict is saved after ``model.update(force=True)`` (CDF tables
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
    stem = name or arch.export_stem.format(quality=quality)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", stem):
        raise ValueError(f"export name {stem!r} must be a plain file stem (letters, digits, '.', '_', '-')")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"architecture": arch.name, "N": str(config.N), "M": str(config.M),
                "lambda": str(config.lmbda), "steps": str(ckpt["step"])}
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    if half:
        state = half_precision(state)
        model.load_state_dict(state)  # what is measured below is what is shipped
        metadata["dtype"] = "float16 (entropy models float32)"
    weights_path = out_dir / f"{stem}.safetensors"
    with atomic_path(weights_path, mode=0o644) as tmp:
        save_file(state, str(tmp), metadata=metadata)

    # A run that trains the decoder alone freezes the entropy models, so their aux loss never trains.
    has_aux = bool(split_parameters(model)[1]) and not config.trains_decoder_alone
    if arch.loss is None:
        intro = (f"hac's own learned codec, rate point q{quality}: CompressAI `{arch.name}` ({arch.paper}), "
                 f"N={config.N}, M={config.M}, trained by `hac.training` on {config.device}.")
    else:
        intro = f"hac's own `{arch.name}` ({arch.paper}), trained by `hac.training` on {config.device}."
    aux_text = f", aux Adam {config.aux_lr:g}" if has_aux else ""
    logit_text = f", logit distance weighted {config.purify_logit_weight:g}" if config.purify_logit_weight else ""
    penalty_text = "".join(f", {name} weighted {weight:g}" for name, weight in
                           (("rate gap", config.adv_rate_gap_weight), ("latent shift", config.adv_latent_weight)) if weight)
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
        *([f"| adversarial fine-tuning | PGD-{config.adv_steps} at ε = {config.adv_eps * 255:g}/255 on the "
           f"{config.adv_objective} objective(s), {config.adv_fraction:g} of each batch{penalty_text} (`hac.training.adversarial`) |"]
          if config.adversarial else []),
        *([f"| purifier fine-tuning | `{config.purify_attack}` on `{config.purify_against}` (its own clean predictions), "
           f"{config.purify_fraction:g} of each batch, clean targets (`--purify-against`){logit_text} |"] if config.purify_against else []),
        *([f"| realism fine-tuning | decoder only (encoder and entropy models frozen: the same bitstreams), GAN loss "
           f"weighted {config.realism_weight:g} + feature matching {config.realism_feature_weight:g} against a "
           f"patch discriminator (`hac.training.realism`, Adam {config.disc_lr:g}) |"] if config.realism_weight else []),
        *(["| decoder-only fine-tuning | `g_s` alone on the real quantised latents of clean crops, λ·255²·MSE "
           "(encoder and entropy models frozen: the same bitstreams; `--decoder-only`) |"] if config.decoder_only else []),
        *([f"| held out | the images listed in `{config.exclude}` |"] if config.exclude else []),
        f"| file | `{weights_path.name}`, {weights_path.stat().st_size / 1e6:.1f} MB{' (transforms in float16)' if half else ''} |",
        f"| exported | {_dt.date.today().isoformat()} |",
        "",
    ]
    if eval_dir is not None:
        result = evaluate_model(model, eval_dir, eval_images, arch.multiple)
        curve = jpeg_reference(eval_dir, max_images=eval_images)
        jpeg_psnr = jpeg_psnr_at(curve, result["bpp"])
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
