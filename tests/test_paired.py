"""Paired comparisons of two defences on the same images (hac.evaluation.paired)."""

from __future__ import annotations

import math

import pytest

from hac.evaluation.config import Cell, load_config
from hac.evaluation.results import Results
from hac.evaluation.paired import mcnemar_p, paired_interval, paired_rows


def test_mcnemar_is_the_exact_two_sided_binomial_test():
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(7, 7) == 1.0
    assert mcnemar_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_p(9, 1) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_p(9, 1) == mcnemar_p(1, 9)
    with pytest.raises(ValueError, match="must be >= 0"):
        mcnemar_p(-1, 3)


def test_the_paired_interval_is_centred_on_the_difference_and_narrows_with_agreement():
    assert paired_interval(0, 0, 100) == (0.0, 0.0)
    low, high = paired_interval(15, 5, 100)
    assert (low + high) / 2 == pytest.approx(0.10)
    assert high - low == pytest.approx(2 * 1.959964 * math.sqrt((0.20 - 0.01) / 100))
    wide_low, wide_high = paired_interval(30, 20, 100)  # the same difference, more disagreement
    assert wide_high - wide_low > high - low
    with pytest.raises(ValueError, match="must fit in the 10 compared"):
        paired_interval(8, 5, 10)


def _cell(codec: str, threat: str = "oblivious") -> Cell:
    baseline = codec == "none"
    return Cell("net", "none" if baseline else threat, "fgsm:eps=4/255", "fgsm", 4 / 255, codec,
                codec.split(":")[0], None, 0 if baseline else 1)


def _results(outcomes: dict[Cell, list[tuple[int, int]]]) -> Results:
    records = [{"cell": cell.id, "image": f"img{i}", "defended": d, "clean_defended": c} for cell, pairs in outcomes.items()
               for i, (d, c) in enumerate(pairs)]
    config = load_config({"name": "t", "codecs": ["jpeg:q=25", "jpeg:q=50"], "attacks": ["fgsm:eps=4/255"]})
    return Results(config=config, cells=list(outcomes), records=records, commits={},
                   image_ids=[f"img{i}" for i in range(6)])


def test_paired_rows_count_the_images_only_one_defence_gets_right():
    ref, other, bpda = _cell("jpeg:q=25"), _cell("jpeg:q=50"), _cell("jpeg:q=50", threat="bpda")
    results = _results({
        _cell("none"): [(0, 0)] * 6,
        ref: [(1, 1), (1, 1), (0, 1), (0, 0), (1, 1), (0, 1)],
        other: [(1, 1), (0, 1), (1, 1), (1, 1), (1, 1), (1, 1)],
        bpda: [(0, 1)] * 6,  # no reference under bpda: not compared
    })
    rows = paired_rows(results, "jpeg:q=25")
    assert [(r["threat"], r["codec"], r["measure"]) for r in rows] == [
        ("oblivious", "jpeg:q=50", "defended"), ("oblivious", "jpeg:q=50", "clean_defended")]
    defended, clean = rows
    assert (defended["only_codec"], defended["only_reference"], defended["images"]) == (3, 1, 6)
    assert defended["accuracy"] == pytest.approx(5 / 6) and defended["reference_accuracy"] == pytest.approx(3 / 6)
    assert defended["difference"] == pytest.approx(2 / 6) and defended["p_value"] == pytest.approx(mcnemar_p(3, 1))
    assert (clean["only_codec"], clean["only_reference"]) == (1, 0)
    with pytest.raises(ValueError, match="'webp:q=50' is not a codec of this evaluation; its codecs: jpeg:q=25, jpeg:q=50"):
        paired_rows(results, "webp:q=50")
