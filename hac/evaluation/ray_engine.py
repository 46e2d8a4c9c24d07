"""Compute an evaluation's units on Ray (https://docs.ray.io): one actor per worker, the driver writes the store.

Each worker is a Ray actor that builds the classifier and codecs once, then computes one
:class:`~hac.evaluation.runner.Unit` (a classifier's pending cells on one batch) per call and
returns what it would have written. The driver appends those records to the result store as
units finish, so resume, the refusal of a mixed ``OUT/`` and every output are those of the
in-process runner. A worker that dies loses only the unit it was computing: Ray restarts the
actor and retries that unit once; if the retry fails too, the unit is left for the next run
(rerun the same command), and a result that arrives twice is written once.

Ray is an optional dependency (``pip install "hac[ray]"``); this module imports it only when
an engine runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Sequence

from .runner import BuiltCodecs, RecordingSink, StoreSink, Unit, UnitRunner, UnitWork

__all__ = ["RayEngine", "UnitsLostError"]

logger = logging.getLogger(__name__)


class UnitsLostError(RuntimeError):
    """Some units were not computed because their workers died; the finished ones are in the store."""


class _UnitActor:
    """A Ray worker: one :class:`UnitRunner` (models built once), one unit per :meth:`run` call."""

    def __init__(self, work: UnitWork, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.runner = UnitRunner(work)
        self.runner.prepare()

    def run(self, unit: Unit) -> list[tuple]:
        sink = RecordingSink()
        self.runner.run(unit, sink)
        return sink.records

    def pid(self) -> int:
        return os.getpid()


class RayEngine:
    """Runs units on a Ray cluster: ``workers`` actors, each with ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs.

    Args:
        address: a running cluster (``"auto"`` on a node of one started with ``ray start``,
            ``"HOST:PORT"``); None: the cluster this process is already connected to, else a new
            local one sized for the workers (never another Ray instance running on this machine).
        workers: number of actors (each builds its own models).
        cpus_per_worker: CPUs reserved per actor; also its torch thread count unless ``threads`` is given.
        gpus_per_worker: GPUs per actor (Ray sets ``CUDA_VISIBLE_DEVICES``, so ``device="cuda"`` is that GPU).
        threads: torch CPU threads per actor.

    Raises:
        ValueError: a count below its minimum.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0, threads: int | None = None) -> None:
        for label, value, least in (("workers", workers, 1), ("cpus_per_worker", cpus_per_worker, 0),
                                    ("gpus_per_worker", gpus_per_worker, 0), ("threads", threads or 1, 1)):
            if value < least:
                raise ValueError(f"--{label.replace('_', '-')} must be at least {least}, got {value}")
        self.address, self.workers = address, workers
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.threads = threads or max(1, int(cpus_per_worker))
        self.worker_pids: list[int] = []
        self.startup_seconds = 0.0  # connecting plus starting the workers (models built), last run
        self.unit_overheads: list[float] = []  # per unit: seconds seen by the driver minus the worker's compute seconds

    def _connect(self):
        """Ray, connected; True when this engine started the connection (and must end it)."""
        try:
            import ray
        except ImportError:
            raise ImportError('--engine ray needs Ray: pip install "hac[ray]" (or pip install ray)') from None
        if ray.is_initialized():
            return ray, False
        hac_root = str(Path(__file__).resolve().parents[2])  # so workers import this hac, installed or not
        paths = [hac_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
        if self.address is None:
            ray.init(address="local", num_cpus=max(1, int(self.workers * self.cpus_per_worker + 0.999)), include_dashboard=False,
                     runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False)
        return ray, True

    def run(self, units: Sequence[Unit], work: UnitWork, sink: StoreSink, codecs: BuiltCodecs) -> None:
        """Compute ``units`` on the workers; append each one's records to ``sink`` as it arrives.

        Raises:
            UnitsLostError: units whose worker died twice (the rest are in the store; rerun to finish).
        """
        began = time.perf_counter()
        ray, started = self._connect()
        try:
            self._run(ray, list(units), work, sink, began)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, units: list[Unit], work: UnitWork, sink: StoreSink, began: float) -> None:
        actor_class = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                                 max_restarts=1, max_task_retries=1)(_UnitActor)
        actors = [actor_class.remote(work, self.threads) for _ in range(min(self.workers, len(units)))]
        self.worker_pids = ray.get([actor.pid.remote() for actor in actors])
        self.startup_seconds, self.unit_overheads = time.perf_counter() - began, []
        queue: deque[Unit] = deque(units)  # in plan order: batch by batch, so a batch's units start together
        running: dict = {}
        lost: list[Unit] = []

        def submit(actor) -> None:
            unit = queue.popleft()
            running[actor.run.remote(unit)] = (actor, unit, time.perf_counter())

        for actor in actors:
            submit(actor)
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, unit, submitted = running.pop(ref)
            try:
                records = ray.get(ref)
            except ray.exceptions.RayActorError as error:  # the worker died twice on this unit
                logger.warning("worker lost on %s batch %d (%s); its unit is left for the next run",
                               unit.classifier, unit.batch, str(error).splitlines()[0])
                lost.append(unit)
                continue  # that actor is gone: its share goes to the others
            computed = sum(record[2]["seconds"] for record in records if record[0] == "commit")
            self.unit_overheads.append(time.perf_counter() - submitted - computed)
            RecordingSink.replay(records, sink)
            if queue:
                submit(actor)
            else:  # no work left for it: free its CPUs and GPUs for a restarted worker's retry
                ray.kill(actor)
        lost.extend(queue)  # every worker died before these started
        for actor in actors:
            ray.kill(actor)
        if lost:
            raise UnitsLostError(
                f"{len(lost)} unit(s) were not computed because their Ray workers died; every finished unit is in the "
                "store: rerun the same command to compute the rest"
            )
