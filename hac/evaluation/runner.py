"""The batch evaluation: ``evaluate(config, out_dir) -> Results``.

A config (:mod:`hac.evaluation.config`) expands to a grid of cells; each cell is
evaluated on every batch of the selected images, and every (cell, batch)
unit is appended to a kill-safe store (:mod:`hac.evaluation.store`) as soon as it
is done. Restarted with the same config and out dir, a run continues where it
stopped; a finished run returns at once from the store.

No work is repeated. Per batch:

- the clean predictions are computed once;
- under the ``oblivious`` threat model the attacker never sees the purifier,
  so the adversarial images of a (classifier, attack, ε) are computed once and
  shared by every codec, quality and number of rounds (and by the undefended
  baseline);
- a codec chain is run once up to the largest number of rounds wanted and
  every requested round is read off the way (round 3 is round 2 compressed
  once more), for the clean images once per codec config;
- adaptive threat models (``bpda``, ``straight-through``, ``eot``) attack
  through the purifier, so they need a fresh attack per codec config and rounds.

The attack calls and codec passes done, and those a cell-by-cell evaluation
would have needed, are reported by :meth:`Results.reuse`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol, Sequence

import torch
from torch import Tensor, nn

from ..attacks.classifier_attacks import create_attack, quantize_adversarial
from ..models.classifiers import create_classifier
from ..codecs import Codec
from ..core.cancel import StopCheck
from ..attacks.diagnostics import gradient_health
from .datasets import ClassSubset, Dataset, load_batch, open_dataset, read_id_lines, read_ids_file, select_ids
from .config import PRESETS, Cell, ConfigError, EvalConfig, config_hash, load_config
from .results import Results
from ..hub import MissingWeightsError
from ..core.metrics import l2, linf, ms_ssim, psnr
from .plots import make_plots
from ..defence.purify import Purifier, build_chain
from .store import STORE_FILENAME, ResultStore, StoreError
from ..attacks.threats import attacked_model

__all__ = ["evaluate", "Engine", "InProcessEngine", "Unit", "UnitWork", "UnitRunner", "RecordingSink", "StoreSink",
           "plan_units", "Results", "EvalConfig", "load_config", "PRESETS", "make_plots", "ProgressFn", "select_images"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)``: units (cell x batch) done so far out of ``total`` this run."""


def unit_seed(base: int, unit: str, batch: int) -> int:
    """The seed set before one unit of work (see :meth:`Results.to_json`, ``seeds``)."""
    return int(hashlib.sha256(f"{base}|{unit}|{batch}".encode()).hexdigest()[:8], 16)


def select_images(config: EvalConfig) -> tuple[Dataset, list[str]]:
    """Open the config's data and pick its image ids (an ids file, else a seeded subset of ``limit``)."""
    data = config.data
    wanted = read_id_lines(data.ids_file) if data.ids_file else None
    dataset = open_dataset(data.path, data.layout, repo=data.repo, config=data.config, split=data.split,
                           cache_dir=data.cache_dir, limit=data.limit, seed=data.seed, ids=wanted)
    if data.ids_file:
        return dataset, read_ids_file(data.ids_file, dataset)
    return dataset, select_ids(dataset.ids, data.limit, data.seed)


def _rounds(codecs: Sequence[Codec], x: Tensor, wanted: Sequence[int]) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Apply the chain round after round; yield (round, image, bpp summed so far) at each wanted round."""
    wanted = set(wanted)
    current, bpp = x, torch.zeros(x.shape[0], device=x.device)
    with torch.no_grad():
        for r in range(1, max(wanted) + 1):
            for codec in codecs:
                out = codec(current)
                current, bpp = out.x_hat, bpp + out.bpp
            if r in wanted:
                yield r, current, bpp


def _r(value: Tensor | float, digits: int = 6) -> float:
    return round(float(value), digits)


def _opt(value: Tensor | float) -> float | None:
    """A rounded metric, or None where it was not computed (NaN)."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


@dataclass
class _Scores:
    """Purified images (N, 3, H, W), whether each is classified right (N,), MS-SSIM vs clean (N,; NaN if off)."""

    x: Tensor
    ok: Tensor
    ms_ssim: Tensor
    reused: int


@dataclass
class BuiltCodecs:
    """The codec chains of a config, built once per run.

    Attributes:
        chains: canonical chain -> its codecs (on the device, eval mode).
        unavailable: chain -> why it could not be built (missing weights); its cells are skipped.
    """

    chains: dict[str, list[Codec]]
    unavailable: dict[str, str]

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """chain -> the fingerprints of its codecs' weights, for the chains that have any."""
        prints = {}
        for chain, codecs in self.chains.items():
            parts = [codec.weights_fingerprint() for codec in codecs]
            if any(parts):
                prints[chain] = "+".join(part or "-" for part in parts)
        return prints


def check_codec_weights(store: ResultStore, cells: Sequence[Cell], fingerprints: Mapping[str, str]) -> None:
    """Refuse a store whose cells of a learned codec were computed with other weights than today's.

    Raises:
        StoreError: a committed unit's weights fingerprint differs from (or, from before fingerprints
            were recorded, lacks) the current one of its codec chain.
    """
    chains = {cell.id: cell.codec for cell in cells}
    for (cell_id, _), commit in store.commits.items():
        chain = chains.get(cell_id)
        current = fingerprints.get(chain)
        if current is not None and commit.get("weights") != current:
            recorded = commit.get("weights") or "not recorded"
            raise StoreError(
                f"{store.path.parent if store.path else 'the store'} holds results of {chain} computed with other "
                f"weights (fingerprint {recorded}, today's file {current}); use a new out dir, or delete that "
                "one to start over"
            )


def build_codecs(config: EvalConfig, cells: Sequence[Cell], device: str | torch.device) -> BuiltCodecs:
    """Build every codec chain of ``cells``; a chain whose weights are missing is recorded, not raised.

    Raises:
        ConfigError: a codec refuses its parameters (the message names the config key).
    """
    choices = config.codec_choices()
    built = BuiltCodecs({}, {})
    for chain in dict.fromkeys(c.codec for c in cells if not c.is_baseline):
        try:
            built.chains[chain] = [codec.to(device).eval() for codec in build_chain(chain)]
        except MissingWeightsError as error:
            reason = f"codec {chain} unavailable: {str(error).splitlines()[0]}"
            logger.warning("skipping the cells of %s", reason)
            built.unavailable[chain] = reason
        except ValueError as error:
            raise ConfigError(choices[chain].key if chain in choices else "codecs", str(error)) from None
    return built


@dataclass(frozen=True)
class Unit:
    """One scheduling unit: the pending cells of one classifier on one batch.

    Its cells share the batch's clean predictions and purified clean images and, under the
    oblivious threat model, each attack's adversarial images; so a unit is never split
    between workers, and the store's (cell, batch) commits are its parts.
    """

    classifier: str
    batch: int
    cells: tuple[str, ...]


class RecordingSink:
    """What a unit writes (commits, unreadable images, skipped cells), kept in order for the driver.

    An engine's worker runs units into one of these and sends :attr:`records` back; the driver
    :meth:`replay` s them into its :class:`StoreSink`, so only the driver writes the store.
    """

    def __init__(self) -> None:
        self.records: list[tuple] = []

    def commit(self, rows: list[dict], commit: dict) -> None:
        self.records.append(("commit", rows, commit))

    def skip(self, skipped: dict[str, str]) -> None:
        if skipped:
            self.records.append(("skip", skipped))

    def skip_cells(self, cell_ids: Sequence[str], reason: str) -> None:
        self.records.append(("skip_cells", list(cell_ids), reason))

    @staticmethod
    def replay(records: Sequence[tuple], sink: "StoreSink") -> None:
        for kind, *args in records:
            getattr(sink, kind)(*args)


class StoreSink:
    """The driver's end of the units: appends each finished (cell, batch) to the store and reports progress.

    A commit for a (cell, batch) the store already holds (a retried unit whose first result
    did arrive) is dropped, so no row is ever written twice. ``stop`` (optional) is checked after
    every commit, and by the in-process engine at every attack step.
    """

    def __init__(self, store: ResultStore, cells: Sequence[Cell], batches: int, progress: ProgressFn | None,
                 skipped_cells: dict[str, str], stop: StopCheck | None = None) -> None:
        self.store, self.progress, self.batches = store, progress, batches
        self.stop = stop
        self.cells = {cell.id: cell for cell in cells}
        self.skipped_cells = skipped_cells
        self.total = self.done = 0
        self.attack_calls = 0

    def commit(self, rows: list[dict], commit: dict) -> None:
        cell, batch = self.cells[commit["cell"]], commit["batch"]
        if self.store.is_done(cell.id, batch):
            logger.warning("dropping a second result of cell %s batch %d (a retried unit)", cell.key, batch)
            return
        self.store.commit(rows, commit)
        self.attack_calls += commit.get("attack_calls", 0)
        self.done += 1
        if self.progress is not None:
            label = "undefended" if cell.is_baseline else f"{cell.threat} {cell.codec} x{cell.rounds}"
            self.progress(self.done, self.total, f"batch {batch + 1}/{self.batches}: {cell.attack} {label}")
        if self.stop is not None:
            self.stop()  # between units: everything committed so far stays in the store

    def skip(self, skipped: dict[str, str]) -> None:
        self.store.skip(skipped)

    def skip_cells(self, cell_ids: Sequence[str], reason: str) -> None:
        for cell_id in cell_ids:
            self.skipped_cells[cell_id] = reason


@dataclass
class UnitWork:
    """Everything needed to compute units, in a form an engine can ship to its workers (picklable).

    Attributes:
        config, cells, dataset, batches: the run's config, grid, data and batches of image ids.
        device: where models and tensors live (``"cpu"``, ``"cuda"``).
        models: already built classifiers by name (else each is built once per runner).
    """

    config: EvalConfig
    cells: list[Cell]
    dataset: Dataset
    batches: list[list[str]]
    device: str
    models: dict[str, nn.Module]


class InProcessEngine:
    """Runs the units one after the other in this process (the default engine)."""

    name = "in-process"

    def run(self, units: Sequence[Unit], work: UnitWork, sink: StoreSink, codecs: BuiltCodecs) -> None:
        runner = UnitRunner(work, codecs, sink.stop)
        for unit in units:
            runner.run(unit, sink)


class UnitRunner:
    """Computes units: each classifier is built once, then each unit writes its commits into a sink.

    Used by the in-process engine and inside every worker of an engine.
    """

    def __init__(self, work: UnitWork, codecs: BuiltCodecs | None = None, stop: StopCheck | None = None) -> None:
        self.config, self.dataset, self.batches = work.config, work.dataset, work.batches
        self.stop = stop  # checked at every attack step (in-process only: a check does not travel to workers)
        self.device, self.models = work.device, work.models
        self.cells = {cell.id: cell for cell in work.cells}
        built = codecs or build_codecs(work.config, work.cells, work.device)
        self.codecs, self.fingerprints = built.chains, built.fingerprints
        self._classifiers: dict[str, tuple[nn.Module, nn.Module] | str] = {}
        self.sink: StoreSink | RecordingSink = RecordingSink()
        # shared work (seconds, codec passes, reused fixed-point predictions), booked on the next commit
        self.carry, self.carry_passes, self.carry_fixed = 0.0, 0, 0
        self.cpu_mark = time.process_time()  # CPU time (all threads of this process) since the last commit

    def _classifier(self, name: str) -> tuple[nn.Module, nn.Module] | str:
        """(classifier, the network attacked and scored), or why the classifier is unavailable."""
        if name not in self._classifiers:
            try:
                classifier = self.models[name] if name in self.models else create_classifier(name, device=self.device)
            except MissingWeightsError as error:
                self._classifiers[name] = f"classifier {name} unavailable: {str(error).splitlines()[0]}"
            else:
                classifier.eval()
                net: nn.Module = classifier
                if self.config.data.restrict_classes:
                    net = ClassSubset(classifier, self.dataset.class_indices).to(self.device).eval()
                self._classifiers[name] = (classifier, net)
        return self._classifiers[name]

    def prepare(self) -> None:
        """Build every classifier of the grid now (an engine's workers do, before their first unit)."""
        for name in dict.fromkeys(cell.classifier for cell in self.cells.values()):
            self._classifier(name)

    def run(self, unit: Unit, sink: StoreSink | RecordingSink) -> None:
        """Compute one unit, writing its (cell, batch) commits into ``sink`` as each is done."""
        self.sink = sink
        loaded = self._classifier(unit.classifier)
        if isinstance(loaded, str):
            sink.skip_cells(unit.cells, loaded)
            return
        self._batch(*loaded, unit.batch, [self.cells[cell_id] for cell_id in unit.cells])

    def _commit(self, cell: Cell, batch: int, rows: list[dict], seeds: dict, started: float, attack_calls: int = 0,
                codec_passes: int = 0, fixed_points: int = 0, warning: str | None = None) -> None:
        """Hand one finished (cell, batch) to the sink; shared work done since the last commit is booked here."""
        seconds = time.perf_counter() - started + self.carry
        cpu = time.process_time() - self.cpu_mark
        codec_passes += self.carry_passes
        fixed_points += self.carry_fixed
        self.carry, self.carry_passes, self.carry_fixed = 0.0, 0, 0
        commit = {"cell": cell.id, "batch": batch, "n": len(rows), **seeds, "seconds": round(seconds, 4), "cpu_seconds": round(cpu, 4),
                  "attack_calls": attack_calls, "codec_passes": codec_passes, "fixed_points": fixed_points}
        if cell.codec in self.fingerprints:
            commit["weights"] = self.fingerprints[cell.codec]
        if warning:
            commit["warning"] = warning
        self.sink.commit([{"cell": cell.id, "batch": batch, **row} for row in rows], commit)
        self.cpu_mark = time.process_time()

    def _seed(self, unit: str, batch: int) -> int:
        seed = unit_seed(self.config.seed, unit, batch)
        torch.manual_seed(seed)
        return seed

    def _batch(self, classifier: nn.Module, net: nn.Module, b: int, cells: list[Cell]) -> None:
        started = time.perf_counter()
        self.cpu_mark = time.process_time()
        batch = load_batch(self.dataset, self.batches[b], classifier.fit, self.device)
        self.sink.skip(batch.skipped)
        if not batch.ids:
            for cell in cells:
                self._commit(cell, b, [], {}, time.perf_counter())
            return
        x = batch.x
        y = net.map_labels(batch.labels) if isinstance(net, ClassSubset) else batch.labels
        with torch.no_grad():
            clean_ok = (net(x).argmax(1) == y).tolist()
        base = [{"image": i, "label": int(label), "clean": int(ok)} for i, label, ok in zip(batch.ids, batch.labels.tolist(), clean_ok)]
        clean = self._purified_clean(net, x, y, b, cells)
        self.carry += time.perf_counter() - started
        by_attack: dict[str, list[Cell]] = defaultdict(list)
        for cell in cells:
            by_attack[cell.attack].append(cell)
        for group in by_attack.values():
            self._oblivious(net, x, y, b, group, base, clean)
            for cell in group:
                if not cell.is_baseline and cell.threat != "oblivious":
                    self._adaptive(net, x, y, b, cell, base, clean)

    def _score(self, net: nn.Module, x_pur: Tensor, y: Tensor, x: Tensor, previous: _Scores | None) -> _Scores:
        """Classify ``x_pur`` (and its MS-SSIM against ``x``), reusing ``previous`` for images that did not change.

        Repeated JPEG often reaches a fixed point within a few rounds; an image
        equal to the previous round's output has the same prediction.
        """
        n = x_pur.shape[0]
        if previous is None:
            changed = torch.ones(n, dtype=torch.bool, device=x.device)
            ok, quality = torch.zeros(n, dtype=torch.bool, device=x.device), torch.full((n,), math.nan, device=x.device)
        else:
            changed = ~(x_pur == previous.x).flatten(1).all(1)
            ok, quality = previous.ok.clone(), previous.ms_ssim.clone()
        if changed.any():
            with torch.no_grad():
                ok[changed] = net(x_pur[changed]).argmax(1) == y[changed]
            if self.config.ms_ssim:
                quality[changed] = ms_ssim(x_pur[changed], x[changed]).to(quality.dtype)
        return _Scores(x_pur, ok, quality, int((~changed).sum()))

    def _purified_clean(self, net, x, y, b, cells) -> dict[tuple[str, int], list[dict]]:
        """(codec, rounds) -> per image {clean_defended, clean_bpp, clean_psnr, clean_msssim}, for every codec config the batch's cells need."""
        wanted: dict[str, set[int]] = defaultdict(set)
        for cell in cells:
            if not cell.is_baseline:
                wanted[cell.codec].add(cell.rounds)
        stats = {}
        for chain, rounds in wanted.items():
            self._seed(f"clean|{cells[0].classifier}|{chain}", b)
            previous = None
            for r, x_pur, bpp in _rounds(self.codecs[chain], x, sorted(rounds)):
                previous = self._score(net, x_pur, y, x, previous)
                self.carry_fixed += previous.reused
                stats[chain, r] = [{"clean_defended": int(o), "clean_bpp": _r(v), "clean_psnr": _r(p, 4), "clean_msssim": _opt(m)}
                                   for o, v, p, m in zip(previous.ok, bpp, psnr(x_pur, x), previous.ms_ssim)]
            self.carry_passes += max(rounds)
        return stats

    def _defended_rows(self, scores: _Scores, x, x_adv, bpp, base, clean_stats) -> list[dict]:
        quality = zip(scores.ok, bpp, psnr(scores.x, x), scores.ms_ssim, linf(x_adv - x), l2(x_adv - x))
        return [
            {**b, "defended": int(o), "bpp": _r(v), "psnr": _r(p, 4), "msssim": _opt(m), "linf": _r(li, 8), "l2": _r(el), **c}
            for b, c, (o, v, p, m, li, el) in zip(base, clean_stats, quality)
        ]

    def _oblivious(self, net, x, y, b, group, base, clean) -> None:
        """The baseline and every oblivious cell of one attack: one attack call for all of them."""
        baseline = [c for c in group if c.is_baseline]
        oblivious = [c for c in group if c.threat == "oblivious"]
        if not baseline and not oblivious:
            return
        started = time.perf_counter()
        attack, classifier = group[0].attack, group[0].classifier
        seed = self._seed(f"attack|{classifier}|{attack}", b)
        x_adv = quantize_adversarial(x, create_attack(attack, net, stop=self.stop)(x, y))
        attack_calls = 1
        if baseline:
            with torch.no_grad():
                adv_ok = (net(x_adv).argmax(1) == y).tolist()
            rows = [{**r, "adv": int(o), "linf": _r(li, 8), "l2": _r(el)}
                    for r, o, li, el in zip(base, adv_ok, linf(x_adv - x), l2(x_adv - x))]
            self._commit(baseline[0], b, rows, {"seed": seed}, started, attack_calls=attack_calls)
            attack_calls, started = 0, time.perf_counter()
        by_codec: dict[str, dict[int, Cell]] = defaultdict(dict)
        for cell in oblivious:
            by_codec[cell.codec][cell.rounds] = cell
        for chain, cells in by_codec.items():
            seeds = {"seed": seed, "purify_seed": self._seed(f"purify|{classifier}|{attack}|{chain}", b)}
            passes, scores = max(cells), None
            for r, x_pur, bpp in _rounds(self.codecs[chain], x_adv, sorted(cells)):
                scores = self._score(net, x_pur, y, x, scores)
                rows = self._defended_rows(scores, x, x_adv, bpp, base, clean[chain, r])
                self._commit(cells[r], b, rows, seeds, started, attack_calls=attack_calls, codec_passes=passes,
                             fixed_points=scores.reused)
                attack_calls, passes, started = 0, 0, time.perf_counter()

    def _adaptive(self, net, x, y, b, cell, base, clean) -> None:
        """One cell whose attacker differentiates through the purifier: its own attack."""
        started = time.perf_counter()
        purifier = Purifier(self.codecs[cell.codec], cell.rounds)
        model = attacked_model(net, purifier, cell.threat, self.config.eot_samples)
        warning = None
        if b == 0:
            health = gradient_health(model, x, y)
            if health.masked:
                warning = f"masked gradients: {health.explain()}; this attack's numbers are not trustworthy"
                logger.warning("%s: %s", cell.key, warning)
        seed = self._seed(f"cell|{cell.key}", b)
        x_adv = quantize_adversarial(x, create_attack(cell.attack, model, stop=self.stop)(x, y))
        ((_, x_pur, bpp),) = _rounds(self.codecs[cell.codec], x_adv, [cell.rounds])
        rows = self._defended_rows(self._score(net, x_pur, y, x, None), x, x_adv, bpp, base, clean[cell.codec, cell.rounds])
        self._commit(cell, b, rows, {"seed": seed}, started, attack_calls=1, codec_passes=cell.rounds, warning=warning)


def plan_units(cells: Sequence[Cell], batches: int, store: ResultStore, unavailable: Mapping[str, str],
               skipped_cells: dict[str, str]) -> list[Unit]:
    """The units still to compute, classifier by classifier and batch by batch.

    Cells of a codec chain that cannot be built are recorded in ``skipped_cells`` (finished
    ones stand without their weights) and left out.
    """
    for chain, reason in unavailable.items():
        chain_cells = [c for c in cells if c.codec == chain]
        if any(not store.is_done(c.id, b) for c in chain_cells for b in range(batches)):
            skipped_cells.update((c.id, reason) for c in chain_cells)
    units = []
    for name in dict.fromkeys(c.classifier for c in cells):
        for b in range(batches):
            pending = tuple(c.id for c in cells if c.classifier == name and c.id not in skipped_cells
                            and not store.is_done(c.id, b))
            if pending:
                units.append(Unit(name, b, pending))
    return units


class Engine(Protocol):
    """Computes units somewhere and hands their records to the driver's sink (see :class:`InProcessEngine`)."""

    name: str

    def run(self, units: Sequence[Unit], work: UnitWork, sink: StoreSink, codecs: BuiltCodecs) -> None: ...


def evaluate(
    config: str | Path | Mapping | EvalConfig,
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    *,
    data: str | Path | None = None,
    limit: int | None = None,
    device: str | torch.device = "cpu",
    models: Mapping[str, nn.Module] | None = None,
    engine: "Engine | None" = None,
    stop: StopCheck | None = None,
) -> Results:
    """Evaluate every cell of ``config`` on its images; resumable through ``out_dir``.

    Args:
        config: a config file, preset name, dict or :class:`EvalConfig` (see :mod:`hac.evaluation.config`).
        out_dir: where the result store (``rows.jsonl``) lives; a rerun with the
            same config continues or returns the finished results. ``None``: in memory only.
        progress: optional ``progress(done, total, message)``, called after each
            (cell, batch) unit; an exception it raises stops the run (finished units are kept).
        data: data folder, overriding the config's ``data.path``.
        limit: number of images, overriding the config's ``data.limit``.
        device: where models and images live.
        models: already built classifiers by name (else built with :func:`create_classifier`).
        engine: what computes the units (:class:`InProcessEngine` by default; e.g.
            :class:`hac.evaluation.ray_engine.RayEngine`). Only this process writes the store.
        stop: optional check run after each unit (and, in process, at every attack step); it ends
            the run by raising :class:`hac.core.cancel.Cancelled` (finished units stay in the store).

    Returns:
        :class:`Results` (call :meth:`Results.write` and :func:`make_plots` to save files).

    Raises:
        ConfigError: invalid config (the message names the key).
        FileNotFoundError, ValueError: missing or unusable data.
        hac.evaluation.store.StoreError: ``out_dir`` holds another config's results.
    """
    started = time.perf_counter()
    config = load_config(config).with_data(path=None if data is None else str(data), limit=limit)
    cells = config.cells()
    dataset, ids = select_images(config)
    batches = [ids[i : i + config.batch_size] for i in range(0, len(ids), config.batch_size)]
    codecs = build_codecs(config, cells, device)
    fingerprints = codecs.fingerprints
    digest = config_hash(config, ids)
    path = None if out_dir is None else Path(out_dir) / STORE_FILENAME
    header = {"config": config.to_dict(), "cells": {cell.id: cell.key for cell in cells}, "image_ids": ids}
    with ResultStore(path, digest, header) as store:
        check_codec_weights(store, cells, fingerprints)
        skipped_cells: dict[str, str] = {}
        units = plan_units(cells, len(batches), store, codecs.unavailable, skipped_cells)
        reused = len(store.commits)
        logger.info("%s: %d cells x %d batches (%d images); %d units already in the store",
                    config.name, len(cells), len(batches), len(ids), reused)
        sink = StoreSink(store, cells, len(batches), progress, skipped_cells, stop)
        sink.total = sum(len(unit.cells) for unit in units)
        if progress is not None:
            progress(0, sink.total, f"{sink.total} units to compute ({len(batches)} batches)")
        if units:
            work = UnitWork(config, cells, dataset, batches, str(device), dict(models or {}))
            (engine or InProcessEngine()).run(units, work, sink, codecs)
        # in batch order, whatever order the units finished in (an engine's workers), so sums add up alike
        return Results(
            config=config, cells=cells, records=sorted(store.rows, key=lambda row: row["batch"]),
            commits=dict(store.commits), image_ids=ids,
            skipped_images=dict(store.skipped), skipped_cells=skipped_cells, dataset=dataset.describe(),
            run={"wall_seconds": round(time.perf_counter() - started, 3), "units_computed": sink.done,
                 "units_reused_from_store": reused, "store_repaired_bytes": store.repaired_bytes,
                 "batches": len(batches), "images_per_batch": config.batch_size, "torch_threads": torch.get_num_threads(),
                 "this_run_attack_calls": sink.attack_calls, "codec_weights": fingerprints,
                 "engine": getattr(engine, "name", "in-process")},
        )
