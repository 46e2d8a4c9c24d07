"""Codecs with ``scale`` < 1 code a downscaled image and report bits over the original pixels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from compressai.models import MeanScaleHyperprior

from hac.codecs import create_codec
from hac.codecs.compressai.codec import CompressAICodec
from hac.codecs.resampled import ResampledCodec
from hac.core.metrics import psnr
from hac.defence.purify import Purifier
from hac.attacks.threats import attacked_model
from random_codecs import calibrated, images


def test_jpeg_at_half_scale_is_jpeg_of_the_downscaled_image_upscaled(photos):
    x = photos[0][:2]
    out = create_codec("jpeg:q=40,scale=0.5")(x)
    small = F.interpolate(x, size=(112, 112), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    inner = create_codec("jpeg:q=40")(small)
    expected = F.interpolate(inner.x_hat, size=(224, 224), mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.equal(out.x_hat, expected)
    assert torch.allclose(out.bpp, inner.bpp / 4)  # the same bytes over four times the pixels


def test_a_smaller_scale_spends_fewer_bits_and_loses_detail(photos):
    x = photos[0][:3]
    outputs = [create_codec("jpeg", q=60, scale=scale)(x) for scale in (1, 0.75, 0.5)]
    bpps = [out.bpp.mean().item() for out in outputs]
    quality = [psnr(out.x_hat, x).mean().item() for out in outputs]
    assert bpps[0] > bpps[1] > bpps[2]
    assert quality[0] > quality[1] > quality[2]


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (225, 97)])
def test_any_size_comes_back_at_its_own_size(size):
    out = create_codec("webp:q=50,scale=0.6")(torch.rand(2, 3, *size))
    assert out.x_hat.shape == (2, 3, *size) and out.bpp.shape == (2,)
    assert 0 <= out.x_hat.min() and out.x_hat.max() <= 1


def test_the_spec_names_the_scale_and_rebuilds_the_codec():
    codec = create_codec("jpeg:q=30,scale=3/4")
    assert isinstance(codec, ResampledCodec)
    assert codec.describe() == "jpeg:q=30,scale=0.75"
    assert create_codec(codec.describe()).describe() == codec.describe()
    assert not isinstance(create_codec("jpeg:q=30,scale=1"), ResampledCodec)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("jpeg:q=30,scale=0", r"codec scale must be a number in \[0.25, 1\].*got 0"),
        ("jpeg:q=30,scale=1.5", r"got 1.5"),
        ("jpeg:q=30,scale=half", r"got 'half'"),
        ("jpeg:q=30,scale=true", r"got True"),
    ],
)
def test_bad_scales_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        create_codec(spec)


def test_the_surrogate_matches_the_learned_codec_and_passes_gradients():
    x = images(2, 3, 75, 91)
    inner = CompressAICodec(calibrated(MeanScaleHyperprior(16, 24), x))
    codec = ResampledCodec(inner, 0.8)
    assert codec.has_surrogate()
    x = x.clone().requires_grad_(True)
    x_hat = codec.surrogate(x)
    assert torch.allclose(x_hat.detach(), codec(x.detach()).x_hat, atol=1e-4)
    (x_hat * torch.randn_like(x_hat)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_codec_without_surrogate_stays_without_one_and_bpda_still_attacks_through_it():
    codec = create_codec("webp:q=50,scale=0.5")
    assert not codec.has_surrogate()
    with pytest.raises(NotImplementedError, match="bpda"):
        codec.surrogate(torch.rand(1, 3, 16, 16))
    model = attacked_model(torch.nn.Flatten(), Purifier([codec], 1), "straight-through")
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    model(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # identity backward, as for any codec without one
