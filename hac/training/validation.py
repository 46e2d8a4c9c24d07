"""Evaluation during and after training: the real entropy-coded rate and PSNR of a model
on an image folder (e.g. Kodak), and Pillow JPEG's curve on the same images for comparison."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.images import list_images
from ..core.metrics import psnr
from .crops import read_image

__all__ = ["evaluate_model", "jpeg_reference", "jpeg_psnr_at"]


@torch.no_grad()
def evaluate_model(model: nn.Module, folder: str | Path, max_images: int | None = None, multiple: int = 64) -> dict:
    """Real entropy-coded rate and quality of ``model`` on the images of ``folder``.

    Calls ``model.update(force=True)`` and codes each image with ``compress``/``decompress``;
    the reconstruction is rounded to 8 bits. Returns the means over images of ``bpp``
    (from the bitstream length) and ``psnr`` (dB), and ``images``.
    """
    files = list_images(folder)[:max_images]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    model.update(force=True)
    bpps, psnrs = [], []
    for path in files:
        x = read_image(path).float().div(255.0).unsqueeze(0).to(device)
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        enc = model.compress(padded)
        bits = 8 * sum(len(s) for strings in enc["strings"] for s in strings)
        x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"][..., :height, :width]
        x_hat = x_hat.clamp(0, 1).mul(255).round().div(255)
        bpps.append(bits / (height * width))
        psnrs.append(psnr(x_hat, x).item())
    model.train(was_training)
    return {"bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs), "images": len(files)}


def jpeg_reference(
    folder: str | Path,
    qualities: Sequence[int] = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 90),
    max_images: int | None = None,
) -> list[dict]:
    """JPEG (Pillow, default settings) mean bpp/PSNR per quality on the (first K) images of ``folder``."""
    from PIL import Image

    files = list_images(folder)[:max_images]
    images = [read_image(path) for path in files]
    curve = []
    for quality in qualities:
        bpps, psnrs = [], []
        for img in images:
            buffer = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
            bpps.append(8 * buffer.tell() / (img.shape[1] * img.shape[2]))
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                rec = torch.frombuffer(bytearray(decoded.convert("RGB").tobytes()), dtype=torch.uint8)
            rec = rec.view(img.shape[1], img.shape[2], 3).permute(2, 0, 1)
            psnrs.append(psnr(rec[None].float() / 255, img[None].float() / 255).item())
        curve.append({"quality": quality, "bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs)})
    return curve


def jpeg_psnr_at(curve: list[dict], bpp: float) -> float | None:
    """JPEG PSNR linearly interpolated at ``bpp`` (``None`` outside the curve)."""
    points = sorted((c["bpp"], c["psnr"]) for c in curve)
    for (b0, p0), (b1, p1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            return p0 + (p1 - p0) * (bpp - b0) / (b1 - b0)
    return None
