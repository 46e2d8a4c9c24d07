"""How fast hac attacks a JPEG-defended classifier, against IBM's adversarial-robustness-toolbox.

    python benchmarks/attack_speed.py [--batch 16 --steps 10 --threads 2 --repeats 3] [--skip-art]

Times one L-inf PGD attack (eps 4/255, step 1/255, one uniform random start,
``--steps`` gradient steps) on EfficientNet-Lite0 (hac's embedded ImageNet
weights) at 224x224, batch ``--batch``, on the CPU, in these pipelines:

- ``undefended (limit)``: PGD on hac's bare classifier, no codec. No defended
  pipeline can beat it; hac aims to stay within 10% of it.
- ``hac bpda``: PGD through ``Purifier("jpeg:q=25")`` under the ``bpda`` threat
  model (real Pillow JPEG forward, identity backward), as ``hac attack`` runs it.
  hac's classifier is frozen for inference (BatchNorm folded into the
  convolutions, channels-last; :mod:`hac.models.inference`).
- ``hac bpda, published net``: the same with the network as published
  (``create_classifier(optimize=False)``): the pipeline's cost without that rewrite.
- ``ART``: adversarial-robustness-toolbox's ``PyTorchClassifier`` wrapping the
  published network (as an ART user builds it), with ``JpegCompression(quality=25)``
  as its only preprocessing defence, attacked by ``ProjectedGradientDescent``
  (``num_random_init=1``, as torchattacks' ``random_start``). ART's
  ``JpegCompression`` is a NumPy preprocessor whose ``estimate_gradient`` is the
  identity, so ART runs the same BPDA attack: per step one Pillow JPEG of the
  batch, forward, backward. ART also predicts the clean and the adversarial batch
  once more at the end (its success-rate log line); the ``ART (attack steps
  only)`` row subtracts the measured cost of those two predictions.
- ``ART, hac's net``: ART wrapping hac's optimised classifier, to show how much
  of the gap is the network and how much the pipeline.

ART is optional and not a dependency of hac: ``pip install
adversarial-robustness-toolbox``. Without it (or with ``--skip-art``) its rows
are skipped with a message.

The images are scikit-image's sample photographs, resized and centre-cropped
to 224 by the classifier's own policy and repeated to fill the batch; the labels
attacked are the undefended classifier's clean predictions. Every pipeline gets
one untimed warm-up run, then ``--repeats`` timed runs, interleaved across the
pipelines; the table shows wall-clock images/s (median and best), the median CPU
seconds per batch (all threads of the process; steadier than wall-clock time on
a loaded machine), the speed relative to ART and to the limit, and the share of
the batch each attack fooled (through hac's JPEG q=25 for the defended
pipelines), as a check that the pipelines did the same work. The machine's load
average is printed before and after: compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hac.attacks.classifier_attacks import create_attack  # noqa: E402
from hac.models.classifiers import Classifier, create_classifier  # noqa: E402
from hac.core.images import load_image  # noqa: E402
from hac.defence.pipeline import to_8bit  # noqa: E402
from hac.defence.purify import Purifier  # noqa: E402
from hac.attacks.threats import attacked_model  # noqa: E402

EPS = 4 / 255
STEP = 1 / 255
QUALITY = 25
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "motorcycle_left.png", "astronaut.png")
ART_INSTALL = "pip install adversarial-robustness-toolbox"


@dataclass
class Timing:
    """Wall-clock and CPU seconds (all threads of this process) per attacked batch, one entry per timed run."""

    name: str
    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def minus(self, name: str, other: "Timing", times: int) -> "Timing":
        """This timing less ``times`` the median cost of ``other``."""
        wall = [w - times * other.median for w in self.wall]
        return Timing(name, wall, [c - times * other.cpu_median for c in self.cpu])


def sample_batch(classifier: Classifier, batch: int) -> Tensor:
    """scikit-image's photographs fitted to the classifier's input, repeated to ``batch`` images (8-bit grid)."""
    import skimage

    folder = Path(skimage.__file__).resolve().parent / "data"
    photos = [classifier.fit(load_image(folder / name)[None]) for name in PHOTOS]
    x = torch.cat(photos)
    return to_8bit(x.repeat((batch + len(photos) - 1) // len(photos), 1, 1, 1)[:batch]).contiguous()


def time_runs(runs: dict[str, Callable[[], Tensor]], repeats: int) -> tuple[dict[str, Timing], dict[str, Tensor]]:
    """One untimed warm-up of each run, then ``repeats`` rounds timing each once.

    Interleaved, so that a change in the machine's load hits every pipeline
    alike. Returns the timings and each run's last output.
    """
    outputs = {name: run() for name, run in runs.items()}
    timings = {name: Timing(name, [], []) for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            outputs[name] = run()
            timings[name].wall.append(time.perf_counter() - wall)
            timings[name].cpu.append(time.process_time() - cpu)
    return timings, outputs


def hac_attack(model: torch.nn.Module, steps: int, x: Tensor, y: Tensor) -> Callable[[], Tensor]:
    """hac's PGD (torchattacks underneath) against ``model``, as a call returning x_adv."""
    attack = create_attack("pgd", model, eps=EPS, alpha=STEP, steps=steps, random_start=True)
    return lambda: attack(x, y)


def art_pipeline(
    classifier: Classifier, steps: int, x: Tensor, y: Tensor
) -> tuple[object, Callable[[], Tensor]] | None:
    """ART's estimator and a call running its PGD on ``x`` (returning x_adv), or ``None`` without ART."""
    try:
        from art.attacks.evasion import ProjectedGradientDescent
        from art.defences.preprocessor import JpegCompression
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return None
    jpeg = JpegCompression(clip_values=(0.0, 1.0), quality=QUALITY, channels_first=True, apply_predict=True)
    estimator = PyTorchClassifier(
        model=classifier,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=len(classifier.class_names),
        clip_values=(0.0, 1.0),
        preprocessing_defences=[jpeg],
        preprocessing=None,
        device_type="cpu",
    )
    pgd = ProjectedGradientDescent(
        estimator, norm=np.inf, eps=EPS, eps_step=STEP, max_iter=steps, num_random_init=1,
        batch_size=x.shape[0], verbose=False,
    )
    x_np, y_np = x.numpy(), y.numpy()
    return estimator, lambda: torch.from_numpy(pgd.generate(x_np, y=y_np))


def format_table(timings: list[Timing], batch: int, art: Timing | None, limit: Timing, fooled: dict[str, float]) -> str:
    header = (f"{'pipeline':<26} {'img/s (median)':>14} {'img/s (best)':>12} {'s/batch':>8} {'CPU s/batch':>11} "
              f"{'x ART':>6} {'of limit':>8} {'fooled':>7}")
    lines = [header, "-" * len(header)]
    for timing in timings:
        ratio = f"{art.median / timing.median:.2f}x" if art else "-"
        rate = f"{fooled[timing.name]:.0%}" if timing.name in fooled else "-"
        lines.append(
            f"{timing.name:<26} {batch / timing.median:>14.2f} {batch / timing.best:>12.2f} {timing.median:>8.2f} "
            f"{timing.cpu_median:>11.2f} {ratio:>6} {limit.median / timing.median:>8.0%} {rate:>7}"
        )
    return "\n".join(lines)


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per pipeline (default %(default)s)")
    parser.add_argument("--skip-art", action="store_true", help="time hac and the undefended limit only")
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    classifier = create_classifier("efficientnet-lite0")
    published = create_classifier("efficientnet-lite0", optimize=False)
    x = sample_batch(classifier, args.batch)
    with torch.no_grad():
        y = classifier(x).argmax(1)
    purifier = Purifier(f"jpeg:q={QUALITY}")
    runs = {
        "undefended (limit)": hac_attack(classifier, args.steps, x, y),
        "hac bpda": hac_attack(attacked_model(classifier, purifier, "bpda"), args.steps, x, y),
        "hac bpda, published net": hac_attack(attacked_model(published, purifier, "bpda"), args.steps, x, y),
    }
    if args.skip_art:
        print("ART skipped (--skip-art)")
    else:
        built = art_pipeline(published, args.steps, x, y)
        if built is None:
            print(f"ART skipped: adversarial-robustness-toolbox is not installed ({ART_INSTALL})")
        else:
            estimator, runs["ART"] = built
            runs["ART predict"] = lambda: torch.from_numpy(estimator.predict(x.numpy(), batch_size=args.batch))
            runs["ART, hac's net"] = art_pipeline(classifier, args.steps, x, y)[1]

    print(
        f"PGD-{args.steps} (L-inf eps 4/255, step 1/255, random start), jpeg:q={QUALITY}, bpda, efficientnet-lite0, "
        f"batch {args.batch} x 3x{x.shape[-2]}x{x.shape[-1]}; median and best of {args.repeats} after a warm-up"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}); load average before: {load()}",
        flush=True,
    )
    timings, outputs = time_runs(runs, args.repeats)
    print(f"load average after: {load()}")
    defended = torch.nn.Sequential(purifier, classifier).eval()
    with torch.no_grad():
        defended_runs = [name for name in runs if name not in ("undefended (limit)", "ART predict")]
        models = {"undefended (limit)": classifier} | {name: defended for name in defended_runs}
        fooled = {name: (model(outputs[name]).argmax(1) != y).float().mean().item() for name, model in models.items()}
    limit, hac = timings["undefended (limit)"], timings["hac bpda"]
    rows = [limit, hac, timings["hac bpda, published net"]]
    art = timings.get("ART")
    if art is not None:
        rows += [art, art.minus("ART (attack steps only)", timings["ART predict"], 2), timings["ART, hac's net"]]
    print(format_table(rows, args.batch, art, limit, fooled))
    print("fooled: share of the batch misclassified after the attack (defended pipelines: through hac's JPEG q=25)")
    summary = f"hac / limit: {limit.median / hac.median:.0%}"
    if art is not None:
        summary = f"hac / ART throughput: {art.median / hac.median:.2f}x; " + summary
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
