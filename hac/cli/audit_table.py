"""``python -m hac audit-table DIR...``: the audits of several defences side by side (oblivious vs audited)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit-table",
        help="compare finished audits: clean, oblivious and audited accuracy, the checks and flags, one row each",
        description="Read DIR/audit.json of each `hac audit` output folder and print one Markdown table: clean, "
        "oblivious, the strongest attack alone, the audited worst case with its 95 %% interval, how far the oblivious "
        "number overstated it, the steps check and eps sweep, and the flags.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="output folders of `hac audit`")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..audit.report import comparison_table
    from ..core.files import atomic_write_text

    audits = {}
    for folder in args.dirs:
        path = folder / "audit.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; pass output folders of a finished `hac audit` (they hold audit.json)")
        try:
            audits[folder.name] = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not an audit.json ({error})") from None
    table = comparison_table(audits)
    print(table, end="")
    if args.out is not None:
        atomic_write_text(args.out, table)
    return 0
