"""The Audit tab: the adaptive-attack checklist (:func:`hac.audit.audit`) on a dataset, with its verdict card.

The tab is under the app's limits like every model-running tab (:mod:`hac.app.limits`): each field has
a cap (:data:`MAX_AUDIT_IMAGES` images, the attack caps for steps, restarts and queries, the chain's
length and rounds), the audit's work (:func:`hac.app.audit_fields.audit_estimate`, the estimate the ZeroGPU
duration uses too) is checked against the budget before any work, and the cascade stops at the next
attack step or unit once the time limit has passed or the client has gone. A full audit belongs on
the command line (``python -m hac audit``), which resumes after an interruption.
"""

from __future__ import annotations

import functools
import shutil
from typing import NamedTuple

import gradio as gr
import pandas as pd

from ..audit.suite import CHECKS
from ..models.classifiers import DEFAULT_CLASSIFIER
from . import gpu, work
from .audit_fields import (APP_CHECKS, CAPPED_FIELDS, DEFAULT_MULTIPLIERS, DEFAULT_SWEEP_255, DEFAULTS, MAX_AUDIT_IMAGES, STEPS_MADE_OF,
                           audit_config, audit_estimate)
from .batch import SAMPLE_DATASET, _dataset_path
from .cache import ModelCache
from .files import RunFiles, data_folders
from .handlers import user_errors
from .inputs import NumberInput, SliderInput
from .limits import MAX_STEPS_MULTIPLIER, MAX_SWEEP, AppLimits, request_deadline

__all__ = ["STEP_COLUMNS", "AuditOutputs", "run_audit", "build_tab"]

STEP_COLUMNS = ("step", "attack", "attacked", "broken", "first_broken", "accuracy_after", "seconds")


class AuditOutputs(NamedTuple):
    card: str
    steps: pd.DataFrame
    plots: list[str]
    archive: str


def run_audit(cache: ModelCache, files: RunFiles, dataset: str, classifier: str, codec: str, rounds: int, images: int,
              eps_255: float, checks: list[str], steps: int = DEFAULTS.steps, restarts: int = DEFAULTS.restarts,
              apgd_steps: int = DEFAULTS.apgd_steps, square_queries: int = DEFAULTS.square_queries,
              surrogate_steps: int = DEFAULTS.surrogate_steps, steps_multipliers: str = DEFAULT_MULTIPLIERS,
              eps_sweep: str = DEFAULT_SWEEP_255, progress: gr.Progress = gr.Progress(), *,
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
        estimate, command = audit_estimate(fields)
        limits.check(estimate, "This audit", command, STEPS_MADE_OF)
        data = _dataset_path(files, dataset)
        config = audit_config(fields).with_(data=str(data))
        purifier = Purifier(cache.chain(config.codec), config.rounds) if config.codec else None
        model = cache.classifier(config.classifier)
        stop = request_deadline(limits.time_limit)
        out = files.new_run("audit")
        progress((0, None), desc="auditing: clean images")
        result = audit(config, out, lambda done, total, message: progress((done, total), desc=message),
                       classifier=model, purifier=purifier, device=cache.device, cache=None,
                       stop=stop)
        written = result.write(out)
    archive = shutil.make_archive(str(out.parent / f"{out.name}-audit"), "zip", root_dir=out)
    table = pd.DataFrame(result.verdict.per_step, columns=list(STEP_COLUMNS)).round(4)
    plots = [str(p) for p in written if p.suffix == ".png"]
    return AuditOutputs(verdict_card(result.verdict), table, plots, archive)


def build_tab(cache: ModelCache, files: RunFiles, limits: AppLimits) -> None:
    """The tab's layout and wiring (called inside a ``gr.Tab``)."""

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
                numbers = [NumberInput(getattr(DEFAULTS, name), precision=0, minimum=1, maximum=cap, label=f"{label} (at most {cap})")
                           for name, (label, cap) in CAPPED_FIELDS.items()]
                multipliers = gr.Textbox(DEFAULT_MULTIPLIERS, label=f"Steps multipliers (at most {MAX_SWEEP}, each at most "
                                                             f"{MAX_STEPS_MULTIPLIER})", max_lines=1)
                sweep = gr.Textbox(DEFAULT_SWEEP_255, label=f"ε sweep (in 1/255, at most {MAX_SWEEP} values)", max_lines=1)
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
