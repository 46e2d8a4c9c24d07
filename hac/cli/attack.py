"""``python -m hac attack``: attack images through a purifier under one or more threat models."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..attacks.classifier_attacks import ATTACKS
from ..models.classifiers import create_classifier
from ..core.images import load_image, perturbation_image, save_png
from ..defence.pipeline import DefenceReport, attack_and_purify
from ..defence.purify import build_chain
from ..core.specs import ComponentSpec, format_spec, parse_spec, parse_value
from ..attacks.threats import ThreatModel
from .common import add_classifier_args, add_codec_args, add_overwrite_arg, chain_text, check_out, format_topk, write_json

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="attack images, purify them, and compare predictions (clean / adversarial / purified)",
        description="Craft adversarial examples under each threat model, purify them, and report what survived.",
    )
    parser.add_argument("--image", action="append", required=True, type=Path, help="input image (repeat for several)")
    parser.add_argument("--label", action="append", help="true class index or name per image (default: the clean prediction)")
    parser.add_argument("--attack", default="pgd", help=f"attack name or spec ({', '.join(ATTACKS.names())})")
    parser.add_argument("--eps", help="budget, e.g. 4/255 (L-inf) or 0.5 (L2)")
    parser.add_argument("--steps", type=int, help="attack iterations")
    parser.add_argument("--alpha", help="step size (default 2.5*eps/steps)")
    parser.add_argument("--restarts", type=int, help="random restarts (pgd, pgd-l2, apgd, square)")
    parser.add_argument(
        "--threat", default="bpda",
        help=f"threat model(s), comma-separated: {', '.join(ThreatModel.values())} (default bpda)",
    )
    parser.add_argument("--eot-samples", type=int, default=8, help="samples per step for the eot threat model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for result.json and, per threat model and image, "
                        "<threat>/<index>-<image name>/ with the PNGs")
    add_overwrite_arg(parser)
    add_classifier_args(parser)
    add_codec_args(parser)
    parser.set_defaults(run=run)


def _attack_spec(args: argparse.Namespace) -> str:
    spec = parse_spec(args.attack)
    params = dict(spec.params)
    for key in ("eps", "alpha"):
        if getattr(args, key) is not None:
            params[key] = parse_value(getattr(args, key))
    for key in ("steps", "restarts"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    return format_spec(ComponentSpec(spec.name, params))


def _labels(args: argparse.Namespace, class_names: list[str]) -> torch.Tensor | None:
    if not args.label:
        return None
    if len(args.label) != len(args.image):
        raise ValueError(f"give one --label per --image ({len(args.image)} images, {len(args.label)} labels)")
    lookup = {name.lower(): index for index, name in enumerate(class_names)}
    labels = []
    for text in args.label:
        value = parse_value(text)
        if isinstance(value, int) and 0 <= value < len(class_names):
            labels.append(value)
        elif str(text).lower() in lookup:
            labels.append(lookup[str(text).lower()])
        else:
            raise ValueError(f"label {text!r} is neither a class index in [0, {len(class_names) - 1}] nor a class name")
    return torch.tensor(labels)


def _accuracy(report: DefenceReport, key: str) -> str:
    correct = report.correct(key)
    return f"{int(correct.sum())}/{len(correct)}"


def _print_report(report: DefenceReport, names: list[Path]) -> None:
    print(f"\nthreat {report.threat}: {report.attack} -> {report.chain} x {report.rounds}")
    for warning in report.warnings:
        print(f"  WARNING: {warning}")
    print(f"  gradient check: {report.gradients.explain()}; loss {report.loss_clean:.3f} -> {report.loss_adversarial:.3f}")
    for i, name in enumerate(names):
        print(f"  {name.name}: Linf {report.linf[i] * 255:.2f}/255, L2 {report.l2[i]:.3f}, "
              f"adv PSNR {report.adversarial_psnr[i]:.2f} dB")
        for key in ("clean", "adversarial", "purified"):
            print(f"    {key:<12} {format_topk(report.top5[key][i][:3])}")
        rounds = ", ".join(f"{s.bpp[i]:.3f} bpp / {s.psnr[i]:.2f} dB" for s in report.purified.rounds)
        print(f"    per round    {rounds}")
    print(f"  correct: clean {_accuracy(report, 'clean')}, adversarial (no defence) {_accuracy(report, 'adversarial')}, "
          f"adversarial + purification {_accuracy(report, 'purified')}, clean + purification {_accuracy(report, 'purified_clean')}")


def image_folder(index: int, path: Path) -> str:
    """The folder name of the ``index``-th image: its position and name, unique even for same-named files."""
    return f"{index + 1:03d}-{path.stem}"


def _save(report: DefenceReport, names: list[Path], out: Path, eps: float | None) -> list[dict]:
    rows = []
    for i, name in enumerate(names):
        folder = out / report.threat / image_folder(i, name)
        save_png(report.clean[i], folder / "clean.png")
        save_png(report.adversarial[i], folder / "adversarial.png")
        save_png(report.purified.x[i], folder / "purified.png")
        save_png(perturbation_image(report.adversarial[i] - report.clean[i], eps), folder / "perturbation.png")
        rows.append({
            "image": str(name),
            "folder": f"{report.threat}/{image_folder(i, name)}",
            "label": int(report.labels[i]),
            **{f"top5_{k}": [{"index": a, "name": b, "prob": p} for a, b, p in report.top5[k][i]] for k in report.top5},
            "linf": float(report.linf[i]), "l2": float(report.l2[i]), "adversarial_psnr": float(report.adversarial_psnr[i]),
            "per_round": [{"bpp": float(s.bpp[i]), "psnr": float(s.psnr[i])} for s in report.purified.rounds],
        })
    return rows


def run(args: argparse.Namespace) -> int:
    threats = [ThreatModel(t.strip()) for t in args.threat.split(",") if t.strip()]
    if not threats:
        raise ValueError(f"--threat needs at least one of {', '.join(ThreatModel.values())}")
    check_out(args.out, args.overwrite)
    chain = chain_text(args.codec)
    build_chain(chain)  # validate before any heavy work
    attack = _attack_spec(args)
    loaded = [load_image(path)[None].to(args.device) for path in args.image]
    classifier = create_classifier(args.classifier, weights=args.classifier_weights, device=args.device)
    x = torch.cat([classifier.fit(image) for image in loaded])
    labels = _labels(args, classifier.class_names)
    summary = {"attack": attack, "chain": chain, "rounds": args.rounds, "classifier": args.classifier, "threats": {}}
    for threat in threats:
        torch.manual_seed(args.seed)
        report = attack_and_purify(x, classifier, attack, chain, args.rounds, threat, labels, args.eot_samples)
        _print_report(report, args.image)
        entry = {k: int(report.correct(k).sum()) for k in report.top5}
        entry.update(warnings=report.warnings, attack=report.attack, images=len(args.image))
        if args.out:
            entry["per_image"] = _save(report, args.image, args.out, report.eps)
        summary["threats"][threat] = entry
    if args.out:
        write_json(args.out / "result.json", summary)
        print(f"\nwrote {args.out}/result.json and per-threat PNGs (clean, adversarial, purified, perturbation)")
    return 0
