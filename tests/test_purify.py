"""Sequential purification: chains, rounds, per-round statistics."""

import pytest
import torch

from hac.codecs import create_codec
from hac.defence.purify import MAX_ROUNDS, Purifier, purify


def test_rounds_and_chain_statistics(photos):
    x = photos[0]
    result = purify(x, "jpeg:q=25", rounds=3)
    assert result.x.shape == x.shape and len(result.rounds) == 3
    one = purify(x, "jpeg:q=25", rounds=1)
    assert torch.equal(one.rounds[0].bpp, result.rounds[0].bpp)
    # JPEG at a fixed quality is nearly idempotent: recompressing its own output costs about the
    # same bits, and the distortion against the input does not shrink
    assert torch.allclose(result.rounds[2].bpp, result.rounds[0].bpp, rtol=0.02)
    assert (result.rounds[2].psnr <= result.rounds[0].psnr + 1e-6).all()
    assert torch.allclose(result.total_bpp, sum(r.bpp for r in result.rounds))


def test_mixed_chain_adds_bits_of_every_codec(photos):
    x = photos[0][:1]
    chain = purify(x, "jpeg:q=50+webp:q=80")
    jpeg = create_codec("jpeg:q=50")(x)
    webp = create_codec("webp:q=80")(jpeg.x_hat)
    assert torch.allclose(chain.rounds[0].bpp, jpeg.bpp + webp.bpp)
    assert torch.equal(chain.x, webp.x_hat)


def test_purifier_module_composes_with_a_classifier(classifier, photos):
    purifier = Purifier("jpeg:q=75", rounds=2)
    defended = torch.nn.Sequential(purifier, classifier)
    assert defended(photos[0]).shape == (len(photos[0]), 1000)
    assert purifier.describe() == "jpeg:q=75 x2"


@pytest.mark.parametrize("rounds", [0, -1, MAX_ROUNDS + 1, 1.5, True])
def test_rounds_out_of_range(rounds):
    with pytest.raises(ValueError, match=rf"rounds must be an integer in \[1, {MAX_ROUNDS}\]"):
        purify(torch.rand(1, 3, 8, 8), "jpeg", rounds=rounds)


def test_empty_chain():
    with pytest.raises(ValueError, match="at least one codec"):
        purify(torch.rand(1, 3, 8, 8), [])
