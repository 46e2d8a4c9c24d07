"""How fast each codec purifies a batch on this machine.

    python benchmarks/codec_speed.py [--batch 8 --size 224 --repeats 3] [--codecs jpeg,mbt2018-mean]
    python benchmarks/codec_speed.py --data ../shared/data/kodak --codecs jpeg,webp,avif,jxl

Prints, per codec, images per second (best of ``--repeats`` timed runs after a
one-image warm-up; ``--coded-repeats`` for the slow entropy-coded runs) purifying
``--batch`` synthetic ``--size`` x ``--size`` RGB images on the CPU, or with ``--data``
the first ``--batch`` photos of a folder (portrait ones turned to landscape, so that
Kodak's 768 x 512 images form one batch). The classical codecs (JPEG, WebP, AVIF,
JPEG XL) are timed at qualities that give similar rates (about 0.8 bpp at 224 x 224
on ImageNet photos, JPEG q=25), each image coded on one thread. Learned
codecs are timed in both modes, ``fast`` (quantised forward pass, estimated bpp)
and ``entropy-coded`` (real ``compress`` + ``decompress``), with the speed ratio
fast / entropy-coded. Pretrained weights are used when they are
on this machine; otherwise a random-initialised model with the same channel
counts stands in (same computation, but its near-empty bitstream makes the
entropy coder a little faster than with real weights), which the table says.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hac import hub
from hac.codecs import create_codec  # noqa: E402
from hac.codecs.base import Codec  # noqa: E402
from hac.codecs.compressai.zoo import ARCHITECTURES, random_model  # noqa: E402
from hac.codecs.compressai.codec import CompressAICodec  # noqa: E402

CLASSICAL = {"jpeg": "jpeg:q=25", "webp": "webp:q=50", "avif": "avif:q=53", "jxl": "jxl:q=57"}
DEFAULT_CODECS = [*CLASSICAL, *ARCHITECTURES]


def synthetic_images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images with some texture, (batch, 3, size, size) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 8, 8, generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    texture = 0.08 * torch.randn(batch, 3, size, size, generator=generator)
    return (smooth + texture).clamp(0, 1)


def folder_images(folder: str, batch: int) -> torch.Tensor:
    """The first ``batch`` images of ``folder`` (sorted), portrait ones transposed, as one (batch, 3, H, W) tensor."""
    from hac.core.images import list_images, load_image

    images = []
    for path in list_images(folder)[:batch]:
        image = load_image(path)
        images.append(image.transpose(-1, -2) if image.shape[-2] > image.shape[-1] else image)
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) != 1:
        raise SystemExit(f"--data {folder}: the first {batch} images have different sizes {sorted(shapes)}")
    return torch.stack(images)


def images_per_second(codec: Codec, x: torch.Tensor, repeats: int) -> float:
    """Best-of-``repeats`` throughput of ``codec(x)`` after a one-image warm-up."""
    codec(x[:1])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        codec(x)
        best = min(best, time.perf_counter() - start)
    return x.shape[0] / best


def learned_model(name: str, q: int) -> tuple[torch.nn.Module, str]:
    """The pretrained model if its weights are here, else a random-initialised one."""
    spec = ARCHITECTURES[name].spec(q)
    if hub.weights_available(spec) is not None:
        return create_codec(name, q=q).model, "pretrained"
    return random_model(name, q), "random init"


def run(codecs: list[str], x: torch.Tensor, repeats: int, coded_repeats: int, q: int) -> list[dict]:
    """Time each codec on the batch ``x``; ``coded_repeats=0`` skips the entropy-coded mode."""
    rows = []
    for name in codecs:
        if name in CLASSICAL:
            speed = images_per_second(create_codec(CLASSICAL[name]), x, repeats)
            rows.append({"codec": CLASSICAL[name], "weights": "-", "fast": speed, "coded": None})
            continue
        model, origin = learned_model(name, q)
        fast = images_per_second(CompressAICodec(model, mode="fast"), x, repeats)
        coded = None
        if coded_repeats > 0:
            coded = images_per_second(CompressAICodec(model, mode="entropy-coded"), x, coded_repeats)
        rows.append({"codec": f"{name}:q={q}", "weights": origin, "fast": fast, "coded": coded})
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'codec':<26} {'weights':<12} {'img/s (fast)':>13} {'img/s (coded)':>14} {'fast/coded':>11}"
    lines = [header, "-" * len(header)]
    for row in rows:
        coded = f"{row['coded']:.2f}" if row["coded"] else "-"
        ratio = f"{row['fast'] / row['coded']:.1f}x" if row["coded"] else "-"
        lines.append(f"{row['codec']:<26} {row['weights']:<12} {row['fast']:>13.2f} {coded:>14} {ratio:>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=None, help="time on the first --batch photos of this folder instead")
    parser.add_argument("--q", type=int, default=3, help="quality level of the learned codecs")
    parser.add_argument("--codecs", default=",".join(DEFAULT_CODECS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--coded-repeats", type=int, default=1, help="timed entropy-coded runs (0: skip them; default %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    codecs = [name.strip() for name in args.codecs.split(",") if name.strip()]
    unknown = sorted(set(codecs) - set(DEFAULT_CODECS))
    if unknown:
        parser.error(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(DEFAULT_CODECS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    x = folder_images(args.data, args.batch) if args.data else synthetic_images(args.batch, args.size)
    source = f"from {args.data}" if args.data else "synthetic"
    print(
        f"{len(x)} images of {x.shape[-1]}x{x.shape[-2]} ({source}), "
        f"best of {args.repeats} (entropy-coded: {args.coded_repeats}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    rows = run(codecs, x, args.repeats, args.coded_repeats, args.q)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
