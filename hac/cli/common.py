"""Argument helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..core.files import atomic_write_text
from ..core.images import DEFAULT_MAX_PIXELS

__all__ = ["add_image_args", "add_classifier_args", "add_codec_args", "chain_text", "write_json", "format_topk"]


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
