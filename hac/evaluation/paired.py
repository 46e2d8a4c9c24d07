"""Is codec A really better than codec B? Paired comparisons of two defences on the same images.

Accuracies on a few hundred images move by a few points between runs (a different thread count changes
PGD's adversarial images), so a gap of two points between two codecs means little on its own. Every cell
of an evaluation scores the same images, so two defences can be compared image by image: only the images
where exactly one of them is right carry information. With ``b`` images right only under A and ``c``
right only under B, :func:`mcnemar_p` is the exact two-sided McNemar test of "A and B are equally
accurate" (a binomial test of ``b`` out of ``b + c`` at one half), and :func:`paired_interval` the 95 %
interval of the difference ``(b − c) / n`` (normal approximation with the paired variance).

:func:`paired_rows` compares every codec of an evaluation with one reference codec, per classifier,
threat model, attack and rounds, on defended and clean-defended accuracy.
"""

from __future__ import annotations

import math
from collections import defaultdict

from pathlib import Path
from typing import Iterable

from ..core.files import atomic_write_text
from .config import Cell
from .results import Results, csv_text

__all__ = ["PAIRED_COLUMNS", "check_reference", "mcnemar_p", "paired_interval", "paired_rows", "write_paired"]

PAIRED_COLUMNS = ("classifier", "threat", "attack", "rounds", "measure", "codec", "reference", "images",
                  "accuracy", "reference_accuracy", "difference", "ci_low", "ci_high", "only_codec", "only_reference", "p_value")

_MEASURES = ("defended", "clean_defended")  # store row keys, named as the measures they are


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value for ``only_a`` and ``only_b`` discordant images (1.0 when there are none)."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_interval(only_a: int, only_b: int, images: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % interval (for the default ``z``) of the accuracy difference A − B from the discordant counts."""
    if only_a + only_b > images or images <= 0:
        raise ValueError(f"{only_a} + {only_b} discordant images must fit in the {images} compared (and images > 0)")
    difference = (only_a - only_b) / images
    variance = max((only_a + only_b) / images - difference**2, 0.0) / images
    half = z * math.sqrt(variance)
    return difference - half, difference + half


def check_reference(cells: Iterable[Cell], reference: str) -> None:
    """Raise ``ValueError`` (listing the codecs) unless some defended cell uses the codec ``reference``."""
    codecs = sorted({cell.codec for cell in cells if not cell.is_baseline})
    if reference not in codecs:
        raise ValueError(f"--compare-to {reference!r} is not a codec of this evaluation; its codecs: {', '.join(codecs)}")


def paired_rows(results: Results, reference: str) -> list[dict]:
    """Every codec against ``reference`` (a codec spec as in the config, e.g. ``jpeg:q=25``) on the images both scored.

    Raises:
        ValueError: no cell of the evaluation uses ``reference``.
    """
    check_reference(results.cells, reference)
    by_cell: dict[str, dict[str, dict]] = defaultdict(dict)
    for record in results.records:
        by_cell[record["cell"]][record["image"]] = record
    groups: dict[tuple, dict[str, str]] = defaultdict(dict)
    for cell in results.cells:
        if not cell.is_baseline and by_cell.get(cell.id):
            groups[cell.classifier, cell.threat, cell.attack, cell.rounds][cell.codec] = cell.id
    rows = []
    for (classifier, threat, attack, rounds), cells in groups.items():
        if reference not in cells:
            continue
        ref_records = by_cell[cells[reference]]
        for codec, cell_id in cells.items():
            if codec == reference:
                continue
            for measure in _MEASURES:
                pairs = [(rec[measure], ref_records[i][measure]) for i, rec in by_cell[cell_id].items()
                         if i in ref_records and rec.get(measure) is not None and ref_records[i].get(measure) is not None]
                if not pairs:
                    continue
                only_codec = sum(1 for a, b in pairs if a and not b)
                only_reference = sum(1 for a, b in pairs if b and not a)
                low, high = paired_interval(only_codec, only_reference, len(pairs))
                rows.append({
                    "classifier": classifier, "threat": threat, "attack": attack, "rounds": rounds, "measure": measure,
                    "codec": codec, "reference": reference, "images": len(pairs),
                    "accuracy": sum(a for a, _ in pairs) / len(pairs),
                    "reference_accuracy": sum(b for _, b in pairs) / len(pairs),
                    "difference": (only_codec - only_reference) / len(pairs), "ci_low": low, "ci_high": high,
                    "only_codec": only_codec, "only_reference": only_reference,
                    "p_value": mcnemar_p(only_codec, only_reference),
                })
    return rows


def write_paired(rows: list[dict], out_dir: str | Path) -> Path:
    """Write ``rows`` (:func:`paired_rows`) to ``out_dir/paired.csv`` atomically; returns its path."""
    path = Path(out_dir) / "paired.csv"
    atomic_write_text(path, csv_text(rows, PAIRED_COLUMNS))
    return path
