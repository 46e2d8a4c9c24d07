"""Plots of an evaluation (matplotlib, Agg backend; PNG files).

- ``accuracy_vs_eps.png``: per threat model, the worst-case accuracy over the
  attacks tried, against ε, one line per defence (codec config x rounds), the
  undefended classifier dashed;
- ``accuracy_vs_rounds.png``: per threat model, worst-case accuracy against
  the number of rounds, one line per codec config and ε; plus the accuracy on
  purified clean images (the defence's cost);
- ``accuracy_vs_bpp.png``: per threat model, worst-case accuracy and
  clean-defended accuracy against the bits per pixel spent on clean images,
  one line per codec family, rounds and ε.

With several classifiers each gets its own files (``<classifier>-accuracy_vs_eps.png``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import Results

__all__ = ["make_plots"]

_THREAT_ORDER = ("oblivious", "bpda", "straight-through", "eot", "all")


def _figure(panels: int):
    from matplotlib.figure import Figure  # no pyplot: no global backend state, PNG through Agg

    figure = Figure(figsize=(4.6 * panels + 3, 4.2), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    return figure, axes


class _Palette:
    """The same colour for the same label in every panel of a figure (tab10, then tab20's light shades)."""

    def __init__(self) -> None:
        self.colors: dict[str, tuple] = {}

    def __call__(self, label: str) -> tuple:
        if label not in self.colors:
            from matplotlib import colormaps

            n = len(self.colors)
            self.colors[label] = colormaps["tab10"](n % 10) if n < 10 else colormaps["tab20"]((2 * (n - 10) + 1) % 20)
        return self.colors[label]


def _integer_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _threats(rows: list[dict]) -> list[str]:
    present = {row["threat"] for row in rows if row["threat"] != "none"}
    return [t for t in _THREAT_ORDER if t in present]


def _eps_label(eps_255: float | None) -> str:
    return "unbounded" if eps_255 is None else f"ε={eps_255:g}/255"


def _save(figure, path: Path) -> Path:
    """One legend for all panels (labels deduplicated), right of the plots; then write the PNG."""
    handles: dict[str, object] = {}
    for ax in figure.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=7)
    figure.savefig(path, dpi=110)
    return path


def _accuracy_vs_eps(worst: list[dict], path: Path) -> Path | None:
    palette = _Palette()
    threats = _threats(worst)
    if not threats:
        return None
    figure, axes = _figure(len(threats))
    undefended = sorted((r["eps_255"], r["robust_acc"]) for r in worst if r["threat"] == "none" and r["eps_255"] is not None)
    for ax, threat in zip(axes, threats):
        lines = defaultdict(list)
        for row in worst:
            if row["threat"] == threat and row["eps_255"] is not None:
                lines[f"{row['codec']} x{row['rounds']}"].append((row["eps_255"], row["robust_acc"]))
        for label, points in sorted(lines.items()):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=label, color=palette(label))
        if undefended:
            xs, ys = zip(*undefended)
            ax.plot(xs, ys, "k--", marker="x", label="undefended")
        ax.set(title=f"threat: {threat}", xlabel="ε (x 1/255)", ylabel="accuracy (worst case over attacks)", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    return _save(figure, path)


def _accuracy_vs_rounds(worst: list[dict], summary: list[dict], path: Path) -> Path | None:
    palette = _Palette()
    threats = _threats(worst)
    if not threats:
        return None
    figure, axes = _figure(len(threats) + 1)
    for ax, threat in zip(axes, threats):
        lines = defaultdict(list)
        for row in worst:
            if row["threat"] == threat:
                lines[f"{row['codec']}, {_eps_label(row['eps_255'])}"].append((row["rounds"], row["robust_acc"]))
        for label, points in sorted(lines.items()):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=label, color=palette(label))
        ax.set(title=f"threat: {threat}", xlabel="rounds", ylabel="accuracy (worst case over attacks)", ylim=(-0.02, 1.02))
        ax.xaxis.set_major_locator(_integer_locator())
        ax.grid(alpha=0.3)
    clean = defaultdict(dict)
    for row in summary:
        if row["threat"] != "none" and row["clean_defended_acc"] is not None:
            clean[row["codec"]][row["rounds"]] = row["clean_defended_acc"]
    ax = axes[-1]
    for codec, points in sorted(clean.items()):
        xs, ys = zip(*sorted(points.items()))
        ax.plot(xs, ys, marker="s", linestyle=":", label=f"{codec}, clean", color=palette(f"{codec}, clean"))
    ax.set(title="clean images, purified", xlabel="rounds", ylabel="accuracy", ylim=(-0.02, 1.02))
    ax.xaxis.set_major_locator(_integer_locator())
    ax.grid(alpha=0.3)
    return _save(figure, path)


def _accuracy_vs_bpp(worst: list[dict], summary: list[dict], path: Path) -> Path | None:
    palette = _Palette()
    threats = _threats(worst)
    rate = {(r["codec"], r["rounds"]): r["clean_bpp"] for r in summary if r["clean_bpp"] is not None}
    family = {r["codec"]: r["codec_family"] for r in summary}
    if not threats or not rate:
        return None
    figure, axes = _figure(len(threats))
    for ax, threat in zip(axes, threats):
        lines = defaultdict(list)
        clean_lines = defaultdict(dict)
        for row in worst:
            key = (row["codec"], row["rounds"])
            if row["threat"] != threat or key not in rate:
                continue
            label = f"{family.get(row['codec'], row['codec'])} x{row['rounds']}"
            lines[f"{label}, {_eps_label(row['eps_255'])}"].append((rate[key], row["robust_acc"]))
            if row["clean_defended_acc"] is not None:
                clean_lines[label][rate[key]] = row["clean_defended_acc"]
        for label, points in sorted(lines.items()):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=label, color=palette(label))
        for label, points in sorted(clean_lines.items()):
            xs, ys = zip(*sorted(points.items()))
            ax.plot(xs, ys, linestyle=":", marker="s", label=f"{label}, clean", color=palette(f"{label}, clean"))
        ax.set(title=f"threat: {threat}", xlabel="bits per pixel (clean images, all rounds)",
               ylabel="accuracy (worst case over attacks)", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    return _save(figure, path)


def make_plots(results: "Results", out_dir: str | Path) -> list[Path]:
    """Write the PNG plots of ``results`` into ``out_dir``; returns the files written (none if nothing to plot)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, worst = results.summary_rows(), results.worst_case_rows()
    classifiers = sorted({row["classifier"] for row in summary})
    paths = []
    for classifier in classifiers:
        prefix = f"{classifier}-" if len(classifiers) > 1 else ""
        s = [r for r in summary if r["classifier"] == classifier and r["images"]]
        w = [r for r in worst if r["classifier"] == classifier and r["robust_acc"] is not None]
        for made in (
            _accuracy_vs_eps(w, out / f"{prefix}accuracy_vs_eps.png"),
            _accuracy_vs_rounds(w, s, out / f"{prefix}accuracy_vs_rounds.png"),
            _accuracy_vs_bpp(w, s, out / f"{prefix}accuracy_vs_bpp.png"),
        ):
            if made is not None:
                paths.append(made)
    return paths
