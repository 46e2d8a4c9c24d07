"""Attacks on the codecs themselves: make a codec reconstruct worse, or spend more bits.

A purifier is only as good as its codec, and a codec is a network (or a
pipeline) an attacker can push around too. Zhu, Sun et al., "Attack and
Defense Analysis of Learned Image Compression" (2024) report that PGD on the
input of learned codecs drops their PSNR by up to 61.55 % or multiplies their
bitrate by up to 19.15x. This module measures the same two threats for any hac
codec:

* ``distortion``: maximise the reconstruction error of the *clean* image,
  ``MSE(codec(x + delta), x)`` (i.e. minimise the PSNR of the reconstruction
  against the clean image);
* ``rate``: maximise the bits the codec spends on ``x + delta``.

Threat model: an L-inf perturbation, ``|delta| <= eps`` per pixel, with ``x + delta``
in [0, 1] and on the 8-bit grid (:func:`hac.attacks.classifier_attacks.quantize_adversarial`), found
by FGSM (Goodfellow et al., ICLR 2015) or PGD (Madry et al., ICLR 2018; step size
``2.5 * eps / steps`` by default). Two perturbations need no gradients:
``noise`` (random signs of size eps) tells an attack from mere noise, and
``shift`` (every pixel moved by eps towards mid-grey: a brightness change) is a
floor for the distortion objective: a codec faithful to its input reproduces the
shift, so its reconstruction is off the clean image by about that much, however
robust it is. PGD from zero follows the codec's local error and can miss this
flat direction entirely, so PGD may start from several points (``starts``: zero,
random, shift), and keeps, per image, the iterate of any run whose surrogate
objective is worst (its start included, so a start is never made worse).

Gradients (never the reported numbers) come from differentiable stand-ins:

* learned (CompressAI) codecs: :meth:`~hac.codecs.compressai.codec.CompressAICodec.rd_surrogate`,
  straight-through rounding whose forward values are the codec's own, for both
  the reconstruction and the estimated bits;
* JPEG: distortion through the codec's differentiable JPEG (``surrogate``), rate
  through :func:`hac.codecs.jpeg_rate.jpeg_rate_proxy`;
* other codecs: distortion through their ``surrogate`` if they have one; no rate.

The *reported* numbers always come from the real codec: learned codecs in
``entropy-coded`` mode (real rANS bitstream, its real decoded image), JPEG and
WebP through Pillow; reconstructions are rounded to 8 bits (as a decoder writes
them) before their PSNR is taken.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

from .classifier_attacks import quantize_adversarial
from ..codecs.base import Codec, CodecOutput, check_image_batch
from ..codecs.jpeg_rate import jpeg_rate_proxy
from ..core.choices import Choice
from ..core.metrics import linf, psnr
from ..core.cancel import StopCheck

__all__ = [
    "Objective",
    "METHODS",
    "STARTS",
    "CodecAttackSettings",
    "CodecAttackResult",
    "check_objective",
    "objective_function",
    "attack_codec",
    "real_codec",
    "measure",
    "evaluate_codec_attack",
    "run_codec_attacks",
    "worst_case",
]

logger = logging.getLogger(__name__)



class Objective(Choice):
    """What a codec attack pushes up: ``distortion`` (lower the reconstruction's PSNR against the clean
    image) or ``rate`` (raise the bits)."""

    DISTORTION = "distortion"
    RATE = "rate"

    @classmethod
    def unknown(cls, value: object) -> str:
        return f"unknown codec-attack objective {value!r}; valid: {', '.join(cls.values())}"

METHODS = ("pgd", "fgsm", "noise", "shift")
STARTS = ("zero", "random", "shift")

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CodecAttackSettings:
    """One attack on a codec's input.

    Attributes:
        objective: ``"distortion"`` (lower the PSNR of the reconstruction against the
            clean image) or ``"rate"`` (raise the bits).
        eps: L-inf budget in [0, 1] pixel units, e.g. ``4/255``; must be in (0, 1].
        method: ``"pgd"``, ``"fgsm"`` (one step of size ``eps``), ``"noise"`` (random
            signs of size ``eps``: the no-gradient baseline) or ``"shift"`` (each
            image brightened or darkened by ``eps``, towards mid-grey).
        steps: PGD iterations (ignored by the other methods).
        alpha: PGD step size; ``None`` means ``2.5 * eps / steps``.
        starts: PGD's starting points, each a full run: ``"zero"`` (the clean
            image), ``"random"`` (uniform in the eps-ball), ``"shift"`` (the
            ``shift`` perturbation); per image the iterate (of any run, starts
            included) with the highest surrogate objective wins. A comma-separated
            string is accepted.

    Raises:
        ValueError: an unknown objective or method, or a value out of range.
    """

    objective: Objective = Objective.DISTORTION
    eps: float = 4 / 255
    method: str = "pgd"
    steps: int = 10
    alpha: float | None = None
    starts: tuple[str, ...] = ("zero",)

    def __post_init__(self) -> None:
        starts = self.starts.split(",") if isinstance(self.starts, str) else self.starts
        object.__setattr__(self, "starts", tuple(s.strip() for s in starts if s.strip()))
        if not self.starts or any(start not in STARTS for start in self.starts) or len(set(self.starts)) < len(self.starts):
            raise ValueError(f"PGD starts must be distinct values of {', '.join(STARTS)}, got {self.starts!r}")
        object.__setattr__(self, "objective", Objective(self.objective))
        if self.method not in METHODS:
            raise ValueError(f"unknown codec-attack method {self.method!r}; valid: {', '.join(METHODS)}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 < self.eps <= 1:
            raise ValueError(f"eps must be a number in (0, 1] (pixel units, e.g. 4/255), got {self.eps!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or self.alpha <= 0):
            raise ValueError(f"alpha (step size) must be a positive number or None, got {self.alpha!r}")

    @property
    def step_size(self) -> float:
        return self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps

    def describe(self) -> str:
        """E.g. ``pgd:objective=rate,eps=4/255,steps=10``."""
        text = f"{self.method}:objective={self.objective},eps={self.eps * 255:g}/255"
        if self.method == "pgd":
            text += f",steps={self.steps}"
            if self.alpha is not None:
                text += f",alpha={self.alpha * 255:g}/255"
            if self.starts != ("zero",):
                text += f",starts={'+'.join(self.starts)}"
        return text


# --------------------------------------------------------------------------- differentiable objectives


def _reconstruction_function(codec: Codec) -> Callable[[Tensor], Tensor]:
    if callable(getattr(codec, "rd_surrogate", None)):
        return lambda x: codec.rd_surrogate(x)[0]
    if codec.has_surrogate():
        return codec.surrogate
    raise ValueError(
        f"codec {codec.describe()!r} has no differentiable surrogate, so it cannot be attacked for distortion "
        "with gradients; use method 'noise', or a learned codec or JPEG"
    )


def _rate_function(codec: Codec) -> Callable[[Tensor], Tensor]:
    if callable(getattr(codec, "rd_surrogate", None)):
        return lambda x: codec.rd_surrogate(x)[1]
    from ..codecs.classical import JpegCodec

    if isinstance(codec, JpegCodec):
        return lambda x: jpeg_rate_proxy(x, codec.quality, codec.subsampling)
    raise ValueError(
        f"codec {codec.describe()!r} has no differentiable rate estimate; the rate attack supports learned "
        "(CompressAI) codecs and JPEG, at scale 1; use method 'noise' for others"
    )


def check_objective(codec: Codec, objective: Objective | str, method: str = "pgd") -> None:
    """Raise ``ValueError`` unless ``codec`` can be attacked for ``objective`` with ``method``."""
    settings = CodecAttackSettings(objective=objective, method=method)
    if method != "noise":
        (_reconstruction_function if settings.objective is Objective.DISTORTION else _rate_function)(codec)


def objective_function(codec: Codec, objective: Objective | str, clean: Tensor) -> Callable[[Tensor], Tensor]:
    """``f(x_adv) -> (N,)``, the differentiable quantity the attack maximises.

    ``distortion``: per-image MSE between the surrogate reconstruction of ``x_adv``
    and ``clean``; ``rate``: the estimated bits (learned codecs) or
    :func:`~hac.codecs.jpeg_rate.jpeg_rate_proxy` (JPEG).

    Raises:
        ValueError: unknown objective, or the codec has no differentiable stand-in for it.
    """
    check_objective(codec, objective)
    if Objective(objective) is Objective.RATE:
        return _rate_function(codec)
    reconstruct = _reconstruction_function(codec)
    clean = clean.detach()
    return lambda x_adv: (reconstruct(x_adv) - clean).pow(2).flatten(1).mean(1)


# --------------------------------------------------------------------------- the attack


def _check_8bit(x: Tensor) -> None:
    off_grid = (x * 255 - torch.round(x * 255)).abs().max().item() if x.numel() else 0.0
    if off_grid > 1e-3 or x.min() < 0 or x.max() > 1:
        raise ValueError(
            "codec attacks expect 8-bit valued images in [0, 1] (as loaded from PNG/JPEG), so that the "
            f"adversarial image stays on the same grid; got values up to {off_grid:.3g}/255 off it; "
            "use torch.round(x * 255) / 255"
        )


def attack_codec(codec: Codec, x: Tensor, settings: CodecAttackSettings, generator: torch.Generator | None = None,
                 stop: StopCheck | None = None) -> Tensor:
    """Perturb ``x`` to push ``codec``'s distortion or rate up.

    Args:
        codec: any hac codec (see the module docstring for what each supports).
        x: clean images (N, 3, H, W), 8-bit valued, in [0, 1].
        settings: objective, budget and method.
        generator: random source of ``noise`` and of PGD's random start (CPU generator).
        stop: optional check run at every step; it ends the attack by raising
            :class:`hac.core.cancel.Cancelled`.

    Returns:
        ``x_adv`` (N, 3, H, W) on the 8-bit grid, in [0, 1], ``|x_adv - x| <= eps``.

    Raises:
        ValueError: ``x`` is not an 8-bit valued batch, or the codec does not support the objective.
    """
    check_image_batch(x)
    _check_8bit(x)
    check_objective(codec, settings.objective, settings.method)
    x = x.detach()
    eps = settings.eps

    def uniform() -> Tensor:  # in [-1, 1], drawn on the CPU so that a CPU generator serves every device
        return (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 1).to(x.device)

    if settings.method == "noise":
        return _on_budget(x, eps * torch.sign(uniform()))
    if settings.method == "shift":
        return _on_budget(x, brightness_shift(x, eps))
    objective = objective_function(codec, settings.objective, x)
    if stop is not None:
        unchecked = objective

        def objective(x_adv: Tensor) -> Tensor:
            stop()
            return unchecked(x_adv)

    if settings.method == "fgsm":
        return _on_budget(x, _signed_steps(objective, x, torch.zeros_like(x), 1, eps, eps)[0])
    best = None
    for start in settings.starts:
        if start == "zero":
            delta = torch.zeros_like(x)
        elif start == "random":
            delta = eps * uniform()
        else:
            delta = brightness_shift(x, eps)
        best = _worse(best, _signed_steps(objective, x, delta, settings.steps, settings.step_size, eps, keep_best=True))
    return _on_budget(x, best[0])


def brightness_shift(x: Tensor, eps: float) -> Tensor:
    """The perturbation that moves every pixel of an image by ``eps`` towards mid-grey (by the image's mean).

    Shape:
        x (N, 3, H, W) -> (N, 3, H, W), ``+eps`` for images darker than 0.5 on average, else ``-eps``.
    """
    sign = torch.where(x.mean(dim=(1, 2, 3), keepdim=True) < 0.5, 1.0, -1.0).to(x.dtype)
    return sign * eps * torch.ones_like(x)


def _signed_steps(
    objective: Callable[[Tensor], Tensor], x: Tensor, delta: Tensor, steps: int, step_size: float, eps: float,
    keep_best: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """``steps`` signed-gradient ascent steps on ``objective(x + delta)``, projected onto the eps-ball and [0, 1].

    Returns the last ``delta``, or with ``keep_best`` the iterate (start included) whose objective was
    highest, per image, with those values. Signed steps of a fixed size can lead away from a good
    start; keeping the best iterate means a start is never made worse.
    """
    delta = (x + delta).clamp(0, 1) - x
    best: tuple[Tensor, Tensor] | None = None
    for _ in range(steps):
        x_adv = (x + delta).requires_grad_(True)
        value = objective(x_adv)
        (gradient,) = torch.autograd.grad(value.sum(), x_adv)
        if keep_best:
            best = _worse(best, (delta, value.detach()))
        delta = (delta + step_size * gradient.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    if not keep_best:
        return delta, None
    with torch.no_grad():
        return _worse(best, (delta, objective(x + delta)))


def _worse(best: tuple[Tensor, Tensor] | None, candidate: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Per image, the (delta, objective) pair with the higher objective."""
    if best is None:
        return candidate
    higher = candidate[1] > best[1]
    return torch.where(higher[:, None, None, None], candidate[0], best[0]), torch.maximum(candidate[1], best[1])


def _on_budget(x: Tensor, delta: Tensor) -> Tensor:
    return quantize_adversarial(x, (x + delta).clamp(0, 1))


# --------------------------------------------------------------------------- measuring with the real codec


def real_codec(codec: Codec) -> Codec:
    """The codec that produces the reported numbers: a learned codec in ``entropy-coded`` mode, else itself.

    A CompressAI codec in ``fast`` mode is re-wrapped around the *same* model in
    ``entropy-coded`` mode (real ``compress``/``decompress``).
    """
    from ..codecs.compressai.codec import CompressAICodec

    if isinstance(codec, CompressAICodec) and codec.mode != "entropy-coded":
        real = CompressAICodec(codec.model, mode="entropy-coded")
        real.codec_name, real.params = codec.codec_name, {**codec.params, "mode": "entropy-coded"}
        return real
    return codec


@torch.no_grad()
def measure(codec: Codec, x: Tensor) -> CodecOutput:
    """Run the real codec; the reconstruction is rounded to 8 bits, as a decoder writes it."""
    out = real_codec(codec)(x)
    return CodecOutput(torch.round(out.x_hat.clamp(0, 1) * 255) / 255, out.bpp.float())


@dataclass(frozen=True)
class CodecAttackResult:
    """Per-image numbers of one attack on one codec, all from the real codec.

    Attributes:
        codec: the codec's spec, e.g. ``jpeg:q=25``.
        settings: the attack.
        clean_bpp, clean_psnr: (N,) real bpp of ``x`` and PSNR (dB) of its reconstruction against ``x``.
        adv_bpp, adv_psnr: (N,) real bpp of ``x_adv`` and PSNR of its reconstruction against the *clean* ``x``.
        perturbation_psnr: (N,) PSNR of ``x_adv`` against ``x`` (how visible the perturbation is).
        linf: (N,) ``max |x_adv - x|``.
    """

    codec: str
    settings: CodecAttackSettings
    clean_bpp: Tensor
    clean_psnr: Tensor
    adv_bpp: Tensor
    adv_psnr: Tensor
    perturbation_psnr: Tensor
    linf: Tensor

    @property
    def psnr_drop(self) -> Tensor:
        """(N,) PSNR drop in percent of the clean PSNR: ``100 * (clean - adv) / clean``."""
        return 100 * (self.clean_psnr - self.adv_psnr) / self.clean_psnr

    @property
    def bpp_ratio(self) -> Tensor:
        """(N,) bitrate increase factor ``adv_bpp / clean_bpp``."""
        return self.adv_bpp / self.clean_bpp

    @property
    def images(self) -> int:
        return int(self.clean_bpp.numel())

    def _columns(self) -> dict[str, Tensor]:
        return {
            "clean_bpp": self.clean_bpp, "clean_psnr": self.clean_psnr,
            "adv_bpp": self.adv_bpp, "adv_psnr": self.adv_psnr,
            "psnr_drop_pct": self.psnr_drop, "bpp_ratio": self.bpp_ratio,
            "perturbation_psnr": self.perturbation_psnr, "linf_255": self.linf * 255,
        }  # fmt: skip

    def summary(self) -> dict:
        """One row: the codec, the attack, and the mean over images of every per-image column."""
        row = {"codec": self.codec, **asdict(self.settings), "eps_255": self.settings.eps * 255, "images": self.images}
        row["starts"] = "+".join(self.settings.starts)
        row.update({key: value.double().mean().item() for key, value in self._columns().items()})
        row["linf_255"] = (self.linf.max().item() * 255) if self.images else 0.0  # the worst image, not the mean
        return row

    def to_dict(self) -> dict:
        """:meth:`summary` plus the per-image lists under ``per_image``."""
        return {**self.summary(), "per_image": {key: value.tolist() for key, value in self._columns().items()}}

    @classmethod
    def concat(cls, results: Sequence["CodecAttackResult"]) -> "CodecAttackResult":
        """Join the results of the same codec and attack on several batches."""
        if not results:
            raise ValueError("no results to join")
        first = results[0]
        if any(r.codec != first.codec or r.settings != first.settings for r in results):
            raise ValueError("can only join results of the same codec and attack")
        tensors = {
            f.name: torch.cat([getattr(r, f.name) for r in results])
            for f in fields(cls)
            if f.name not in ("codec", "settings")
        }
        return cls(codec=first.codec, settings=first.settings, **tensors)


def evaluate_codec_attack(
    codec: Codec,
    x: Tensor,
    settings: CodecAttackSettings,
    generator: torch.Generator | None = None,
    clean: CodecOutput | None = None,
    stop: StopCheck | None = None,
) -> tuple[CodecAttackResult, Tensor]:
    """Attack ``codec`` on ``x`` and measure clean and attacked images with the real codec.

    Args:
        codec: the codec to attack (a learned codec may be in either mode).
        x: clean images (N, 3, H, W), 8-bit valued, in [0, 1].
        settings: the attack.
        generator: random source for ``noise`` and PGD's random start.
        clean: :func:`measure` of ``x`` if already known (saves coding it again).
        stop: optional check run at every attack step (see :func:`attack_codec`).

    Returns:
        The result and ``x_adv`` (N, 3, H, W).
    """
    x_adv = attack_codec(codec, x, settings, generator, stop)
    clean = measure(codec, x) if clean is None else clean
    attacked = measure(codec, x_adv)
    result = CodecAttackResult(
        codec=codec.describe(),
        settings=settings,
        clean_bpp=clean.bpp.cpu(),
        clean_psnr=psnr(clean.x_hat, x).cpu(),
        adv_bpp=attacked.bpp.cpu(),
        adv_psnr=psnr(attacked.x_hat, x).cpu(),
        perturbation_psnr=psnr(x_adv, x).cpu(),
        linf=linf(x_adv - x).cpu(),
    )
    return result, x_adv


def run_codec_attacks(
    codecs: Mapping[str, Codec],
    images: Iterable[Tensor],
    settings: Sequence[CodecAttackSettings],
    seed: int = 0,
    progress: Callable[[CodecAttackResult], None] | None = None,
) -> list[CodecAttackResult]:
    """Every attack in ``settings`` on every codec, over ``images`` one at a time.

    Args:
        codecs: label (the spec) -> codec.
        images: (3, H, W) or (N, 3, H, W) tensors, 8-bit valued in [0, 1]; sizes may differ.
        settings: the attacks; each codec gets those it supports (check with :func:`check_objective` first).
        seed: seeds the random start / noise of image ``i`` with ``seed + i`` (reproducible, order-independent).
        progress: called with each (codec, attack) result as soon as it is complete.

    Returns:
        One :class:`CodecAttackResult` per (codec, attack), in the order codecs x settings.
    """
    images = [image if image.ndim == 4 else image[None] for image in images]
    results = []
    for label, codec in codecs.items():
        cleans = [measure(codec, image) for image in images]
        for attack in settings:
            parts = []
            for index, (image, clean) in enumerate(zip(images, cleans)):
                generator = torch.Generator().manual_seed(seed + index)
                result, _ = evaluate_codec_attack(codec, image, attack, generator, clean)
                parts.append(result)
            joined = CodecAttackResult.concat(parts)
            logger.debug("%s %s: %s", label, attack.describe(), joined.summary())
            joined = joined if joined.codec == label else _relabel(joined, label)
            results.append(joined)
            if progress is not None:
                progress(joined)
    return results


def _relabel(result: CodecAttackResult, label: str) -> CodecAttackResult:
    return CodecAttackResult(**{**{f.name: getattr(result, f.name) for f in fields(result)}, "codec": label})


_MEASURES: dict[str, Callable[[Mapping], float]] = {
    "psnr_drop_pct": lambda row: row["psnr_drop_pct"],
    "bit_increase": lambda row: row["bpp_ratio"] - 1,
    "added_rd_cost": lambda row: row["adv_rd_cost"] - row["clean_rd_cost"],
}


def worst_case(rows: Sequence[Mapping]) -> list[dict]:
    """Per codec and eps: each measure's worst value over all the attacks run, and the attack that gave it.

    An attacker picks whichever attack hurts most, and a surrogate can misrank them (JPEG's
    stand-in rates PGD's iterates above a brightness shift that the real JPEG suffers more
    from), so the worst case is taken on the real codec's numbers, measure by measure, over every
    method and objective: ``psnr_drop_pct``, ``bit_increase`` (``bpp_ratio - 1``) and, when the
    rows carry R-D costs (:meth:`hac.training.adversarial.RobustnessReport.rows`),
    ``added_rd_cost``. Every codec after the first also gets ``<measure>_change_pct`` against the
    first codec's worst case at the same eps (before/after fine-tuning).

    Args:
        rows: :meth:`CodecAttackResult.summary` rows, or the report's rows.
    """
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault((row["codec"], row["eps_255"]), []).append(row)
    measures = [name for name in _MEASURES if name != "added_rd_cost" or all("adv_rd_cost" in row for row in rows)]
    worst: dict[tuple, dict] = {}
    first_codec = rows[0]["codec"] if rows else None
    for (codec, eps), group in groups.items():
        entry = {"codec": codec, "eps_255": eps, "attacks": len(group)}
        for name in measures:
            top = max(group, key=_MEASURES[name])
            entry[name], entry[f"{name}_attack"] = _MEASURES[name](top), f"{top['method']} {top['objective']}"
        base = worst.get((first_codec, eps))
        if codec != first_codec and base is not None:
            for name in measures:
                entry[f"{name}_change_pct"] = 100 * (entry[name] - base[name]) / base[name] if base[name] else float("nan")
        worst[codec, eps] = entry
    return list(worst.values())
