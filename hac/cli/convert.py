"""``python -m hac convert FORMAT ...``: turn published weights into safetensors, once.

One sub-command per source format. To add one, write an ``_add_<format>`` function
(its arguments) and a ``_run_<format>`` function (returns the written path), and add
the pair to :data:`FORMATS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from .. import hub
from ..core.files import atomic_path

__all__ = ["add_parser", "run", "FORMATS"]


def _add_comdefend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--enc", type=Path, help="official ComCNN weights, enc20_0.0001.npy (default: the comdefend-official-enc download)"
    )
    parser.add_argument(
        "--dec", type=Path, help="official RecCNN weights, dec20_0.0001.npy (default: the comdefend-official-dec download)"
    )
    parser.add_argument("--out", type=Path, help="output .safetensors (default: weights/comdefend-official.safetensors)")


def _run_comdefend(args: argparse.Namespace) -> Path:
    from ..codecs.comdefend import OFFICIAL, OFFICIAL_DEC, OFFICIAL_ENC
    from ..codecs.comdefend_conversion import convert_comdefend

    # Without --enc/--dec: the published files, from hac's download cache (or downloaded when online).
    enc = args.enc or hub.resolve_weights(OFFICIAL_ENC).path
    dec = args.dec or hub.resolve_weights(OFFICIAL_DEC).path
    out = args.out or hub.default_weights_dir() / OFFICIAL.filename
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must name a .safetensors file, got {out}")
    return convert_comdefend(enc, dec, out)


def _add_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="source", type=Path, required=True, metavar="CKPT", help="the published checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors, e.g. weights/elic-0004.safetensors")


def _write_checkpoint(convert: Callable[[Path], dict], kind: str, args: argparse.Namespace) -> Path:
    """``convert(args.source)`` (a weights-only read, see the codec module) written atomically to ``args.out``."""
    from safetensors.torch import save_file

    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out must name a .safetensors file, got {args.out}")
    state = convert(args.source)
    metadata = {"format": f"hac-{kind}/1", "source_file": args.source.name, "source_sha256": hub.sha256_of(args.source)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return args.out


def _run_elic(args: argparse.Namespace) -> Path:
    from ..codecs.elic.codec import convert_checkpoint

    return _write_checkpoint(convert_checkpoint, "elic", args)


def _run_hific(args: argparse.Namespace) -> Path:
    from ..codecs.hific.codec import convert_checkpoint

    return _write_checkpoint(convert_checkpoint, "hific", args)


FORMATS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Path]]] = {
    "comdefend": (
        "official ComDefend numpy weights (enc*.npy + dec*.npy, pickled HWIO arrays) -> safetensors",
        _add_comdefend,
        _run_comdefend,
    ),
    "elic": (
        "ELiC-ReImplemetation checkpoint (ELIC_*_ft_3980_Plateau.pth.tar, weights-only torch pickle) -> safetensors",
        _add_checkpoint,
        _run_elic,
    ),
    "hific": (
        "HiFiC PyTorch-port checkpoint (HIFIC-low/med/high .pt, weights-only torch pickle) -> safetensors",
        _add_checkpoint,
        _run_hific,
    ),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert published weights in unsafe formats (pickles) to safetensors, once",
        description="Convert published weights to safetensors. The source files are read without running "
        "code from them (see hac.hub.convert and hac.codecs.comdefend_conversion); hac's codecs then load only the safetensors file.",
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, (text, add_arguments, _) in FORMATS.items():
        add_arguments(formats.add_parser(name, help=text, description=text))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = FORMATS[args.format][2](args)
    print(f"wrote {path}")
    return 0
