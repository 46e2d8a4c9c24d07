"""Argument helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..core.files import atomic_write_text
from ..core.images import DEFAULT_MAX_PIXELS

__all__ = ["ProgressBar", "add_image_args", "add_classifier_args", "add_codec_args", "add_overwrite_arg", "add_run_folder_arg", "check_out", "chain_text",
           "write_json", "format_topk"]


def add_image_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, type=Path, help="input image (PNG, JPEG, WebP, ...)")
    parser.add_argument(
        "--resize",
        choices=("model", "original"),
        default="model",
        help="'model' (default): resize and centre-crop to the classifier's input, as in evaluation; "
        "'original': keep the full resolution",
    )
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images")
    parser.add_argument("--out", type=Path, help="folder for the PNGs and result.json")
    add_overwrite_arg(parser)


def add_overwrite_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out folder that already holds files (files of the same name are replaced)")


def add_run_folder_arg(parser: argparse.ArgumentParser, holds: str) -> None:
    """``--out`` (required) for a resumable command's run folder, plus ``--overwrite``."""
    parser.add_argument("--out", type=Path, required=True, help=f"run folder: {holds}; a folder holding rows.jsonl is "
                        "continued, any other non-empty one refused without --overwrite")
    add_overwrite_arg(parser)


def check_out(out: Path | None, overwrite: bool, resumable: str | None = None) -> None:
    """Refuse an ``--out`` that is a file, or a folder already holding files, unless ``overwrite``.

    ``resumable`` names the file that marks a run this command continues (its folder is accepted).

    Raises:
        ValueError: naming the folder, some of what it holds and the fix.
    """
    if out is None or not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    held = sorted(entry.name for entry in out.iterdir())
    if not held or overwrite or (resumable and (out / resumable).is_file()):
        return
    shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
    raise ValueError(f"--out {out} already holds files ({shown}); give a new folder, or pass --overwrite to write into it")


def add_classifier_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifier", default="efficientnet-lite0", help="classifier name (see `python -m hac weights`)")
    parser.add_argument("--classifier-weights", type=Path, help="explicit local weights file for the classifier")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def add_codec_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--codec",
        action="append",
        required=required,
        metavar="SPEC",
        help="codec spec, e.g. jpeg:q=25 or bmshj2018-hyperprior:q=3; repeat or join with '+' for a chain",
    )
    parser.add_argument("--rounds", type=int, default=1, help="how many times the chain is applied (default 1)")


def chain_text(codec_args: list[str]) -> str:
    return "+".join(codec_args)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2))


def format_topk(top: list[tuple[int, str, float]]) -> str:
    return ", ".join(f"{name} ({index}) {prob:.1%}" for index, name, prob in top)


class ProgressBar:
    """tqdm driven by a progress(done, total, message) callback (evaluate's, audit's)."""

    def __init__(self, desc: str = "eval") -> None:
        self.bar = None
        self.desc = desc

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="unit", desc=self.desc, file=sys.stderr, dynamic_ncols=True)
        self.bar.set_postfix_str(message[:90], refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
