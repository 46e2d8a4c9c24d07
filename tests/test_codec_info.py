"""Per-codec facts (CodecInfo) and the string enums: declared once, asked by the app and rd, never a codec's name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from hac.app import codec_attack, handlers
from hac.attacks.codec_attacks import Objective
from hac.attacks.threats import ThreatModel
from hac.codecs import Codec, CodecInfo, CodecMode, CodecOutput, codec_info, create_codec
from hac.codecs.factory import CODECS, register_codec
from hac.hub import WeightSpec
from hac.rd.sweep import evaluate_rd, plan_sweeps


class Posterize(Codec):
    """Keeps the ``q`` high bits of each 8-bit channel; 3 bits per pixel per bit kept."""

    def __init__(self, q: int = 4) -> None:
        super().__init__()
        self.bits = POSTERIZE.check_quality(q, "test-posterize")
        self.params = {"q": self.bits}

    def forward(self, x: Tensor) -> CodecOutput:
        levels = 2**self.bits - 1
        return CodecOutput(torch.round(x * levels) / levels, torch.full((x.shape[0],), 3.0 * self.bits))

    def surrogate(self, x: Tensor) -> Tensor:
        return x


POSTERIZE = CodecInfo(description="posterize (a test codec)", qualities=range(2, 9), default_quality=4,
                      start_quality=3, sweep=(2, 4, 8))
LISTED_WEIGHTS = {q: WeightSpec(name=f"test-listed-{q}", filename=f"test-listed-{q}.safetensors") for q in ("a", "b", "c")}
LISTED = CodecInfo(description="a listed-quality test codec with weights", qualities=("a", "b", "c"),
                   default_quality="b", weights=LISTED_WEIGHTS, modes=tuple(CodecMode))


@pytest.fixture
def test_codecs():
    register_codec("test-posterize", info=POSTERIZE)(Posterize)
    register_codec("test-listed", builds=Posterize, info=LISTED)(lambda q="b", mode="fast": Posterize())
    yield
    CODECS.remove("test-posterize")
    CODECS.remove("test-listed")


def test_a_new_codec_with_its_info_appears_in_the_app(test_codecs, no_downloaded_weights):
    labels = dict((name, label) for label, name in handlers.codec_choices())
    assert labels["test-posterize"] == "test-posterize"  # needs no weights
    assert labels["test-listed"] == "test-listed (weights not downloaded)"
    slider = handlers.quality_for_codec("test-posterize")
    assert (slider.minimum, slider.maximum, slider.value, slider.info) == (2, 8, 3, "q in 2..8")
    assert handlers.codec_spec("test-posterize", 5) == "test-posterize:q=5"
    assert handlers.codec_quality_range("test-listed") == (1, 3, 2)  # positions; starts at the default, b
    assert "test-posterize" in codec_attack.attackable_codecs()  # it has a surrogate
    assert codec_info("test-posterize").surrogate and not codec_info("test-posterize").rate_attack


def test_a_listed_codec_starts_where_its_weights_are(test_codecs, no_downloaded_weights, tmp_path):
    (tmp_path / "weights").mkdir(exist_ok=True)
    (tmp_path / "weights" / "test-listed-c.safetensors").write_bytes(b"only its presence is read")
    slider = handlers.quality_for_codec("test-listed")
    assert (slider.minimum, slider.maximum, slider.value) == (1, 3, 3)
    assert slider.info == "q: 1 = a, 2 = b, 3 = c; weights here for q = c"
    assert handlers.codec_spec("test-listed", 3) == "test-listed:q=c"
    points, skipped = plan_sweeps(["test-listed"])
    assert [point.quality for point in points] == ["c"]
    assert [s.spec for s in skipped] == ["test-listed q=a,b"]


def test_rd_sweeps_the_declared_qualities(test_codecs, tmp_path):
    points, skipped = plan_sweeps(["test-posterize", "test-posterize:q=5"])
    assert [p.quality for p in points] == [2, 4, 8, 5] and skipped == []
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    results = evaluate_rd(tmp_path, ["test-posterize"], anchor="test-posterize")
    assert [(p.quality, p.bpp) for p in results.points] == [(2, 6.0), (4, 12.0), (8, 24.0)]
    assert results.points[0].psnr < results.points[-1].psnr


def test_the_codec_checks_its_quality_against_its_declaration():
    assert codec_info("jpeg").qualities == range(1, 96) and codec_info("jpeg").default_quality == 75
    assert create_codec("jpeg").params == {"q": 75}
    with pytest.raises(ValueError, match=r"jpeg quality q must be an integer in \[1, 95\], got 96"):
        create_codec("jpeg:q=96")
    with pytest.raises(ValueError, match=r"hific quality q must be one of low, med, high, got 'top'"):
        create_codec("hific:q=top")
    assert codec_info("hific").weights["med"].name == "hific-med"
    assert codec_info("mbt2018-mean").weights_for({"metric": "ms-ssim"})[2].name == "mbt2018-mean-ms-ssim-2"
    assert codec_info("comdefend").weights_for({"pretrained": "hac"})[None].name == "hac-comdefend-cifar10"
    assert not codec_info("webp").surrogate and codec_info("jpeg").rate_attack


@pytest.mark.parametrize(
    "info, message",
    [
        (dict(qualities=range(1, 5)), "declares its default_quality"),
        (dict(qualities=("a", "b"), default_quality="c"), "default_quality 'c' is not one of the qualities a, b"),
        (dict(qualities=range(1, 5), default_quality=2, sweep=(9,)), r"sweep quality 9 is not one of the qualities \[1, 4\]"),
        (dict(default_quality=3), "a codec without qualities has no default quality"),
    ],
)
def test_inconsistent_declarations_are_refused(info, message):
    with pytest.raises(ValueError, match=message):
        CodecInfo(**info)


def test_enums_parse_once_and_keep_their_strings():
    assert ThreatModel("straight-through") is ThreatModel.STRAIGHT_THROUGH
    assert ThreatModel.BPDA == "bpda" and f"{ThreatModel.EOT}" == "eot" and str(Objective.RATE) == "rate"
    assert json.dumps({ThreatModel.BPDA: [CodecMode.ENTROPY_CODED, Objective.DISTORTION]}) == '{"bpda": ["entropy-coded", "distortion"]}'
    assert CodecMode.values() == ("fast", "entropy-coded")
    with pytest.raises(ValueError, match="mode must be one of fast, entropy-coded, got 'slow'"):
        CodecMode("slow")
    with pytest.raises(ValueError, match="unknown codec-attack objective 'blur'; valid: distortion, rate"):
        Objective("blur")
