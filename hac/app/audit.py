"""The Audit tab: the adaptive-attack checklist (:func:`hac.audit.audit`) on a dataset, with its verdict card.

The app keeps audits small (:data:`MAX_AUDIT_IMAGES` images); a full audit belongs on the command line
(``python -m hac audit``), which resumes after an interruption.
"""

from __future__ import annotations

import functools
import shutil
from typing import NamedTuple

import gradio as gr
import pandas as pd

from ..audit.suite import CHECKS
from ..models.classifiers import DEFAULT_CLASSIFIER
from .batch import SAMPLE_DATASET, _dataset_path
from . import gpu, work
from .cache import ModelCache
from .files import RunFiles, data_folders
from .handlers import user_errors

__all__ = ["MAX_AUDIT_IMAGES", "APP_CHECKS", "STEP_COLUMNS", "AuditOutputs", "run_audit", "build_tab"]

MAX_AUDIT_IMAGES = 50
"""Most images one audit in the app may use."""
APP_CHECKS = ("bpda", "straight-through", "eot", "apgd-ce", "apgd-dlr", "square", "random-gradient", "steps", "eps-sweep")
"""The checks ticked by default in the app (the learned surrogate, ACM and transfer can be added)."""
STEP_COLUMNS = ("step", "attack", "attacked", "broken", "first_broken", "accuracy_after", "seconds")


class AuditOutputs(NamedTuple):
    card: str
    steps: pd.DataFrame
    plots: list[str]
    archive: str


def run_audit(cache: ModelCache, files: RunFiles, dataset: str, classifier: str, codec: str, rounds: int, images: int,
              eps_255: float, checks: list[str], progress: gr.Progress = gr.Progress()) -> AuditOutputs:
    """Audit ``classifier`` behind ``codec`` (empty: the bare classifier) on ``images`` images of ``dataset``.

    Returns:
        The verdict card (Markdown), the per-attack table, the plots and a zip of every file written.

    Raises:
        gradio.Error: a bad field, missing data or weights, or more than :data:`MAX_AUDIT_IMAGES` images.
    """
    from ..audit import AuditConfig, audit, verdict_card
    from ..defence.purify import Purifier

    with user_errors():
        images = int(images or 0)
        if not 1 <= images <= MAX_AUDIT_IMAGES:
            raise ValueError(f"the app audits 1 to {MAX_AUDIT_IMAGES} images, got {images}; run `python -m hac audit` for more")
        if not checks:
            raise ValueError(f"tick at least one check (choices: {', '.join(CHECKS)})")
        codec = (codec or "").strip()
        data = _dataset_path(files, dataset)
        config = AuditConfig(classifier=classifier, codec=codec or None, rounds=int(rounds), data=str(data), images=images,
                             eps=float(eps_255) / 255, checks=tuple(checks))
        purifier = Purifier(cache.chain(codec), config.rounds) if codec else None
        out = files.new_run("audit")
        progress((0, None), desc="auditing: clean images")
        result = audit(config, out, lambda done, total, message: progress((done, total), desc=message),
                       classifier=cache.classifier(classifier), purifier=purifier, device=cache.device,
                       surrogate_cache=out / "surrogates")
        written = result.write(out)
    archive = shutil.make_archive(str(out.parent / f"{out.name}-audit"), "zip", root_dir=out)
    table = pd.DataFrame(result.verdict.per_step, columns=list(STEP_COLUMNS)).round(4)
    plots = [str(p) for p in written if p.suffix == ".png"]
    return AuditOutputs(verdict_card(result.verdict), table, plots, archive)


def build_tab(cache: ModelCache, files: RunFiles) -> None:
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
            rounds = gr.Slider(1, 5, value=1, step=1, label="Rounds")
            images = gr.Number(5, precision=0, minimum=1, maximum=MAX_AUDIT_IMAGES, label=f"Images (at most {MAX_AUDIT_IMAGES})")
            eps = gr.Number(4, minimum=0.5, maximum=64, label="ε (in 1/255)")
            checks = gr.CheckboxGroup(list(CHECKS), value=list(APP_CHECKS), label="Checks")
            run = gr.Button("Run audit", variant="primary", elem_id="run-audit")
        with gr.Column(scale=2):
            card = gr.Markdown(elem_classes=["hac-verdict"], elem_id="audit-verdict")
            steps = gr.Dataframe(label="Attacks, in cascade order", headers=list(STEP_COLUMNS), interactive=False,
                                 elem_id="audit-steps")
            plots = gr.Gallery(label="Plots", columns=3, height=300, object_fit="contain", format="png", interactive=False)
            download = gr.File(label="Report (zip: report.md, audit.json, worst_case.csv, plots)", interactive=False)
    run.click(
        functools.partial(gpu.on_gpu(run_audit, work.audit_work), cache, files),
        inputs=[dataset, classifier, codec, rounds, images, eps, checks],
        outputs=[card, steps, plots, download],
        api_name="audit",
        api_description="Audit a defence with the adaptive-attack checklist; returns the verdict card, table, plots and a zip.",
    )
