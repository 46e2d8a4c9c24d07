"""How much work each model-running tab's request asks for (:class:`hac.app.gpu.GpuWork`), from its fields.

A unit is one classifier step; a (image, cell) pair costs ``(attack steps x restarts x EOT samples + 1) x codec
passes`` (chain length x rounds, learned codecs weighted): :mod:`hac.defence.budget`, the same estimate the
work budget (:mod:`hac.app.limits`) refuses requests with on every machine.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..defence.budget import CellWork, WorkEstimate, cell_work, codec_passes, estimate_work
from . import batch, handlers
from .audit_fields import audit_command, audit_config
from .gpu import GpuWork

__all__ = ["attack_work", "codec_attack_work", "batch_work", "audit_work", "audit_estimate", "EOT_SAMPLES"]

EOT_SAMPLES = handlers.EOT_SAMPLES


def _cell_units(attack_spec: str, threat: str, chain: str | None, rounds: int) -> float:
    return cell_work(attack_spec, threat if chain else "oblivious", chain, rounds, EOT_SAMPLES).units


def attack_work(fields: Mapping[str, Any]) -> GpuWork:
    """The "Attack & purify" tab (:func:`hac.app.handlers.run_attack`)."""
    steps = handlers.int_setting("steps", fields["steps"], 1, handlers.MAX_STEPS)
    rounds = handlers.int_setting("rounds", fields["rounds"], 1, handlers.APP_MAX_ROUNDS)
    spec = handlers.attack_spec(fields["attack"], fields["eps_255"], steps)
    chain = (fields["chain"] or "").strip() or handlers.codec_spec(fields["codec"], fields["quality"])
    command = (f"python -m hac attack --image IMAGE --classifier {fields['classifier']} --attack '{spec}' "
               f"--threat {fields['threat']} --codec '{chain}' --rounds {rounds} --seed {fields['seed']}")
    return GpuWork(_cell_units(spec, fields["threat"], chain, rounds), command)


def codec_attack_work(fields: Mapping[str, Any]) -> GpuWork:
    """The "Attack the codec" tab (:func:`hac.app.codec_attack.run_codec_attack`): PGD from two starts on one crop."""
    steps = handlers.int_setting("steps", fields["steps"], 1, handlers.MAX_STEPS)
    spec = handlers.codec_spec(fields["codec"], fields["quality"])
    command = (f"python -m hac codec-attack --data FOLDER --codecs '{spec}' --objective {fields['objective']} "
               f"--eps {fields['eps_255']}/255 --steps {steps}")
    return GpuWork(2 * (steps + 1) * codec_passes(spec, 1), command)


def batch_work(fields: Mapping[str, Any]) -> GpuWork:
    """The "Batch evaluation" tab (:func:`hac.app.batch.run_batch`): its images times its grid's cells."""
    from ..evaluation import runner as evaluate

    limit = int(fields["limit"] or 0)
    raw = batch.BatchFields(limit, fields["attacks"], fields["eps"], fields["codecs"], fields["rounds"],
                            list(fields["threats"] or []))
    config = evaluate.load_config(batch._config_from_fields(fields["preset"], raw))
    images = limit or config.data.limit or batch.MAX_BATCH_IMAGES
    units = images * sum(
        _cell_units(cell.attack, cell.threat, None if cell.is_baseline else cell.codec, max(cell.rounds, 1))
        for cell in config.cells()
    )
    command = (f"python -m hac eval --preset {fields['preset']} --data FOLDER --limit {images} "
               "(or --config CONFIG.yaml with the tab's edits)")
    return GpuWork(units, command)


def _audit_check_steps(config) -> dict[str, int]:
    """Model calls per image of each audit check at ``config``'s settings: an upper bound (the cascade stops
    attacking an image once it breaks), except that only the ``eot`` check itself is counted with its EOT
    samples: the steps check and eps sweep repeat PGD under EOT only behind a stochastic purifier, which the
    fields cannot tell (the time limit still bounds such a request)."""
    pgd = config.steps * config.restarts
    gradient = {"bpda": pgd, "straight-through": pgd, "apgd-ce": config.apgd_steps, "apgd-dlr": config.apgd_steps,
                "learned-surrogate": pgd}
    standalone = pgd if config.codec else 0  # the strongest PGD on the images the cascade broke before it
    swept = 2 if config.codec else 1  # the strongest PGD, and the oblivious one beside it
    return {
        **gradient, "eot": pgd * config.eot_samples, "learned-surrogate": config.surrogate_steps + pgd,
        "acm": config.steps, "square": config.square_queries, "transfer": config.apgd_steps, "random-gradient": pgd,
        "steps": standalone + pgd * sum(config.steps_multipliers), "eps-sweep": swept * pgd * len(config.eps_sweep),
    }


def audit_estimate(fields: Mapping[str, Any]) -> tuple[WorkEstimate, str]:
    """The "Audit" tab's work (its images times the checks' steps, the oblivious PGD included, times the codec
    passes) and the ``hac audit`` command that runs the same audit.

    Raises:
        ValueError: a field the tab refuses (see :func:`hac.app.audit_fields.audit_config`).
    """
    config = audit_config(fields)
    per_check = _audit_check_steps(config)
    steps = config.steps * config.restarts + sum(per_check[check] for check in config.checks)
    passes = max(1.0, codec_passes(config.codec, config.rounds)) if config.codec else 1.0
    return estimate_work(config.images, [CellWork(steps, passes)]), audit_command(config, fields["dataset"])


def audit_work(fields: Mapping[str, Any]) -> GpuWork:
    """The "Audit" tab (:func:`hac.app.audit.run_audit`): :func:`audit_estimate`."""
    estimate, command = audit_estimate(fields)
    return GpuWork(estimate.units, command)
