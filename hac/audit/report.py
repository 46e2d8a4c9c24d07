"""The audit's files: ``report.md`` (verdict card on top), ``audit.json``, ``worst_case.csv`` and plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..core.files import atomic_write_text
from ..evaluation.plots import _figure, _save
from ..evaluation.results import csv_text, package_versions
from .cascade import AuditRun
from .verdict import Verdict

__all__ = ["verdict_card", "report_markdown", "audit_json", "write_report", "comparison_table", "WORST_CASE_FILE"]

WORST_CASE_FILE = "worst_case.csv"
_WORST_COLUMNS = ("image", "label", "clean_correct", "robust", "broken_by")
_STEP_COLUMNS = ("step", "family", "attack", "counts", "attacked", "broken", "first_broken", "accuracy_after", "seconds")


def _pct(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def verdict_card(verdict: Verdict) -> str:
    """The verdict as a short Markdown block: robust accuracy, interval, attack, oblivious gap, flags."""
    low, high = verdict.interval
    bound = " (upper bound: the strongest attack has not converged)" if verdict.upper_bound else ""
    lines = [
        f"### Verdict: {verdict.defence} at ε = {verdict.eps * 255:g}/255",
        "",
        f"- **Robust accuracy: {_pct(verdict.robust_accuracy)}**{bound}, 95 % interval [{low:.3f}, {high:.3f}] "
        f"({verdict.robust} of {verdict.images} images; clean accuracy {_pct(verdict.clean_accuracy)})",
        f"- Achieved by: the worst case over every attack below; the attack that broke the most images beyond "
        f"the oblivious one: `{verdict.achieved_by or 'none'}`",
    ]
    if verdict.oblivious is not None and verdict.defended:
        gap = verdict.oblivious - verdict.robust_accuracy
        lines.append(f"- Oblivious PGD (never the verdict): {_pct(verdict.oblivious)}, overstating robustness by {gap * 100:.1f} points")
    elif verdict.oblivious is not None:
        lines.append(f"- White-box PGD alone: {_pct(verdict.oblivious)} (no purifier, so no oblivious attacker)")
    flags = verdict.flags
    lines.append(f"- Flags: {'; '.join(flags) if flags else 'none'}")
    if verdict.masked:
        lines.append("- **Gradient masking suspected**: gradient attacks alone would overstate this defence")
    if verdict.not_run:
        lines.append("- Not run (this verdict is over a subset of the suite): "
                     + "; ".join(f"{k}: {v}" for k, v in verdict.not_run.items()))
    return "\n".join(lines)


def _table(rows: list[dict], columns: tuple[str, ...]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |\n" for row in rows)
    return head + body


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "/")


_HOW_TO_READ = """## How to read this

Each attack ran only on the images every earlier attack left correctly classified (a cascade, cheapest
first); an image wrong when clean was never attacked. *first_broken* is how many images an attack broke
that no earlier one had; *accuracy_after* the worst-case accuracy once it had run. The robust accuracy is
the per-image worst case over every counted attack; a single attack's accuracy would be an upper bound.
The oblivious attack never sees the purifier: its number is what a non-adaptive evaluation would claim.
The strongest attack (PGD under the most informed threat model) is also run on its own, on every
clean-correct image (`strongest-x1` covers those the cascade broke before it), then with more steps and
at larger eps on the images it left standing: the steps and eps-sweep checks read those curves. The
eps-sweep rows do not count towards the verdict (they use a larger budget). A flag means the
evaluation itself is suspect (masked gradients, an attack that has not converged), not the defence.
"""


def report_markdown(verdict: Verdict, run: AuditRun) -> str:
    parts = [f"# Audit: {verdict.defence}", "", verdict_card(verdict), "", "## Attacks (in cascade order)", "",
             _table(verdict.per_step, _STEP_COLUMNS), "## Checks", ""]
    parts += [f"- **{c.name}**: {c.status} ({c.detail})" for c in verdict.checks]
    if run.surrogate:
        s = run.surrogate
        parts += ["", f"Learned surrogate: key {s['key']}, " + ("loaded from the cache" if s.get("cached") else
                  f"trained {s['steps']} steps, L1 to the real purifier {s['l1_identity']:.4f} (identity) -> {s['l1_trained']:.4f}")]
    parts += ["", _HOW_TO_READ, f"Images: {verdict.images}; skipped: {len(run.skipped)}; settings and seeds in `audit.json`."]
    return "\n".join(parts) + "\n"


def audit_json(verdict: Verdict, run: AuditRun) -> dict:
    return {
        "defence": verdict.defence,
        "config": run.config.to_dict(),
        "verdict": {"robust_accuracy": verdict.robust_accuracy, "interval_95": list(verdict.interval), "robust": verdict.robust,
                    "images": verdict.images, "clean_accuracy": verdict.clean_accuracy, "oblivious_accuracy": verdict.oblivious,
                    "achieved_by": verdict.achieved_by, "upper_bound": verdict.upper_bound, "masked": verdict.masked,
                    "flags": verdict.flags, "not_run": verdict.not_run},
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "values": c.values} for c in verdict.checks],
        "steps": verdict.per_step,
        "suite": [{"id": s.id, "family": s.family, "threat": s.threat, "attack": s.attack, "params": s.params,
                   "scope": s.scope, "counts": s.counts, "reference": s.reference} for s in run.steps],
        "strongest": run.strongest,
        "surrogate": run.surrogate,
        "seeds": {f"{c}|{b}": commit["seed"] for (c, b), commit in sorted(run.commits.items()) if "seed" in commit},
        "image_ids": run.image_ids,
        "skipped_images": run.skipped,
        "run": run.run,
        "versions": package_versions(),
    }


def _plots(verdict: Verdict, out: Path) -> list[Path]:
    paths = []
    by_name = {c.name: c for c in verdict.checks}
    eps_check = by_name.get("eps-sweep")
    if eps_check is not None and eps_check.values:
        figure, (ax,) = _figure(1)
        for name, points in eps_check.values["accuracy"].items():
            ax.plot([float(k.split("/")[0]) for k in points], list(points.values()), "o-",
                    label=name if name == "worst case" else f"{name} alone")
        ax.set(xlabel="ε (/255)", ylabel="accuracy", ylim=(0, 1), title="accuracy vs ε (cumulative over ε)")
        paths.append(_save(figure, out / "accuracy_vs_eps.png"))
    steps_check = by_name.get("steps")
    if steps_check is not None and steps_check.values:
        figure, (ax,) = _figure(1)
        values = steps_check.values
        ax.plot(values["steps"], list(values["accuracy"].values()), "o-", label=f"{values['strongest']} alone")
        ax.plot(values["steps"], list(values["worst_case"].values()), "s--", label="worst case over the suite")
        ax.set(xscale="log", xlabel="steps", ylabel="accuracy", ylim=(0, 1), title="accuracy vs steps (cumulative)")
        paths.append(_save(figure, out / "accuracy_vs_steps.png"))
    counted = [r for r in verdict.per_step if r["counts"]]
    if counted:
        figure, (ax,) = _figure(1)
        ax.barh([r["step"] for r in counted][::-1], [r["accuracy_after"] for r in counted][::-1], label="worst-case accuracy after")
        ax.set(xlabel="accuracy", xlim=(0, 1), title="worst case after each attack")
        paths.append(_save(figure, out / "attacks.png"))
    return paths


def write_report(verdict: Verdict, run: AuditRun, out_dir: str | Path) -> list[Path]:
    """Write ``report.md``, ``audit.json``, ``worst_case.csv`` and the plots into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"report.md": report_markdown(verdict, run), "audit.json": json.dumps(audit_json(verdict, run), indent=2, default=str),
             WORST_CASE_FILE: csv_text(verdict.worst_case, _WORST_COLUMNS)}
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return [out / name for name in files] + _plots(verdict, out)


def _check(audit: dict, name: str) -> dict:
    return next((c for c in audit["checks"] if c["name"] == name), {"status": "not run", "values": {}})


_COMPARISON_COLUMNS = ("defence", "images", "clean", "oblivious", "strongest attack alone", "**audited** [95 % interval]",
                       "oblivious overstates by", "steps check (strongest alone)", "ε sweep (strongest alone)", "flags")


def comparison_table(audits: dict[str, dict]) -> str:
    """One Markdown row per audit (``name -> audit.json`` contents): clean, oblivious, the strongest attack
    alone, the audited worst case with its interval, how far the oblivious number overstated it, the
    steps check and eps sweep of the strongest attack, and the flags."""
    rows = []
    for name, audit in audits.items():
        verdict, steps, sweep = audit["verdict"], _check(audit, "steps"), _check(audit, "eps-sweep")
        low, high = verdict["interval_95"]
        alone = steps["values"].get("accuracy") or {}
        first = f"{next(iter(alone.values())):.3f} ({audit['strongest']})" if alone else "n/a"
        steps_text = ("→".join(f"{a:.3f}" for a in alone.values()) + f" at {'/'.join(map(str, steps['values']['steps']))} "
                      f"steps: {steps['status']}") if alone else steps["status"]
        curve = (sweep["values"].get("accuracy") or {}).get(audit["strongest"] or "", {})
        sweep_text = (", ".join(f"{a:.3f} at {e}" for e, a in curve.items()) + f": {sweep['status']}") if curve else sweep["status"]
        oblivious = verdict["oblivious_accuracy"]
        defended = any(step["family"] == "oblivious" for step in audit["suite"])
        gap = "n/a" if oblivious is None or not defended else f"{(oblivious - verdict['robust_accuracy']) * 100:.1f} points"
        cells = (name, verdict["images"], _pct(verdict["clean_accuracy"]), _pct(oblivious) if defended else "n/a (no purifier)",
                 first, f"**{_pct(verdict['robust_accuracy'])}** [{low:.3f}, {high:.3f}]", gap, steps_text, sweep_text,
                 "; ".join(flag.split(":")[0] for flag in verdict["flags"]) or "none")
        rows.append(dict(zip(_COMPARISON_COLUMNS, cells)))
    return _table(rows, _COMPARISON_COLUMNS)
