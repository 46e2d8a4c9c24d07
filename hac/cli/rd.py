"""``python -m hac rd``: rate–distortion curves (bpp vs PSNR / MS-SSIM) and BD-rates on an image folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_overwrite_arg, check_out
from ..codecs import CodecMode
from ..rd.sweep import RDPoint, RDResults, evaluate_rd, write_outputs

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "rd",
        help="rate-distortion curves of codecs on an image folder (bpp vs PSNR/MS-SSIM, BD-rate vs JPEG)",
        description="Code every image with every codec point, print bpp / PSNR / MS-SSIM per point and the "
        "Bjontegaard delta rates against the anchor, and write rd.csv, rd.json, rd.png, bd_rate.csv.",
    )
    parser.add_argument("--data", required=True, type=Path, help="image folder, e.g. ../shared/data/kodak")
    parser.add_argument(
        "--codecs",
        nargs="+",
        default=["jpeg", "webp"],
        metavar="SPEC",
        help="codec sweeps: jpeg:q=5..95 (step 5), jpeg:q=5..95/10, a bare codec name (the qualities it declares; "
        "of a learned codec those whose weights are here), or one spec (comdefend:pretrained=hac); LABEL=SPEC puts points "
        "with other parameters on one curve (adv=hac-hyperprior:q=1,weights=FILE ...). Default: jpeg webp",
    )
    parser.add_argument("--mode", choices=CodecMode.values(), default=CodecMode.ENTROPY_CODED.value, help="learned codecs: real bitstreams (default) or estimated rate")
    parser.add_argument("--anchor", default="jpeg", help="curve the BD-rates are measured against (default jpeg)")
    parser.add_argument("--max-images", type=int, help="use the first K images only")
    parser.add_argument("--batch-size", type=int, default=4, help="images of equal size coded together (default 4)")
    parser.add_argument("--out", type=Path, help="folder for rd.csv, rd.json, rd.png, bd_rate.csv")
    add_overwrite_arg(parser)
    parser.set_defaults(run=run)


def _print_point(point: RDPoint) -> None:
    print(f"{point.curve:<28} {point.spec:<44} {point.bpp:8.4f} {point.psnr:8.2f} {point.ms_ssim:9.5f} {point.seconds:8.1f}", flush=True)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f} %"


def _print_summary(results: RDResults) -> None:
    for skip in results.skipped:
        print(f"skipped {skip.spec}: {skip.reason}")
    if not results.bd:
        if len(results.curves()) > 1:
            print(f"\nno BD-rates: the anchor curve {results.anchor!r} was not measured")
        return
    print(f"\nBD-rate against {results.anchor} (negative: fewer bits for the same quality)")
    print(f"{'curve':<28} {'points':>6} {'BD-rate PSNR':>13} {'BD-PSNR':>9} {'BD-rate MS-SSIM':>16}  note")
    for r in results.bd:
        gain = "n/a" if r.bd_psnr is None else f"{r.bd_psnr:+.3f} dB"
        print(f"{r.curve:<28} {r.points:>6} {_percent(r.bd_rate_psnr):>13} {gain:>9} {_percent(r.bd_rate_ms_ssim):>16}  {r.note}")


def run(args: argparse.Namespace) -> int:
    check_out(args.out, args.overwrite)
    print(f"{'curve':<28} {'spec':<44} {'bpp':>8} {'PSNR':>8} {'MS-SSIM':>9} {'seconds':>8}")
    results = evaluate_rd(
        args.data,
        args.codecs,
        mode=args.mode,
        anchor=args.anchor,
        max_images=args.max_images,
        batch_size=args.batch_size,
        on_point=_print_point,
    )
    print(f"({len(results.images)} images from {args.data}; PSNR/MS-SSIM of 8-bit reconstructions, means over images)")
    _print_summary(results)
    if args.out:
        paths = write_outputs(results, args.out)
        print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0
