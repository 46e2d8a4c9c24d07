"""What a full ``hac audit`` costs, in units of one PGD-10 pass on the same images, and what the cascade saves.

    python benchmarks/audit_speed.py --data ../shared/data/imagenet-val-1300 [--images 16] [--codec jpeg:q=25]
        [--threads 1] [--checks all] [--square-queries 500]

Prints, for one audit of ``--images`` images (EfficientNet-Lite0, 4/255, the audit's default suite):

1. the unit: one PGD-10 pass on all the images through the purifier under BPDA (attack, purify, classify),
   CPU seconds (this process, all threads) and wall seconds;
2. per step of the audit: images it attacked (the cascade's survivors), CPU seconds, cost in PGD-10 units,
   and what it would have cost without the cascade (every clean-correct image attacked by every step);
   a step that attacked no image is timed on one image for that estimate (the learned surrogate's training
   counted once, not per image);
3. the totals: the audit in PGD-10 units (the issue's target: at most 15 for JPEG q25), the same suite
   without the cascade, the saving, and the audit's cost when the oblivious examples come from the
   cache another audit of the same images filled (``hac audit --cache``).

CPU seconds are the steadier measure on a shared machine; compare numbers only within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--codec", default="jpeg:q=25")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checks", default="all")
    parser.add_argument("--square-queries", type=int, default=500)
    args = parser.parse_args(argv)

    import torch

    from hac.attacks.classifier_attacks import create_attack, quantize_adversarial
    from hac.attacks.learned_surrogate import SurrogateCache
    from hac.attacks.threats import attacked_model
    from hac.audit import AuditConfig, audit, dataset_images, parse_checks
    from hac.audit.attacker import StepAttacker
    from hac.defence.purify import Purifier
    from hac.models.classifiers import create_classifier

    torch.set_num_threads(args.threads)
    classifier = create_classifier("efficientnet-lite0").eval()
    purifier = Purifier(args.codec).eval()
    config = AuditConfig(codec=args.codec, data=str(args.data), images=args.images, square_queries=args.square_queries,
                         checks=parse_checks(args.checks))
    images = dataset_images(args.data, args.images, 0, classifier.fit)
    ids, x, y = images.load(images.ids)

    torch.manual_seed(0)
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(ids), config.batch_size):
        xs, ys = x[start : start + config.batch_size], y[start : start + config.batch_size]
        model = attacked_model(classifier, purifier, "bpda")
        x_adv = quantize_adversarial(xs, create_attack("pgd", model, eps=config.eps, steps=10)(xs, ys))
        with torch.no_grad():
            classifier(purifier(x_adv)).argmax(1)
    unit_cpu, unit_wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{len(ids)} images of {args.data.name}, {args.codec}, EfficientNet-Lite0, eps 4/255, torch threads {torch.get_num_threads()}")
    print(f"1. unit: one BPDA PGD-10 pass on all {len(ids)} images: {unit_cpu:.1f} CPU s ({unit_wall:.1f} wall s)\n")

    cpu, wall = time.process_time(), time.perf_counter()
    result = audit(config, None, classifier=classifier, purifier=purifier, images=images, cache=None)
    audit_cpu, audit_wall = time.process_time() - cpu, time.perf_counter() - wall
    run, verdict = result.run, result.verdict
    correct = [i for i, (_, ok) in run.clean.items() if ok]
    attacker = StepAttacker(config, classifier, purifier, lambda: x, SurrogateCache(None))

    rows, no_cascade_total = [], 0.0
    for step in run.steps:
        commits = [c for (cell, _), c in run.commits.items() if cell == step.id]
        seconds = sum(c.get("cpu_seconds", 0.0) for c in commits)
        attacked = sum(c.get("n", 0) for c in commits)
        fixed = 0.0
        if attacked:
            per_image = seconds / attacked
        else:  # never reached by the cascade: time it on one image
            position = ids.index(correct[0]) if correct else 0
            one_x, one_y = x[position : position + 1], y[position : position + 1]
            started = time.process_time()
            model = attacker.model(step)  # the learned surrogate trains here, once per audit
            fixed = time.process_time() - started
            started = time.process_time()
            attacker.attack(step, model, one_x, one_y, seed=0)
            attacker.correct(one_x, one_y)
            per_image = time.process_time() - started
        without = fixed + per_image * len(correct)
        no_cascade_total += without
        rows.append((step.id, attacked, seconds, seconds / unit_cpu, without / unit_cpu))
    clean_seconds = sum(c.get("cpu_seconds", 0.0) for (cell, _), c in run.commits.items() if cell == "clean")

    print(f"2. the audit's steps ({len(correct)} of {len(ids)} images correct when clean)")
    print(f"| {'step':<24} | attacked | CPU s | x PGD-10 | without cascade (x PGD-10) |")
    print("|---|---|---|---|---|")
    for name, attacked, seconds, units, without in rows:
        print(f"| {name:<24} | {attacked:>8} | {seconds:5.1f} | {units:8.2f} | {without:26.2f} |")
    total = sum(r[2] for r in rows) + clean_seconds
    print(f"\n3. audit: {audit_cpu:.1f} CPU s ({audit_wall:.1f} wall s, learned-surrogate training included) = "
          f"{audit_cpu / unit_cpu:.2f} x one PGD-10 pass (steps alone: {total / unit_cpu:.2f} x); "
          f"without the cascade: {no_cascade_total / unit_cpu:.2f} x; the cascade saves {no_cascade_total / max(total, 1e-9):.1f}x")
    shared = sum(r[2] for r, step in zip(rows, run.steps) if step.shared)
    print(f"   the oblivious attacks' share ({shared:.1f} CPU s), which a second codec audited on the same images takes "
          f"from the shared cache: {(audit_cpu - shared) / unit_cpu:.2f} x one PGD-10 pass")
    print(f"   verdict: robust accuracy {verdict.robust_accuracy:.3f} ({verdict.robust}/{verdict.images}), "
          f"oblivious {verdict.oblivious:.3f}; flags: {verdict.flags or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
