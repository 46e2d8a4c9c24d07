"""``python -m hac codec-attack``: attack the codecs themselves (distortion and bitrate attacks).

For each codec, objective and eps: the clean and attacked bpp and PSNR (both
against the clean image, both from the real codec), the PSNR drop in percent,
the bitrate factor and the perturbation's own PSNR. Writes ``codec_attack.csv``
(one row per codec, objective and eps), ``codec_attack.json`` (the same plus
per-image numbers, the settings and the skipped codecs) and one plot per
objective, ``codec_attack_<objective>.png`` (PSNR drop and bpp factor against eps).
"""

from __future__ import annotations

import argparse
import csv
import sys
from fractions import Fraction
from pathlib import Path

import torch

from ..attacks.codec_attacks import (
    METHODS, STARTS, Objective, CodecAttackResult, CodecAttackSettings, check_objective, run_codec_attacks, worst_case,
)  # fmt: skip
from ..codecs import create_codec
from ..hub import MissingWeightsError
from ..core.images import list_images, load_image
from .common import add_overwrite_arg, check_out, write_json

__all__ = ["add_parser", "run", "load_folder", "parse_eps_list"]

COLUMNS = (
    "codec", "objective", "method", "eps_255", "steps", "starts", "images", "clean_bpp", "clean_psnr",
    "adv_bpp", "adv_psnr", "psnr_drop_pct", "bpp_ratio", "perturbation_psnr", "linf_255",
)  # fmt: skip


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "codec-attack",
        help="attack codecs' inputs to raise their distortion or bitrate (Zhu, Sun et al. 2024)",
        description="FGSM/PGD on a codec's input: lower the PSNR of its reconstruction of the clean image, "
        "or raise its bitrate. Gradients come from differentiable surrogates; every reported number comes "
        "from the real codec (learned codecs: real bitstreams; JPEG: Pillow).",
    )
    parser.add_argument("--data", required=True, type=Path, help="folder of images (e.g. ../shared/data/kodak)")
    parser.add_argument("--codecs", required=True, nargs="+", metavar="SPEC", help="codec specs, e.g. jpeg:q=25 hac-hyperprior:q=3")
    parser.add_argument("--eps", default="4/255", help="comma-separated L-inf budgets, e.g. 1/255,2/255,4/255,8/255 (default 4/255)")
    parser.add_argument("--objective", default="distortion,rate", help=f"comma-separated: {', '.join(Objective.values())} (default both)")
    parser.add_argument("--method", default="pgd", help="comma-separated: pgd (default), fgsm, noise (random-sign baseline), shift (brightness "
                        "moved by eps: the floor of a codec that reproduces its input)")
    parser.add_argument("--steps", type=int, default=10, help="PGD iterations (default 10)")
    parser.add_argument("--alpha", help="PGD step size, e.g. 1/255 (default 2.5*eps/steps)")
    parser.add_argument("--starts", default="zero,shift",
                        help=f"PGD's starting points, each a full run; per image the worst iterate of any run is kept: comma-separated {', '.join(STARTS)} "
                        "(default zero,shift: from zero alone PGD misses a plain brightness shift)")
    parser.add_argument("--limit", type=int, help="use the first N images (sorted by name)")
    parser.add_argument("--crop", type=int, help="centre-crop every image to CROP x CROP (keeps CPU cost down)")
    parser.add_argument("--seed", type=int, default=0, help="seed of random starts / noise")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--lmbda", type=float,
                        help="rate-distortion lambda of the learned codecs (their card): adds the R-D cost bpp + lambda*255^2*MSE "
                        "and, with several codecs, each one's change against the first (before/after adversarial fine-tuning)")
    parser.add_argument("--out", type=Path, help="folder for codec_attack.csv/.json and the plots")
    add_overwrite_arg(parser)
    parser.set_defaults(run=run)


def _number(text: str, name: str) -> float:
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{name} {text!r} is not a number; write e.g. 4/255 or 0.0157") from None


def parse_eps_list(text: str) -> list[float]:
    """``"1/255,2/255,0.01"`` -> floats (each validated by :class:`CodecAttackSettings`)."""
    values = [_number(item, "eps") for item in text.split(",") if item.strip()]
    if not values:
        raise ValueError("--eps needs at least one value, e.g. 4/255")
    return values


def load_folder(folder: Path, limit: int | None = None, crop: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(name, (3, H, W) image in [0, 1]) for the images of ``folder`` (recursive, sorted), centre-cropped.

    Raises:
        FileNotFoundError: no such folder, or no images in it.
        ValueError: a bad ``limit`` or ``crop``, or an image smaller than the crop.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of images, got {limit}")
    if crop is not None and crop < 1:
        raise ValueError(f"--crop must be a positive size in pixels, got {crop}")
    images = []
    for path in list_images(folder)[:limit]:
        image = load_image(path)
        if crop is not None:
            height, width = image.shape[-2:]
            if height < crop or width < crop:
                raise ValueError(f"{path} is {width}x{height}, smaller than --crop {crop}; use a smaller crop")
            top, left = (height - crop) // 2, (width - crop) // 2
            image = image[:, top : top + crop, left : left + crop]
        images.append((str(path.relative_to(folder)), image.contiguous()))
    return images


def _methods(text: str) -> list[str]:
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--method {text!r}: choose one or more of {', '.join(METHODS)}")
    return methods


def _settings(args: argparse.Namespace) -> list[CodecAttackSettings]:
    objectives = [Objective(o.strip()) for o in args.objective.split(",") if o.strip()]
    if not objectives:
        raise ValueError(f"--objective needs at least one of {', '.join(Objective.values())}")
    alpha = _number(args.alpha, "--alpha") if args.alpha else None
    return [
        CodecAttackSettings(objective, eps, method, args.steps, alpha, args.starts)
        for method in _methods(args.method)
        for objective in objectives
        for eps in parse_eps_list(args.eps)
    ]


def _row(result: CodecAttackResult) -> dict:
    summary = result.summary()
    return {key: summary[key] for key in COLUMNS}


def _print_header(width: int) -> None:
    print(
        f"{'codec':<{width}} {'objective':<10} {'eps':>7} {'clean bpp':>9} {'PSNR':>6} {'adv bpp':>8} {'PSNR':>6} "
        f"{'drop %':>7} {'bpp x':>7} {'pert PSNR':>9}"
    )


def _print_row(result: CodecAttackResult, width: int) -> None:
    r = result.summary()
    print(
        f"{r['codec']:<{width}} {r['objective']:<10} {r['eps_255']:>5g}/255 {r['clean_bpp']:9.4f} {r['clean_psnr']:6.2f} "
        f"{r['adv_bpp']:8.4f} {r['adv_psnr']:6.2f} {r['psnr_drop_pct']:7.2f} {r['bpp_ratio']:7.3f} {r['perturbation_psnr']:9.2f}",
        flush=True,
    )


def _plot(results: list[CodecAttackResult], out: Path) -> list[Path]:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, PNG through Agg

    paths = []
    for objective in Objective:
        chosen = [r.summary() for r in results if r.settings.objective == objective]
        if not chosen:
            continue
        figure = Figure(figsize=(11, 4.8), layout="constrained")
        axes = figure.subplots(1, 2)
        methods = list(dict.fromkeys(row["method"] for row in chosen))
        for codec, method in dict.fromkeys((row["codec"], row["method"]) for row in chosen):
            rows = sorted((row for row in chosen if (row["codec"], row["method"]) == (codec, method)), key=lambda row: row["eps_255"])
            eps = [row["eps_255"] for row in rows]
            label = codec if len(methods) == 1 else f"{codec} ({method})"
            axes[0].plot(eps, [row["psnr_drop_pct"] for row in rows], marker="o", label=label)
            axes[1].plot(eps, [row["bpp_ratio"] for row in rows], marker="o", label=label)
        method = ", ".join(methods)
        axes[0].set(title=f"{objective} attack ({method}): PSNR drop", xlabel="ε (x 1/255)", ylabel="PSNR drop vs clean (%)")
        axes[1].set(title=f"{objective} attack ({method}): bitrate", xlabel="ε (x 1/255)", ylabel="attacked bpp / clean bpp")
        axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
        for ax in axes:
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=min(3, len(labels)))
        path = out / f"codec_attack_{objective}.png"
        figure.savefig(path, dpi=110)
        paths.append(path)
    return paths


def _compare(results: list[CodecAttackResult], lmbda: float) -> tuple[list[dict], list[dict]]:
    """Print and return the R-D costs per row, and every codec's change against the first one."""
    from ..training.adversarial import RobustnessReport  # imports compressai: only when asked for

    by_codec: dict[str, list[CodecAttackResult]] = {}
    for result in results:
        by_codec.setdefault(result.codec, []).append(result)
    report = RobustnessReport(by_codec, lmbda)
    print(f"\nrate-distortion cost bpp + {lmbda:g}*255^2*MSE, clean and attacked:")
    print(report.format_table())
    first, *others = by_codec
    changes = [{"codec": other, "versus": first, **change} for other in others for change in report.changes(first, other)]
    for change in changes:
        print(
            f"{change['codec']} vs {first}, {change['method']} {change['objective']} eps={change['eps_255']:g}/255: "
            f"attacked R-D cost {change['adv_rd_cost_change_pct']:+.1f} %, clean R-D cost {change['clean_rd_cost_change_pct']:+.1f} %, "
            f"clean bpp {change['clean_bpp_change_pct']:+.1f} %, clean PSNR {change['clean_psnr_change_db']:+.2f} dB"
        )
    return report.rows(), changes


def _print_worst(worst: list[dict], width: int) -> None:
    print("\nworst case over the attacks, measure by measure, from the real codec:")
    for row in worst:
        parts = [f"drop {row['psnr_drop_pct']:.2f} % ({row['psnr_drop_pct_attack']})",
                 f"bpp x{1 + row['bit_increase']:.3f} ({row['bit_increase_attack']})"]  # fmt: skip
        if "added_rd_cost" in row:
            parts.append(f"added R-D cost {row['added_rd_cost']:.4f} ({row['added_rd_cost_attack']})")
        changes = [f"{name} {row[name + '_change_pct']:+.1f} %" for name in ("psnr_drop_pct", "bit_increase", "added_rd_cost")
                   if name + "_change_pct" in row]  # fmt: skip
        line = f"{row['codec']:<{width}} {row['eps_255']:>5g}/255 " + ", ".join(parts)
        print(line + (f"; vs the first codec: {', '.join(changes)}" if changes else ""))


def run(args: argparse.Namespace) -> int:
    if args.lmbda is not None and args.lmbda <= 0:
        raise ValueError(f"--lmbda must be positive, got {args.lmbda}")
    check_out(args.out, args.overwrite)
    settings = _settings(args)  # validate before any heavy work
    if args.threads:
        torch.set_num_threads(args.threads)
    images = load_folder(args.data, args.limit, args.crop)
    codecs, skipped = {}, []
    for spec in args.codecs:
        try:
            codecs[spec] = create_codec(spec)
        except MissingWeightsError as error:
            skipped.append({"codec": spec, "reason": str(error)})
            print(f"skipped {spec}: {error}", file=sys.stderr)
    print(f"{len(images)} image(s) from {args.data}" + (f", centre-cropped to {args.crop}" if args.crop else ""))
    width = max([len(spec) for spec in codecs] + [12])
    _print_header(width)
    results: list[CodecAttackResult] = []
    for spec, codec in codecs.items():
        usable = []
        for attack in settings:
            try:
                check_objective(codec, attack.objective, attack.method)
                usable.append(attack)
            except ValueError as error:
                if not any(s["codec"] == spec and s.get("objective") == attack.objective for s in skipped):
                    skipped.append({"codec": spec, "objective": attack.objective, "reason": str(error)})
                    print(f"skipped {spec} {attack.objective}: {error}", file=sys.stderr)
        results += run_codec_attacks({spec: codec}, [image for _, image in images], usable, seed=args.seed,
                                     progress=lambda result: _print_row(result, width))
    if not results:
        print("no codec could be attacked (see the reasons above)", file=sys.stderr)
    comparison = _compare(results, args.lmbda) if args.lmbda is not None and results else None
    worst = worst_case(comparison[0] if comparison else [result.summary() for result in results])
    if any(row["attacks"] > 1 for row in worst):
        _print_worst(worst, width)
    else:
        worst = None  # one attack per codec and eps: the table above is the worst case
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "codec_attack.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(_row(result) for result in results)
        write_json(
            args.out / "codec_attack.json",
            {
                "data": str(args.data),
                "images": [name for name, _ in images],
                "crop": args.crop,
                "settings": {"method": args.method, "steps": args.steps, "alpha": args.alpha,
                             "starts": args.starts, "seed": args.seed},
                "measured_with": "the real codecs: learned codecs entropy-coded (rANS bitstream), Pillow for JPEG/WebP; "
                "reconstructions rounded to 8 bits",
                "skipped": skipped,
                "results": [result.to_dict() for result in results],
                **({"lmbda": args.lmbda, "rd_costs": comparison[0], "changes_vs_first": comparison[1]} if comparison else {}),
                **({"worst_case": worst} if worst else {}),
            },
        )
        tables = []
        for name, table in (("changes_vs_first.csv", comparison[1] if comparison else None), ("worst_case.csv", worst)):
            if table:
                with open(args.out / name, "w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in table for key in row)))
                    writer.writeheader()
                    writer.writerows(table)
                tables.append(name)
        plots = _plot(results, args.out) if results else []
        print(f"wrote {args.out}/codec_attack.csv, codec_attack.json" + "".join(f", {name}" for name in tables + [p.name for p in plots]))
    return 0
