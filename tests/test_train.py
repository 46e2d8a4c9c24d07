"""Mechanics of hac.training on tiny generated images and tiny models (offline, no ../shared)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hac.training import (
    CheckpointError,
    ImageBank,
    TrainConfig,
    build_model,
    export,
    load_checkpoint,
    load_model_weights,
    lr_factor,
    train,
)
from hac.cli.train import main

safetensors = pytest.importorskip("safetensors")
from PIL import Image  # noqa: E402


def _smooth_image(generator: torch.Generator, size: int) -> torch.Tensor:
    """A smooth random RGB image: upsampled low-resolution noise plus a gradient, uint8 (H, W, 3)."""
    low = torch.rand(1, 3, 6, 6, generator=generator)
    image = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0]
    ramp = torch.linspace(0, 0.3, size)
    image = (0.7 * image + ramp.view(1, 1, -1)).clamp(0, 1)
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    generator = torch.Generator().manual_seed(0)
    for i in range(12):
        sub = folder / ("a" if i % 2 else "b")  # recursive search
        sub.mkdir(exist_ok=True)
        suffix = ".png" if i % 3 else ".jpg"
        Image.fromarray(_smooth_image(generator, 80).numpy()).save(sub / f"img{i}{suffix}", quality=95)
    return folder


def _config(image_dir: Path, run_dir: Path, **overrides) -> TrainConfig:
    values = dict(
        data=str(image_dir), run_dir=str(run_dir), N=16, M=16, lmbda=0.01, crop=64, batch_size=4,
        steps=40, lr=1e-3, log_every=1, checkpoint_every=10, snapshot_every=0, eval_every=0, threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def _train_records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def test_image_bank_crops_are_seeded_and_in_range(image_dir):
    bank = ImageBank(image_dir, crop=64)
    assert bank.count == 12
    a = bank.sample(5, torch.Generator().manual_seed(3))
    b = bank.sample(5, torch.Generator().manual_seed(3))
    assert a.shape == (5, 3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1


def test_image_bank_leaves_out_listed_images_and_refuses_unknown_ones(image_dir):
    names = sorted(path.relative_to(image_dir).as_posix() for path in image_dir.rglob("*.*"))
    bank = ImageBank(image_dir, crop=64, exclude=names[:5])
    assert bank.count == 7
    kept = {tuple(img.shape) for img in bank.images}
    assert kept == {(3, 80, 80)}
    with pytest.raises(ValueError, match="1 excluded image\\(s\\) are not under .*'a/nothing.png'"):
        ImageBank(image_dir, crop=64, exclude=["a/nothing.png"])


def test_training_lowers_the_loss(image_dir, tmp_path):
    run_dir = tmp_path / "run"
    path = train(_config(image_dir, run_dir))
    assert path == run_dir / "checkpoint.pt" and path.is_file()
    losses = [r["loss"] for r in _train_records(run_dir)]
    assert len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert (run_dir / "train.log").read_text().count("step 40 loss") == 1


def test_resume_continues_the_step_count(image_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(image_dir, run_dir, steps=10, checkpoint_every=5))
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 10
    with pytest.raises(FileExistsError, match="resume"):
        train(_config(image_dir, run_dir, steps=10))
    train(_config(image_dir, run_dir, steps=16), resume=True)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["step"] == 16
    assert ckpt["scheduler"]["last_epoch"] == 16
    steps = [r["step"] for r in _train_records(run_dir)]
    assert steps == list(range(1, 17))


def test_resume_through_the_cli(image_dir, tmp_path):
    run_dir = tmp_path / "run"
    common = ["--run-dir", str(run_dir), "--threads", "1", "--log-every", "1"]
    new = ["--data", str(image_dir), "--N", "16", "--M", "16", "--crop", "64", "--batch-size", "2", "--steps", "3"]
    assert main([*common, *new]) == 0
    assert main([*common, "--resume", "--steps", "5"]) == 0
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["step"] == 5 and ckpt["config"]["N"] == 16


def test_a_packed_run_is_smaller_and_resumes_where_it_stopped(image_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hac.cli.train")
    run_dir, packed_dir, full_copy = tmp_path / "run", tmp_path / "packed", tmp_path / "full"
    records = tmp_path / "training-state" / "run"
    train(_config(image_dir, run_dir, steps=10, checkpoint_every=5, N=32, M=32))
    full_copy.mkdir()
    (full_copy / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    assert main(["pack", str(run_dir), "--out", str(records), "--checkpoint-to", str(packed_dir)]) == 0
    assert [p.name for p in sorted(records.iterdir())] == ["config.json", "metrics.jsonl", "train.log"]
    assert f"the checkpoint stays in {run_dir / 'checkpoint.pt'}, outside git" in caplog.text
    packed = packed_dir / "checkpoint.pt"
    assert packed.stat().st_size < 0.45 * (run_dir / "checkpoint.pt").stat().st_size
    assert [p.name for p in sorted(packed_dir.iterdir())] == ["checkpoint.pt", "config.json", "metrics.jsonl", "train.log"]
    ckpt = load_checkpoint(packed)
    assert ckpt["step"] == 10 and ckpt["model"]["g_a.0.weight"].dtype == torch.float16
    assert ckpt["model"]["entropy_bottleneck.quantiles"].dtype == torch.float32
    assert ckpt["optimizer"]["state"][0]["exp_avg_sq"].dtype == torch.bfloat16
    assert "exp_avg" not in ckpt["optimizer"]["state"][0]

    # both resumed at a gentler lr, so that the comparison is not swamped by the tiny model's own noise
    train(_config(image_dir, packed_dir, steps=20, N=32, M=32, lr=2e-4), resume=True)
    train(_config(image_dir, full_copy, steps=20, N=32, M=32, lr=2e-4), resume=True)
    resumed = {d: load_checkpoint(d / "checkpoint.pt") for d in (packed_dir, full_copy)}
    assert resumed[packed_dir]["step"] == 20
    assert resumed[packed_dir]["model"]["g_a.0.weight"].dtype == torch.float32  # float32 again once resumed
    assert "exp_avg" in resumed[packed_dir]["optimizer"]["state"][0]
    packed_losses = [r["loss"] for r in _train_records(packed_dir) if r["step"] > 10]
    full_losses = [r["loss"] for r in _train_records(full_copy) if r["step"] > 10]
    assert len(packed_losses) == len(full_losses) == 10
    # the first resumed step sees the same batch (the RNG state travels) through float16-rounded weights
    assert packed_losses[0] == pytest.approx(full_losses[0], rel=5e-3)
    # then Adam's restarted first moments make the runs drift apart a little (observed 5.7 % on this tiny model)
    assert sum(packed_losses) == pytest.approx(sum(full_losses), rel=0.10)


def test_pack_copies_the_records_for_the_repository_and_leaves_the_checkpoint(image_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hac.cli.train")
    run_dir, records = tmp_path / "runs" / "r", tmp_path / "training-state" / "r"
    train(_config(image_dir, run_dir, steps=2))
    assert main(["pack", str(run_dir), "--out", str(records)]) == 0
    assert [p.name for p in sorted(records.iterdir())] == ["config.json", "metrics.jsonl", "train.log"]
    assert (records / "metrics.jsonl").read_bytes() == (run_dir / "metrics.jsonl").read_bytes()
    assert (run_dir / "checkpoint.pt").is_file()
    assert f"resume: hac train --resume --run-dir {run_dir}" in caplog.text


def test_a_run_folder_in_the_committed_records_is_refused(image_dir, tmp_path):
    with pytest.raises(ValueError, match=r"is inside training-state/, which is committed: checkpoints go to a run folder outside git"):
        train(_config(image_dir, tmp_path / "training-state" / "r", steps=1))
    assert not (tmp_path / "training-state").exists()


def test_packing_a_folder_without_a_checkpoint_names_it(tmp_path, caplog):
    assert main(["pack", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert f"checkpoint not found: {tmp_path / 'nothing' / 'checkpoint.pt'}" in caplog.text
    assert not (tmp_path / "out").exists()


def test_a_time_limit_saves_and_stops_and_the_run_resumes(image_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(_config(image_dir, run_dir, steps=10_000, checkpoint_every=0), max_minutes=0.02)  # ~1 s of steps
    stopped = load_checkpoint(run_dir / "checkpoint.pt")["step"]
    assert 0 < stopped < 10_000
    assert f"time limit reached; saving and stopping at step {stopped}" in (run_dir / "train.log").read_text()
    assert main(["--run-dir", str(run_dir), "--resume", "--steps", str(stopped + 3), "--max-minutes", "5"]) == 0
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == stopped + 3
    with pytest.raises(ValueError, match="max_minutes=0 must be positive"):
        train(_config(image_dir, tmp_path / "other"), max_minutes=0)


def test_lr_schedule_steps_down_near_the_end():
    config = TrainConfig(data="", run_dir="", steps=100, lr_decay_at=0.9, warmup_steps=10)
    assert lr_factor(0, config) == pytest.approx(0.1)
    assert lr_factor(50, config) == 1.0
    assert lr_factor(95, config) == pytest.approx(0.1)


def test_export_reloads_bit_exactly_with_metadata(image_dir, tmp_path):
    from compressai.models import MeanScaleHyperprior
    from safetensors import safe_open
    from safetensors.torch import load_file

    run_dir = tmp_path / "run"
    ckpt_path = train(_config(image_dir, run_dir, steps=4))
    weights = export(ckpt_path, tmp_path / "weights", quality=3, eval_dir=image_dir, eval_images=2)
    assert weights.name == "hac-hyperprior-q3.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        meta = handle.metadata()
    assert meta == {"architecture": "mbt2018-mean", "N": "16", "M": "16", "lambda": "0.01", "steps": "4"}
    state = load_file(str(weights))
    model = MeanScaleHyperprior.from_state_dict(state)
    reloaded = model.state_dict()
    assert set(reloaded) == set(state)
    for key, tensor in state.items():
        assert torch.equal(reloaded[key], tensor), key
    assert state["gaussian_conditional._quantized_cdf"].numel() > 0  # update(force=True) happened
    card = (tmp_path / "weights" / "hac-hyperprior-q3.md").read_text()
    assert "λ" in card and "steps | 4" in card and "bpp" in card and "JPEG" in card
    # the exported file also initialises a fine-tuning run
    fresh = build_model("mbt2018-mean", 16, 16)
    load_model_weights(fresh, weights)
    x = torch.rand(1, 3, 64, 64)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x)["x_hat"], fresh(x)["x_hat"])


def test_half_export_halves_the_transforms_and_keeps_the_entropy_models(image_dir, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from hac.codecs import create_codec

    ckpt_path = train(_config(image_dir, tmp_path / "run", steps=4))
    full = export(ckpt_path, tmp_path / "full", quality=3)
    half = export(ckpt_path, tmp_path / "half", quality=3, eval_dir=image_dir, eval_images=2, half=True)
    full_state, half_state = load_file(str(full)), load_file(str(half))
    assert set(full_state) == set(half_state)
    for key, tensor in half_state.items():
        kept = key.startswith(("entropy_bottleneck", "gaussian_conditional")) or not tensor.is_floating_point()
        assert tensor.dtype == (full_state[key].dtype if kept else torch.float16), key
        if kept:
            assert torch.equal(tensor, full_state[key]), key
    with safe_open(str(half), framework="pt") as handle:
        assert handle.metadata()["dtype"].startswith("float16")
    assert "float16" in (tmp_path / "half" / "hac-hyperprior-q3.md").read_text()
    # the codec loads it as float32 and codes real bitstreams close to the full-precision export
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    outputs = [create_codec(f"hac-hyperprior:q=3,weights={path}")(x) for path in (full, half)]
    assert next(create_codec(f"hac-hyperprior:q=3,weights={half}").parameters()).dtype == torch.float32
    assert (outputs[0].x_hat - outputs[1].x_hat).abs().max() < 0.05
    assert outputs[1].bpp.item() == pytest.approx(outputs[0].bpp.item(), rel=0.05)


def test_mismatched_checkpoint_names_the_keys(image_dir, tmp_path):
    ckpt_path = train(_config(image_dir, tmp_path / "run", steps=2))
    other = build_model("bmshj2018-hyperprior", 16, 16)
    with pytest.raises(CheckpointError, match=r"do not fit ScaleHyperprior: h_s\.2\.weight has shape \(16, 24, 5, 5\)"):
        load_model_weights(other, ckpt_path)  # same key names as mbt2018-mean, other shapes
    ckpt = load_checkpoint(ckpt_path)
    del ckpt["model"]["g_s.0.weight"]
    ckpt["model"]["g_s.bogus"] = torch.zeros(1)
    broken = tmp_path / "broken.pt"
    torch.save(ckpt, broken)
    with pytest.raises(CheckpointError, match=r"missing keys: g_s\.0\.weight; unexpected keys: g_s\.bogus"):
        load_model_weights(build_model("mbt2018-mean", 16, 16), broken)
    with pytest.raises(CheckpointError, match=r"quantiles has shape \(16, 1, 3\), the model expects \(24, 1, 3\).*in all\)"):
        load_model_weights(build_model("mbt2018-mean", 24, 16), ckpt_path)


def test_corrupt_checkpoint_gives_a_clear_error(image_dir, tmp_path):
    ckpt_path = train(_config(image_dir, tmp_path / "run", steps=2))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(ckpt_path.read_bytes()[: 5000])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(corrupt)
    with pytest.raises(CheckpointError, match="not a hac training checkpoint"):
        torch.save({"model": {}}, tmp_path / "plain.pt")
        load_checkpoint(tmp_path / "plain.pt")


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="crop=96 must be a positive multiple of 64"):
        TrainConfig(data="", run_dir="", crop=96).validate()
    with pytest.raises(ValueError, match="unknown architecture 'nope'.*bmshj2018-hyperprior, comdefend, mbt2018-mean"):
        TrainConfig(data="", run_dir="", architecture="nope").validate()
    with pytest.raises(ValueError, match="adv_latent_weight=-1 must be >= 0"):
        TrainConfig(data="", run_dir="", adversarial=True, adv_latent_weight=-1).validate()
    with pytest.raises(ValueError, match="adv_rate_gap_weight=2 must be >= 0, and needs --adversarial"):
        TrainConfig(data="", run_dir="", adv_rate_gap_weight=2).validate()
