"""Rate–distortion evaluation of codecs on a folder of images, with Bjøntegaard deltas.

:func:`evaluate_rd` codes every image of a folder with every codec point of a
sweep and returns mean bits per pixel, PSNR and MS-SSIM per point
(:class:`RDResults`); :func:`write_outputs` writes ``rd.csv``, ``rd.json``,
``rd.png`` and ``bd_rate.csv``. The CLI around it is ``python -m hac rd``.

Codec sweeps are codec specs (:mod:`hac.core.specs`) whose quality may be a range:

* ``jpeg:q=5..95`` (step 5) or ``jpeg:q=5..95/10`` (step 10);
* a bare name sweeps the qualities the codec declares (:class:`hac.codecs.CodecInfo`:
  its ``sweep``, else all its qualities; ``jpeg``, ``webp``, ``mbt2018-mean``, ``hific``);
  of a codec with weights, only the qualities whose weights are on this machine; the
  others are reported as skipped, never downloaded here and never an error;
* anything else (``comdefend``, ``jpeg:q=30``) is one point.

Points of specs that differ only in ``q`` form one curve, labelled by the spec
without ``q`` (``jpeg``, ``jpeg:subsampling=0``). A ``LABEL=`` prefix names the
curve instead, so that points with other parameters join one curve: e.g. the
separately trained files of a fine-tuned family,
``adv=hac-hyperprior:q=1,weights=A.safetensors adv=hac-hyperprior:q=3,weights=B.safetensors``. Learned codecs run in
``entropy-coded`` mode (real bitstreams, real rate) unless ``mode="fast"``.
Reconstructions are rounded to 8 bits before measuring, as a decoder writing an
image file would; PSNR and MS-SSIM are means over images (PSNR per image first).

BD-rates and BD-PSNR against an anchor curve come from :mod:`hac.rd.bjontegaard`.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from .bjontegaard import bd_quality, bd_rate, bd_rate_and_range
from ..codecs import create_codec
from ..codecs import CodecMode, codec_info
from ..hub import MissingWeightsError, UnsafeWeightsError, weights_available
from ..core.files import atomic_write_text
from ..core.images import list_images, load_image
from ..core.metrics import ms_ssim, psnr
from ..core.specs import ComponentSpec, format_spec, parse_spec

__all__ = [
    "PlannedPoint",
    "RDPoint",
    "Skipped",
    "BDResult",
    "RDResults",
    "plan_sweeps",
    "evaluate_rd",
    "compare_curves",
    "write_outputs",
    "plot_rd",
]

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*(?:/\s*(\d+)\s*)?$")


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class PlannedPoint:
    """One codec configuration to measure: its curve label and full spec."""

    curve: str
    spec: ComponentSpec

    @property
    def quality(self) -> object:
        return self.spec.params.get(codec_info(self.spec.name).quality_param)


@dataclass(frozen=True)
class Skipped:
    """A codec (or some of its qualities) that was not measured, and why."""

    spec: str
    reason: str


@dataclass(frozen=True)
class RDPoint:
    """Mean rate and quality of one codec configuration over the images.

    Attributes:
        curve: the curve it belongs to, e.g. ``"jpeg"``.
        spec: the codec as run, e.g. ``"jpeg:q=25"`` or ``"mbt2018-mean:mode=entropy-coded,q=3"``.
        quality: the value of ``q`` (``None`` for codecs without one).
        bpp, psnr, ms_ssim: means over images (bits per pixel, dB, [0, 1]).
        seconds: wall time to code all images.
        per_image: ``{"bpp": [...], "psnr": [...], "ms_ssim": [...]}`` in image order.
    """

    curve: str
    spec: str
    quality: object
    bpp: float
    psnr: float
    ms_ssim: float
    seconds: float
    per_image: dict[str, list[float]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class BDResult:
    """Bjøntegaard deltas of one curve against the anchor.

    Attributes:
        curve, anchor: curve labels.
        points: number of points of ``curve``.
        bd_rate_psnr: BD-rate in percent at equal PSNR (``None`` if not computable).
        bd_psnr: BD-PSNR in dB at equal rate.
        bd_rate_ms_ssim: BD-rate in percent at equal MS-SSIM (fitted in dB, ``-10 log10(1 - MS-SSIM)``).
        psnr_range: the shared PSNR interval the BD-rate integrates over.
        note: why a value is missing, or which fit degree was used.
    """

    curve: str
    anchor: str
    points: int
    bd_rate_psnr: float | None
    bd_psnr: float | None
    bd_rate_ms_ssim: float | None
    psnr_range: tuple[float, float] | None
    note: str = ""


@dataclass
class RDResults:
    """Everything :func:`evaluate_rd` measured."""

    data: str
    images: list[str]
    mode: str
    anchor: str
    points: list[RDPoint]
    skipped: list[Skipped]
    bd: list[BDResult]

    def curves(self) -> dict[str, list[RDPoint]]:
        """Curve label -> its points sorted by rate (in the order curves were first given)."""
        curves: dict[str, list[RDPoint]] = {}
        for point in self.points:
            curves.setdefault(point.curve, []).append(point)
        return {label: sorted(points, key=lambda p: p.bpp) for label, points in curves.items()}

    def to_dict(self) -> dict:
        return {
            "data": self.data,
            "images": self.images,
            "mode": self.mode,
            "anchor": self.anchor,
            "points": [asdict(point) for point in self.points],
            "skipped": [asdict(skip) for skip in self.skipped],
            "bd_rate": [asdict(result) for result in self.bd],
        }


def _ms_ssim_db(values: Iterable[float]) -> np.ndarray:
    values = np.clip(np.asarray(list(values), dtype=np.float64), 0.0, 1.0 - 1e-10)
    return -10.0 * np.log10(1.0 - values)


def _try(compute: Callable[[], object], key: str, notes: list[str]):
    try:
        return compute()
    except ValueError as error:
        notes.append(f"{key}: {error}")
        return None


def _compare(label: str, anchor: str, base: list[RDPoint], points: list[RDPoint]) -> BDResult:
    notes: list[str] = []
    base_rates, rates = [p.bpp for p in base], [p.bpp for p in points]
    base_psnr, test_psnr = [p.psnr for p in base], [p.psnr for p in points]
    base_ssim, test_ssim = _ms_ssim_db(p.ms_ssim for p in base), _ms_ssim_db(p.ms_ssim for p in points)
    by_psnr = _try(lambda: bd_rate_and_range(base_rates, base_psnr, rates, test_psnr), "bd_rate_psnr", notes)
    gain = _try(lambda: bd_quality(base_rates, base_psnr, rates, test_psnr), "bd_psnr", notes)
    by_ssim = _try(lambda: bd_rate(base_rates, base_ssim, rates, test_ssim), "bd_rate_ms_ssim", notes)
    if 0 < len(points) - 1 < 3:
        notes.append(f"fit of degree {len(points) - 1} ({len(points)} points)")
    return BDResult(
        curve=label,
        anchor=anchor,
        points=len(points),
        bd_rate_psnr=by_psnr[0] if by_psnr else None,
        bd_psnr=gain,
        bd_rate_ms_ssim=by_ssim,
        psnr_range=by_psnr[1] if by_psnr else None,
        note="; ".join(notes),
    )


def compare_curves(curves: dict[str, list[RDPoint]], anchor: str) -> list[BDResult]:
    """BD-rate (PSNR and MS-SSIM) and BD-PSNR of every curve against ``anchor`` (empty if it is absent)."""
    if anchor not in curves:
        return []
    return [_compare(label, anchor, curves[anchor], points) for label, points in curves.items() if label != anchor]


# --------------------------------------------------------------------------- planning


def _expand_quality(value: object, text: str, listed: Sequence[object]) -> list[object]:
    if not isinstance(value, str) or value in listed:
        return [value]
    match = _RANGE.match(value)
    if not match:
        raise ValueError(f"q={value!r} in {text!r} is neither a number nor a range LOW..HIGH or LOW..HIGH/STEP (e.g. q=5..95/10)")
    low, high, step = int(match[1]), int(match[2]), int(match[3] or 5)
    if low > high or step < 1:
        raise ValueError(f"q range {value!r} in {text!r} is empty; write LOW..HIGH with LOW <= HIGH and STEP >= 1")
    return list(range(low, high + 1, step))


def _split_curve_label(text: str) -> tuple[str | None, str]:
    """``"adv=hac-hyperprior:q=1"`` -> ``("adv", "hac-hyperprior:q=1")``; a spec without a label -> ``(None, text)``.

    A codec name never holds ``=``, so an ``=`` before the first ``:`` marks a label.
    """
    head = text.split(":", 1)[0]
    if "=" not in head:
        return None, text
    label, spec_text = text.split("=", 1)
    if not label.strip() or not spec_text.strip():
        raise ValueError(f"{text!r}: a curve label is written LABEL=SPEC, e.g. adv=hac-hyperprior:q=1,weights=FILE")
    return label.strip(), spec_text.strip()


def plan_sweeps(texts: Sequence[str]) -> tuple[list[PlannedPoint], list[Skipped]]:
    """Expand codec sweep specs into points (see the module docstring).

    Returns:
        The points to measure, and what is skipped because its weights are not on
        this machine.

    Raises:
        ValueError: an unknown codec, a malformed spec or quality range.
    """
    points: list[PlannedPoint] = []
    skipped: list[Skipped] = []
    for text in texts:
        label, spec_text = _split_curve_label(text)
        spec = parse_spec(spec_text)
        info = codec_info(spec.name)  # ValueError listing the codecs if unknown
        sweep_param = info.quality_param
        params = {key: value for key, value in spec.params.items() if key != sweep_param}
        curve = label or format_spec(ComponentSpec(spec.name, params))
        if sweep_param in spec.params:
            qualities = _expand_quality(spec.params[sweep_param], text, info.qualities or ())
        elif info.has_quality:
            qualities = list(info.sweep or info.qualities)
        else:
            qualities = [None]
        weights = info.weights_for(params) if "weights" not in params else {}
        if info.has_quality and weights:
            # Only the qualities whose weights are here (never download in an evaluation).
            for quality in qualities:
                if quality not in weights:
                    info.check_quality(quality, spec.name)  # an invalid one fails here, naming the valid ones
            missing = [q for q in qualities if q in weights and weights_available(weights[q]) is None]
            if missing:
                names = ", ".join(weights[q].name for q in missing)
                skipped.append(Skipped(
                    f"{curve} {sweep_param}={','.join(map(str, missing))}",
                    f"weights not on this machine ({names}); e.g. {weights[missing[0]].fetch_hint()}",
                ))
            qualities = [q for q in qualities if q not in missing]
        for quality in qualities:
            full = dict(spec.params)
            if quality is not None:
                full[sweep_param] = quality
            point = PlannedPoint(curve, ComponentSpec(spec.name, full))
            if point not in points:  # a point given twice is measured once
                points.append(point)
    return points, skipped


# --------------------------------------------------------------------------- evaluation


def _batches(images: list[Tensor], batch_size: int) -> list[list[int]]:
    """Indices of images grouped by shape, in chunks of at most ``batch_size``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(index)
    return [indices[i : i + batch_size] for indices in groups.values() for i in range(0, len(indices), batch_size)]


def _measure(codec, images: list[Tensor], batch_size: int) -> dict[str, list[float]]:
    count = len(images)
    bpp, quality, structure = [0.0] * count, [0.0] * count, [0.0] * count
    for indices in _batches(images, batch_size):
        x = torch.stack([images[i] for i in indices])
        with torch.no_grad():
            out = codec(x)
        x_hat = out.x_hat.clamp(0, 1).mul(255).round().div(255)  # what a decoder would write to a file
        values = zip(out.bpp.tolist(), psnr(x_hat, x).tolist(), ms_ssim(x_hat, x).tolist())
        for i, (b, p, s) in zip(indices, values):
            bpp[i], quality[i], structure[i] = b, p, s
    return {"bpp": bpp, "psnr": quality, "ms_ssim": structure}


def evaluate_rd(
    data: str | Path,
    codecs: Sequence[str] = ("jpeg", "webp"),
    mode: CodecMode | str = CodecMode.ENTROPY_CODED,
    anchor: str = "jpeg",
    max_images: int | None = None,
    batch_size: int = 4,
    on_point: Callable[[RDPoint], None] | None = None,
) -> RDResults:
    """Measure rate–distortion points of ``codecs`` on the images of ``data``.

    Args:
        data: image folder (recursive).
        codecs: sweep specs (see the module docstring).
        mode: ``"entropy-coded"`` (real bitstreams) or ``"fast"`` (estimated rate)
            for codecs that have a ``mode`` (learned codecs); others ignore it.
        anchor: curve label for the BD-rates (``"jpeg"``).
        max_images: use the first K images only.
        batch_size: images of equal size coded together.
        on_point: called with each point as soon as it is measured (progress).

    Returns:
        The points, what was skipped (weights missing) and the BD-rates.

    Raises:
        ValueError: unknown codec, malformed spec, bad mode; FileNotFoundError: no images.
    """
    mode = CodecMode(mode)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    planned, skipped = plan_sweeps(codecs)
    files = list_images(data)[:max_images]
    images = [load_image(path) for path in files]
    logger.info("rd: %d images from %s, %d codec points", len(images), data, len(planned))
    points = []
    for item in planned:
        params = dict(item.spec.params)
        if "mode" not in params and codec_info(item.spec.name).modes:
            params["mode"] = mode.value
        run_spec = format_spec(ComponentSpec(item.spec.name, params))
        try:
            codec = create_codec(item.spec.name, **params)
        except (MissingWeightsError, UnsafeWeightsError, FileNotFoundError) as error:
            skipped.append(Skipped(run_spec, str(error)))
            logger.info("skipping %s: %s", run_spec, error)
            continue
        codec.eval()
        start = time.perf_counter()
        measured = _measure(codec, images, batch_size)
        seconds = time.perf_counter() - start
        point = RDPoint(
            curve=item.curve,
            spec=run_spec,
            quality=item.quality,
            bpp=float(np.mean(measured["bpp"])),
            psnr=float(np.mean(measured["psnr"])),
            ms_ssim=float(np.mean(measured["ms_ssim"])),
            seconds=seconds,
            per_image=measured,
        )
        points.append(point)
        if on_point is not None:
            on_point(point)
    results = RDResults(str(data), [str(p) for p in files], mode, anchor, points, skipped, [])
    results.bd = compare_curves(results.curves(), anchor)
    return results


# --------------------------------------------------------------------------- outputs


def plot_rd(results: RDResults, path: str | Path) -> Path:
    """Plot bpp vs PSNR and bpp vs MS-SSIM for every curve (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 5), dpi=120, layout="constrained")
    axes = figure.subplots(1, 2)
    curves = results.curves()
    top = max((p.bpp for p in results.points), default=1.0)
    for label, points in curves.items():
        style = dict(marker="o", markersize=3.5, linewidth=1.5 if label == results.anchor else 1.2, label=label)
        axes[0].plot([p.bpp for p in points], [p.psnr for p in points], **style)
        axes[1].plot([p.bpp for p in points], [p.ms_ssim for p in points], **style)
    for axis, ylabel in zip(axes, ("PSNR (dB)", "MS-SSIM")):
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
        if top > 4:  # a fixed-rate code (ComDefend: 12 bpp) would squash the other curves
            axis.set_xscale("log")
    axes[0].legend(fontsize=8)
    name = Path(results.data).name or results.data
    figure.suptitle(f"rate–distortion on {name} ({len(results.images)} images, {results.mode})")
    path = Path(path)
    figure.savefig(path)
    return path


def _write_csv(path: Path, header: list[str], rows: Iterable[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _round(value: float | None, digits: int) -> float | str:
    return "" if value is None else round(value, digits)


def write_outputs(results: RDResults, out_dir: str | Path) -> dict[str, Path]:
    """Write ``rd.csv``, ``rd.json``, ``rd.png`` and ``bd_rate.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("rd.csv", "rd.json", "rd.png", "bd_rate.csv")}
    _write_csv(
        paths["rd.csv"],
        ["curve", "spec", "q", "bpp", "psnr_db", "ms_ssim", "images", "seconds"],
        (
            [p.curve, p.spec, "" if p.quality is None else p.quality, round(p.bpp, 5), round(p.psnr, 4),
             round(p.ms_ssim, 6), len(results.images), round(p.seconds, 2)]
            for points in results.curves().values()
            for p in points
        ),
    )
    _write_csv(
        paths["bd_rate.csv"],
        ["curve", "anchor", "points", "bd_rate_psnr_percent", "bd_psnr_db", "bd_rate_ms_ssim_percent",
         "psnr_low_db", "psnr_high_db", "note"],
        (
            [r.curve, r.anchor, r.points, _round(r.bd_rate_psnr, 2), _round(r.bd_psnr, 3), _round(r.bd_rate_ms_ssim, 2),
             _round(r.psnr_range[0] if r.psnr_range else None, 3), _round(r.psnr_range[1] if r.psnr_range else None, 3),
             r.note]
            for r in results.bd
        ),
    )
    atomic_write_text(paths["rd.json"], json.dumps(results.to_dict(), indent=2))
    plot_rd(results, paths["rd.png"])
    return paths
