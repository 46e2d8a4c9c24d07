"""The command line: ``python -m hac COMMAND ...``; ``main(argv) -> int``.

Each command lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``. User errors print one ``error: ...`` line (exit 2), never
a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ..hub import MissingWeightsError, UnsafeWeightsError
from ..core.images import ImageError

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = ("weights", "space", "purify", "attack", "convert", "rd", "eval", "codec-attack", "train", "audit", "audit-table")

USER_ERRORS = (ValueError, FileNotFoundError, MissingWeightsError, UnsafeWeightsError, ImageError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hac", description="Human-aligned compression as an adversarial defence.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "train":  # hac.training parses its own options
        args.arguments = [*unknown, *args.arguments]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
