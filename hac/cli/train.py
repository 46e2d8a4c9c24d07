"""``python -m hac train``: ``[run] --run-dir DIR --data DIR ...`` trains or resumes a run,
``export CKPT --quality Q`` exports one, ``pack RUN_DIR --out training-state/<run>`` copies a run's
records into the repository (its checkpoint stays in RUN_DIR, outside git, e.g. ``runs/<run>``;
``--checkpoint-to DIR`` also writes a compacted copy to carry to another machine). Example of a ComDefend run, started from the
architecture's defaults::

    python -m hac train --architecture comdefend --data ../shared/data/cifar10/train --run-dir RUN
"""

from __future__ import annotations

import argparse
import logging
import sys
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import torch

from ..training.architectures import ARCHITECTURES
from ..training.checkpoint import load_checkpoint, pack_run
from ..training.config import TrainConfig
from ..training.export import export
from ..training.loop import train

__all__ = ["add_parser", "run", "main"]

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        add_help=False,  # --help goes on to the training parser below, which knows the options
        help="train hac's learned codecs and ComDefend (resumable; also export, pack): hac train --help",
        description="Everything after 'train' goes to the training parser (hac train --help).",
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return main(args.arguments)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hac train", description="Train hac's learned codecs (resumable).")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="train a new run, or continue one with --resume (the default command)")
    run.add_argument("--run-dir", required=True, help="folder for checkpoints, train.log and metrics.jsonl")
    run.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt (step count continues)")
    run.add_argument("--max-minutes", type=float, default=None,
                     help="save and stop after this much wall time (this invocation only; resume to go on)")
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
        "--adv-latent-weight": (float, "weight of how far attacks move the latents, in predicted scales (0: off)"),
        "--adv-rate-gap-weight": (float, "weight of the bits rate-attacked images cost over their clean versions (0: off)"),
        "--purify-against": (str, "fine-tune as a purifier against attacks on this classifier, e.g. efficientnet-lite0"),
        "--purify-attack": (str, "the attack on the classifier, an attack spec"),
        "--purify-fraction": (float, "share of each batch attacked on the classifier"),
        "--purify-logit-weight": (float, "weight of the classifier-logit distance in the purifier's loss (HGD; 0: pixels only)"),
        "--realism-weight": (float, "realism fine-tune of the decoder (encoder frozen): weight of the GAN loss (0: off)"),
        "--realism-feature-weight": (float, "weight of discriminator feature matching in the realism fine-tune"),
        "--disc-lr": (float, "discriminator Adam learning rate"), "--disc-width": (int, "discriminator first-layer channels"),
        "--exclude": (str, "file of image paths (relative to --data) to leave out, e.g. an evaluation's image_ids.txt"),
    }
    run.add_argument("--adversarial", action="store_true", default=None,
                     help="fine-tune on a mix of clean and attacked inputs (hac.training.adversarial)")
    run.add_argument("--decoder-only", action="store_true", default=None,
                     help="fine-tune only the decoder on the real quantised latents of clean crops, encoder frozen "
                          "(the same bitstreams; hac.training.decoder_tuning)")
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
    exp.add_argument("--half", action="store_true",
                     help="store the transforms in float16 (half the file; entropy models stay float32)")
    exp.add_argument("--name", help="file stem instead of the architecture's (e.g. hac-hyperprior-adv-q2)")
    pack = sub.add_parser("pack", help="copy RUN_DIR's records (config.json, metrics.jsonl, train.log) into OUT, e.g. "
                                        "training-state/<run> to commit; the checkpoint stays outside git")
    pack.add_argument("run_dir")
    pack.add_argument("--out", required=True, help="folder for the records (e.g. training-state/<run>)")
    pack.add_argument("--checkpoint-to", metavar="DIR",
                      help="also write the latest checkpoint, compacted (float16 weights, bfloat16 Adam second moments), "
                           "with the records into DIR: a run folder outside git that --resume continues")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``hac train [run] --run-dir DIR --data DIR ...`` or ``... export CKPT --quality Q``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "export", "pack", "-h", "--help"):
        argv = ["run", *argv]
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    if args.command == "export":
        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            export(args.checkpoint, args.out_dir, args.quality, args.eval_dir, args.eval_images, args.half, args.name)
        except (ValueError, FileNotFoundError) as error:
            logger.error("%s", error)
            return 2
        return 0
    if args.command == "pack":
        try:
            packed = pack_run(args.run_dir, args.out, args.checkpoint_to)
        except (ValueError, FileNotFoundError) as error:
            logger.error("%s", error)
            return 2
        logger.info("records of %s -> %s (commit these)", args.run_dir, args.out)
        if packed is not None:
            logger.info("compacted checkpoint -> %s (%.1f MB; resume: hac train --resume --run-dir %s)",
                        packed, packed.stat().st_size / 1e6, packed.parent)
        logger.info("the checkpoint stays in %s, outside git (resume: hac train --resume --run-dir %s)",
                    Path(args.run_dir) / "checkpoint.pt", args.run_dir)
        return 0
    given = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "max_minutes") and v is not None}
    try:
        if args.resume:
            saved = load_checkpoint(Path(args.run_dir) / "checkpoint.pt")["config"]
            config = TrainConfig.from_dict({**saved, **given})
        else:
            if "data" not in given:
                raise ValueError("--data is required for a new run")
            arch = ARCHITECTURES.get(given.get("architecture", TrainConfig.architecture))
            config = TrainConfig.from_dict({**arch.defaults, **given})
        train(config, resume=args.resume, max_minutes=args.max_minutes)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        logger.error("%s", error)
        return 2
    return 0
