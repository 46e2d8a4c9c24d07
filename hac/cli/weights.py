"""``python -m hac weights [list|download NAME...]``: which weights hac knows and which are here."""

from __future__ import annotations

import argparse

from .. import hub
from ..hub.resolve import ORIGINS, own_folders

__all__ = ["add_parser", "run", "register_all_specs"]


def register_all_specs() -> None:
    """Register every weight spec hac declares, by importing the modules that declare them."""
    from ..codecs import factory
    from ..models import classifiers  # noqa: F401  (importing it registers the classifiers' specs)

    factory.load_all_codec_modules()


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list known weights and whether they are available locally; download them",
        description="List every set of weights hac knows and where it is found, or download some.",
    )
    parser.add_argument("action", nargs="?", choices=("list", "download"), default="list")
    parser.add_argument("names", nargs="*", help="weights names (for download; for list: a filter)")
    parser.set_defaults(run=run)


def _listing(names: list[str]) -> int:
    register_all_specs()
    selected = [n for n in hub.WEIGHTS.names() if not names or any(part in n for part in names)]
    rows = []
    for name in selected:
        spec = hub.WEIGHTS.get(name)
        found = hub.weights_available(spec)
        where = f"{found.origin} ({ORIGINS[found.origin]}): {found.path}" if found else f"missing -> {spec.fetch_hint()}"
        rows.append((name, "yes" if found else "no", spec.license, spec.source, where))
    widths = [max(len(row[i]) for row in rows + [("name", "local", "licence", "source", "")]) for i in range(4)]
    header = ("name", "local", "licence", "source")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  found in")
    for row in rows:
        print("  ".join(value.ljust(w) for value, w in zip(row[:4], widths)) + "  " + row[4])
    available = sum(row[1] == "yes" for row in rows)
    print(f"\n{available} of {len(rows)} available locally; hac's own folders, in the order searched: "
          + ", ".join(f"{origin} {folder}" for folder, origin in own_folders()))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _listing(args.names)
    if not args.names:
        raise ValueError("name the weights to download, e.g. `python -m hac weights download resnet50`")
    register_all_specs()
    for name in args.names:
        resolved = hub.download_weights(name)
        print(f"{name}: {resolved.path} ({resolved.origin})")
    return 0
