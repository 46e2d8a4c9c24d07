"""``python -m hac audit``: the adaptive-evaluation checklist for one defence, with a verdict; resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.specs import parse_value
from .common import ProgressBar, add_run_folder_arg, check_out
from ..evaluation.store import STORE_FILENAME

__all__ = ["add_parser", "run", "parse_eps"]


def parse_eps(text: str, option: str = "--eps") -> float:
    """``4/255`` or ``0.0157`` -> a float in (0, 1]; else a ``ValueError`` naming ``option``."""
    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{option} must be a number in (0, 1] in pixel units such as 4/255 or 0.0157, got {text!r}")
    return float(value)


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{option} must be comma-separated integers such as 5,20, got {text!r}") from None


def add_parser(subparsers) -> None:
    from ..audit.suite import CHECKS

    parser = subparsers.add_parser(
        "audit",
        help="run the adaptive-attack checklist on a defence and give a verdict (robust accuracy, flags)",
        description="Audit a defence: oblivious, BPDA, straight-through, EOT, APGD-CE/DLR, learned-surrogate BPDA, "
        "attack on the codec, Square and transfer, as a cascade (each image only until it breaks), then the steps "
        "check, eps sweep and random-gradient control. Units are appended to OUT/rows.jsonl; rerunning the same "
        "command resumes. Writes OUT/report.md (verdict card on top), audit.json, worst_case.csv and plots.",
    )
    parser.add_argument("--classifier", default="efficientnet-lite0", help="classifier name (see `python -m hac weights`)")
    parser.add_argument("--codec", action="append", metavar="SPEC",
                        help="codec spec of the purifier, e.g. jpeg:q=25; repeat or join with '+' for a chain; "
                        "leave out to audit the bare classifier")
    parser.add_argument("--rounds", type=int, default=1, help="purification rounds (default 1)")
    parser.add_argument("--data", type=Path, required=True, help="ImageNet-layout folder (<synset>/<image>)")
    parser.add_argument("--images", type=int, default=200, help="number of images, a seeded subset (default 200)")
    parser.add_argument("--ids", type=Path, help="file of image ids (one a line, e.g. docs/results/hac-paper-small/image_ids.txt); "
                        "the audit draws its --images images from these instead of from the whole folder")
    parser.add_argument("--eps", default="4/255", help="L-inf budget (default 4/255)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--restarts", type=int, default=1, help="PGD restarts (default 1)")
    parser.add_argument("--apgd-steps", type=int, default=20, help="APGD steps (default 20)")
    parser.add_argument("--square-queries", type=int, default=500, help="Square queries per image (default 500)")
    parser.add_argument("--surrogate-steps", type=int, default=150, help="training steps of the learned surrogate (default 150)")
    parser.add_argument("--steps-multipliers", default="5,20", help="the steps check's multiples (default 5,20)")
    parser.add_argument("--eps-sweep", default="8/255,16/255", help="the eps sweep's larger budgets (default 8/255,16/255)")
    parser.add_argument("--checks", default="all",
                        help=f"parts of the suite to run: 'all', a list, or 'all,-square' (choices: {', '.join(CHECKS)})")
    parser.add_argument("--batch-size", type=int, default=8, help="images per unit of work (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="image subset and attack seeds (default 0)")
    add_run_folder_arg(parser, "rows.jsonl, report.md, audit.json, worst_case.csv, plots")
    parser.add_argument("--cache", type=Path, help="folder audits share: learned surrogates and the oblivious attacks' "
                        "examples, which do not depend on the codec (default $HAC_CACHE, else ~/.cache/hac)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no verdict print (for scripts)")
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """The :class:`~hac.audit.suite.AuditConfig` of the parsed arguments (``ValueError`` on a bad value)."""
    from ..audit.suite import AuditConfig, parse_checks

    sweep = tuple(parse_eps(part, "--eps-sweep") for part in args.eps_sweep.split(",") if part.strip())
    return AuditConfig(
        classifier=args.classifier, codec="+".join(args.codec) if args.codec else None, rounds=args.rounds,
        data=str(args.data), images=args.images, ids_file=None if args.ids is None else str(args.ids), seed=args.seed, eps=parse_eps(args.eps), steps=args.steps,
        restarts=args.restarts, apgd_steps=args.apgd_steps, square_queries=args.square_queries,
        surrogate_steps=args.surrogate_steps, steps_multipliers=_int_list(args.steps_multipliers, "--steps-multipliers"),
        eps_sweep=sweep, checks=parse_checks(args.checks), batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from ..audit import audit, verdict_card

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    check_out(args.out, args.overwrite, resumable=STORE_FILENAME)
    config = config_from_args(args)
    if args.ids is not None and not args.ids.exists():
        raise FileNotFoundError(f"--ids {args.ids} does not exist; pass a file of image ids, one a line")
    if not args.data.exists():
        raise FileNotFoundError(f"--data {args.data} does not exist; pass an ImageNet-layout folder such as ../shared/data/imagenet-val-1300")
    bar = None if args.quiet else ProgressBar("audit")
    try:
        result = audit(config, args.out, bar, device=args.device,
                       cache=args.cache if args.cache is not None else "default")
    finally:
        if bar is not None:
            bar.close()
    written = result.write(args.out)
    if not args.quiet:
        print(verdict_card(result.verdict))
        print(f"\nwrote {', '.join(path.name for path in written)} in {args.out}")
    return 0
