"""AVIF and JPEG XL: real bitstreams that their own decoders read, exact bpp, any size, checked ranges."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data

from hac.codecs import create_codec
from hac.codecs.base import quantize_to_uint8
from hac.codecs.factory import codec_class, codec_info
from hac.codecs.modern import AvifCodec, JxlCodec, MissingEncoderError
from hac.core.metrics import psnr

CODECS = ("avif", "jxl")


def _skimage_photos() -> list[torch.Tensor]:
    """Three photos that scikit-image ships (no download), (1, 3, H, W) in [0, 1]."""
    arrays = [skimage_data.astronaut(), skimage_data.chelsea(), skimage_data.coffee()]
    return [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255 for a in arrays]


def _generated(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth gradients plus texture: compressible like a photo, not like noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (smooth + 0.05 * torch.randn(batch, 3, height, width, generator=generator)).clamp(0, 1)


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (64, 64), (225, 97)])
def test_round_trip_keeps_size_and_range(name, size):
    x = _generated(2, *size)
    out = create_codec(name, q=50)(x)
    assert out.x_hat.shape == x.shape and out.x_hat.dtype == x.dtype
    assert out.bpp.shape == (2,) and (out.bpp > 0).all()
    assert 0 <= out.x_hat.min() and out.x_hat.max() <= 1
    assert torch.equal(out.x_hat, (out.x_hat * 255).round() / 255)  # 8-bit, as decoded


@pytest.mark.parametrize("name", CODECS)
def test_bpp_is_that_of_the_bitstream_and_its_own_decoder_reads_it(name):
    """AVIF: Pillow's AVIF reader (libavif + dav1d); JPEG XL: pillow-jxl-plugin's own libjxl decoder, called directly."""
    x = _skimage_photos()[0][..., :200, :160]
    codec = create_codec(name, q=40)
    out = codec(x)
    array = quantize_to_uint8(x).numpy()[0]
    bitstream, _ = codec.encode(array)
    assert out.bpp.item() == pytest.approx(8 * len(bitstream) / (200 * 160))
    if name == "avif":
        assert bitstream[4:12] == b"ftypavif"
        with Image.open(io.BytesIO(bitstream)) as image:
            assert image.format == "AVIF" and image.size == (160, 200)
            decoded = np.asarray(image.convert("RGB"))
    else:
        from pillow_jxl import Decoder

        assert bitstream[:2] == b"\xff\x0a"  # a bare codestream: no container bytes in the rate
        _, info, raw, *_ = Decoder(num_threads=1)(bitstream)
        assert (info.width, info.height, info.mode) == (160, 200, "RGB")
        decoded = np.frombuffer(raw, dtype=np.uint8).reshape(200, 160, 3)
    assert np.array_equal((out.x_hat[0] * 255).round().byte().permute(1, 2, 0).numpy(), decoded)


@pytest.mark.slow
@pytest.mark.parametrize("name", CODECS)
def test_bpp_falls_and_psnr_rises_with_quality_on_photos(name):
    qualities = (10, 30, 60, 90)
    for x in _skimage_photos():
        outputs = [create_codec(name, q=q)(x) for q in qualities]
        bpps = [o.bpp.item() for o in outputs]
        quality = [psnr(o.x_hat, x).item() for o in outputs]
        assert bpps == sorted(bpps) and len(set(bpps)) == len(qualities)
        assert quality == sorted(quality) and len(set(quality)) == len(qualities)
        assert 24 < quality[0] < quality[-1] < 48


@pytest.mark.slow
def test_both_beat_jpeg_at_a_similar_rate_on_a_photo():
    """Astronaut at about 0.5 bpp, with fewer bits than JPEG: 33.3 (AVIF) and 31.1 dB (JPEG XL) against 29.3."""
    x = _skimage_photos()[0]
    results = {spec: create_codec(spec)(x) for spec in ("jpeg:q=20", "avif:q=50", "jxl:q=45")}
    bpp = {spec: out.bpp.item() for spec, out in results.items()}
    quality = {spec: psnr(out.x_hat, x).item() for spec, out in results.items()}
    assert 0.45 < bpp["avif:q=50"] < bpp["jpeg:q=20"] and 0.45 < bpp["jxl:q=45"] < bpp["jpeg:q=20"] < 0.55
    assert quality["avif:q=50"] > quality["jpeg:q=20"] + 3 and quality["jxl:q=45"] > quality["jpeg:q=20"] + 1


@pytest.mark.parametrize("name", CODECS)
def test_a_batch_equals_the_codec_image_by_image(name):
    x = torch.cat([_generated(3, 48, 40, seed=1), _skimage_photos()[1][..., :48, :40]])
    codec = create_codec(name, q=35)
    together = codec(x)
    alone = [codec(x[i : i + 1]) for i in range(len(x))]
    assert torch.equal(together.x_hat, torch.cat([o.x_hat for o in alone]))
    assert torch.equal(together.bpp, torch.cat([o.bpp for o in alone]))
    assert torch.equal(codec(x).x_hat, together.x_hat)  # deterministic: a resumed evaluation codes the same bits


@pytest.mark.parametrize(
    "spec, message",
    [
        ("avif:q=0", r"avif quality q must be an integer in \[1, 100\], got 0"),
        ("avif:q=101", r"avif quality q must be an integer in \[1, 100\], got 101"),
        ("avif:q=40.5", r"avif quality q must be an integer in \[1, 100\], got 40.5"),
        ("avif:speed=11", r"avif speed must be an integer in \[0, 10\], got 11"),
        ("avif:subsampling=3", r"avif subsampling must be an integer in \[0, 2\], got 3"),
        ("jxl:q=100", r"jxl quality q must be an integer in \[1, 99\], got 100"),
        ("jxl:q=abc", r"jxl quality q must be an integer in \[1, 99\], got 'abc'"),
        ("jxl:effort=10", r"jxl effort must be an integer in \[1, 9\], got 10"),
        ("jxl:subsampling=2", r"codec 'jxl' has no parameter\(s\) subsampling; valid parameters: q, effort, scale"),
    ],
)
def test_bad_settings_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        create_codec(spec)


def test_a_missing_encoder_names_the_package_to_install(monkeypatch):
    from PIL import features

    monkeypatch.setattr(features, "check", lambda feature: False)
    with pytest.raises(MissingEncoderError, match=r"pip install --upgrade 'pillow>=11.3'") as avif_error:
        create_codec("avif:q=50")
    monkeypatch.setitem(sys.modules, "pillow_jxl", None)  # makes `import pillow_jxl` fail
    with pytest.raises(MissingEncoderError, match="pip install pillow-jxl-plugin") as jxl_error:
        create_codec("jxl:q=50")
    for error in (avif_error.value, jxl_error.value):  # the CLI and the app report it as a user error
        assert isinstance(error, ImportError) and isinstance(error, ValueError)


def test_specs_and_declared_facts():
    assert create_codec("avif").describe() == "avif:q=75"
    assert create_codec("avif:q=30,speed=8,subsampling=0").describe() == "avif:q=30,speed=8,subsampling=0"
    assert create_codec("jxl").describe() == "jxl:q=90"
    assert create_codec("jxl:q=30,effort=3").describe() == "jxl:effort=3,q=30"
    for name, cls in (("avif", AvifCodec), ("jxl", JxlCodec)):
        assert codec_class(name) is cls and not cls.has_surrogate()
        info = codec_info(name)
        low, high = min(info.qualities), max(info.qualities)
        assert not info.surrogate and not info.weights
        assert low <= info.default_quality <= high and create_codec(name).quality == info.default_quality
        assert list(info.sweep) == sorted(set(info.sweep))
        assert low <= info.sweep[0] and info.sweep[-1] <= high


def test_rd_and_the_app_take_their_qualities_from_the_declaration(no_downloaded_weights):
    from hac.app import handlers
    from hac.rd.sweep import plan_sweeps

    points, skipped = plan_sweeps(["avif", "jxl:effort=5"])
    assert not skipped
    assert [p.quality for p in points] == [*codec_info("avif").sweep, *codec_info("jxl").sweep]
    assert {p.curve for p in points} == {"avif", "jxl:effort=5"}
    assert handlers.codec_quality_range("avif") == (1, 100, 45)
    assert handlers.codec_quality_range("jxl") == (1, 99, 40)
    assert [name for _, name in handlers.codec_choices()][:4] == ["jpeg", "webp", "avif", "jxl"]
    assert handlers.codec_spec("jxl", 40) == "jxl:q=40"


@pytest.mark.parametrize("name", CODECS)
def test_bpda_attacks_through_them(name):
    """No surrogate: BPDA (real codec forward, identity backward) reaches the pixels and moves the image."""
    from hac.attacks.classifier_attacks import create_attack
    from hac.attacks.diagnostics import gradient_health
    from hac.attacks.threats import attacked_model
    from hac.defence.purify import Purifier

    torch.manual_seed(0)
    nn = torch.nn
    classifier = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    x = (_generated(2, 32, 32) * 255).round() / 255
    y = torch.tensor([0, 1])
    for threat in ("bpda", "straight-through"):  # straight-through falls back to BPDA without a surrogate
        model = attacked_model(classifier, Purifier(f"{name}:q=40"), threat)
        health = gradient_health(model, x, y)
        assert not health.masked and health.mean_abs > 0
    adversarial = create_attack("pgd:eps=4/255,steps=2", attacked_model(classifier, Purifier(f"{name}:q=40"), "bpda"))(x, y)
    assert 0 < (adversarial - x).abs().max() <= 4 / 255 + 1e-6
