"""The verdict of an audit, and its sanity checks, from what the cascade recorded.

Robust accuracy is the per-image worst case over every counted attack: an
image counts as robust only if it was classified correctly when clean and
survived every attack run against it (Carlini et al. 2019). Its 95 % interval
is Wilson's score interval. Beside it: the oblivious accuracy (what a
non-adaptive evaluation would have claimed) and the flags of the checks:

- ``steps``: the strongest attack alone (PGD under the most informed threat model), at 1x, 5x and
  20x its steps, each on the images the fewer steps left standing, must stop falling (less than one
  point between the last two), else the verdict is an upper bound (unless it is already 0);
- ``eps-sweep``: the strongest attack alone must reach <= 1 % at the largest eps, else its gradient
  is masked or there is a bug (the oblivious PGD and the worst case are swept beside it);
- ``random-gradient``: random directions must do clearly worse than the real gradient on the same
  images (they break fewer than half as many), else the gradient is uninformative;
- ``gradient-free``: Square and transfer must not break a large share (> 20 %) of the images every
  gradient attack left standing;
- ``gradient-health``: no attacked model may have a masked input gradient (zero, NaN, or cut);
- ``loss-rise``: every gradient attack must raise the loss it maximises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .cascade import AuditRun
from .suite import Step

__all__ = ["wilson_interval", "Check", "Verdict", "verdict_of", "CONVERGED_POINTS", "EPS_SWEEP_TARGET",
           "RANDOM_GRADIENT_RATIO", "GRADIENT_FREE_SHARE", "eps_curves"]

CONVERGED_POINTS = 0.01
EPS_SWEEP_TARGET = 0.01
RANDOM_GRADIENT_RATIO = 0.5
GRADIENT_FREE_SHARE = 0.2


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % for the default ``z``); (0, 1) when ``n`` is 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Check:
    """One sanity check: ``status`` is ``pass``, ``FLAG`` or ``not run``; ``values`` its numbers."""

    name: str
    status: str
    detail: str
    values: dict = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.status == "FLAG"


@dataclass
class Verdict:
    """The audit's answer for one defence at one eps."""

    defence: str
    defended: bool
    eps: float
    images: int
    clean_correct: int
    robust: int
    interval: tuple[float, float]
    oblivious: float | None
    achieved_by: str | None
    upper_bound: bool
    per_step: list[dict]
    checks: list[Check]
    not_run: dict[str, str]
    worst_case: list[dict]

    @property
    def robust_accuracy(self) -> float:
        return self.robust / self.images if self.images else math.nan

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct / self.images if self.images else math.nan

    @property
    def flags(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if c.flagged]

    @property
    def masked(self) -> bool:
        return any(c.flagged for c in self.checks if c.name in ("gradient-health", "random-gradient", "gradient-free"))


def _broken(run: AuditRun, step_id: str) -> set[str]:
    return {i for (c, i), ok in run.outcome.items() if c == step_id and not ok}


def _attacked(run: AuditRun, step_id: str) -> set[str]:
    return {i for (c, i) in run.outcome if c == step_id}


def _commits(run: AuditRun, step_id: str) -> list[dict]:
    return [commit for (c, _), commit in sorted(run.commits.items(), key=lambda kv: kv[0][1]) if c == step_id]


def _alone(run: AuditRun) -> tuple[str, ...]:
    """The steps whose union is the strongest attack run standalone on every clean-correct image."""
    return tuple(s.id for s in run.steps if s.id == run.strongest or (s.scope == "complement" and s.reference == run.strongest))


def _curve(run: AuditRun, correct: set[str], n: int, first: tuple[str, ...], then: list[Step]) -> list[float]:
    """Accuracy after ``first``, then after each of ``then`` in turn (cumulative: an image stays broken)."""
    broken = {i for step_id in first for i in _broken(run, step_id)} & correct
    curve = [len(correct - broken) / n]
    for step in then:
        broken |= _broken(run, step.id)
        curve.append(len(correct - broken) / n)
    return curve


def _steps_check(run: AuditRun, counted: list[Step], correct: set[str], robust: int, n: int) -> Check:
    multiples = [s for s in run.steps if s.family == "steps" and s.scope == "chain"]
    if not multiples:
        return Check("steps", "not run", run.not_run.get("steps", "no gradient attack to repeat"))
    base = run.steps[[s.id for s in run.steps].index(run.strongest)]
    steps = [base.params["steps"]] + [s.params["steps"] for s in multiples]
    alone = _curve(run, correct, n, _alone(run), multiples)
    others = tuple(s.id for s in counted if s not in multiples)
    worst = _curve(run, correct, n, others, multiples)
    values = {"strongest": run.strongest, "steps": steps, "accuracy": dict(zip(map(str, steps), alone)),
              "worst_case": dict(zip(map(str, steps), worst))}
    drop = alone[-2] - alone[-1]
    text = (f"{run.strongest} alone: " + " -> ".join(f"{a:.3f} ({k} steps)" for k, a in zip(steps, alone))
            + "; worst case over the suite: " + " -> ".join(f"{a:.3f}" for a in worst))
    if drop < CONVERGED_POINTS:
        return Check("steps", "pass", f"{text}; converged (last drop {drop * 100:.1f} points)", values)
    if robust == 0:
        return Check("steps", "pass", f"{text}; the strongest attack alone has not converged (last drop {drop * 100:.1f} "
                     "points), but the worst case is already 0, which more steps cannot lower", values)
    return Check("steps", "FLAG", f"{text}; NOT converged (last drop {drop * 100:.1f} points): the verdict is an upper bound", values)


def eps_curves(run: AuditRun) -> dict[str, dict[str, float]]:
    """Accuracy vs eps (``"8/255"`` -> accuracy) of the oblivious PGD, the strongest attack alone and the
    worst case (every counted attack at the audit's eps, then every sweep step), each cumulative over eps."""
    n = len(run.clean)
    correct = {i for i, (_, ok) in run.clean.items() if ok}
    sweep = [s for s in run.steps if s.family == "eps"]
    if not n or not sweep:
        return {}

    def label(eps: float) -> str:
        return f"{eps * 255:g}/255"

    curves = {}
    for name, key, first in (("oblivious", "oblivious-pgd", ("oblivious-pgd",)), ("strongest", run.strongest, _alone(run))):
        then = [s for s in sweep if s.id.startswith(f"{name}-eps-")]
        if then:
            curves[key] = dict(zip([label(run.config.eps)] + [label(s.eps) for s in then], _curve(run, correct, n, first, then)))
    counted = tuple(s.id for s in run.steps if s.counts)
    worst = {label(run.config.eps): _curve(run, correct, n, counted, [])[0]}
    for value in sorted({s.eps for s in sweep}):
        worst[label(value)] = _curve(run, correct, n, counted + tuple(s.id for s in sweep if s.eps <= value), [])[0]
    curves["worst case"] = worst
    return curves


def _eps_check(run: AuditRun) -> Check:
    curves = eps_curves(run)
    if not curves or run.strongest not in curves:
        return Check("eps-sweep", "not run", run.not_run.get("eps-sweep", "no gradient attack to repeat"))
    alone = curves[run.strongest]
    last_eps, last = list(alone.items())[-1]
    text = "; ".join(f"{name}: " + ", ".join(f"{a:.3f} at {e}" for e, a in curve.items()) for name, curve in curves.items())
    values = {"strongest": run.strongest, "accuracy": curves}
    if last <= EPS_SWEEP_TARGET:
        return Check("eps-sweep", "pass", f"{text}: {run.strongest} alone reaches <= {EPS_SWEEP_TARGET:.0%}", values)
    return Check("eps-sweep", "FLAG", f"{text}: {run.strongest} alone does not reach <= {EPS_SWEEP_TARGET:.0%} at {last_eps}: "
                 "gradient masking or a bug", values)


def _random_check(run: AuditRun) -> Check:
    control = next((s for s in run.steps if s.family == "control"), None)
    if control is None:
        return Check("random-gradient", "not run", run.not_run.get("random-gradient", "not selected"))
    images = _attacked(run, control.id)
    real = len(_broken(run, control.reference) & images)
    rand = len(_broken(run, control.id))
    values = {"reference": control.reference, "images": len(images), "real_broken": real, "random_broken": rand}
    if not images:
        return Check("random-gradient", "pass", f"no image reached {control.reference} (nothing to compare)", values)
    text = f"on the {len(images)} images {control.reference} attacked, the real gradient broke {real}, random directions {rand}"
    if rand >= RANDOM_GRADIENT_RATIO * real:
        return Check("random-gradient", "FLAG", f"{text}: the gradient is no better than random (uninformative)", values)
    return Check("random-gradient", "pass", text, values)


def _gradient_free_check(run: AuditRun, counted: list[Step], correct: set[str]) -> Check:
    free = [s for s in counted if s.family == "gradient-free"]
    if not free:
        return Check("gradient-free", "not run", "; ".join(f"{k}: {run.not_run[k]}" for k in ("square", "transfer") if k in run.not_run))
    gradient_broken = {i for s in counted if s.family in ("gradient", "oblivious", "steps") for i in _broken(run, s.id)}
    standing = correct - gradient_broken
    by_free = {i for s in free for i in _broken(run, s.id)} & standing
    values = {"gradient_survivors": len(standing), "broken_by_gradient_free": len(by_free)}
    text = f"{', '.join(s.id for s in free)} broke {len(by_free)} of the {len(standing)} images every gradient attack left standing"
    if standing and len(by_free) > GRADIENT_FREE_SHARE * len(standing):
        return Check("gradient-free", "FLAG", f"{text}: gradient-free beats gradient (masked gradients)", values)
    return Check("gradient-free", "pass", text, values)


def _health_checks(run: AuditRun) -> list[Check]:
    masked, no_rise, values = [], [], {}
    for step in run.steps:
        commits = _commits(run, step.id)
        health = next((c["health"] for c in commits if c.get("health")), None)
        losses = [c["loss"] for c in commits if c.get("loss")]
        if health is not None:
            values[step.id] = {"health": health}
            bad = health["graph_cut"] or health["nonfinite_fraction"] > 0 or health["zero_fraction"] > 0.5
            if bad and step.family != "control":
                masked.append(f"{step.id} ({health['zero_fraction']:.0%} zero, graph cut: {health['graph_cut']})")
        if losses and step.family in ("gradient", "steps", "eps"):
            before, after = sum(a for a, _ in losses) / len(losses), sum(b for _, b in losses) / len(losses)
            values.setdefault(step.id, {})["loss"] = [round(before, 4), round(after, 4)]
            if after <= before:
                no_rise.append(f"{step.id} ({before:.3f} -> {after:.3f})")
    health = (Check("gradient-health", "FLAG", "masked input gradient under " + ", ".join(masked), values) if masked
              else Check("gradient-health", "pass", "every attacked model has a usable input gradient", values))
    rise = (Check("loss-rise", "FLAG", "the loss did not rise under " + ", ".join(no_rise)) if no_rise
            else Check("loss-rise", "pass", "every gradient attack raised its loss"))
    return [health, rise]


def verdict_of(run: AuditRun) -> Verdict:
    """Robust accuracy (worst case over every counted step), its interval, the oblivious number and the checks."""
    n = len(run.clean)
    correct = {i for i, (_, ok) in run.clean.items() if ok}
    counted = [s for s in run.steps if s.counts]
    first_breaker: dict[str, str] = {}
    for step in counted:
        for i in sorted(_broken(run, step.id)):
            first_breaker.setdefault(i, step.id)
    robust = len(correct - set(first_breaker))
    per_step, remaining = [], len(correct)
    for step in run.steps:
        attacked, broken = _attacked(run, step.id), _broken(run, step.id)
        new = sum(1 for b in first_breaker.values() if b == step.id) if step.counts else len(broken)
        remaining -= new if step.counts else 0
        seconds = sum(c.get("seconds", 0.0) for c in _commits(run, step.id))
        per_step.append({"step": step.id, "family": step.family, "attack": step.describe(), "counts": step.counts,
                         "attacked": len(attacked), "broken": len(broken), "first_broken": new if step.counts else None,
                         "accuracy_after": remaining / n if n and step.counts else None, "seconds": round(seconds, 2)})
    oblivious_broken = _broken(run, "oblivious-pgd")
    oblivious = len(correct - oblivious_broken) / n if n else None
    gradient_new = [r for r in per_step if r["counts"] and r["step"] != "oblivious-pgd" and r["first_broken"]]
    achieved = max(gradient_new, key=lambda r: r["first_broken"])["step"] if gradient_new else ("oblivious-pgd" if oblivious_broken else None)
    checks = [_steps_check(run, counted, correct, robust, n), _eps_check(run)] if n else []
    checks += [_random_check(run), _gradient_free_check(run, counted, correct), *_health_checks(run)]
    upper = any(c.name == "steps" and c.flagged for c in checks)
    worst = [{"image": i, "label": run.clean[i][0], "clean_correct": int(run.clean[i][1]),
              "robust": int(i in correct and i not in first_breaker), "broken_by": first_breaker.get(i, "")}
             for i in run.image_ids if i in run.clean]
    defended = any(s.family == "oblivious" for s in run.steps)
    return Verdict(defence=run.defence, defended=defended, eps=run.config.eps, images=n, clean_correct=len(correct), robust=robust,
                   interval=wilson_interval(robust, n) if n else (0.0, 1.0), oblivious=oblivious, achieved_by=achieved,
                   upper_bound=upper, per_step=per_step, checks=checks, not_run=dict(run.not_run), worst_case=worst)
