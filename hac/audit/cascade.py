"""The audit's cascade: every step of the suite on the images still standing, resumable through the store.

Per batch of images: classify the clean images (a wrong one is never
attacked), then run the suite's steps in order, each on the images no earlier
step has broken (:mod:`hac.audit.suite` gives the order and the exceptions).
Every (step, batch) unit is appended to a kill-safe
:class:`~hac.evaluation.store.ResultStore` as soon as it is done: the rows
of the images it attacked (``ok``: still correctly classified after
purification) and a commit line (seed, seconds, gradient health, loss rise).
Rerun with the same settings and out dir, an audit continues where it stopped
and recomputes at most the unit that was cut off; an optional stop check
(:mod:`hac.core.cancel`) is run before every unit and at every attack step,
so a stopped audit keeps every unit it finished.

Steps that see only the bare classifier (:attr:`~hac.audit.suite.Step.shared`)
attack the whole batch, clean-wrong images included, so that their examples
do not depend on the purifier, and take them from an
:class:`~hac.audit.examples.ExampleCache` shared by every audit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.diagnostics import gradient_health
from ..attacks.learned_surrogate import SurrogateCache
from ..core.cancel import StopCheck
from ..defence.purify import Purifier
from ..evaluation.runner import unit_seed
from ..evaluation.store import STORE_FILENAME, ResultStore
from .attacker import StepAttacker, acm_possible
from .examples import ExampleCache, classifier_fingerprint, example_key
from .suite import AuditConfig, Step, build_suite

__all__ = ["AuditImages", "AuditRun", "run_cascade", "ProgressFn"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)`` after each unit of work."""

@dataclass
class AuditImages:
    """The audited images: ids, and ``load(ids) -> (kept ids, x (N, 3, H, W) 8-bit valued in [0, 1], labels (N,))``."""

    ids: list[str]
    load: Callable[[Sequence[str]], tuple[list[str], Tensor, Tensor]]
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_tensors(cls, ids: Sequence[str], x: Tensor, labels: Tensor) -> "AuditImages":
        if len(ids) != x.shape[0] or len(ids) != labels.shape[0]:
            raise ValueError(f"{len(ids)} ids for {x.shape[0]} images and {labels.shape[0]} labels")
        position = {image: k for k, image in enumerate(ids)}

        def load(chosen: Sequence[str]):
            index = torch.tensor([position[i] for i in chosen], dtype=torch.long)
            return list(chosen), x[index], labels[index]

        return cls(list(ids), load)


@dataclass
class AuditRun:
    """What the cascade produced (read by :mod:`hac.audit.verdict`).

    Attributes:
        steps: every step run, in order.
        not_run: check -> why it was left out.
        clean: image id -> (label, clean prediction correct).
        outcome: (step id, image id) -> still correct after that step's attack and the purifier.
        commits: (step id, batch) -> its commit record.
        strongest: the step the steps check and the eps sweep repeat, if any.
        surrogate: training statistics of the learned surrogate, if one was used.
    """

    config: AuditConfig
    defence: str
    image_ids: list[str]
    steps: list[Step]
    not_run: dict[str, str]
    clean: dict[str, tuple[int, bool]]
    outcome: dict[tuple[str, str], bool]
    commits: dict[tuple[str, int], dict]
    strongest: str | None
    surrogate: dict | None
    skipped: dict[str, str]
    run: dict


class _Cascade:
    def __init__(self, config: AuditConfig, classifier: nn.Module, purifier: Purifier | None, images: AuditImages,
                 store: ResultStore, progress: ProgressFn | None, cache: SurrogateCache, examples: ExampleCache,
                 stop: StopCheck | None = None) -> None:
        self.config, self.classifier, self.purifier, self.images = config, classifier.eval(), purifier, images
        self.store, self.progress, self.cache, self.examples, self.stop = store, progress, cache, examples, stop
        self._fingerprint: str | None = None
        self.batches = [images.ids[i : i + config.batch_size] for i in range(0, len(images.ids), config.batch_size)]
        self.clean: dict[str, tuple[int, bool]] = {}
        self.outcome: dict[tuple[str, str], bool] = {}
        for row in store.rows:
            if row["cell"] == "clean":
                self.clean[row["image"]] = (row["label"], bool(row["ok"]))
            else:
                self.outcome[row["cell"], row["image"]] = bool(row["ok"])
        self.attacker = StepAttacker(config, classifier, purifier, lambda: images.load(self.batches[0])[1], cache, stop)
        self.done = self.computed = 0
        self.total = 0

    # ------------------------------------------------------------------ the loop

    def _tick(self, message: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, message)

    def _clean(self, b: int) -> None:
        if self.store.is_done("clean", b):
            return
        started, cpu = time.perf_counter(), time.process_time()
        ids, x, y = self.images.load(self.batches[b])
        self.store.skip({i: "unreadable" for i in self.batches[b] if i not in ids and i not in self.store.skipped})
        ok = self.attacker.correct(x, y).tolist() if ids else []
        rows = [{"cell": "clean", "batch": b, "image": i, "label": int(label), "ok": int(o)} for i, label, o in zip(ids, y.tolist(), ok)]
        self.store.commit(rows, {"cell": "clean", "batch": b, "n": len(rows), "seconds": round(time.perf_counter() - started, 4),
                                 "cpu_seconds": round(time.process_time() - cpu, 4)})
        for i, label, o in zip(ids, y.tolist(), ok):
            self.clean[i] = (int(label), bool(o))
        self.computed += 1

    def _targets(self, step: Step, earlier: list[Step], b: int) -> list[str]:
        correct = [i for i in self.batches[b] if self.clean.get(i, (0, False))[1]]
        if step.scope == "all":
            return correct
        if step.scope == "reference":
            return [i for i in correct if (step.reference, i) in self.outcome]
        if step.scope == "complement":
            return [i for i in correct if (step.reference, i) not in self.outcome]
        before = step.after if step.scope == "chain" else [s.id for s in earlier if s.counts]
        broken = {i for s in before for i in correct if self.outcome.get((s, i)) is False}
        return [i for i in correct if i not in broken]

    def _shared_examples(self, step: Step, model: nn.Module, seed: int, x: Tensor, y: Tensor) -> Tensor:
        """``step``'s examples of the whole batch ``x``, ``y``: made once, then taken from the cache."""
        if self._fingerprint is None:
            self._fingerprint = classifier_fingerprint(self.classifier)
        key = example_key(self._fingerprint, f"{step.id}|{step.attack}|{json.dumps(step.params, sort_keys=True)}", seed, x, y)
        return self.examples.get(key, lambda: self.attacker.attack(step, model, x, y, seed)).to(x.device)

    def _health_recorded(self, step: Step) -> bool:
        return any(commit.get("health") for (c, _), commit in self.store.commits.items() if c == step.id)

    def _step(self, step: Step, earlier: list[Step], b: int) -> None:
        if self.store.is_done(step.id, b):
            return
        started, cpu = time.perf_counter(), time.process_time()
        targets = self._targets(step, earlier, b)
        commit = {"cell": step.id, "batch": b, "n": len(targets)}
        rows = []
        if targets:
            seed = unit_seed(self.config.seed, step.id, b)
            torch.manual_seed(seed)
            ids, x, y = self.images.load(self.batches[b] if step.shared else targets)
            if step.shared:  # the whole batch is attacked, so that its examples do not depend on the purifier
                whole, index = (x, y), torch.tensor([ids.index(i) for i in targets], dtype=torch.long)
                ids, x, y = list(targets), x[index], y[index]
            model = self.attacker.model(step)
            gradient = step.family in ("gradient", "steps", "eps", "control") and step.threat != "transfer"
            if gradient and not self._health_recorded(step):
                commit["health"] = vars(gradient_health(model, x, y))
            x_adv = (self._shared_examples(step, model, seed, *whole)[index] if step.shared
                     else self.attacker.attack(step, model, x, y, seed))
            if gradient:
                with torch.no_grad():
                    commit["loss"] = [round(F.cross_entropy(model(x), y).item(), 5), round(F.cross_entropy(model(x_adv), y).item(), 5)]
            ok = self.attacker.correct(x_adv, y).tolist()
            rows = [{"cell": step.id, "batch": b, "image": i, "ok": int(o), "linf": round(float((a - c).abs().max()) * 255, 3)}
                    for i, o, a, c in zip(ids, ok, x_adv, x)]
            commit["seed"] = seed
        commit.update(seconds=round(time.perf_counter() - started, 4), cpu_seconds=round(time.process_time() - cpu, 4))
        stats = self.attacker.surrogate_stats
        if step.threat == "learned-surrogate" and stats is not None and not stats.get("recorded"):
            commit["surrogate"] = {k: v for k, v in stats.items() if k != "recorded"}
            stats["recorded"] = True
        self.store.commit(rows, commit)
        for row in rows:
            self.outcome[step.id, row["image"]] = bool(row["ok"])
        self.computed += 1

    def _check_stop(self) -> None:
        if self.stop is not None:
            self.stop()  # between units: everything committed so far stays in the store

    def run(self, steps: list[Step]) -> None:
        """Every step on every batch, in order (batch by batch, so a stopped audit has whole batches done)."""
        self.total = len(self.batches) * len(steps)
        for b in range(len(self.batches)):
            self._check_stop()
            self._clean(b)
            for k, step in enumerate(steps):
                self._check_stop()
                self._step(step, steps[:k], b)
                self._tick(f"batch {b + 1}/{len(self.batches)}: {step.id}")


def config_digest(config: AuditConfig, defence: str, ids: Sequence[str]) -> str:
    text = json.dumps({"config": config.to_dict(), "defence": defence, "ids": list(ids)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_cascade(config: AuditConfig, classifier: nn.Module, purifier: Purifier | None, images: AuditImages,
                out_dir: str | Path | None = None, progress: ProgressFn | None = None,
                surrogate_cache: str | Path | None = None, stop: StopCheck | None = None,
                example_cache: str | Path | None = None) -> AuditRun:
    """Run (or resume) the audit's suite on ``images``.

    Args:
        config: the settings (its ``checks`` select the suite's parts).
        classifier: [0, 1] images -> logits, in eval mode.
        purifier: the defence, or ``None`` to audit the bare classifier.
        images: the audited images.
        out_dir: where the store (``rows.jsonl``) lives; ``None``: in memory.
        progress: ``progress(done, total, message)`` after each unit.
        surrogate_cache: folder of trained learned surrogates (``None``: train each time).
        example_cache: folder of the examples of the classifier-only attacks (``None``: make them each time).
        stop: optional check run before every unit and at every attack step (and surrogate
            training step); it ends the audit by raising, and the finished units stay in the store.

    Raises:
        hac.evaluation.store.StoreError: ``out_dir`` holds another audit's results.
        hac.core.cancel.Cancelled: ``stop`` stopped it (rerun with the same out dir to continue).
    """
    started = time.perf_counter()
    defended = purifier is not None
    defence = f"{getattr(classifier, 'name', type(classifier).__name__)}" + (f" + {purifier.describe()}" if defended else " (undefended)")
    codecs = list(purifier.codecs) if defended else []
    steps, not_run, strongest = build_suite(config, defended, has_surrogate=defended and all(c.has_surrogate() for c in codecs),
                                            stochastic=any(c.stochastic for c in codecs), acm=acm_possible(purifier))
    header = {"audit": config.to_dict(), "defence": defence, "image_ids": images.ids}
    path = None if out_dir is None else Path(out_dir) / STORE_FILENAME
    with ResultStore(path, config_digest(config, defence, images.ids), header) as store:
        reused = len(store.commits)
        cascade = _Cascade(config, classifier, purifier, images, store, progress, SurrogateCache(surrogate_cache),
                           ExampleCache(example_cache), stop)
        cascade.run(steps)
        surrogate = next((c["surrogate"] for c in store.commits.values() if c.get("surrogate")), None)
        return AuditRun(
            config=config, defence=defence, image_ids=list(images.ids), steps=steps, not_run=not_run,
            clean=dict(cascade.clean), outcome=dict(cascade.outcome), commits=dict(store.commits),
            strongest=None if strongest is None else strongest.id, surrogate=surrogate,
            skipped={**images.skipped, **store.skipped},
            run={"wall_seconds": round(time.perf_counter() - started, 3), "units_computed": cascade.computed,
                 "units_reused_from_store": reused, "store_repaired_bytes": store.repaired_bytes,
                 "shared_examples": {"reused": cascade.examples.hits, "made": cascade.examples.misses},
                 "torch_threads": torch.get_num_threads()},
        )
