"""Thin, explicit wrappers over torchattacks, all in [0, 1] pixel space.

Each attack is registered under a short name with the parameters it accepts.
:func:`create_attack` builds one against any model mapping [0, 1] images to
logits (normalisation lives inside the classifier), and the returned
:class:`Attack` is called as ``attack(x, y) -> x_adv`` with x (N, 3, H, W) in
[0, 1] and y (N,) true labels (or target labels for a targeted attack).

Budgets: ``eps`` is the L-inf radius for L-inf attacks and the L2 radius for
L2 attacks; it may be written as a fraction (``4/255``). Step sizes default to
``2.5 * eps / steps`` (Madry et al., ICLR 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..core.cancel import StopCheck
from ..core.registry import Registry
from ..core.specs import ComponentSpec, format_spec, parse_spec

__all__ = ["Attack", "AttackEntry", "Interruptible", "ATTACKS", "create_attack", "attack_names", "quantize_adversarial"]


@dataclass(frozen=True)
class AttackEntry:
    """One attack: its torchattacks builder, accepted parameters and defaults, paper."""

    name: str
    build: Callable[[nn.Module, dict], Any]
    defaults: dict
    norm: str  # "Linf", "L2" or "none" (minimal-perturbation attacks)
    targeted: bool
    paper: str
    gradient_free: bool = False
    fixed_steps: int | None = None
    """Model calls per run when no parameter sets them (AutoAttack's standard suite); see :meth:`steps`."""

    def steps(self, params: dict) -> int:
        """Attack steps (model forward + backward) per image and run: ``steps`` (or ``n_queries``) x ``restarts``
        x ``eot_iter``, whichever of them the attack has; 1 for a one-step attack."""
        if self.fixed_steps is not None:
            return self.fixed_steps
        merged = {**self.defaults, **params}
        steps = merged.get("steps", merged.get("n_queries", 1))
        return int(steps) * int(merged.get("restarts", 1)) * int(merged.get("eot_iter", 1))


ATTACKS: Registry[AttackEntry] = Registry("attack")


def _register(entry: AttackEntry) -> None:
    ATTACKS.add(entry.name, entry)


def _step(p: dict) -> float:
    return p["alpha"] if p.get("alpha") is not None else 2.5 * p["eps"] / p["steps"]


def _torchattacks():
    import torchattacks

    return torchattacks


_register(AttackEntry("fgsm", lambda m, p: _torchattacks().FGSM(m, eps=p["eps"]), {"eps": 4 / 255}, "Linf", True,
                      "Goodfellow et al., Explaining and Harnessing Adversarial Examples, ICLR 2015"))
_register(AttackEntry("bim", lambda m, p: _torchattacks().BIM(m, eps=p["eps"], alpha=_step(p), steps=p["steps"]),
                      {"eps": 4 / 255, "steps": 10, "alpha": None}, "Linf", True,
                      "Kurakin et al., Adversarial Examples in the Physical World, 2017 (iterative FGSM)"))
_register(AttackEntry("pgd", lambda m, p: _torchattacks().PGD(m, eps=p["eps"], alpha=_step(p), steps=p["steps"], random_start=p["random_start"]),
                      {"eps": 4 / 255, "steps": 10, "alpha": None, "random_start": True, "restarts": 1}, "Linf", True,
                      "Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018"))
_register(AttackEntry("pgd-l2", lambda m, p: _torchattacks().PGDL2(m, eps=p["eps"], alpha=_step(p), steps=p["steps"], random_start=p["random_start"]),
                      {"eps": 0.5, "steps": 10, "alpha": None, "random_start": True, "restarts": 1}, "L2", True,
                      "Madry et al., ICLR 2018 (L2 variant)"))
_register(AttackEntry("cw", lambda m, p: _torchattacks().CW(m, c=p["c"], kappa=p["kappa"], steps=p["steps"], lr=p["lr"]),
                      {"c": 1.0, "kappa": 0.0, "steps": 50, "lr": 0.01}, "none", True,
                      "Carlini & Wagner, Towards Evaluating the Robustness of Neural Networks, IEEE S&P 2017 (L2)"))
_register(AttackEntry("deepfool", lambda m, p: _torchattacks().DeepFool(m, steps=p["steps"], overshoot=p["overshoot"]),
                      {"steps": 50, "overshoot": 0.02}, "none", False,
                      "Moosavi-Dezfooli et al., DeepFool, CVPR 2016"))
_register(AttackEntry("apgd", lambda m, p: _torchattacks().APGD(m, norm="Linf", eps=p["eps"], steps=p["steps"], n_restarts=p["restarts"], loss=p["loss"], eot_iter=p["eot_iter"], seed=p["seed"]),
                      {"eps": 4 / 255, "steps": 10, "restarts": 1, "loss": "ce", "eot_iter": 1, "seed": 0}, "Linf", False,
                      "Croce & Hein, Reliable Evaluation of Adversarial Robustness, ICML 2020 (APGD)"))
_register(AttackEntry("autoattack", lambda m, p: _torchattacks().AutoAttack(m, norm="Linf", eps=p["eps"], version=p["version"], n_classes=p["n_classes"], seed=p["seed"]),
                      {"eps": 4 / 255, "version": "standard", "n_classes": 1000, "seed": 0}, "Linf", False,
                      "Croce & Hein, ICML 2020 (AutoAttack: APGD-CE, APGD-T, FAB-T, Square)",
                      fixed_steps=100 + 9 * 100 + 9 * 100 + 5000))  # APGD-CE, APGD-T and FAB-T on 9 targets, Square
_register(AttackEntry("square", lambda m, p: _torchattacks().Square(m, norm="Linf", eps=p["eps"], n_queries=p["n_queries"], n_restarts=p["restarts"], seed=p["seed"]),
                      {"eps": 4 / 255, "n_queries": 1000, "restarts": 1, "seed": 0}, "Linf", False,
                      "Andriushchenko et al., Square Attack, ECCV 2020 (gradient-free)", gradient_free=True))


def attack_names() -> list[str]:
    return ATTACKS.names()


def _validate(entry: AttackEntry, params: dict) -> dict:
    allowed = set(entry.defaults) | ({"targeted"} if entry.targeted else set())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"attack {entry.name!r} has no parameter(s) {', '.join(unknown)}; valid parameters: {', '.join(sorted(allowed))}"
        )
    merged = {**entry.defaults, **params}
    if "eps" in merged:
        eps = merged["eps"]
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= (1 if entry.norm == "Linf" else 1000):
            raise ValueError(f"eps must be a positive number (e.g. 4/255 or 0.0157), got {eps!r}")
    for key in ("steps", "restarts", "n_queries"):
        if key in merged and (isinstance(merged[key], bool) or not isinstance(merged[key], int) or merged[key] < 1):
            raise ValueError(f"{key} must be a positive integer, got {merged[key]!r}")
    if merged.get("alpha") is not None and not (isinstance(merged["alpha"], (int, float)) and merged["alpha"] > 0):
        raise ValueError(f"alpha (step size) must be a positive number, got {merged['alpha']!r}")
    return merged


class Interruptible(nn.Module):
    """``model`` behind a stop check run before every forward pass, i.e. at every attack step."""

    def __init__(self, model: nn.Module, stop: StopCheck) -> None:
        super().__init__()
        self.model = model
        self.stop = stop

    def forward(self, x: Tensor) -> Tensor:
        self.stop()
        return self.model(x)


class Attack:
    """A configured attack against one model. Call as ``attack(x, y) -> x_adv``.

    Shapes: x (N, 3, H, W) in [0, 1]; y (N,) int64 labels (targets if ``targeted``).
    Returns x_adv of the same shape, in [0, 1], within ``eps`` of x for
    norm-bounded attacks. With a ``stop`` check, it is called before every model call
    and may end the attack by raising :class:`hac.core.cancel.Cancelled`.
    """

    def __init__(self, entry: AttackEntry, model: nn.Module, params: dict, stop: StopCheck | None = None) -> None:
        self.entry = entry
        self.model = model if stop is None else Interruptible(model, stop)
        self.params = params
        self.targeted = bool(params.get("targeted", False))

    @property
    def name(self) -> str:
        return self.entry.name

    def describe(self) -> str:
        shown = {k: v for k, v in self.params.items() if v is not None and v != self.entry.defaults.get(k)}
        if "eps" in self.params:
            shown["eps"] = f"{self.params['eps'] * 255:g}/255" if self.entry.norm == "Linf" else self.params["eps"]
        return format_spec(ComponentSpec(self.name, shown))

    def _one_run(self, x: Tensor, y: Tensor) -> Tensor:
        self.model.eval()  # torchattacks restores the mode it finds; it must find eval
        attack = self.entry.build(self.model, self.params)
        if self.targeted:
            attack.set_mode_targeted_by_label(quiet=True)
        return attack(x, y).detach()

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        x_adv = self._one_run(x, y)
        restarts = self.params.get("restarts", 1) if self.name in ("pgd", "pgd-l2") else 1
        for _ in range(restarts - 1):
            with torch.no_grad():
                done = self.model(x_adv).argmax(1) == y if self.targeted else self.model(x_adv).argmax(1) != y
            if done.all():
                break
            retry = self._one_run(x[~done], y[~done])
            x_adv[~done] = retry
        return x_adv


def create_attack(spec: str | ComponentSpec, model: nn.Module, stop: StopCheck | None = None, **params: Any) -> Attack:
    """Build an attack from ``"pgd:eps=4/255,steps=10"`` (or a name plus keywords) against ``model``.

    ``stop`` (optional) is checked at every attack step (see :class:`Attack`).

    Raises:
        ValueError: unknown attack or parameter, or an out-of-range value.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    entry = ATTACKS.get(spec.name)
    return Attack(entry, model, _validate(entry, {**spec.params, **params}), stop)


def quantize_adversarial(x: Tensor, x_adv: Tensor) -> Tensor:
    """Put ``x_adv`` on the 8-bit grid of ``x`` without leaving the attack's budget.

    ``x`` must already be 8-bit valued (as a loaded PNG/JPEG is). The
    perturbation is truncated towards zero to whole 1/255 steps, so an L-inf
    bound of ``k/255`` still holds exactly, and the result is what an 8-bit PNG
    of the adversarial image holds.
    """
    steps = torch.trunc((x_adv - x) * 255 + torch.sign(x_adv - x) * 1e-4)
    return ((torch.round(x * 255) + steps).clamp(0, 255) / 255)
