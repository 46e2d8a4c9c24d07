"""The Audit tab: the adaptive-attack checklist (:func:`hac.audit.audit`) on a dataset, with its verdict card.

The tab is under the app's limits like every model-running tab (:mod:`hac.app.limits`): each field has
a cap (:data:`MAX_AUDIT_IMAGES` images, the attack caps for steps, restarts and queries, the chain's
length and rounds), the audit's work (:func:`hac.app.work.audit_estimate`, the estimate the ZeroGPU
duration uses too) is checked against the budget before any work, and the cascade stops at the next
attack step or unit once the time limit has passed or the client has gone. A full audit belongs on
the command line (``python -m hac audit``), which resumes after an interruption.
"""

from __future__ import annotations

import functools
import math
import shutil
from typing import Any, Mapping, NamedTuple

import gradio as gr
import pandas as pd

from ..audit.suite import CHECKS, AuditConfig
from ..models.classifiers import DEFAULT_CLASSIFIER
from .batch import SAMPLE_DATASET, _dataset_path, _numbers
from . import gpu, work
from .cache import ModelCache
from .files import RunFiles, data_folders
from .handlers import int_setting, user_errors
from .limits import (APP_MAX_ROUNDS, MAX_QUERIES, MAX_RESTARTS, MAX_STEPS, MAX_STEPS_MULTIPLIER, MAX_SURROGATE_STEPS,
                     MAX_SWEEP, AppLimits, check_chain, request_deadline)

__all__ = ["MAX_AUDIT_IMAGES", "APP_CHECKS", "STEP_COLUMNS", "AuditOutputs", "audit_config", "audit_command", "run_audit",
           "build_tab"]

MAX_AUDIT_IMAGES = 50
"""Most images one audit in the app may use."""
APP_CHECKS = ("bpda", "straight-through", "eot", "apgd-ce", "apgd-dlr", "square", "random-gradient", "steps", "eps-sweep")
"""The checks ticked by default in the app (the learned surrogate, ACM and transfer can be added)."""
STEP_COLUMNS = ("step", "attack", "attacked", "broken", "first_broken", "accuracy_after", "seconds")
_DEFAULTS = AuditConfig()
_MULTIPLIERS = ", ".join(str(m) for m in _DEFAULTS.steps_multipliers)
_SWEEP_255 = ", ".join(f"{value * 255:g}" for value in _DEFAULTS.eps_sweep)
_CAPPED = {  # field -> (label, cap)
    "steps": ("PGD steps", MAX_STEPS), "restarts": ("PGD restarts", MAX_RESTARTS), "apgd_steps": ("APGD steps", MAX_STEPS),
    "square_queries": ("Square queries", MAX_QUERIES), "surrogate_steps": ("Surrogate training steps", MAX_SURROGATE_STEPS),
}
_STEPS_MADE_OF = "the attack steps (PGD steps x restarts, APGD steps, Square queries, the checks ticked)"
_NO_CAPS = "the app's cap; `python -m hac audit` has none"


class AuditOutputs(NamedTuple):
    card: str
    steps: pd.DataFrame
    plots: list[str]
    archive: str


def _over_cap(label: str, text: str | None, cast, low: float, high: float) -> tuple:
    values = _numbers(label, text, cast)
    if len(values) > MAX_SWEEP:
        raise ValueError(f"{label}: {len(values)} values, the app runs at most {MAX_SWEEP} ({_NO_CAPS})")
    for value in values:
        if not (math.isfinite(value) and low < value <= high):
            raise ValueError(f"{label}: every value must be in ({low:g}, {high:g}], got {value:g} ({_NO_CAPS})")
    return tuple(values)


def audit_config(fields: Mapping[str, Any]) -> AuditConfig:
    """The :class:`~hac.audit.suite.AuditConfig` of the tab's fields (by :func:`run_audit`'s parameter names),
    each within its cap (``data`` is left out: the dataset is resolved when the audit runs).

    Raises:
        ValueError: a bad field or one over its cap, naming the field, the cap and the command without caps.
    """
    images = fields["images"]
    images = int(images) if isinstance(images, float) and images.is_integer() else images
    if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= MAX_AUDIT_IMAGES:
        raise ValueError(f"the app audits 1 to {MAX_AUDIT_IMAGES} images, got {images!r}; run `python -m hac audit` for more")
    if not fields["checks"]:
        raise ValueError(f"tick at least one check (choices: {', '.join(CHECKS)})")
    rounds = int_setting("Rounds", fields["rounds"], 1, APP_MAX_ROUNDS)
    codec = (fields["codec"] or "").strip()
    if codec:
        check_chain("Codec chain", codec, rounds)
    eps_255 = fields["eps_255"]
    if isinstance(eps_255, bool) or not isinstance(eps_255, (int, float)) or not 0 < eps_255 <= 64:
        raise ValueError(f"ε must be in (0, 64] (units of 1/255), got {eps_255!r}")
    capped = {}
    for name, (label, cap) in _CAPPED.items():
        try:
            capped[name] = int_setting(label, fields[name], 1, cap)
        except ValueError as error:
            raise ValueError(f"{error} ({_NO_CAPS})") from None
    multipliers = _over_cap("Steps multipliers", fields["steps_multipliers"], int, 1, MAX_STEPS_MULTIPLIER)
    sweep = _over_cap("ε sweep", fields["eps_sweep"], float, eps_255, 64)
    return AuditConfig(classifier=str(fields["classifier"]), codec=codec or None, rounds=rounds, images=images,
                       eps=float(eps_255) / 255, checks=tuple(fields["checks"]), steps_multipliers=multipliers,
                       eps_sweep=tuple(value / 255 for value in sweep), **capped)


def audit_command(config: AuditConfig, dataset: str) -> str:
    """The ``hac audit`` command that runs ``config`` on ``dataset`` without the app's limits (and resumes)."""
    codec = f" --codec '{config.codec}' --rounds {config.rounds}" if config.codec else ""
    return (f"python -m hac audit --classifier {config.classifier}{codec} "
            f"--data {dataset if dataset != SAMPLE_DATASET else 'FOLDER'} --images {config.images} "
            f"--eps {config.eps * 255:g}/255 --steps {config.steps} --restarts {config.restarts} "
            f"--apgd-steps {config.apgd_steps} --square-queries {config.square_queries} "
            f"--surrogate-steps {config.surrogate_steps} "
            f"--steps-multipliers {','.join(str(m) for m in config.steps_multipliers)} "
            f"--eps-sweep {','.join(f'{value * 255:g}/255' for value in config.eps_sweep)} "
            f"--checks {','.join(config.checks)} --out runs/audit")


def run_audit(cache: ModelCache, files: RunFiles, dataset: str, classifier: str, codec: str, rounds: int, images: int,
              eps_255: float, checks: list[str], steps: int = _DEFAULTS.steps, restarts: int = _DEFAULTS.restarts,
              apgd_steps: int = _DEFAULTS.apgd_steps, square_queries: int = _DEFAULTS.square_queries,
              surrogate_steps: int = _DEFAULTS.surrogate_steps, steps_multipliers: str = _MULTIPLIERS,
              eps_sweep: str = _SWEEP_255, progress: gr.Progress = gr.Progress(), *,
              limits: AppLimits = AppLimits()) -> AuditOutputs:
    """Audit ``classifier`` behind ``codec`` (empty: the bare classifier) on ``images`` images of ``dataset``.

    Args:
        cache, files: the app's shared model cache and scratch folder.
        dataset: as the batch tab's (:func:`hac.app.batch.run_batch`).
        classifier, codec, rounds, images, checks: the defence and the audit's size.
        eps_255: the attacks' L-inf budget in units of 1/255.
        steps, restarts, apgd_steps, square_queries, surrogate_steps: the attacks' settings.
        steps_multipliers: the steps check's multiples (``"5, 20"``); eps_sweep: its budgets in 1/255 (``"8, 16"``).
        progress: Gradio's live progress bar.
        limits: the app's work budget and time limit (see :mod:`hac.app.limits`).

    Returns:
        The verdict card (Markdown), the per-attack table, the plots and a zip of every file written.

    Raises:
        gradio.Error: a bad field or one over its cap, missing data or weights, an audit over the work
            budget (refused before any work, with the ``hac audit`` command), or one stopped by the time limit.
    """
    from ..audit import audit, verdict_card
    from ..defence.purify import Purifier

    fields = dict(dataset=dataset, classifier=classifier, codec=codec, rounds=rounds, images=images, eps_255=eps_255,
                  checks=checks, steps=steps, restarts=restarts, apgd_steps=apgd_steps, square_queries=square_queries,
                  surrogate_steps=surrogate_steps, steps_multipliers=steps_multipliers, eps_sweep=eps_sweep)
    with user_errors():
        estimate, command = work.audit_estimate(fields)
        limits.check(estimate, "This audit", command, _STEPS_MADE_OF)
        data = _dataset_path(files, dataset)
        config = audit_config(fields).with_(data=str(data))
        purifier = Purifier(cache.chain(config.codec), config.rounds) if config.codec else None
        model = cache.classifier(config.classifier)
        stop = request_deadline(limits.time_limit)
        out = files.new_run("audit")
        progress((0, None), desc="auditing: clean images")
        result = audit(config, out, lambda done, total, message: progress((done, total), desc=message),
                       classifier=model, purifier=purifier, device=cache.device, surrogate_cache=out / "surrogates",
                       stop=stop)
        written = result.write(out)
    archive = shutil.make_archive(str(out.parent / f"{out.name}-audit"), "zip", root_dir=out)
    table = pd.DataFrame(result.verdict.per_step, columns=list(STEP_COLUMNS)).round(4)
    plots = [str(p) for p in written if p.suffix == ".png"]
    return AuditOutputs(verdict_card(result.verdict), table, plots, archive)


def build_tab(cache: ModelCache, files: RunFiles, limits: AppLimits) -> None:
    """The tab's layout and wiring (called inside a ``gr.Tab``)."""
    from .ui import NumberInput, SliderInput  # ui builds this tab, so it is loaded by now

    gr.Markdown(
        "Run the adaptive-evaluation checklist on a defence: oblivious, BPDA, straight-through and EOT PGD, APGD-CE/DLR, "
        "a learned-surrogate BPDA, an attack on the codec, Square and transfer, cheapest first (an image is attacked "
        "only until it breaks), then the steps check, ε sweep and random-gradient control. The verdict is the "
        "per-image worst case with its 95 % interval, and flags when the evaluation itself looks masked."
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            dataset = gr.Dropdown([SAMPLE_DATASET, *data_folders()], value=SAMPLE_DATASET, label="Dataset")
            classifier = gr.Textbox(DEFAULT_CLASSIFIER, label="Classifier", max_lines=1)
            codec = gr.Textbox("jpeg:q=25", label="Codec chain (empty: audit the bare classifier)", max_lines=1,
                               elem_id="audit-codec")
            rounds = SliderInput(1, 5, value=1, step=1, label="Rounds")
            images = NumberInput(4, precision=0, minimum=1, maximum=MAX_AUDIT_IMAGES, label=f"Images (at most {MAX_AUDIT_IMAGES})")
            eps = NumberInput(4, minimum=0.5, maximum=64, label="ε (in 1/255)")
            checks = gr.CheckboxGroup(list(CHECKS), value=list(APP_CHECKS), label="Checks")
            with gr.Accordion("Attack settings", open=False):
                numbers = [NumberInput(getattr(_DEFAULTS, name), precision=0, minimum=1, maximum=cap, label=f"{label} (at most {cap})")
                           for name, (label, cap) in _CAPPED.items()]
                multipliers = gr.Textbox(_MULTIPLIERS, label=f"Steps multipliers (at most {MAX_SWEEP}, each at most "
                                                             f"{MAX_STEPS_MULTIPLIER})", max_lines=1)
                sweep = gr.Textbox(_SWEEP_255, label=f"ε sweep (in 1/255, at most {MAX_SWEEP} values)", max_lines=1)
            run = gr.Button("Run audit", variant="primary", elem_id="run-audit")
        with gr.Column(scale=2):
            card = gr.Markdown(elem_classes=["hac-verdict"], elem_id="audit-verdict")
            steps = gr.Dataframe(label="Attacks, in cascade order", headers=list(STEP_COLUMNS), interactive=False,
                                 elem_id="audit-steps")
            plots = gr.Gallery(label="Plots", columns=3, height=300, object_fit="contain", format="png", interactive=False)
            download = gr.File(label="Report (zip: report.md, audit.json, worst_case.csv, plots)", interactive=False)
    run.click(
        functools.partial(gpu.on_gpu(run_audit, work.audit_work), cache, files, limits=limits),
        inputs=[dataset, classifier, codec, rounds, images, eps, checks, *numbers, multipliers, sweep],
        outputs=[card, steps, plots, download],
        api_name="audit",
        api_description="Audit a defence with the adaptive-attack checklist; returns the verdict card, table, plots and a zip.",
    )
