"""``python -m hac space build OUT``: write a folder ready to push as a Hugging Face (ZeroGPU) Space."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..app.space import PUSH_COMMAND, build_space

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "space",
        help="build the Hugging Face Space folder",
        description="Write app.py, README.md (the Space's front matter), requirements.txt and the hac package "
                    "(without weights: the Space preloads them from the Hub) to OUT.",
    )
    parser.add_argument("action", choices=("build",))
    parser.add_argument("out", type=Path, help="a new or empty folder")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    folder = build_space(args.out)
    print(f"{folder.path}: {folder.files} files, {folder.bytes / 1e6:.1f} MB")
    print("push it with: " + PUSH_COMMAND.replace("OUT", str(folder.path)))
    return 0
