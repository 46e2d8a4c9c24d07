"""``python -m hac eval``: evaluate a grid of defences on a folder of images; resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import ProgressBar, add_run_folder_arg, check_out
from ..evaluation.config import PRESETS, load_config
from ..evaluation.runner import evaluate
from ..evaluation.paired import check_reference, paired_rows, write_paired
from ..evaluation.plots import make_plots
from ..evaluation.store import STORE_FILENAME

ENGINES = ("process", "ray")

__all__ = ["ENGINES", "add_parser", "run", "format_summary", "format_worst_case", "format_paired"]

_SHOWN_ROWS = 60


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate classifier x codec x rounds x attack x eps x threat model on a data folder (resumable)",
        description="Run a batch evaluation. Results are appended to OUT/rows.jsonl as they are computed; "
        "rerunning the same command continues an interrupted run, or returns a finished one at once.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="YAML or JSON config (see configs/hac-paper-small.yaml)")
    source.add_argument("--preset", choices=sorted(PRESETS), help="a built-in config")
    parser.add_argument("--data", help="image folder: <synset>/<image> (ImageNet, Imagenette) or <class_name>/<image> "
                        "(CIFAR-10); a Hub dataset, streamed: hf://datasets/<owner>/<name>[/<config>]?split=validation"
                        "[&pool=N] (the first --limit rows, or a seeded sample of the first N); or a folder in the Hub's "
                        "parquet layout. Overrides the config's data.path")
    add_run_folder_arg(parser, "rows.jsonl, summary.csv, results.json, plots")
    parser.add_argument("--limit", type=int, help="evaluate a fixed, seeded subset of N images (overrides data.limit)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads of this process, or of each Ray worker "
                        "(default: torch's choice; with --engine ray, the worker's CPUs)")
    engine = parser.add_argument_group("distributed (optional: pip install \"hac[ray]\")")
    engine.add_argument("--engine", choices=ENGINES, default="process",
                        help="process: this process alone (default); ray: Ray workers compute the units and this "
                        "process alone writes OUT/ (resumable the same way)")
    engine.add_argument("--address", help="Ray cluster to join: auto (on a node of a cluster started with `ray start`) "
                        "or HOST:PORT; default: a local Ray instance sized for --workers")
    engine.add_argument("--workers", type=int, default=2, help="Ray workers (each loads the classifier and codecs once)")
    engine.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs Ray reserves per worker (default 1)")
    engine.add_argument("--gpus-per-worker", type=float, default=0,
                        help="GPUs per Ray worker (use with --device cuda; default 0)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary table (for scripts)")
    parser.add_argument("--compare-to", metavar="CODEC",
                        help="compare every codec with this one image by image (e.g. jpeg:q=25): accuracy difference, "
                        "its 95%% interval and McNemar's p-value, in paired.csv; on a finished run this only reads the store")
    parser.set_defaults(run=run)


def _cell(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _table(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> list[str]:
    table = [header, *lines]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return ["  ".join(value.ljust(width) for value, width in zip(line, widths)).rstrip() for line in table]


def format_summary(rows: list[dict], limit: int = _SHOWN_ROWS) -> str:
    """The summary rows as an aligned text table (at most ``limit`` rows)."""
    header = ("threat", "attack", "codec", "rnd", "n", "clean", "undef", "defended", "clean+def", "bpp", "PSNR", "status")
    lines = _table(header, [
        (row["threat"], row["attack"], row["codec"], str(row["rounds"]), str(row["images"]),
         _cell(row["clean_acc"]), _cell(row["adv_acc"]), _cell(row["defended_acc"]), _cell(row["clean_defended_acc"]),
         _cell(row["bpp"]), _cell(row["psnr"], ".2f"), row["status"])
        for row in rows[:limit]
    ])
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more rows in summary.csv")
    return "\n".join(lines)


def format_worst_case(rows: list[dict], limit: int = _SHOWN_ROWS) -> str:
    """Worst case over attacks, for the defences tried with more than one attack or threat model."""
    rows = [row for row in rows if row["cells"] > 1]
    if not rows:
        return ""
    header = ("threat", "codec", "rnd", "eps", "n", "robust", "clean+def", "over")
    lines = _table(header, [
        (row["threat"], row["codec"], str(row["rounds"]), "-" if row["eps_255"] is None else f"{row['eps_255']:g}/255",
         str(row["images"]), _cell(row["robust_acc"]), _cell(row["clean_defended_acc"]), row["attacks"])
        for row in rows[:limit]
    ])
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more rows in worst_case.csv")
    return "\n".join(["worst case over attacks (per image):", *lines])


def format_paired(rows: list[dict], limit: int = _SHOWN_ROWS) -> str:
    """The paired comparisons as a text table."""
    if not rows:
        return ""
    header = ("threat", "attack", "rnd", "measure", "codec", "n", "acc", "ref acc", "diff", "95% interval", "only/ref", "p")
    lines = _table(header, [
        (row["threat"], row["attack"], str(row["rounds"]), row["measure"], row["codec"], str(row["images"]),
         _cell(row["accuracy"]), _cell(row["reference_accuracy"]), f"{row['difference']:+.3f}",
         f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]", f"{row['only_codec']}/{row['only_reference']}", f"{row['p_value']:.3g}")
        for row in rows[:limit]
    ])
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more rows in paired.csv")
    return "\n".join([f"against {rows[0]['reference']}, image by image (only/ref: images right only with the codec / only with the reference):", *lines])


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be a positive integer, got {args.limit}")
    check_out(args.out, args.overwrite, resumable=STORE_FILENAME)
    config = load_config(args.config if args.config is not None else args.preset)
    if args.compare_to is not None:
        check_reference(config.cells(), args.compare_to)
    engine = None
    if args.engine == "ray":
        from ..evaluation.ray_engine import RayEngine

        engine = RayEngine(args.address, args.workers, args.cpus_per_worker, args.gpus_per_worker, args.threads)
    elif args.address is not None or args.gpus_per_worker:
        raise ValueError("--address and --gpus-per-worker need --engine ray")
    bar = None if args.quiet else ProgressBar()
    try:
        results = evaluate(config, args.out, bar, data=args.data, limit=args.limit, device=args.device, engine=engine)
    finally:
        if bar is not None:
            bar.close()
    written = results.write(args.out)
    paired = []
    if args.compare_to is not None:
        paired = paired_rows(results, args.compare_to)
        written.append(write_paired(paired, args.out))
    if not args.no_plots:
        written += make_plots(results, args.out)
    if args.quiet:
        return 0
    reuse, run_info = results.reuse(), results.run
    print(format_summary(results.summary_rows()))
    worst = format_worst_case(results.worst_case_rows())
    if worst:
        print(f"\n{worst}")
    if paired:
        print(f"\n{format_paired(paired)}")
    print(f"\n{len(results.image_ids) - len(results.skipped_images)} images evaluated"
          f"{f', {len(results.skipped_images)} unreadable and skipped' if results.skipped_images else ''}; "
          f"{run_info['units_computed']} units computed, {run_info['units_reused_from_store']} taken from the store, "
          f"{run_info['wall_seconds']:.1f} s")
    print(f"attack calls: {reuse['attack_calls']} (a cell-by-cell run needs {reuse['attack_calls_without_reuse']}); "
          f"codec passes: {reuse['codec_passes']} (cell by cell: {reuse['codec_passes_without_reuse']})")
    for warning in results.warnings():
        print(f"WARNING: {warning}")
    print(f"wrote {args.out / STORE_FILENAME}, " + ", ".join(path.name for path in written))
    return 0
