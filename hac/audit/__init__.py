"""``hac audit``: the adaptive-evaluation checklist, run automatically, with a verdict per defence.

:func:`audit` takes a defence (a classifier and, optionally, a codec chain), runs
the attack suite of :mod:`hac.audit.suite` as a cascade (:mod:`hac.audit.cascade`),
and returns the verdict (:mod:`hac.audit.verdict`); :func:`hac.audit.report.write_report`
writes its files. The checklist follows Athalye, Carlini & Wagner (ICML 2018),
Carlini et al. ("On Evaluating Adversarial Robustness", 2019), Tramèr et al.
("On Adaptive Attacks", NeurIPS 2020) and, for compression purifiers, Räber et
al. ("Keep It Real", arXiv 2508.05489, 2025).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.cancel import StopCheck
from ..defence.purify import Purifier
from ..evaluation.datasets import load_batch, open_dataset, read_ids_file, select_ids
from .cascade import AuditImages, AuditRun, ProgressFn, run_cascade
from .report import verdict_card, write_report
from .suite import CHECKS, AuditConfig, parse_checks
from .verdict import Verdict, verdict_of

__all__ = ["audit", "AuditResult", "AuditConfig", "AuditImages", "CHECKS", "parse_checks", "verdict_card",
           "write_report", "default_cache", "dataset_images"]


@dataclass
class AuditResult:
    run: AuditRun
    verdict: Verdict

    def write(self, out_dir: str | Path) -> list[Path]:
        return write_report(self.verdict, self.run, out_dir)


SURROGATES, EXAMPLES = "audit-surrogates", "audit-examples"
"""The cache's sub-folders: learned surrogates, and the examples of the classifier-only attacks."""


def default_cache() -> Path:
    """``$HAC_CACHE``, else ``~/.cache/hac``."""
    root = os.environ.get("HAC_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "hac"


def dataset_images(data: str | Path, limit: int, seed: int, fit, device: str | torch.device = "cpu",
                   ids_file: str | Path | None = None) -> AuditImages:
    """A seeded subset of ``limit`` images of the folder ``data`` (ImageNet layout), or of the ids listed
    in ``ids_file``, fitted with ``fit``.

    Raises:
        FileNotFoundError: ``data`` does not exist; ValueError: it holds no usable images.
    """
    if data is None:
        raise ValueError("an audit needs images: pass --data FOLDER (an ImageNet-layout folder, e.g. ../shared/data/imagenet-val-1300)")
    if not Path(data).exists():
        raise FileNotFoundError(f"data folder {data} does not exist; pass an ImageNet-layout folder with --data")
    dataset = open_dataset(str(data))
    ids = select_ids(read_ids_file(ids_file, dataset) if ids_file else dataset.ids, limit, seed)

    def load(chosen):
        batch = load_batch(dataset, chosen, fit, device)
        return batch.ids, batch.x, batch.labels

    return AuditImages(ids, load)


def audit(
    config: AuditConfig,
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    *,
    classifier: nn.Module | None = None,
    purifier: Purifier | None = None,
    images: AuditImages | None = None,
    device: str | torch.device = "cpu",
    cache: str | Path | None = "default",
    stop: StopCheck | None = None,
) -> AuditResult:
    """Audit a defence; resumable through ``out_dir``.

    Args:
        config: the settings; ``config.codec`` (if no ``purifier`` is given) names the codec chain.
        out_dir: where the store lives (and where :meth:`AuditResult.write` is usually pointed).
        progress: ``progress(done, total, message)`` after each unit of work.
        classifier: an already built classifier (else ``config.classifier`` is built).
        purifier: an already built purifier (else one from ``config.codec`` and ``config.rounds``, if any).
        images: the images (else ``config.images`` images of ``config.data``).
        device: where models and images live.
        cache: folder shared by audits: learned surrogates (in ``audit-surrogates/``) and the oblivious
            attacks' examples (in ``audit-examples/``); ``"default"``: :func:`default_cache`; ``None``: none kept.
        stop: optional check run before every unit of work and at every attack step (:mod:`hac.core.cancel`);
            what was finished stays in ``out_dir``'s store, so rerunning continues from there.

    Raises:
        ValueError, FileNotFoundError: bad settings or data (the message names the value and the fix).
        hac.evaluation.store.StoreError: ``out_dir`` holds another audit's results.
        hac.core.cancel.Cancelled: ``stop`` ended it.
    """
    if classifier is None:
        from ..models.classifiers import create_classifier

        classifier = create_classifier(config.classifier, device=device)
    classifier = classifier.eval()
    if purifier is None and config.codec:
        purifier = Purifier(config.codec, config.rounds).to(device).eval()
    if images is None:
        images = dataset_images(config.data, config.images, config.seed, getattr(classifier, "fit", None), device,
                                config.ids_file)
    if not images.ids:
        raise ValueError(f"no images to audit in {config.data}")
    root = default_cache() if cache == "default" else cache
    run = run_cascade(config, classifier, purifier, images, out_dir, progress, stop=stop,
                      surrogate_cache=None if root is None else Path(root) / SURROGATES,
                      example_cache=None if root is None else Path(root) / EXAMPLES)
    return AuditResult(run, verdict_of(run))
