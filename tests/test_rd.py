"""Rate–distortion evaluation (hac.rd.sweep, ``python -m hac rd``): BD-rate maths and a tiny real run."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hac.cli import main
from hac.codecs import create_codec
from hac.core.images import load_image
from hac.rd.bjontegaard import bd_quality, bd_rate
from hac.codecs import codec_info
from hac.rd.sweep import RDPoint, compare_curves, evaluate_rd, plan_sweeps

RATES = np.array([0.15, 0.3, 0.55, 0.9, 1.6])
PSNRS = np.array([25.0, 28.2, 30.6, 32.5, 35.9])


# --------------------------------------------------------------------------- Bjøntegaard deltas


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.1, 2.0])
def test_bd_rate_of_a_curve_shifted_by_a_rate_factor_is_that_factor(factor):
    assert bd_rate(RATES, PSNRS, factor * RATES, PSNRS) == pytest.approx(100 * (factor - 1), abs=1e-9)


def test_bd_rate_with_other_sample_points_and_a_partial_overlap():
    """log(rate) an exact cubic of PSNR; the test curve needs 0.7x the rate, sampled elsewhere."""

    def log_rate(p):
        return -6.0 + 0.25 * p - 0.002 * p**2 + 0.00003 * p**3

    anchor_psnr = np.array([24.0, 27.0, 30.0, 33.0, 36.0])
    test_psnr = np.array([29.0, 31.5, 34.0, 37.5, 40.0])  # overlap: 29..36 dB only
    anchor_rate = np.exp(log_rate(anchor_psnr))
    test_rate = 0.7 * np.exp(log_rate(test_psnr))
    assert bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr) == pytest.approx(-30.0, abs=1e-6)
    # and the other way round: the anchor needs 1/0.7 of the test's rate
    assert bd_rate(test_rate, test_psnr, anchor_rate, anchor_psnr) == pytest.approx(100 * (1 / 0.7 - 1), abs=1e-6)


def test_bd_rate_averages_the_log_rate_gap_over_the_overlap():
    """A log-rate gap growing linearly with PSNR (0 at 26 dB, 0.4 at 34 dB) averages to its midpoint value."""
    psnr = np.linspace(26.0, 34.0, 6)
    anchor = np.exp(0.2 * psnr - 6)
    gap = 0.05 * (psnr - 26.0)
    assert bd_rate(anchor, psnr, anchor * np.exp(gap), psnr) == pytest.approx(100 * math.expm1(0.2), abs=1e-9)
    # a test curve sampled over 30..40 dB overlaps the anchor on 30..34 dB, where the average gap is 0.3
    wide = np.linspace(30.0, 40.0, 6)
    test = np.exp(0.2 * wide - 6) * np.exp(0.05 * (wide - 26.0))
    assert bd_rate(anchor, psnr, test, wide) == pytest.approx(100 * math.expm1(0.3), abs=1e-9)


def test_bd_psnr_of_a_curve_shifted_up_is_that_shift():
    assert bd_quality(RATES, PSNRS, RATES, PSNRS + 0.75) == pytest.approx(0.75, abs=1e-9)
    assert bd_quality(RATES, PSNRS, RATES * 2, PSNRS) < 0


def test_short_curves_use_a_lower_degree_fit():
    assert bd_rate(RATES[:2], PSNRS[:2], 1.25 * RATES[:2], PSNRS[:2]) == pytest.approx(25.0, abs=1e-9)
    assert bd_rate(RATES[:3], PSNRS[:3], 0.9 * RATES[:3], PSNRS[:3]) == pytest.approx(-10.0, abs=1e-9)


def test_bd_rate_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATES, PSNRS, RATES, PSNRS + 20)
    with pytest.raises(ValueError, match="at least 2 points"):
        bd_rate(RATES, PSNRS, RATES[:1], PSNRS[:1])
    with pytest.raises(ValueError, match="rates must be positive"):
        bd_rate(RATES, PSNRS, -RATES, PSNRS)


def test_compare_curves_reports_each_curve_and_why_not():
    def curve(label, rates, psnrs):
        return [RDPoint(label, f"{label}:q={i}", i, r, p, 1 - 10 ** (-p / 20), 0.0) for i, (r, p) in enumerate(zip(rates, psnrs))]

    curves = {
        "jpeg": curve("jpeg", RATES, PSNRS),
        "better": curve("better", 0.6 * RATES, PSNRS),
        "single": curve("single", [12.0], [29.0]),
    }
    results = {r.curve: r for r in compare_curves(curves, "jpeg")}
    assert results["better"].bd_rate_psnr == pytest.approx(-40.0, abs=1e-9)
    assert results["better"].bd_psnr > 0 and results["better"].bd_rate_ms_ssim == pytest.approx(-40.0, abs=1e-9)
    assert results["better"].psnr_range == pytest.approx((25.0, 35.9))
    assert results["single"].bd_rate_psnr is None and "at least 2 points" in results["single"].note
    assert compare_curves(curves, "webp") == []


# --------------------------------------------------------------------------- planning


def test_sweeps_expand_ranges_defaults_and_merge_curves():
    points, skipped = plan_sweeps(["jpeg:q=10..30/10", "jpeg:q=20", "jpeg:q=50,subsampling=0", "webp"])
    assert [str(p.spec) for p in points[:3]] == ["jpeg:q=10", "jpeg:q=20", "jpeg:q=30"]  # q=20 given twice, kept once
    assert points[3].curve == "jpeg:subsampling=0" and points[3].quality == 50
    assert [p.quality for p in points[4:]] == list(codec_info("webp").sweep)
    assert skipped == []
    assert [p.quality for p in plan_sweeps(["jpeg:q=5..20"])[0]] == [5, 10, 15, 20]


def test_a_curve_label_joins_points_whose_other_parameters_differ():
    points, _ = plan_sweeps(["mine=jpeg:q=20,subsampling=0", "mine=jpeg:q=40", "jpeg:q=30"])
    assert [(p.curve, str(p.spec)) for p in points] == [
        ("mine", "jpeg:q=20,subsampling=0"), ("mine", "jpeg:q=40"), ("jpeg", "jpeg:q=30")]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("=jpeg:q=20", "a curve label is written LABEL=SPEC"),
        ("jpeg:q=50..10", "is empty"),
        ("jpeg:q=low", "neither a number nor a range"),
        ("nocodec", "unknown codec 'nocodec'; valid choices:"),
    ],
)
def test_bad_sweeps_are_user_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        plan_sweeps([spec])


def test_learned_codecs_without_weights_are_skipped_not_fatal(tmp_path, monkeypatch):
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    points, skipped = plan_sweeps(["hac-hyperprior", "bmshj2018-factorized:q=1..2/1"])
    assert points == []
    assert [s.spec for s in skipped] == ["hac-hyperprior q=1,2,3", "bmshj2018-factorized q=1,2"]
    assert "weights not on this machine (hac-hyperprior-q1, hac-hyperprior-q2, hac-hyperprior-q3)" in skipped[0].reason


# --------------------------------------------------------------------------- a tiny real run


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rd-images")
    generator = torch.Generator().manual_seed(0)
    for index, (height, width) in enumerate([(64, 96), (96, 64), (64, 96)]):
        low = torch.rand(1, 3, 6, 6, generator=generator)
        image = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)[0]
        image = (image + 0.08 * torch.rand(3, height, width, generator=generator)).clamp(0, 1)  # some texture
        array = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"img{index}.png")
    return folder


def test_rd_cli_writes_tables_plot_and_bd_rates(image_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "empty"))
    out = tmp_path / "rd"
    code = main([
        "rd", "--data", str(image_dir), "--codecs", "jpeg:q=20..60/20", "webp:q=30..70/20", "hac-hyperprior",
        "--out", str(out),
    ])
    printed = capsys.readouterr().out
    assert code == 0
    assert "skipped hac-hyperprior q=1,2,3: weights not on this machine" in printed
    assert "BD-rate against jpeg" in printed
    for name in ("rd.csv", "rd.json", "rd.png", "bd_rate.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with open(out / "rd.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["spec"] for row in rows] == ["jpeg:q=20", "jpeg:q=40", "jpeg:q=60", "webp:q=30", "webp:q=50", "webp:q=70"]
    jpeg_bpp = [float(row["bpp"]) for row in rows[:3]]
    assert jpeg_bpp == sorted(jpeg_bpp) and all(20 < float(row["psnr_db"]) < 60 for row in rows)
    assert all(0 < float(row["ms_ssim"]) <= 1 and row["images"] == "3" for row in rows)
    # the table agrees with the codec run directly (8-bit output, mean over images)
    images = [load_image(path) for path in sorted(image_dir.glob("*.png"))]
    codec = create_codec("jpeg:q=40")
    direct = np.mean([codec(x[None]).bpp.item() for x in images])
    assert float(rows[1]["bpp"]) == pytest.approx(direct, abs=1e-4)
    with open(out / "bd_rate.csv") as handle:
        bd = list(csv.DictReader(handle))
    assert len(bd) == 1 and bd[0]["curve"] == "webp" and bd[0]["anchor"] == "jpeg" and bd[0]["points"] == "3"
    assert float(bd[0]["bd_rate_psnr_percent"]) < 0  # WebP beats JPEG on these images (observed -40 %)
    # their rates do not overlap at all (WebP 0.7-1.1 bpp, JPEG 1.3-1.8): no BD-PSNR, and the note says why
    assert bd[0]["bd_psnr_db"] == "" and "bd_psnr: the curves do not overlap" in bd[0]["note"]
    assert "fit of degree 2 (3 points)" in bd[0]["note"]
    result = json.loads((out / "rd.json").read_text())
    assert result["mode"] == "entropy-coded" and len(result["images"]) == 3
    assert result["skipped"][0]["spec"] == "hac-hyperprior q=1,2,3"
    assert len(result["points"][0]["per_image"]["psnr"]) == 3


def test_rd_user_errors_exit_2(image_dir, tmp_path, capsys):
    assert main(["rd", "--data", str(tmp_path / "nothing"), "--codecs", "jpeg:q=10"]) == 2
    assert "image folder not found" in capsys.readouterr().err
    assert main(["rd", "--data", str(image_dir), "--codecs", "jpeg:q=10..5"]) == 2
    assert "is empty" in capsys.readouterr().err


def test_evaluate_rd_returns_numbers_without_writing(image_dir):
    results = evaluate_rd(image_dir, ["jpeg:q=30", "webp:q=30"], max_images=1)
    assert len(results.images) == 1 and [p.spec for p in results.points] == ["jpeg:q=30", "webp:q=30"]
    assert results.bd and results.bd[0].bd_rate_psnr is None  # one point per curve: no BD-rate, and no crash
