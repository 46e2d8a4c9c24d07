"""How much work a request asks for, in classifier steps, before any of it is done.

One *unit* is one classifier step on a 224x224 image (an efficientnet-lite0 forward
and backward: 0.07 s on one CPU thread). A (image, grid cell) pair costs

    (attack steps x restarts x EOT samples + 1) x codec passes

where the ``+ 1`` is the final classification and the codec passes are the chain's
length times its rounds, each codec weighted by its declared
:attr:`hac.codecs.base.Codec.pass_cost` (1 for classical codecs, 3 for CompressAI
models, about 30 for ELIC and HiFiC). Under the oblivious threat model the attack
never runs the codecs, so this overestimates it: an upper bound, never an
underestimate. The app refuses requests over its budget with this estimate; the same
number, times the seconds a unit takes on the hardware, is the expected duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..attacks.classifier_attacks import ATTACKS
from ..attacks.threats import ThreatModel
from ..codecs.factory import codec_class
from ..core.specs import ComponentSpec, parse_chain, parse_spec

__all__ = ["CellWork", "WorkEstimate", "attack_steps", "codec_passes", "cell_work", "estimate_work"]


@dataclass(frozen=True)
class CellWork:
    """The work of one grid cell on one image: attack steps (EOT included) and weighted codec passes."""

    attack_steps: int
    codec_passes: float

    @property
    def units(self) -> float:
        return (self.attack_steps + 1) * self.codec_passes


@dataclass(frozen=True)
class WorkEstimate:
    """The work of a request: ``images`` times the sum of its cells' :class:`CellWork`."""

    images: int
    cells: tuple[CellWork, ...]

    @property
    def units(self) -> float:
        return self.images * sum(cell.units for cell in self.cells)

    def seconds(self, seconds_per_unit: float) -> float:
        """Expected duration on hardware where one unit takes ``seconds_per_unit``."""
        return self.units * seconds_per_unit

    def explain(self) -> str:
        """The formula with this request's numbers, its costliest cell shown."""
        worst = max(self.cells, key=lambda cell: cell.units)
        cells = f"{len(self.cells)} cell{'s' * (len(self.cells) != 1)}"
        image = f"{self.images} image{'s' * (self.images != 1)}"
        shown = "" if len(self.cells) == 1 else ", the costliest"
        return (f"{image} x {cells}{shown} (({worst.attack_steps:,} attack steps x restarts x EOT samples + 1) x "
                f"{worst.codec_passes:g} codec passes) = {self.units:,.0f} units")


def attack_steps(attack: str | ComponentSpec, threat: ThreatModel | str = ThreatModel.OBLIVIOUS, eot_samples: int = 1) -> int:
    """Model calls per image of one attack run: its steps x restarts (x its own ``eot_iter``), times
    ``eot_samples`` under the ``eot`` threat model.

    Raises:
        ValueError: unknown attack or threat model.
    """
    spec = parse_spec(attack) if isinstance(attack, str) else attack
    steps = ATTACKS.get(spec.name).steps(spec.params)
    return steps * (eot_samples if ThreatModel(threat) is ThreatModel.EOT else 1)


def codec_passes(chain: str | Sequence[ComponentSpec], rounds: int) -> float:
    """Codec passes of ``rounds`` rounds of ``chain``, each weighted by its codec's ``pass_cost``.

    Raises:
        ValueError: a malformed chain or an unknown codec.
    """
    specs = parse_chain(chain) if isinstance(chain, str) else chain
    return rounds * sum(codec_class(spec.name).pass_cost for spec in specs)


def cell_work(attack: str | ComponentSpec, threat: ThreatModel | str, chain: str | Sequence[ComponentSpec] | None, rounds: int,
              eot_samples: int = 1) -> CellWork:
    """One cell's work per image; ``chain=None`` is the undefended baseline (the classifier alone)."""
    passes = 1.0 if chain is None else max(1.0, codec_passes(chain, rounds))
    return CellWork(attack_steps(attack, threat, eot_samples), passes)


def estimate_work(images: int, cells: Sequence[CellWork]) -> WorkEstimate:
    if images < 0 or not cells:
        raise ValueError(f"a work estimate needs a non-negative image count and at least one cell, got {images}, {cells}")
    return WorkEstimate(images, tuple(cells))
