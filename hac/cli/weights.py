"""``python -m hac weights [list|download NAME...|publish --repo-id ORG/NAME]``: which weights hac knows, which
are here; fetch some; publish hac's own on the Hugging Face Hub."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .. import hub
from ..hub import publish
from ..hub.published import HubLocation, hub_location, write_manifest
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
    parser.add_argument("action", nargs="?", choices=("list", "download", "publish"), default="list")
    parser.add_argument("names", nargs="*", help="weights names (for download; for list and publish: a filter)")
    parser.add_argument("--repo-id", metavar="ORG/NAME", help="publish: the Hub model repository (created if missing)")
    parser.add_argument("--revision", metavar="TAG",
                        help="publish: the tag put on the upload's commit (default: published.json's revision)")
    parser.add_argument("--dry-run", metavar="OUT", type=Path,
                        help="publish: write the exact folder that would be uploaded to OUT, upload nothing")
    parser.add_argument("--write-manifest", action="store_true",
                        help="publish: record the repository, the pinned commit and the files' hashes in hac's "
                             "published.json (after a real upload; allows retrained files)")
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


def _publish(args: argparse.Namespace) -> int:
    if not args.repo_id or args.repo_id.count("/") != 1:
        raise ValueError(f"publish needs --repo-id ORG/NAME (a Hub model repository), got {args.repo_id!r}")
    if args.dry_run and args.write_manifest:
        raise ValueError("--write-manifest records a real upload's commit; leave it out of a --dry-run")
    register_all_specs()
    current = hub_location()
    tag = args.revision or current.revision
    specs = publish.own_specs(args.names)
    if args.dry_run:
        staged = publish.stage(specs, args.dry_run, HubLocation(args.repo_id, tag, current.sha256))
        print(f"staged {len(staged.sha256)} files of {len(staged.families)} families in {staged.folder} "
              f"(nothing uploaded); upload with: python -m hac weights publish --repo-id {args.repo_id}")
        return 0
    with tempfile.TemporaryDirectory(prefix="hac-publish-") as folder:
        staged = publish.stage(specs, Path(folder) / "repo", HubLocation(args.repo_id, tag, current.sha256),
                               check_hashes=not args.write_manifest)
        commit = publish.upload(staged, args.repo_id, tag)
    print(f"uploaded {len(staged.sha256)} files to https://huggingface.co/{args.repo_id} at commit {commit} (tag {tag})")
    if args.write_manifest:
        path = write_manifest(HubLocation(args.repo_id, commit, {**current.sha256, **staged.sha256}))
        print(f"recorded in {path}: hac now fetches revision {commit} of {args.repo_id}")
    else:
        print(f"to fetch from it: HAC_WEIGHTS_REPO={args.repo_id} HAC_WEIGHTS_REVISION={commit}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _listing(args.names)
    if args.action == "publish":
        return _publish(args)
    if not args.names:
        raise ValueError("name the weights to download, e.g. `python -m hac weights download resnet50`")
    register_all_specs()
    for name in args.names:
        resolved = hub.download_weights(name)
        print(f"{name}: {resolved.path} ({resolved.origin})")
    return 0
