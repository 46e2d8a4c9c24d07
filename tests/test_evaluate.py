"""The batch evaluation: grid, reuse, resumability, the store, results, plots, CLI, bad input.

Mechanics run the real EfficientNet-Lite0 on a tiny ImageNet-layout folder of
real photos written here; claims about accuracy run on ``../shared`` (marked).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from hac.cli import main
from hac.evaluation.config import PRESETS, ConfigError, load_config
from hac.evaluation.results import SUMMARY_COLUMNS
from hac.evaluation.runner import evaluate, make_plots
from hac.core.images import load_image, to_pil
from hac.evaluation.store import LEGACY_KEYS, STORE_FILENAME, ResultStore, StoreError

ROOT = Path(__file__).resolve().parent.parent

# skimage photo -> the synset folder it goes in (labels need not be right for mechanics)
PHOTOS = {
    "chelsea.png": "n02123045",  # tabby
    "coffee.png": "n07920052",  # espresso
    "rocket.jpg": "n03773504",  # missile
    "motorcycle_left.png": "n03785016",  # moped
    "camera.png": "n04485082",  # tripod
    "astronaut.png": "n01440764",  # tench (wrong on purpose)
}

GRID = {
    "name": "mechanics",
    "batch_size": 3,
    "codecs": [{"name": "jpeg", "q": [25, 50]}],
    "rounds": [1, 2],
    "attacks": [{"name": "fgsm", "eps": ["2/255", "4/255"]}, {"name": "pgd", "eps": "4/255", "steps": 2}],
    "grid": [
        {"threats": ["oblivious"]},
        {"threats": ["bpda"], "attacks": ["fgsm:eps=4/255"], "codecs": ["jpeg:q=50"], "rounds": [2]},
    ],
}
CELLS = 3 + 3 * 2 * 2 + 1  # baselines + oblivious + bpda
UNITS = CELLS * 2  # two batches of three images


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photo_dir) -> Path:
    root = tmp_path_factory.mktemp("tiny-imagenet")
    for name, synset in PHOTOS.items():
        image = to_pil(load_image(photo_dir / name)).resize((96, 96), Image.BICUBIC)
        (root / synset).mkdir()
        image.save(root / synset / f"{Path(name).stem}.png")
    return root


@pytest.fixture(scope="module")
def models(classifier):
    return {"efficientnet-lite0": classifier}


@pytest.fixture(scope="module")
def reference(folder, models, tmp_path_factory):
    """The mechanics grid run once, uninterrupted; with the attacks it created."""
    import hac.evaluation.runner as module

    out, calls = tmp_path_factory.mktemp("reference"), []
    original = module.create_attack

    def counting(spec, model, **params):
        calls.append((spec, type(model).__name__))
        return original(spec, model, **params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "create_attack", counting)
        results = evaluate(GRID, out, data=folder, models=models)
    return out, results, calls


def _numbers(results) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "cpu_seconds")} for row in results.summary_rows()]


def _store_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / STORE_FILENAME).read_text().splitlines()]


def _assert_no_duplicates(out: Path) -> None:
    rows = [(r["cell"], r["image"]) for r in _store_lines(out) if r["kind"] == "row"]
    assert len(rows) == len(set(rows)) == CELLS * len(PHOTOS)


# ---------------------------------------------------------------- grid and summary


def test_grid_expansion():
    cells = load_config(GRID).cells()
    assert len(cells) == CELLS and len({c.id for c in cells}) == CELLS
    assert sum(c.is_baseline for c in cells) == 3
    bpda = [c for c in cells if c.threat == "bpda"]
    assert [(c.attack, c.codec, c.rounds) for c in bpda] == [("fgsm:eps=4/255", "jpeg:q=50", 2)]
    oblivious = {(c.attack, c.codec, c.rounds) for c in cells if c.threat == "oblivious"}
    assert ("pgd:eps=4/255,steps=2", "jpeg:q=25", 2) in oblivious and len(oblivious) == 12


def test_summary_has_one_row_per_cell_with_every_column(reference):
    _, results, _ = reference
    rows = results.summary_rows()
    assert len(rows) == CELLS and all(set(SUMMARY_COLUMNS) <= set(row) for row in rows)
    for row in rows:
        assert row["status"] == "done" and row["images"] == len(PHOTOS)
        assert 0 <= row["clean_acc"] <= 1 and 0 <= row["defended_acc"] <= 1
        if row["threat"] == "none":
            assert row["codec"] == "none" and row["defended_acc"] == row["adv_acc"] and row["bpp"] is None
        else:
            assert 0.2 < row["bpp"] < 8 and 20 < row["psnr"] < 45 and 0.5 < row["ms_ssim"] <= 1
            assert row["clean_bpp"] > 0 and row["rounds"] in (1, 2)
        assert abs(row["linf_255"] - row["eps_255"]) < 1e-3  # FGSM/PGD use the full budget on the 8-bit grid
    jpeg25 = [r for r in rows if r["codec"] == "jpeg:q=25" and r["attack"] == "fgsm:eps=4/255"]
    assert {r["rounds"]: r["clean_bpp"] for r in jpeg25}[2] > {r["rounds"]: r["clean_bpp"] for r in jpeg25}[1]


def test_oblivious_adversarial_examples_are_computed_once(reference):
    _, results, calls = reference
    # per batch: one attack per (attack, eps) shared by its baseline and 4 oblivious cells, one for the bpda cell
    assert len(calls) == 2 * (3 + 1)
    assert sum(kind == "Sequential" for _, kind in calls) == 2  # bpda attacks through purifier + classifier
    reuse = results.reuse()
    assert reuse["attack_calls"] == 8 and reuse["attack_calls_without_reuse"] == UNITS
    # codec passes per batch: clean 2+2, oblivious 3 attacks x 2 codecs x 2 rounds, bpda 2 -> 18; cell by cell 40
    assert reuse["codec_passes"] == 36 and reuse["codec_passes_without_reuse"] == 80


def test_results_files_and_plots(reference, tmp_path):
    out, results, _ = reference
    written = results.write(tmp_path) + make_plots(results, tmp_path)
    assert {p.name for p in written} == {"summary.csv", "worst_case.csv", "results.json", "image_ids.txt",
                                        "accuracy_vs_eps.png", "accuracy_vs_rounds.png", "accuracy_vs_bpp.png"}
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert summary[0].split(",")[: len(SUMMARY_COLUMNS)] == list(SUMMARY_COLUMNS) and len(summary) == CELLS + 1
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["image_ids"] == sorted(f"{s}/{Path(n).stem}.png" for n, s in PHOTOS.items())
    assert report["versions"]["torch"] and report["seeds"]["base_seed"] == 0 and report["reuse"]["attack_calls"] == 8
    if (ROOT / ".git").exists():  # a checkout records the commit the numbers came from
        assert re.fullmatch(r"source [0-9a-f]{40}(\+dirty)?", report["versions"]["hac"]), report["versions"]["hac"]
    assert len(report["cells"]) == CELLS and report["config"]["name"] == "mechanics"
    assert load_config(report["config"]).cells() == load_config(GRID).cells()  # the recorded config repeats the run
    assert all(Image.open(p).size[0] > 300 for p in written if p.suffix == ".png")


def test_worst_case_is_per_image_minimum_over_attacks(reference):
    _, results, _ = reference
    worst = {(r["threat"], r["codec"], r["rounds"], r["eps_255"]): r for r in results.worst_case_rows()}
    by_cell = {}
    for record in results.records:
        by_cell.setdefault(record["cell"], {})[record["image"]] = record
    cells = [c for c in results.cells
             if c.threat == "oblivious" and c.codec == "jpeg:q=25" and c.rounds == 1 and round(c.eps * 255) == 4]
    assert {c.attack_name for c in cells} == {"fgsm", "pgd"}
    expected = sum(min(by_cell[c.id][i]["defended"] for c in cells) for i in by_cell[cells[0].id]) / len(PHOTOS)
    row = worst["oblivious", "jpeg:q=25", 1, 4.0]
    assert row["robust_acc"] == pytest.approx(expected) and row["cells"] == 2
    single = [r for r in results.summary_rows() if r["cell"] in {c.id for c in cells}]
    assert row["robust_acc"] <= min(r["defended_acc"] for r in single)
    assert ("all", "jpeg:q=50", 2, 4.0) in worst  # oblivious and bpda together


# ---------------------------------------------------------------- resume and the store


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_without_redoing_work(folder, models, reference, tmp_path):
    def stop_after(k):
        def progress(done, total, message):
            assert total == UNITS or done == 0
            if done >= k:
                raise Interrupt(message)

        return progress

    with pytest.raises(Interrupt):
        evaluate(GRID, tmp_path, stop_after(7), data=folder, models=models)  # mid-batch, mid-attack-group
    assert sum(r["kind"] == "commit" for r in _store_lines(tmp_path)) == 7
    seen = []
    resumed = evaluate(GRID, tmp_path, lambda d, t, m: seen.append((d, t)), data=folder, models=models)
    assert resumed.run["units_computed"] == UNITS - 7 and resumed.run["units_reused_from_store"] == 7
    assert seen[0] == (0, UNITS - 7) and seen[-1] == (UNITS - 7, UNITS - 7)
    assert _numbers(resumed) == _numbers(reference[1])
    _assert_no_duplicates(tmp_path)
    again = evaluate(GRID, tmp_path, data=folder, models={})  # finished: no model is even built
    assert again.run["units_computed"] == 0 and _numbers(again) == _numbers(reference[1])


def test_torn_last_line_is_dropped(folder, models, reference, tmp_path):
    source, expected, _ = reference
    out = tmp_path / "run"
    shutil.copytree(source, out)
    store = out / STORE_FILENAME
    intact = store.read_bytes()
    store.write_bytes(intact + b'{"kind":"row","c":"ab')  # a write cut short
    results = evaluate(GRID, out, data=folder, models={})
    assert results.run["units_computed"] == 0 and results.run["store_repaired_bytes"] == 21
    assert store.read_bytes() == intact and _numbers(results) == _numbers(expected)

    cut = intact.rstrip(b"\n").rfind(b"\n") + 1 + 30  # inside the last commit line: the last unit is unfinished
    store.write_bytes(intact[:cut])
    results = evaluate(GRID, out, data=folder, models=models)
    assert results.run["units_computed"] == 1 and _numbers(results) == _numbers(expected)
    _assert_no_duplicates(out)


def test_a_store_written_with_version_1_keys_is_read_and_continued(folder, models, reference, tmp_path):
    source, expected, _ = reference
    out = tmp_path / "run"
    shutil.copytree(source, out)
    store = out / STORE_FILENAME
    old_names = {new: old for old, new in LEGACY_KEYS.items()}
    header, *records = _store_lines(out)
    old_lines = [json.dumps({**header, "version": 1})]
    old_lines += [json.dumps({old_names.get(k, k): v for k, v in record.items()}) for record in records]
    assert '"c":' in old_lines[1].replace(" ", "") and '"cell"' not in "".join(old_lines[1:])
    store.write_text("".join(line + "\n" for line in old_lines))
    results = evaluate(GRID, out, data=folder, models={})
    assert results.run["units_computed"] == 0 and _numbers(results) == _numbers(expected)

    last_commit = max(n for n, line in enumerate(old_lines) if '"kind": "commit"' in line)
    store.write_text("".join(line + "\n" for line in old_lines[:last_commit]))  # the last unit is unfinished
    results = evaluate(GRID, out, data=folder, models=models)
    assert results.run["units_computed"] == 1 and _numbers(results) == _numbers(expected)
    rows = [(r["cell"], r["image"]) for r in results.records]
    assert len(rows) == len(set(rows)) == CELLS * len(PHOTOS)
    appended = _store_lines(out)[last_commit:]
    assert appended and all("cell" in r and "c" not in r for r in appended)  # continued in today's names


def test_corrupt_line_inside_the_store_is_refused(reference, tmp_path):
    source, _, _ = reference
    shutil.copytree(source, tmp_path / "run")
    store = tmp_path / "run" / STORE_FILENAME
    lines = store.read_bytes().split(b"\n")
    lines[3] = lines[3][:10]
    store.write_bytes(b"\n".join(lines))
    digest = json.loads(lines[0])["config_hash"]
    with pytest.raises(StoreError, match="line 4 is corrupt"):
        ResultStore(store, digest)


def test_another_config_in_the_same_out_dir_is_refused(folder, reference):
    out, _, _ = reference
    other = {**GRID, "rounds": [1, 3]}
    with pytest.raises(StoreError, match="already holds results of another configuration"):
        evaluate(other, out, data=folder, models={})


def test_codec_weights_filled_in_later_then_retrained(folder, models, monkeypatch, tmp_path):
    """Cells skipped for missing weights are computed once the file exists; a changed file is refused."""
    from safetensors.torch import save_file

    from hac.codecs.compressai.zoo import random_model

    weights = tmp_path / "weights"
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(weights))
    config = {"name": "filled-in", "data": {"limit": 1}, "attacks": ["fgsm:eps=4/255"], "codecs": ["hac-hyperprior:q=1"]}
    skipped = evaluate(config, tmp_path / "run", data=folder, models=models)
    assert skipped.summary_rows()[-1]["status"].startswith("skipped: codec hac-hyperprior:q=1 unavailable")

    weights.mkdir()
    save_file(random_model("hac-hyperprior", 1).state_dict(), str(weights / "hac-hyperprior-q1.safetensors"))
    filled = evaluate(config, tmp_path / "run", data=folder, models=models)
    assert filled.run["units_computed"] == 1 and filled.summary_rows()[-1]["status"] == "done"
    (fingerprint,) = filled.run["codec_weights"].values()
    again = evaluate(config, tmp_path / "run", data=folder, models=models)
    assert again.run["units_computed"] == 0 and again.run["codec_weights"] == filled.run["codec_weights"]
    (weights / "hac-hyperprior-q1.safetensors").rename(tmp_path / "aside.safetensors")
    finished = evaluate(config, tmp_path / "run", data=folder, models=models)  # done cells need no weights
    assert finished.run["units_computed"] == 0 and finished.summary_rows()[-1]["status"] == "done"

    torch.manual_seed(1)
    save_file(random_model("hac-hyperprior", 1).state_dict(), str(weights / "hac-hyperprior-q1.safetensors"))
    with pytest.raises(StoreError, match=f"hac-hyperprior:q=1 computed with other weights \\(fingerprint {fingerprint}"):
        evaluate(config, tmp_path / "run", data=folder, models=models)
    retrained = evaluate(config, tmp_path / "fresh", data=folder, models=models)
    assert list(retrained.run["codec_weights"].values()) != [fingerprint]


def test_one_writer_per_store(reference):
    out, _, _ = reference
    digest = _store_lines(out)[0]["config_hash"]
    with ResultStore(out / STORE_FILENAME, digest):
        with pytest.raises(StoreError, match="another evaluation is writing"):
            ResultStore(out / STORE_FILENAME, digest)


@pytest.mark.slow
def test_kill_9_then_resume(folder, reference, tmp_path):
    config = tmp_path / "grid.json"
    config.write_text(json.dumps(GRID))
    out = tmp_path / "run"
    # One thread, as the reference: float sums (and so a borderline attack) depend on the thread count.
    code = (f"import torch; torch.set_num_threads(1); from hac.evaluation.runner import evaluate; "
            f"evaluate({str(config)!r}, {str(out)!r}, data={str(folder)!r})")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            store = out / STORE_FILENAME
            if store.exists() and store.read_bytes().count(b'"kind":"commit"') >= 4:
                break
            assert process.poll() is None, "the evaluation ended before it could be killed"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    results = evaluate(config, out, data=folder)
    assert 0 < results.run["units_computed"] < UNITS and _numbers(results) == _numbers(reference[1])
    _assert_no_duplicates(out)


# ---------------------------------------------------------------- data, skipping, bad input


def test_subset_ids_are_deterministic_and_recorded(folder, models, tmp_path):
    config = {**GRID, "data": {"limit": 4, "seed": 3}, "grid": [{"threats": ["oblivious"], "attacks": ["fgsm:eps=4/255"],
                                                                 "codecs": ["jpeg:q=50"], "rounds": [1]}]}
    first = evaluate(config, tmp_path / "a", data=folder, models=models)
    second = evaluate(config, tmp_path / "b", data=folder, models=models)
    assert first.image_ids == second.image_ids and len(first.image_ids) == 4
    other = evaluate({**config, "data": {"limit": 4, "seed": 4}}, None, data=folder, models=models)
    assert other.image_ids != first.image_ids
    first.write(tmp_path / "a")
    repeat = {**config, "data": {"ids_file": str(tmp_path / "a" / "image_ids.txt")}}
    assert evaluate(repeat, None, data=folder, models=models).image_ids == first.image_ids


def test_corrupt_images_are_skipped_and_counted(folder, models, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    (mixed / "n02123045" / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (mixed / "n07920052" / "zero.png").write_bytes(b"")
    config = {"name": "skip", "batch_size": 4, "attacks": ["fgsm:eps=4/255"], "codecs": ["jpeg:q=50"]}
    results = evaluate(config, tmp_path / "run", data=mixed, models=models)
    assert set(results.skipped_images) == {"n02123045/broken.JPEG", "n07920052/zero.png"}
    assert all(row["images"] == len(PHOTOS) for row in results.summary_rows())
    assert evaluate(config, tmp_path / "run", data=mixed, models={}).skipped_images == results.skipped_images


def test_missing_codec_weights_skip_their_cells(folder, models, monkeypatch, tmp_path):
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    config = {"name": "learned", "data": {"limit": 2}, "attacks": ["fgsm:eps=4/255"], "codecs": ["jpeg:q=50", "hac-hyperprior:q=1"]}
    rows = {r["codec"]: r for r in evaluate(config, tmp_path / "run", data=folder, models=models).summary_rows()}
    assert rows["jpeg:q=50"]["status"] == "done"
    assert rows["hac-hyperprior:q=1"]["status"].startswith("skipped: codec hac-hyperprior:q=1 unavailable: weights for")
    assert rows["hac-hyperprior:q=1"]["images"] == 0 and rows["hac-hyperprior:q=1"]["defended_acc"] is None


def test_restricting_logits_to_the_classes_present(folder, models):
    config = {"name": "restricted", "data": {"restrict_classes": True}, "attacks": ["fgsm:eps=1/255"], "codecs": ["jpeg:q=75"]}
    restricted = evaluate(config, None, data=folder, models=models)
    full = evaluate({**config, "data": {}}, None, data=folder, models=models)
    assert restricted.summary_rows()[0]["clean_acc"] >= full.summary_rows()[0]["clean_acc"]
    assert restricted.summary_rows()[0]["clean_acc"] >= 5 / 6  # 6 classes; the astronaut is not a tench
    assert {r["label"] for r in restricted.records} == {281, 967, 657, 665, 872, 0}  # labels stay ImageNet indices


def test_empty_and_unknown_folders(tmp_path, folder):
    config = {"name": "x", "attacks": ["fgsm"], "codecs": ["jpeg"]}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found in"):
        evaluate(config, None, data=tmp_path / "empty")
    unknown = tmp_path / "unknown"
    shutil.copytree(folder / "n02123045", unknown / "n12345678")
    with pytest.raises(ValueError, match="n12345678 are not ImageNet-1k synsets"):
        evaluate(config, None, data=unknown)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"attacks": ["fgsm:eps=4/255", {"name": "pgd", "eps": -1}]}, "config key 'attacks[1].eps': must be positive, got -1"),
        ({"attacks": ["pgd:eps=four"]}, "config key 'attacks[0].eps': must be a number"),
        ({"attacks": [{"name": "pgd", "stpes": 3}]}, "config key 'attacks[0]': attack 'pgd' has no parameter(s) stpes"),
        ({"attacks": ["zoo"]}, "config key 'attacks[0].name': unknown attack 'zoo'; valid choices:"),
        ({"codecs": ["jpg:q=3"]}, "config key 'codecs[0]': unknown codec 'jpg'; valid choices:"),
        ({"codecs": [{"name": "jpeg", "quality": [3]}]}, "config key 'codecs[0]': codec 'jpeg' has no parameter(s) quality"),
        ({"rounds": [1, 0]}, "config key 'rounds[1]': must be an integer in [1, 50], got 0"),
        ({"threats": ["whitebox"]}, "config key 'threats[0]': unknown threat model 'whitebox'"),
        ({"classifier": "vgg"}, "config key 'classifier': unknown classifier 'vgg'"),
        ({"grid": [{"threats": ["bpda"]}, {"attacks": [{"name": "fgsm", "eps": 0}]}]}, "config key 'grid[1].attacks[0].eps': must be positive"),
        ({"batchsize": 4}, "config key 'batchsize': unknown key; valid keys:"),
        ({"data": {"limit": -2}}, "config key 'data.limit': must be a positive integer, got -2"),
        ({"max_cells": 10}, "config key 'max_cells': the grid has 16 cells"),
        ({"attacks": []}, "config key 'attacks': must not be empty"),
    ],
)
def test_invalid_config_names_the_key(change, message):
    with pytest.raises(ConfigError) as error:
        load_config({**GRID, **change})
    assert message in str(error.value)


def test_bad_codec_value_is_reported_before_any_work(folder):
    with pytest.raises(ConfigError, match=r"config key 'codecs\[0\]': jpeg quality q must be an integer in \[1, 95\]"):
        evaluate({"name": "x", "attacks": ["fgsm"], "codecs": [{"name": "jpeg", "q": [500]}]}, None, data=folder, models={})


def test_a_batch_config_sweeps_the_scale_and_refuses_a_bad_one_before_any_work(folder):
    config = load_config({"name": "t", "codecs": [{"name": "jpeg", "q": [30], "scale": [1, 0.75]}], "attacks": ["fgsm"]})
    assert list(config.codec_choices()) == ["jpeg:q=30,scale=1", "jpeg:q=30,scale=0.75"]
    with pytest.raises(ConfigError, match=r"config key 'codecs\[0\]': codec scale must be a number in \[0.25, 1\]"):
        evaluate({"name": "t", "attacks": ["fgsm"], "codecs": ["jpeg:q=30,scale=2"]}, None, data=folder, models={})


def test_presets_and_the_paper_config_file():
    smoke = load_config("smoke")
    assert [c.key for c in smoke.cells()] == [
        "efficientnet-lite0 | none | fgsm:eps=4/255 | none x0",
        "efficientnet-lite0 | oblivious | fgsm:eps=4/255 | jpeg:q=50 x1",
    ] and smoke.data.limit == 4
    from_file = load_config(ROOT / "configs" / "hac-paper-small.yaml")
    preset = load_config("hac-paper-small")
    assert from_file.cells() == preset.cells() and from_file.data == preset.data and from_file.batch_size == preset.batch_size
    threats = {c.threat for c in preset.cells()}
    assert threats == {"none", "oblivious", "bpda"} and preset.data.limit == 200
    with pytest.raises(FileNotFoundError, match="config file not found: nope.yaml"):
        load_config("nope.yaml")
    assert set(PRESETS) >= {"smoke", "hac-paper-small"}


# ---------------------------------------------------------------- CLI


def test_cli_runs_the_smoke_preset(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["eval", "--preset", "smoke", "--data", str(folder), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert {"summary.csv", "results.json", "rows.jsonl", "accuracy_vs_eps.png"} <= {p.name for p in out.iterdir()}
    assert main(["eval", "--preset", "smoke", "--data", str(folder), "--out", str(out)]) == 0  # finished: from the store
    printed = capsys.readouterr().out
    assert "threat     attack          codec      rnd  n  clean" in printed
    assert "0 units computed, 2 taken from the store" in printed and "attack calls: 1 (a cell-by-cell run needs 2)" in printed


def test_cli_compares_codecs_image_by_image(folder, tmp_path, capsys):
    config = tmp_path / "two.yaml"
    config.write_text("name: two\nbatch_size: 3\ncodecs: [jpeg:q=10, jpeg:q=90]\nattacks: [fgsm:eps=4/255]\n")
    out = tmp_path / "run"
    args = ["eval", "--config", str(config), "--data", str(folder), "--out", str(out), "--no-plots"]
    assert main([*args, "--compare-to", "webp:q=50"]) == 2  # refused before anything runs
    assert "'webp:q=50' is not a codec of this evaluation; its codecs: jpeg:q=10, jpeg:q=90" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--compare-to", "jpeg:q=90"]) == 0
    assert "against jpeg:q=90, image by image" in capsys.readouterr().out
    lines = (out / "paired.csv").read_text().splitlines()
    assert lines[0].startswith("classifier,threat,attack,rounds,measure,codec,reference,images,accuracy")
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert [(r["codec"], r["measure"]) for r in rows] == [("jpeg:q=10", "defended"), ("jpeg:q=10", "clean_defended")]
    store = [r for r in _store_lines(out) if r["kind"] == "row"]
    cells = {c.codec: c.id for c in load_config(config).cells() if not c.is_baseline}
    outcome = {(r["cell"], r["image"]): r["defended"] for r in store if "defended" in r}  # baseline rows have none
    only_low = sum(outcome[cells["jpeg:q=10"], i] > outcome[cells["jpeg:q=90"], i] for i in [r["image"] for r in store if r["cell"] == cells["jpeg:q=10"]])
    assert int(rows[0]["only_codec"]) == only_low and int(rows[0]["images"]) == len(PHOTOS)


def test_cli_errors_are_one_line(folder, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncodecs: [jpeg:q=50]\nattacks:\n  - {name: pgd, eps: -1}\n")
    assert main(["eval", "--config", str(bad), "--data", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "error: config key 'attacks[0].eps': must be positive, got -1" in err and "Traceback" not in err
    assert main(["eval", "--preset", "smoke", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "data folder not found" in capsys.readouterr().err


# ---------------------------------------------------------------- real data


@pytest.mark.shared_data
@pytest.mark.slow
def test_small_grid_on_real_imagenet_images(shared_dir, models, tmp_path):
    config = {
        "name": "shared-check", "data": {"limit": 40, "seed": 0}, "batch_size": 20,
        "attacks": [{"name": "pgd", "eps": "4/255", "steps": 10}], "codecs": ["jpeg:q=50"], "rounds": [1],
        "threats": ["oblivious", "bpda"],
    }
    results = evaluate(config, tmp_path, data=shared_dir / "data" / "imagenet-val-1300", models=models)
    rows = {r["threat"]: r for r in results.summary_rows()}
    assert rows["none"]["images"] == 40
    assert rows["none"]["clean_acc"] >= 0.65
    assert rows["none"]["adv_acc"] <= 0.05
    assert rows["oblivious"]["defended_acc"] >= rows["none"]["adv_acc"] + 0.3
    assert rows["bpda"]["defended_acc"] < rows["oblivious"]["defended_acc"]  # the adaptive attack is stronger
    assert 0.5 < rows["oblivious"]["clean_bpp"] < 3 and 25 < rows["oblivious"]["clean_psnr"] < 40
