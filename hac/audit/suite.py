"""What an audit runs: its settings (:class:`AuditConfig`) and the ordered attack suite (:func:`build_suite`).

The suite, cheapest first (each step attacks only the images every earlier
step left correctly classified, except where its ``scope`` says otherwise):

1. ``oblivious``: PGD on the bare classifier, then purified (every clean-correct image:
   its number is reported beside the verdict as what a naive evaluation claims);
2. adaptive gradient attacks through the purifier: PGD under ``bpda``, ``straight-through``
   (codecs with a differentiable surrogate) and ``eot`` (stochastic purifiers), then APGD-CE
   and APGD-DLR (Croce & Hein, ICML 2020) under the best of those threat models;
3. ``learned-surrogate``: PGD whose backward pass is a U-Net trained to imitate the purifier
   (Räber et al., "Keep It Real", 2025);
4. ``acm``: maximise the first codec's reconstruction error, then purify and classify;
5. gradient-free: ``square`` (Andriushchenko et al., ECCV 2020) through the real purifier, and
   ``transfer`` of APGD-CE examples of the undefended classifier;
6. ``random-gradient``: the first gradient attack again with random directions, on the same
   images (a control: its breaks count, but it is there to be compared);
7. the checks of the *strongest* attack, PGD under the most informed threat model the purifier
   allows (EOT, else straight-through, else BPDA; the white-box PGD for a bare classifier), run
   standalone: ``strongest-x1`` completes it on the images the cascade had already broken before
   it, ``strongest-x5`` / ``strongest-x20`` repeat it with 5x and 20x its steps on the images it
   left standing (``steps``), and ``strongest-eps-8`` ... at larger eps on those it left standing
   at the audit's eps (``eps-sweep``), beside ``oblivious-eps-8`` ... for the oblivious PGD.

The oblivious PGD never sees the purifier, so its examples are the same for every codec: they are
made for the whole batch and shared through a cache (:mod:`hac.audit.examples`).

A classifier with no purifier has one white-box threat model: the oblivious step
is then the white-box PGD and the purifier-specific steps are left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

__all__ = ["AuditConfig", "Step", "CHECKS", "DEFAULT_EPS_SWEEP", "build_suite", "check_steps", "parse_checks"]

CHECKS = ("bpda", "straight-through", "eot", "apgd-ce", "apgd-dlr", "learned-surrogate", "acm", "square", "transfer",
          "random-gradient", "steps", "eps-sweep")
"""Every part of the suite that ``--checks`` can select (the oblivious baseline always runs)."""

DEFAULT_EPS_SWEEP = (8 / 255, 16 / 255)


def parse_checks(text: str | None) -> tuple[str, ...]:
    """``"all"`` / ``None`` -> every check; ``"bpda,square"`` -> those; ``"all,-square"`` -> all but square.

    Raises:
        ValueError: an unknown check name (the message lists the valid ones).
    """
    if text is None or not text.strip():
        return CHECKS
    chosen: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name = part.lstrip("-")
        if name != "all" and name not in CHECKS:
            raise ValueError(f"unknown audit check {name!r}; valid checks: all, {', '.join(CHECKS)} (prefix '-' to leave one out)")
        if part.startswith("-"):
            chosen = [c for c in (chosen or list(CHECKS)) if c != name]
        elif name == "all":
            chosen = list(CHECKS)
        elif name not in chosen:
            chosen.append(name)
    return tuple(c for c in CHECKS if c in chosen)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _eps(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1 or math.isnan(value):
        raise ValueError(f"{name} must be a number in (0, 1] in pixel units (e.g. 4/255), got {value!r}")


@dataclass(frozen=True)
class AuditConfig:
    """Settings of one audit.

    Attributes:
        classifier: classifier name (see ``python -m hac weights``).
        codec: codec chain (``jpeg:q=25``, ``a+b``), or ``None`` to audit the bare classifier.
        rounds: purification rounds.
        data: image folder (ImageNet layout); images: how many (a seeded subset of the folder or of ``ids_file``);
        ids_file: a file of image ids (one a line) to take the images from; seed: subset and attack seeds.
        eps: L-inf budget of every attack (pixel units).
        steps, restarts: PGD's steps and restarts; apgd_steps: APGD's steps.
        square_queries: Square's query budget per image.
        eot_samples: draws per step for a stochastic purifier.
        surrogate_steps: training steps of the learned surrogate.
        steps_multipliers: the steps check runs the strongest attack at these multiples of its steps.
        eps_sweep: larger budgets for the eps sweep of the strongest and the oblivious attack (cumulative).
        checks: parts of the suite to run (see :data:`CHECKS`).
        batch_size: images per unit of work in the store.
    """

    classifier: str = "efficientnet-lite0"
    codec: str | None = None
    rounds: int = 1
    data: str | None = None
    images: int = 200
    ids_file: str | None = None
    seed: int = 0
    eps: float = 4 / 255
    steps: int = 10
    restarts: int = 1
    apgd_steps: int = 20
    square_queries: int = 500
    eot_samples: int = 8
    surrogate_steps: int = 150
    steps_multipliers: tuple[int, ...] = (5, 20)
    eps_sweep: tuple[float, ...] = DEFAULT_EPS_SWEEP
    checks: tuple[str, ...] = CHECKS
    batch_size: int = 8

    def __post_init__(self) -> None:
        for name in ("rounds", "images", "steps", "restarts", "apgd_steps", "square_queries", "eot_samples",
                     "surrogate_steps", "batch_size"):
            _positive_int(name, getattr(self, name))
        _eps("eps", self.eps)
        object.__setattr__(self, "steps_multipliers", tuple(self.steps_multipliers))
        object.__setattr__(self, "eps_sweep", tuple(sorted(self.eps_sweep)))
        object.__setattr__(self, "checks", parse_checks(",".join(self.checks)) if self.checks else ())
        for m in self.steps_multipliers:
            if isinstance(m, bool) or not isinstance(m, int) or m < 2:
                raise ValueError(f"steps multipliers must be integers >= 2 (e.g. 5,20), got {m!r}")
        for value in self.eps_sweep:
            _eps("eps sweep value", value)
            if value <= self.eps:
                raise ValueError(f"eps sweep values must exceed eps={self.eps * 255:g}/255, got {value * 255:g}/255")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "AuditConfig":
        return replace(self, **changes)


@dataclass(frozen=True)
class Step:
    """One attack of the suite.

    Attributes:
        id: unique name in the store (e.g. ``bpda-pgd``, ``steps-x5``, ``eps-8``).
        family: ``oblivious``, ``gradient``, ``acm``, ``gradient-free``, ``control``, ``steps`` or ``eps``.
        threat: how the attacker sees the purifier: ``oblivious``, ``white-box`` (no purifier), ``bpda``,
            ``straight-through``, ``eot``, ``learned-surrogate``, ``real`` (queries only), ``transfer`` or
            ``codec``; the ``control`` family runs its threat's attack with random gradient directions.
        attack: ``pgd``, ``apgd``, ``square`` or ``acm``; params: its parameters (``eps`` included).
        scope: ``all`` (every clean-correct image), ``survivors`` (those every earlier counted step left
            correct), ``reference`` (the images ``reference`` attacked), ``complement`` (those it did not
            attack) or ``chain`` (those no step of ``after`` broke).
        counts: whether its breaks count in the verdict (at the audit's eps); eps-sweep steps do not.
        reference: the step whose images a ``reference`` or ``complement`` step is defined by.
        after: the steps whose survivors a ``chain`` step attacks.
        shared: it attacks the bare classifier, so its examples do not depend on the purifier: it attacks
            the whole batch and keeps them for every audit of the same classifier and images.
    """

    id: str
    family: str
    threat: str
    attack: str
    params: dict = field(default_factory=dict)
    scope: str = "survivors"
    counts: bool = True
    reference: str | None = None
    after: tuple[str, ...] = ()
    shared: bool = False

    @property
    def eps(self) -> float:
        return self.params["eps"]

    def describe(self) -> str:
        shown = ",".join(f"{k}={v * 255:g}/255" if k == "eps" else f"{k}={v}" for k, v in self.params.items())
        return f"{self.attack}:{shown} ({self.threat})"


def build_suite(config: AuditConfig, defended: bool, has_surrogate: bool, stochastic: bool,
                acm: bool) -> tuple[list[Step], dict[str, str], Step | None]:
    """The ordered suite for a defence, why each left-out part is out, and the strongest attack (if any).

    Args:
        config: the audit settings.
        defended: whether there is a purifier (else the bare classifier is audited).
        has_surrogate: every codec of the chain has a differentiable surrogate.
        stochastic: some codec of the chain is stochastic.
        acm: the first codec can be attacked for distortion with gradients.
    """
    on, eps = set(config.checks), config.eps
    pgd = {"eps": eps, "steps": config.steps, "restarts": config.restarts}
    apgd = {"eps": eps, "steps": config.apgd_steps}
    first = "white-box" if not defended else "oblivious"
    suite = [Step("oblivious-pgd", "oblivious" if defended else "gradient", first, "pgd", pgd, scope="all", shared=True)]
    out: dict[str, str] = {}

    def want(check: str, possible: bool = True, why: str = "") -> bool:
        if check not in on:
            out[check] = "not selected (--checks)"
            return False
        if not possible:
            out[check] = why
        return possible

    best = "white-box"
    if not defended:
        for check in ("bpda", "straight-through", "eot"):
            if check in on:
                out[check] = "no purifier (the first PGD is the white-box attack)"
    if defended:
        if want("bpda"):
            suite.append(Step("bpda-pgd", "gradient", "bpda", "pgd", pgd))
        if want("straight-through", has_surrogate, "the codec chain has no differentiable surrogate"):
            suite.append(Step("straight-through-pgd", "gradient", "straight-through", "pgd", pgd))
        if want("eot", stochastic, "the purifier is deterministic (EOT would equal straight-through)"):
            suite.append(Step("eot-pgd", "gradient", "eot", "pgd", pgd))
        best = "eot" if stochastic and "eot" in on else "straight-through" if has_surrogate and "straight-through" in on else "bpda"
    for loss in ("ce", "dlr"):
        if want(f"apgd-{loss}"):
            suite.append(Step(f"apgd-{loss}", "gradient", best, "apgd", {**apgd, "loss": loss}))
    if want("learned-surrogate", defended, "no purifier"):
        suite.append(Step("learned-surrogate-pgd", "gradient", "learned-surrogate", "pgd", pgd))
    if want("acm", defended and acm, "no purifier" if not defended else "the first codec has no differentiable reconstruction"):
        suite.append(Step("acm", "acm", "codec", "acm", {"eps": eps, "steps": config.steps}))
    if want("square"):
        suite.append(Step("square", "gradient-free", "real", "square", {"eps": eps, "n_queries": config.square_queries}))
    if want("transfer", defended, "no purifier (transfer from the undefended classifier is the white-box attack)"):
        suite.append(Step("transfer-apgd", "gradient-free", "transfer", "apgd", {**apgd, "loss": "ce"}))
    reference = next((s for s in suite if s.family == "gradient"), None)
    if want("random-gradient", reference is not None, "no adaptive gradient attack selected to compare with"):
        suite.append(Step("random-gradient", "control", reference.threat, reference.attack, dict(reference.params),
                          scope="reference", reference=reference.id))
    strongest = next((s for s in suite if s.attack == "pgd" and s.threat == best), None)
    for check in ("steps", "eps-sweep"):  # want() records why a check is left out
        want(check, strongest is not None, f"no PGD under {best}, the strongest threat model, was selected to repeat")
    return suite + check_steps(config, strongest, oblivious=suite[0] if defended else None), out, strongest


def check_steps(config: AuditConfig, strongest: Step | None, oblivious: Step | None) -> list[Step]:
    """The steps check and the eps sweep: ``strongest`` run standalone at more steps and larger eps
    (each on the images it left standing), and ``oblivious`` (if given) at larger eps."""
    if strongest is None or not {"steps", "eps-sweep"} & set(config.checks):
        return []
    suite, alone = [], (strongest.id,)
    if strongest.scope != "all":
        suite.append(Step("strongest-x1", "steps", strongest.threat, strongest.attack, dict(strongest.params),
                          scope="complement", reference=strongest.id))
        alone += ("strongest-x1",)
    if "steps" in config.checks:
        after = alone
        for m in config.steps_multipliers:
            params = {**strongest.params, "steps": strongest.params["steps"] * m}
            suite.append(Step(f"strongest-x{m}", "steps", strongest.threat, strongest.attack, params, scope="chain", after=after))
            after += (f"strongest-x{m}",)
    if "eps-sweep" in config.checks:
        for base, name in ((oblivious, "oblivious"), (strongest, "strongest")):
            if base is None:
                continue
            after = alone if base is strongest else (base.id,)
            for value in config.eps_sweep:
                step_id = f"{name}-eps-{value * 255:g}"
                suite.append(Step(step_id, "eps", base.threat, base.attack, {**base.params, "eps": value}, scope="chain",
                                  counts=False, after=after, shared=base is oblivious))
                after += (step_id,)
    return suite
