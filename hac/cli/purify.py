"""``python -m hac purify``: classify an image before and after sequential compression."""

from __future__ import annotations

import argparse

from ..models.classifiers import create_classifier
from ..core.images import load_image, save_png
from ..defence.purify import build_chain, purify
from .common import add_classifier_args, add_codec_args, add_image_args, chain_text, check_out, format_topk, write_json

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "purify",
        help="compress an image N rounds and compare the classifier's top-5 before and after",
        description="Purify one image by sequential compression and classify it before and after.",
    )
    add_image_args(parser)
    add_classifier_args(parser)
    add_codec_args(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, args.overwrite)
    chain = chain_text(args.codec)
    codecs = build_chain(chain)  # validate the chain before any heavy work
    x = load_image(args.image, max_pixels=args.max_pixels)[None].to(args.device)
    classifier = create_classifier(args.classifier, weights=args.classifier_weights, device=args.device)
    if args.resize == "model":
        x = classifier.fit(x)
    result = purify(x, codecs, args.rounds)
    before, after = classifier.top_k(x)[0], classifier.top_k(result.x)[0]

    print(f"image      {args.image}  ({x.shape[-1]}x{x.shape[-2]} as classified)")
    print(f"classifier {args.classifier}")
    print(f"chain      {chain} x {args.rounds} round(s)")
    print(f"before     {format_topk(before)}")
    print(f"after      {format_topk(after)}")
    print("round  bpp     PSNR (dB, vs input)")
    for index, stats in enumerate(result.rounds, 1):
        print(f"{index:>5}  {stats.bpp.item():.3f}  {stats.psnr.item():.2f}")

    if args.out:
        save_png(x[0], args.out / "input.png")
        save_png(result.x[0], args.out / "purified.png")
        write_json(
            args.out / "result.json",
            {
                "image": str(args.image),
                "classifier": args.classifier,
                "chain": chain,
                "rounds": args.rounds,
                "size": list(x.shape[-2:]),
                "top5_before": [{"index": i, "name": n, "prob": p} for i, n, p in before],
                "top5_after": [{"index": i, "name": n, "prob": p} for i, n, p in after],
                "per_round": [{"bpp": s.bpp.item(), "psnr": s.psnr.item()} for s in result.rounds],
            },
        )
        print(f"wrote {args.out}/input.png, purified.png, result.json")
    return 0
