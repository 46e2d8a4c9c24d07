"""What an evaluation returns: per-image records, per-cell summaries, worst cases, files.

Column meanings (:meth:`Results.summary_rows`, one row per cell):

- ``clean_acc``: top-1 accuracy on the clean images;
- ``adv_acc``: accuracy of the *undefended* classifier under the cell's attack
  (its baseline: the attack run against the bare classifier);
- ``defended_acc``: accuracy on the cell's adversarial images after purification
  (for the baseline row: ``adv_acc``);
- ``clean_defended_acc``: accuracy on purified clean images (the price of the defence);
- ``bpp``, ``psnr``, ``ms_ssim``: rate of purifying the adversarial image (all
  rounds summed) and quality of the purified image against the clean one;
  ``clean_bpp``, ``clean_psnr``, ``clean_ms_ssim``: the same for purified clean
  images (MS-SSIM columns are empty when the config sets ``ms_ssim: false``);
- ``linf_255``, ``l2``: mean perturbation norms (L-inf in 1/255 units);
- ``seconds``, ``cpu_seconds``: wall and CPU time (this process, all threads)
  spent on the cell; shared work (loading the batch, the attack shared by
  oblivious cells, purifying clean images) is counted in the first cell that
  needed it, usually the baseline row. CPU time is the fairer figure on a busy machine.

:meth:`Results.worst_case_rows` reports, per defence (classifier, codec,
rounds) and ε, the per-image worst case over every attack tried (and threat
model): an image counts as robust only if it survived all of them. That is the
robust accuracy of a defence; a single attack's accuracy is an upper bound.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ..core.checkout import checkout_root
from ..core.files import atomic_write_text
from .config import BASELINE, Cell, EvalConfig, config_hash

__all__ = ["Results", "SUMMARY_COLUMNS", "WORST_CASE_COLUMNS", "csv_text", "package_versions"]

SUMMARY_COLUMNS = (
    "classifier", "threat", "attack", "eps_255", "codec", "quality", "rounds", "images",
    "clean_acc", "adv_acc", "defended_acc", "clean_defended_acc", "bpp", "psnr", "ms_ssim",
    "clean_bpp", "clean_psnr", "clean_ms_ssim", "linf_255", "l2", "seconds", "cpu_seconds", "status", "attack_name", "codec_family", "eps", "cell",
)
WORST_CASE_COLUMNS = ("classifier", "threat", "codec", "rounds", "eps_255", "images", "robust_acc", "clean_defended_acc",
                      "cells", "attacks", "eps")

_PACKAGES = ("torch", "torchvision", "timm", "torchattacks", "compressai", "numpy", "pillow", "pytorch-msssim", "hac")


def source_commit() -> str | None:
    """The git commit of hac's source tree (``+dirty`` if tracked files changed), or ``None`` outside a checkout."""
    root = checkout_root()
    if root is None or not (root / ".git").exists():  # an installed hac, or a checkout without git
        return None
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if changes else "")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages the numbers depend on; hac from a checkout by its git commit."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    # From a checkout (an editable install included) the commit says more than the version number.
    commit = source_commit()
    if commit is not None:
        versions["hac"] = f"source {commit}"
    elif versions["hac"] == "not installed":
        versions["hac"] = "source of unknown commit"
    return versions


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _eps_255(eps: float | None) -> float | None:
    return None if eps is None else round(eps * 255, 4)


@dataclass
class Results:
    """The outcome of :func:`hac.evaluation.runner.evaluate`.

    Attributes:
        config: the evaluated config.
        cells: every cell of the grid (baselines included).
        records: per-image records (store rows): ``cell`` id, ``image`` id, ``label``,
            ``clean``/``adv``/``defended``/``clean_defended`` 0-1 correctness, metrics.
        commits: per (cell, batch) bookkeeping: seed, seconds, attack calls, codec passes.
        image_ids: the selected image ids, in evaluation order.
        skipped_images: id -> reason, for unreadable images.
        skipped_cells: cell id -> reason (e.g. codec weights not exported yet).
        dataset: description of the data source.
        run: this invocation: wall seconds, units computed and reused.
    """

    config: EvalConfig
    cells: list[Cell]
    records: list[dict]
    commits: dict[tuple[str, int], dict]
    image_ids: list[str]
    skipped_images: dict[str, str] = field(default_factory=dict)
    skipped_cells: dict[str, str] = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)

    @property
    def batches(self) -> int:
        return math.ceil(len(self.image_ids) / self.config.batch_size)

    def _by_cell(self) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = defaultdict(list)
        for record in self.records:
            grouped[record["cell"]].append(record)
        return grouped

    def _baseline_adv(self) -> dict[tuple[str, str], dict[str, int]]:
        """(classifier, attack) -> image -> undefended correctness."""
        by_cell = self._by_cell()
        return {
            (cell.classifier, cell.attack): {r["image"]: r["adv"] for r in by_cell.get(cell.id, [])}
            for cell in self.cells if cell.is_baseline
        }

    def _status(self, cell: Cell) -> str:
        if cell.id in self.skipped_cells:
            return f"skipped: {self.skipped_cells[cell.id]}"
        done = sum((cell.id, b) in self.commits for b in range(self.batches))
        return "done" if done == self.batches else f"partial ({done}/{self.batches} batches)"

    def summary_rows(self) -> list[dict]:
        """One dict per cell with the columns :data:`SUMMARY_COLUMNS` (None where a metric does not apply)."""
        by_cell, baseline = self._by_cell(), self._baseline_adv()
        seconds: dict[str, float] = defaultdict(float)
        cpu: dict[str, float] = defaultdict(float)
        for (cell_id, _), commit in self.commits.items():
            seconds[cell_id] += commit.get("seconds", 0.0)
            cpu[cell_id] += commit.get("cpu_seconds", 0.0)
        rows = []
        for cell in self.cells:
            records = by_cell.get(cell.id, [])
            adv_of = baseline.get((cell.classifier, cell.attack), {})
            adv = [adv_of[r["image"]] for r in records if r["image"] in adv_of]

            def mean(key: str) -> float | None:
                return _mean([r[key] for r in records if r.get(key) is not None])

            row = {
                "cell": cell.id, "classifier": cell.classifier, "threat": cell.threat, "attack": cell.attack,
                "attack_name": cell.attack_name, "eps": cell.eps, "eps_255": _eps_255(cell.eps), "codec": cell.codec,
                "codec_family": cell.codec_family, "quality": cell.quality, "rounds": cell.rounds, "images": len(records),
                "clean_acc": mean("clean"), "adv_acc": _mean(adv),
                "defended_acc": _mean(adv) if cell.is_baseline else mean("defended"),
                "clean_defended_acc": None if cell.is_baseline else mean("clean_defended"),
                "bpp": mean("bpp"), "psnr": mean("psnr"), "ms_ssim": mean("msssim"),
                "clean_bpp": mean("clean_bpp"), "clean_psnr": mean("clean_psnr"), "clean_ms_ssim": mean("clean_msssim"),
                "linf_255": None if mean("linf") is None else mean("linf") * 255, "l2": mean("l2"),
                "seconds": round(seconds[cell.id], 3), "cpu_seconds": round(cpu[cell.id], 3), "status": self._status(cell),
            }
            rows.append(row)
        return rows

    def worst_case_rows(self) -> list[dict]:
        """Per (classifier, threat, codec, rounds, ε): accuracy of the per-image worst case over attacks.

        ``threat`` is each threat model on its own plus ``all`` (worst case over
        every threat model and attack tried) when a defence was tried under several.
        Only images present in every cell of a group count.
        """
        by_cell = self._by_cell()
        groups: dict[tuple, list[Cell]] = defaultdict(list)
        for cell in self.cells:
            if not by_cell.get(cell.id):
                continue
            groups[cell.classifier, cell.threat, cell.codec, cell.rounds, cell.eps].append(cell)
            if not cell.is_baseline:
                groups[cell.classifier, "all", cell.codec, cell.rounds, cell.eps].append(cell)
        rows = []
        for (classifier, threat, codec, rounds, eps), cells in groups.items():
            if threat == "all" and len({c.threat for c in cells}) < 2:
                continue
            key = "adv" if threat == BASELINE else "defended"
            per_cell = [{r["image"]: r for r in by_cell[c.id]} for c in cells]
            images = set.intersection(*(set(m) for m in per_cell))
            robust = [min(m[i][key] for m in per_cell) for i in images]
            clean_def = [per_cell[0][i].get("clean_defended") for i in images]
            rows.append({
                "classifier": classifier, "threat": threat, "codec": codec, "rounds": rounds, "eps": eps,
                "eps_255": _eps_255(eps), "images": len(images), "robust_acc": _mean(robust),
                "clean_defended_acc": None if threat == BASELINE else _mean([v for v in clean_def if v is not None]),
                "cells": len(cells), "attacks": ", ".join(sorted({f"{c.attack_name}/{c.threat}" if threat == 'all' else c.attack_name for c in cells})),
            })
        order = {name: i for i, name in enumerate(["none", "oblivious", "bpda", "straight-through", "eot", "all"])}
        rows.sort(key=lambda r: (r["classifier"], order.get(r["threat"], 9), r["codec"], r["rounds"], r["eps"] or 0))
        return rows

    def reuse(self) -> dict[str, int]:
        """Attack calls and purification passes done, against what a cell-by-cell evaluation would need.

        Without reuse every cell (baselines included) runs its own attack on each
        batch and purifies its own clean images; with reuse, oblivious cells share
        the attack of their (classifier, attack, ε), and purified-clean images and
        intermediate rounds are shared per codec config. ``fixed_point_predictions_reused``
        counts images whose purified version did not change from the previous
        round evaluated (a codec fixed point), so their prediction was reused.
        """
        cell_of = {cell.id: cell for cell in self.cells}
        attack_calls = sum(c.get("attack_calls", 0) for c in self.commits.values())
        passes = sum(c.get("codec_passes", 0) for c in self.commits.values())
        fixed = sum(c.get("fixed_points", 0) for c in self.commits.values())
        naive_attacks = naive_passes = 0
        for (cell_id, _), commit in self.commits.items():
            cell = cell_of.get(cell_id)
            if cell is None or commit.get("n", 0) == 0:
                continue
            naive_attacks += 1
            naive_passes += 0 if cell.is_baseline else 2 * cell.rounds
        return {
            "attack_calls": attack_calls, "attack_calls_without_reuse": naive_attacks,
            "codec_passes": passes, "codec_passes_without_reuse": naive_passes,
            "fixed_point_predictions_reused": fixed,
        }

    def warnings(self) -> list[str]:
        cell_of = {cell.id: cell for cell in self.cells}
        return sorted({f"{cell_of[c].key}: {commit['warning']}" for (c, _), commit in self.commits.items()
                       if commit.get("warning") and c in cell_of})

    def to_json(self) -> dict[str, Any]:
        """Everything needed to understand and repeat the run."""
        seconds = sum(c.get("seconds", 0.0) for c in self.commits.values())
        cpu = sum(c.get("cpu_seconds", 0.0) for c in self.commits.values())
        return {
            "config": self.config.to_dict(),
            "config_hash": config_hash(self.config, self.image_ids),
            "versions": package_versions(),
            "data": self.dataset,
            "image_ids": self.image_ids,
            "skipped_images": self.skipped_images,
            "seeds": {
                "subset_seed": self.config.data.seed,
                "base_seed": self.config.seed,
                "rule": "torch.manual_seed(int(sha256(f'{base_seed}|{unit}|{batch}')[:8], 16)) before each unit; "
                        "unit = 'attack|<classifier>|<attack>' (shared by oblivious cells), "
                        "'purify|<classifier>|<attack>|<codec>', 'clean|<classifier>|<codec>' or 'cell|<cell key>'; "
                        "the seed of each (cell, batch) is in rows.jsonl",
            },
            "timings": {"compute_seconds": round(seconds, 3), "compute_cpu_seconds": round(cpu, 3), **self.run},
            "reuse": self.reuse(),
            "warnings": self.warnings(),
            "cells": self.summary_rows(),
            "worst_case": self.worst_case_rows(),
            "skipped_cells": {cell.key: self.skipped_cells[cell.id] for cell in self.cells if cell.id in self.skipped_cells},
        }

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``summary.csv``, ``worst_case.csv``, ``results.json`` and ``image_ids.txt`` (atomically each)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "summary.csv": csv_text(self.summary_rows(), SUMMARY_COLUMNS),
            "worst_case.csv": csv_text(self.worst_case_rows(), WORST_CASE_COLUMNS),
            "results.json": json.dumps(self.to_json(), indent=2, allow_nan=False),
            "image_ids.txt": "".join(f"{i}\n" for i in self.image_ids),
        }
        paths = []
        for name, text in files.items():
            path = out / name
            atomic_write_text(path, text)
            paths.append(path)
        return paths


def _format(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    """``rows`` as CSV text with ``columns`` (empty cells for None, floats to 6 significant digits)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format(row.get(key)) for key in columns})
    return buffer.getvalue()
