"""JPEG and WebP: real bitstreams, real bpp, any size, checked ranges."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hac.codecs import codec_names, create_codec
from hac.codecs.base import quantize_to_uint8
from hac.core.metrics import psnr


def test_jpeg_matches_a_direct_pillow_encode(photos):
    x = photos[0][:2]
    out = create_codec("jpeg:q=25")(x)
    for image, x_hat, bpp in zip(quantize_to_uint8(x).numpy(), out.x_hat, out.bpp):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=25)
        decoded = np.asarray(Image.open(buffer))
        assert np.array_equal((x_hat * 255).round().byte().permute(1, 2, 0).numpy(), decoded)
        assert bpp.item() == pytest.approx(8 * len(buffer.getvalue()) / (224 * 224))


@pytest.mark.parametrize("name", ["jpeg", "webp"])
def test_bpp_and_quality_fall_with_quality(photos, name):
    x = photos[0]
    outputs = [create_codec(name, q=q)(x) for q in (10, 30, 60, 90)]
    bpps = [o.bpp.mean().item() for o in outputs]
    quality = [psnr(o.x_hat, x).mean().item() for o in outputs]
    assert bpps == sorted(bpps) and len(set(bpps)) == 4
    assert quality == sorted(quality)


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (225, 97)])
def test_any_size(size):
    x = torch.rand(3, 3, *size)
    for spec in ("jpeg:q=50", "webp:q=50"):
        out = create_codec(spec)(x)
        assert out.x_hat.shape == x.shape and out.bpp.shape == (3,)
        assert (out.bpp > 0).all() and 0 <= out.x_hat.min() and out.x_hat.max() <= 1


@pytest.mark.parametrize(
    "spec, message",
    [
        ("jpeg:q=0", r"jpeg quality q must be an integer in \[1, 95\], got 0"),
        ("jpeg:q=96", r"\[1, 95\]"),
        ("jpeg:q=25.5", r"\[1, 95\]"),
        ("jpeg:q=abc", r"got 'abc'"),
        ("webp:q=101", r"webp quality q must be an integer in \[1, 100\]"),
        ("jpeg:quality=25", r"codec 'jpeg' has no parameter\(s\) quality; valid parameters: q, subsampling, scale"),
        ("jpg:q=25", r"unknown codec 'jpg'; valid choices: .*jpeg"),
    ],
)
def test_bad_settings_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        create_codec(spec)


def test_bad_batches_are_refused():
    codec = create_codec("jpeg")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        codec(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="float"):
        codec(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_describe_round_trips():
    assert create_codec("jpeg:q=25").describe() == "jpeg:q=25"
    assert create_codec("jpeg:q=25,subsampling=0").describe() == "jpeg:q=25,subsampling=0"
    assert {"jpeg", "webp"} <= set(codec_names())


def test_jpeg_surrogate_is_differentiable_and_close(photos):
    x = photos[0][:1].clone().requires_grad_(True)
    codec = create_codec("jpeg:q=50")
    approx = codec.surrogate(x)
    approx.sum().backward()
    assert x.grad.abs().sum() > 0
    assert psnr(approx, codec(x.detach()).x_hat).item() > 30


@pytest.mark.shared_data
def test_jpeg_rate_distortion_on_kodak_matches_reference(shared_dir):
    """Mean bpp / PSNR over the 24 Kodak images, against the numbers measured with plain Pillow (shared README)."""
    from hac.core.images import load_image

    files = sorted((shared_dir / "data" / "kodak").glob("kodim*.png"))
    assert len(files) == 24
    reference = {10: (0.327, 26.67), 30: (0.660, 30.49)}
    for q, (ref_bpp, ref_psnr) in reference.items():
        codec = create_codec("jpeg", q=q)
        results = [codec(load_image(f)[None]) for f in files]
        bpp = np.mean([r.bpp.item() for r in results])
        quality = np.mean([psnr(r.x_hat, load_image(f)[None]).item() for r, f in zip(results, files)])
        assert bpp == pytest.approx(ref_bpp, abs=0.005)
        assert quality == pytest.approx(ref_psnr, abs=0.05)


def test_the_registry_knows_each_codecs_class_without_building_it():
    from hac.codecs.classical import JpegCodec, WebpCodec
    from hac.codecs.factory import codec_class, register_codec

    assert codec_class("jpeg") is JpegCodec and codec_class("jpeg").has_surrogate()
    assert codec_class("webp") is WebpCodec and not codec_class("webp").has_surrogate()
    assert codec_class("elic").__name__ == "ELICCodec"  # a factory function, no weights needed
    with pytest.raises(ValueError, match="unknown codec 'nope'; valid choices: .*jpeg"):
        codec_class("nope")
    with pytest.raises(TypeError, match="builds="):
        register_codec("never-registered")(lambda: None)
    assert "never-registered" not in codec_names()
