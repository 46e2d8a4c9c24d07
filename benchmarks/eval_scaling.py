"""Batch evaluation throughput: one process against Ray with 1 and 2 workers, and Ray's overhead per unit.

    python benchmarks/eval_scaling.py --data DIR_OR_HF_URL [--images 40] [--batch-size 10] [--workers 1,2]
                                      [--threads 1] [--device cpu|cuda] [--classifier efficientnet-lite0]

The same grid runs three (or more) times into fresh out dirs: PGD-10 at 4/255, the undefended
baseline and JPEG q=50 under the oblivious threat model, ``--batch-size`` images per unit.
Each run's images/s counts every image once (images / wall seconds of ``evaluate``); for Ray
the wall time includes starting Ray and the workers (models built once per worker), shown
apart as ``startup s``, and ``steady img/s`` leaves it out. ``overhead/unit`` is the driver's
time per unit (submit to records back) minus the worker's compute time for it, as a median,
and as a share of the one-process time of a PGD-10 unit (target: under 5 %).

With ``--device cuda`` the Ray workers get ``--gpus-per-worker`` GPUs each (default 1), so
``--workers`` should not exceed the GPUs. Threads: ``--threads`` torch threads in the
single process and in each worker. On a shared machine the numbers are only as good as it is idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYTHONPATH", str(ROOT))

import torch  # noqa: E402

from hac.evaluation.runner import evaluate  # noqa: E402


def grid(batch_size: int, classifier: str) -> dict:
    return {
        "name": "eval-scaling", "batch_size": batch_size, "classifier": classifier, "codecs": ["jpeg:q=50"],
        "rounds": [1], "attacks": [{"name": "pgd", "eps": "4/255", "steps": 10}], "threats": ["oblivious"],
        "ms_ssim": False,
    }


def measure(config: dict, data: str, images: int, device: str, engine=None) -> dict:
    with tempfile.TemporaryDirectory(prefix="eval-scaling-") as out:
        started = time.perf_counter()
        results = evaluate(config, out, data=data, limit=images, device=device, engine=engine)
        wall = time.perf_counter() - started
    units: dict[int, float] = {}
    for (_, batch), commit in results.commits.items():
        units[batch] = units.get(batch, 0.0) + commit["seconds"]
    startup = getattr(engine, "startup_seconds", 0.0)
    return {"images": len(results.image_ids), "wall": wall, "startup": startup, "unit_seconds": list(units.values()),
            "overheads": list(getattr(engine, "unit_overheads", []))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ImageNet-layout folder, Hub-layout folder or hf://datasets/... URL")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process / worker")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpus-per-worker", type=float, help="default: 1 on cuda, else 0")
    parser.add_argument("--classifier", default="efficientnet-lite0")
    args = parser.parse_args(argv)
    from hac.evaluation.ray_engine import RayEngine

    torch.set_num_threads(args.threads)
    gpus = args.gpus_per_worker if args.gpus_per_worker is not None else (1 if args.device.startswith("cuda") else 0)
    config = grid(args.batch_size, args.classifier)
    print(f"{args.images} images, batch {args.batch_size}, PGD-10 4/255 + JPEG q=50 oblivious, {args.classifier} on "
          f"{args.device}, {args.threads} torch thread(s) per process; load average {os.getloadavg()[0]:.2f}")
    runs = [("1 process", measure(config, args.data, args.images, args.device))]
    for workers in (int(w) for w in args.workers.split(",")):
        engine = RayEngine(workers=workers, gpus_per_worker=gpus, threads=args.threads)
        runs.append((f"Ray, {workers} worker{'s' if workers > 1 else ''}", measure(config, args.data, args.images,
                                                                                    args.device, engine)))
    pgd_unit = statistics.median(runs[0][1]["unit_seconds"])
    header = f"{'engine':<16} {'wall s':>8} {'img/s':>7} {'startup s':>10} {'steady img/s':>13} {'overhead/unit':>14} {'of PGD-10 unit':>15}"
    print(header)
    print("-" * len(header))
    for name, run in runs:
        steady = run["images"] / (run["wall"] - run["startup"])
        overhead = f"{statistics.median(run['overheads']) * 1000:.1f} ms" if run["overheads"] else "-"
        share = f"{statistics.median(run['overheads']) / pgd_unit:.2%}" if run["overheads"] else "-"
        print(f"{name:<16} {run['wall']:>8.1f} {run['images'] / run['wall']:>7.2f} {run['startup']:>10.1f} "
              f"{steady:>13.2f} {overhead:>14} {share:>15}")
    print(f"a PGD-10 unit (one batch of {args.batch_size}: baseline + JPEG cell) takes {pgd_unit:.2f} s in one process; "
          f"load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
