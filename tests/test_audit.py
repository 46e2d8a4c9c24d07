"""``hac audit``: each attack of the suite, the cascade, resumability, bad input, masked defences, the report.

Mechanics run tiny seeded models (``audit_fixtures``) on 32 x 32 images, so the whole file takes
well under a minute on one thread; the claim about the real classifier is marked ``shared_data``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from audit_fixtures import ShatteredClassifier, TinyClassifier, ZeroBackwardQuantiser, tiny_images
from hac.attacks.learned_surrogate import SurrogateCache, train_surrogate
from hac.attacks.random_gradient import RandomGradient
from hac.audit import AuditConfig, audit, parse_checks
from hac.audit.attacker import StepAttacker
from hac.audit.suite import build_suite
from hac.audit.verdict import wilson_interval
from hac.cli import main
from hac.defence.purify import Purifier
from hac.evaluation.store import STORE_FILENAME, StoreError

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

FAST = dict(classifier="tiny", images=12, batch_size=4, steps=10, apgd_steps=10, square_queries=300,
            surrogate_steps=30, steps_multipliers=(2,), eps_sweep=(16 / 255,))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return TinyClassifier().eval()


@pytest.fixture(scope="module")
def jpeg():
    return Purifier("jpeg:q=75").eval()


def _accuracy_after(attacker: StepAttacker, x_adv, y) -> float:
    return attacker.correct(x_adv, y).float().mean().item()


def test_each_attack_beats_random_noise(tiny, jpeg):
    config = AuditConfig(eps=2 / 255, **FAST)
    images = tiny_images(tiny, 12, wrong=0, purifier=jpeg)
    _, x, y = images.load(images.ids)
    attacker = StepAttacker(config, tiny, jpeg, lambda: x, SurrogateCache(None))
    noise = torch.round((x + config.eps * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))).clamp(0, 1) * 255) / 255
    noise_accuracy = _accuracy_after(attacker, noise, y)
    assert noise_accuracy >= 0.9
    suite, _, _ = build_suite(config, defended=True, has_surrogate=True, stochastic=False, acm=True)
    for step in suite:
        if step.family in ("control", "steps", "eps"):  # the same attacks again, with more steps or a larger eps
            continue
        x_adv = attacker.attack(step, attacker.model(step), x, y, seed=3)
        assert (x_adv - x).abs().max() <= step.eps + 1e-6, step.id
        assert torch.equal(torch.round(x_adv * 255) / 255, x_adv), f"{step.id} left the 8-bit grid"
        if step.attack == "acm":  # its objective is the codec's error, not the label
            codec = jpeg.codecs[0]
            with torch.no_grad():
                attacked = (codec(x_adv).x_hat - x).pow(2).mean()
                noisy = (codec(noise).x_hat - x).pow(2).mean()
            assert attacked > noisy, step.id
            continue
        accuracy = _accuracy_after(attacker, x_adv, y)
        assert accuracy <= noise_accuracy - 0.25, f"{step.id}: {accuracy:.2f} after the attack, {noise_accuracy:.2f} after noise"


def test_random_gradient_keeps_the_norm_and_loses_the_direction(tiny):
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    real = torch.autograd.grad(tiny(x).logsumexp(1).sum(), x)[0]
    torch.manual_seed(0)
    fake = torch.autograd.grad(RandomGradient(tiny)(x).logsumexp(1).sum(), x)[0]
    assert torch.allclose(fake.flatten(1).norm(dim=1), real.flatten(1).norm(dim=1), rtol=1e-4)
    cosine = torch.nn.functional.cosine_similarity(fake.flatten(1), real.flatten(1))
    assert cosine.abs().max() < 0.2
    assert torch.equal(RandomGradient(tiny)(x), tiny(x))


def test_learned_surrogate_learns_the_codec_and_is_cached(tmp_path, jpeg):
    x = tiny_images(TinyClassifier(), 6).load([f"img{k:02d}" for k in range(6)])[1]
    net, stats = train_surrogate(jpeg, x, radius=16 / 255, steps=60, seed=0)
    assert stats["l1_trained"] < stats["l1_identity"]
    cache = SurrogateCache(tmp_path)
    assert cache.load("k") is None
    cache.save("k", net)
    again = cache.load("k")
    assert torch.equal(again(x), net(x))


def _broken_before(run, step_index: int) -> set[str]:
    return {i for s in run.steps[:step_index] if s.counts for (c, i), ok in run.outcome.items() if c == s.id and not ok}


def test_cascade_never_attacks_a_wrong_or_already_broken_image(tiny, jpeg):
    config = AuditConfig(eps=2 / 255, **FAST)
    images = tiny_images(tiny, 12, wrong=2, purifier=jpeg)
    result = audit(config, None, classifier=tiny, purifier=jpeg, images=images, cache=None)
    run = result.run
    wrong = {i for i, (_, ok) in run.clean.items() if not ok}
    assert {"img00", "img01"} <= wrong
    assert not {i for (_, i) in run.outcome} & wrong
    for k, step in enumerate(run.steps):
        if step.scope == "survivors" and step.counts:
            attacked = {i for (c, i) in run.outcome if c == step.id}
            assert not attacked & _broken_before(run, k), step.id
    assert result.verdict.robust == sum(1 for row in result.verdict.worst_case if row["robust"])
    assert all(not row["robust"] for row in result.verdict.worst_case if row["image"] in wrong)


def test_undefended_tiny_classifier_audits_to_zero(tiny):
    result = audit(AuditConfig(eps=4 / 255, **FAST), None, classifier=tiny, images=tiny_images(tiny, 8), cache=None)
    assert result.verdict.robust == 0
    assert result.verdict.not_run["bpda"].startswith("no purifier")


def test_masked_classifier_is_flagged_and_square_breaks_it():
    model = ShatteredClassifier(levels=16).eval()
    config = AuditConfig(eps=8 / 255, **FAST)
    result = audit(config, None, classifier=model, images=tiny_images(model, 12), cache=None)
    verdict = result.verdict
    checks = {c.name: c for c in verdict.checks}
    assert verdict.masked
    assert checks["gradient-health"].flagged and checks["random-gradient"].flagged and checks["gradient-free"].flagged
    assert verdict.robust_accuracy <= 0.10
    square = next(r for r in verdict.per_step if r["step"] == "square")
    assert square["first_broken"] >= 0.8 * verdict.clean_correct
    assert verdict.oblivious >= 0.8  # what a gradient-only evaluation would have claimed


def test_purifier_with_zero_backward_is_flagged_and_still_broken(tiny):
    purifier = Purifier([ZeroBackwardQuantiser(4)]).eval()
    config = AuditConfig(eps=4 / 255, **FAST)
    result = audit(config, None, classifier=tiny, purifier=purifier, images=tiny_images(tiny, 12, purifier=purifier),
                   cache=None)
    checks = {c.name: c for c in result.verdict.checks}
    assert checks["gradient-health"].flagged and "straight-through-pgd" in checks["gradient-health"].detail
    assert result.verdict.masked
    assert result.verdict.robust_accuracy <= 0.10


_RESUME_SCRIPT = """
import sys, time, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from audit_fixtures import TinyClassifier, tiny_images
from hac.audit import AuditConfig, audit
from hac.defence.purify import Purifier
tiny, jpeg = TinyClassifier().eval(), Purifier("jpeg:q=75").eval()
config = AuditConfig(eps=2 / 255, **{fast!r})
audit(config, {out!r}, lambda d, t, m: time.sleep(0.15), classifier=tiny, purifier=jpeg,
      images=tiny_images(tiny, 12, purifier=jpeg), cache=None)
"""


def test_resume_after_kill_9_loses_nothing(tmp_path, tiny, jpeg):
    config = AuditConfig(eps=2 / 255, **FAST)
    images = tiny_images(tiny, 12, purifier=jpeg)
    reference = audit(config, tmp_path / "whole", classifier=tiny, purifier=jpeg, images=images, cache=None)
    out = tmp_path / "killed"
    script = _RESUME_SCRIPT.format(tests=str(TESTS), fast=FAST, out=str(out))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = out / STORE_FILENAME
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if store.exists() and store.read_text().count('"kind":"commit"') >= 8:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = store.read_text().count('"kind":"commit"')
    resumed = audit(config, out, classifier=tiny, purifier=jpeg, images=images, cache=None)
    assert resumed.run.run["units_reused_from_store"] >= done_before - 1 > 0
    assert resumed.run.outcome == reference.run.outcome
    assert resumed.verdict.worst_case == reference.verdict.worst_case
    keys = [(r["cell"], r["image"]) for r in map(json.loads, store.read_text().splitlines()) if r["kind"] == "row"]
    assert len(keys) == len(set(keys))
    again = audit(config, out, classifier=tiny, purifier=jpeg, images=images, cache=None)
    assert again.run.run["units_computed"] == 0


def test_a_stop_check_ends_the_audit_mid_attack_and_a_rerun_continues(tmp_path, tiny, jpeg):
    from hac.core.cancel import Cancelled

    config = AuditConfig(eps=2 / 255, **FAST)
    images = tiny_images(tiny, 12, purifier=jpeg)
    reference = audit(config, tmp_path / "whole", classifier=tiny, purifier=jpeg, images=images, cache=None)
    calls = []

    def stop():  # the stop check of a request whose time ran out after 40 checks
        calls.append(1)
        if len(calls) > 40:
            raise Cancelled("stopped after 40 checks")

    out = tmp_path / "stopped"
    with pytest.raises(Cancelled, match="stopped after 40 checks"):
        audit(config, out, classifier=tiny, purifier=jpeg, images=images, cache=None, stop=stop)
    assert len(calls) == 41  # it stopped at the first check that said so, inside an attack (more checks than units)
    finished = (out / STORE_FILENAME).read_text().count('"kind":"commit"')
    assert 0 < finished < reference.run.run["units_computed"]
    resumed = audit(config, out, classifier=tiny, purifier=jpeg, images=images, cache=None)
    assert resumed.run.run["units_reused_from_store"] == finished
    assert resumed.run.outcome == reference.run.outcome


def test_report_files(tmp_path, tiny, jpeg):
    config = AuditConfig(eps=2 / 255, **FAST)
    result = audit(config, tmp_path, classifier=tiny, purifier=jpeg, images=tiny_images(tiny, 8, purifier=jpeg), cache=None)
    names = {p.name for p in result.write(tmp_path)}
    assert {"report.md", "audit.json", "worst_case.csv", "attacks.png", "accuracy_vs_eps.png", "accuracy_vs_steps.png"} <= names
    report = (tmp_path / "report.md").read_text()
    assert report.splitlines()[2].startswith("### Verdict:") and "Robust accuracy" in report and "Oblivious PGD" in report
    data = json.loads((tmp_path / "audit.json").read_text())
    assert data["image_ids"] == [f"img{k:02d}" for k in range(8)]
    assert data["config"]["eps"] == pytest.approx(2 / 255) and data["versions"]["torch"] and data["seeds"]
    low, high = data["verdict"]["interval_95"]
    assert low <= data["verdict"]["robust_accuracy"] <= high
    assert (tmp_path / "worst_case.csv").read_text().splitlines()[0] == "image,label,clean_correct,robust,broken_by"


def test_audit_table_compares_finished_audits(tmp_path, capsys, tiny, jpeg):
    config = AuditConfig(eps=2 / 255, **FAST)
    images = tiny_images(tiny, 8, purifier=jpeg)
    for name, purifier in (("jpeg-q75", jpeg), ("undefended", None)):
        audit(config, tmp_path / name, classifier=tiny, purifier=purifier, images=images, cache=None).write(tmp_path / name)
    assert main(["audit-table", str(tmp_path / "jpeg-q75"), str(tmp_path / "undefended"), "--out", str(tmp_path / "t.md")]) == 0
    table = capsys.readouterr().out
    assert table == (tmp_path / "t.md").read_text()
    header, _, *rows = table.splitlines()
    assert len(rows) == 2 and "oblivious" in header and "audited" in header
    for name, row in zip(("jpeg-q75", "undefended"), rows):
        data = json.loads((tmp_path / name / "audit.json").read_text())
        low, high = data["verdict"]["interval_95"]
        assert row.startswith(f"| {name} | 8 |")
        assert f"**{data['verdict']['robust_accuracy']:.3f}** [{low:.3f}, {high:.3f}]" in row
    assert main(["audit-table", str(tmp_path / "nowhere")]) == 2
    assert "audit.json does not exist" in capsys.readouterr().err


def test_wilson_interval():
    assert wilson_interval(0, 200) == (0.0, pytest.approx(0.0188, abs=1e-3))
    low, high = wilson_interval(24, 200)
    assert 0.08 < low < 0.12 < high < 0.18
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)


def test_bad_arguments_give_clear_errors(tmp_path, capsys, tiny, jpeg):
    data = tmp_path / "data"
    data.mkdir()
    cases = [
        (["--data", str(tmp_path / "nowhere")], "does not exist"),
        (["--data", str(data), "--eps", "2"], "--eps must be a number in \\(0, 1\\]"),
        (["--data", str(data), "--checks", "bpda,sqaure"], "unknown audit check 'sqaure'; valid checks: all, bpda"),
        (["--data", str(data), "--images", "0"], "images must be a positive integer"),
        (["--data", str(data), "--steps-multipliers", "five"], "--steps-multipliers must be comma-separated integers"),
        (["--data", str(data), "--eps-sweep", "2/255"], "eps sweep values must exceed eps=4/255"),
        (["--data", str(data), "--ids", str(tmp_path / "ids.txt")], "--ids .* does not exist"),
    ]
    for extra, message in cases:
        assert main(["audit", "--out", str(tmp_path / "out"), *extra]) == 2
        assert __import__("re").search(message, capsys.readouterr().err), (extra, message)
    assert parse_checks("all,-square,-acm") == tuple(c for c in parse_checks("all") if c not in ("square", "acm"))
    config = AuditConfig(eps=2 / 255, **FAST)
    images = tiny_images(tiny, 4, purifier=jpeg)
    audit(config, tmp_path / "run", classifier=tiny, purifier=jpeg, images=images, cache=None)
    with pytest.raises(StoreError, match="another configuration"):
        audit(config.with_(steps=3), tmp_path / "run", classifier=tiny, purifier=jpeg, images=images, cache=None)


@pytest.mark.shared_data
def test_undefended_efficientnet_audits_to_zero(shared_dir, classifier, tmp_path):
    config = AuditConfig(data=str(shared_dir / "data" / "imagenet-val-1300"), images=6, batch_size=6, steps=5, apgd_steps=5,
                         square_queries=20, checks=parse_checks("apgd-ce,random-gradient"))
    result = audit(config, tmp_path, classifier=classifier, cache=None)
    assert result.verdict.images == 6 and result.verdict.robust == 0


def test_app_audit_tab_shows_the_verdict_card():
    from gradio import Error

    from hac.app.audit import run_audit
    from hac.app.audit_fields import MAX_AUDIT_IMAGES
    from hac.app.batch import SAMPLE_DATASET
    from hac.app.cache import ModelCache
    from hac.app.files import RunFiles
    from hac.app.ui import build_demo

    cache, files = ModelCache("cpu"), RunFiles()
    out = run_audit(cache, files, SAMPLE_DATASET, "efficientnet-lite0", "jpeg:q=25", 1, 2, 4, ["bpda"])
    assert out.card.startswith("### Verdict: efficientnet-lite0 + jpeg:q=25 x1 at ε = 4/255")
    assert "Robust accuracy" in out.card and "Not run" in out.card
    assert list(out.steps["step"]) == ["oblivious-pgd", "bpda-pgd"] and out.archive.endswith(".zip")
    with pytest.raises(Error, match=f"1 to {MAX_AUDIT_IMAGES} images"):
        run_audit(cache, files, SAMPLE_DATASET, "efficientnet-lite0", "", 1, MAX_AUDIT_IMAGES + 1, 4, ["bpda"])
    with pytest.raises(Error, match="unknown audit check 'nope'"):
        run_audit(cache, files, SAMPLE_DATASET, "efficientnet-lite0", "", 1, 2, 4, ["nope"])
    tabs = [block.label for block in build_demo(cache, files).blocks.values() if type(block).__name__ == "Tab"]
    assert "Audit" in tabs


def _attacked_by(run, step_id: str) -> set[str]:
    return {i for (c, i) in run.outcome if c == step_id}


def _broken_by(run, step_ids) -> set[str]:
    return {i for (c, i), ok in run.outcome.items() if c in step_ids and not ok}


def test_steps_check_and_eps_sweep_run_the_strongest_attack_standalone(tiny, jpeg):
    config = AuditConfig(eps=1 / 255, **{**FAST, "steps_multipliers": (2, 4), "eps_sweep": (8 / 255, 16 / 255)})
    result = audit(config, None, classifier=tiny, purifier=jpeg, images=tiny_images(tiny, 12, purifier=jpeg), cache=None)
    run = result.run
    correct = {i for i, (_, ok) in run.clean.items() if ok}
    assert run.strongest == "straight-through-pgd"
    # the cascade left straight-through-pgd only some images; strongest-x1 gives it the others
    assert _attacked_by(run, "strongest-x1") == correct - _attacked_by(run, "straight-through-pgd") != set()
    for step in run.steps:
        if step.scope == "chain":
            assert _attacked_by(run, step.id) == correct - _broken_by(run, step.after), step.id
    checks = {c.name: c for c in result.verdict.checks}
    steps = checks["steps"].values
    assert steps["steps"] == [10, 20, 40]
    alone = correct - _broken_by(run, ("straight-through-pgd", "strongest-x1"))
    assert steps["accuracy"]["10"] == pytest.approx(len(alone) / len(run.clean))
    assert list(steps["accuracy"].values()) == sorted(steps["accuracy"].values(), reverse=True)
    curves = checks["eps-sweep"].values["accuracy"]
    assert set(curves) == {"oblivious-pgd", "straight-through-pgd", "worst case"}
    assert list(curves["straight-through-pgd"]) == ["1/255", "8/255", "16/255"]
    assert curves["straight-through-pgd"]["1/255"] == steps["accuracy"]["10"]
    assert curves["oblivious-pgd"]["1/255"] == pytest.approx(result.verdict.oblivious)
    assert curves["worst case"]["1/255"] == pytest.approx(result.verdict.robust_accuracy)
    assert curves["straight-through-pgd"]["16/255"] <= 0.01 and checks["eps-sweep"].status == "pass"


def test_oblivious_examples_are_made_once_and_shared_across_codecs(tmp_path, tiny, jpeg):
    config = AuditConfig(eps=2 / 255, **{**FAST, "checks": ("bpda",)})
    other = Purifier("jpeg:q=40").eval()
    images = tiny_images(tiny, 12, purifier=jpeg)
    first = audit(config, None, classifier=tiny, purifier=jpeg, images=images, cache=tmp_path)
    assert first.run.run["shared_examples"] == {"reused": 0, "made": 3}  # one per batch of 4
    fresh = audit(config, None, classifier=tiny, purifier=other, images=images, cache=None)
    shared = audit(config, None, classifier=tiny, purifier=other, images=images, cache=tmp_path)
    assert shared.run.run["shared_examples"] == {"reused": 3, "made": 0}
    assert shared.run.outcome == fresh.run.outcome
    bare = audit(config, None, classifier=tiny, images=images, cache=tmp_path)  # the white-box PGD is the same attack
    assert bare.run.run["shared_examples"] == {"reused": 3, "made": 0}
    retrained = TinyClassifier(seed=1).eval()
    again = audit(config, None, classifier=retrained, purifier=jpeg, images=images, cache=tmp_path)
    assert again.run.run["shared_examples"]["reused"] == 0 < again.run.run["shared_examples"]["made"]  # other weights


def _synthetic_run(broken_by_step: dict[str, int], n: int = 100):
    """An audit of ``n`` clean-correct images where each step breaks the given number of survivors."""
    from hac.audit.cascade import AuditRun
    from hac.audit.suite import Step

    pgd = {"eps": 4 / 255, "steps": 10, "restarts": 1}
    steps = [Step("oblivious-pgd", "oblivious", "oblivious", "pgd", pgd, scope="all"),
             Step("straight-through-pgd", "gradient", "straight-through", "pgd", pgd),
             Step("strongest-x5", "steps", "straight-through", "pgd", {**pgd, "steps": 50}, scope="chain",
                  after=("straight-through-pgd",)),
             Step("strongest-x20", "steps", "straight-through", "pgd", {**pgd, "steps": 200}, scope="chain",
                  after=("straight-through-pgd", "strongest-x5"))]
    ids = [f"i{k:03d}" for k in range(n)]
    outcome, standing = {}, list(ids)
    for step in steps:
        count = broken_by_step.get(step.id, 0)
        for k, image in enumerate(standing):
            outcome[step.id, image] = k >= count
        standing = standing[count:]
    return AuditRun(config=AuditConfig(), defence="synthetic", image_ids=ids, steps=steps, not_run={},
                    clean={i: (0, True) for i in ids}, outcome=outcome, commits={}, strongest="straight-through-pgd",
                    surrogate=None, skipped={}, run={})


@pytest.mark.parametrize("x20, status, upper", [(0, "pass", False), (10, "FLAG", True), (40, "pass", False)])
def test_steps_check_flags_an_attack_still_improving(x20, status, upper):
    from hac.audit.verdict import verdict_of

    verdict = verdict_of(_synthetic_run({"straight-through-pgd": 50, "strongest-x5": 10, "strongest-x20": x20}))
    check = next(c for c in verdict.checks if c.name == "steps")
    assert check.status == status and verdict.upper_bound == upper
    assert check.values["accuracy"] == {"10": 0.5, "50": 0.4, "200": (40 - x20) / 100}
    assert verdict.robust == 40 - x20


def test_only_attacks_on_the_bare_classifier_are_shared():
    config = AuditConfig(eps=2 / 255, **FAST)
    defended, _, _ = build_suite(config, defended=True, has_surrogate=True, stochastic=False, acm=True)
    bare, _, _ = build_suite(config, defended=False, has_surrogate=False, stochastic=False, acm=False)
    assert {s.id for s in defended if s.shared} == {"oblivious-pgd", "oblivious-eps-16"}
    assert {s.id for s in bare if s.shared} == {"oblivious-pgd"}  # the white-box PGD, the same attack


def test_a_check_left_out_says_why():
    config = AuditConfig(eps=2 / 255, **{**FAST, "checks": ("eps-sweep", "bpda")})
    suite, not_run, strongest = build_suite(config, defended=True, has_surrogate=True, stochastic=False, acm=True)
    assert strongest.id == "bpda-pgd" and not_run["steps"] == "not selected (--checks)" and "eps-sweep" not in not_run
    assert [s.id for s in suite if s.family in ("steps", "eps")] == ["strongest-x1", "oblivious-eps-16", "strongest-eps-16"]
    _, not_run, strongest = build_suite(config.with_(checks=("steps",)), defended=True, has_surrogate=True,
                                        stochastic=False, acm=True)
    assert strongest is None and not_run["steps"].startswith("no PGD under bpda")
