"""``python -m hac train ...``: the same command as ``python -m hac.train`` (see :mod:`hac.training.cli`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        add_help=False,  # --help goes on to hac.train's own parser, which knows the options
        help="train hac's learned codecs and ComDefend (resumable; also export, pack): python -m hac train --help",
        description="Everything after 'train' goes to python -m hac.train.",
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.cli import main

    return main(args.arguments)
