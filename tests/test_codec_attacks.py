"""Attacks on the codecs themselves (hac.attacks.codec_attacks, hac.training.adversarial, ``codec-attack``).

Offline and small. Three kinds of learned model are used:

* *calibrated* random models (as in test_learned_codecs.py): random weights with
  the latents spread over several quantisation bins and scales predicted at that
  spread, so that rates are not all rANS overhead; their reconstructions are
  junk (about 5 dB), so they serve the rate and bookkeeping tests;
* a *transparent* toy codec for the distortion test: the analysis transform is a
  4x4 pixel-unshuffle times 64 (a uniform quantiser with step 1/64 per pixel),
  the synthesis its inverse, the entropy model random-initialised. Its clean
  PSNR is about 46 dB. Note: with coarse steps (1/8) the straight-through
  distortion gradient is useless on such a codec (rounding's error points to the
  centre of the bin; observed drop 0 % while random signs of the same size give
  2.7 %); with step 1/64 PGD beats random signs (observed 26.5 % vs 23.1 % drop);
* a tiny trainable MeanScaleHyperprior for adversarial fine-tuning (mechanics only).

JPEG is attacked on real photographs (scikit-image's chelsea and coffee crops).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from compressai.models import (
    CompressionModel,
    Cheng2020Anchor,
    FactorizedPrior,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from PIL import Image
from torch import nn

from hac.training.adversarial import (
    AdversarialTrainingSettings,
    adversarial_batch,
    adversarial_inputs,
    attacked_rows,
    latent_shift,
    rate_gap,
    rd_cost,
    robustness_report,
)
from hac.cli import main
from hac.attacks.codec_attacks import (
    CodecAttackResult,
    CodecAttackSettings,
    attack_codec,
    evaluate_codec_attack,
    objective_function,
)
from hac.attacks.codec_attacks import _signed_steps
from hac.codecs import create_codec
from hac.codecs.compressai.codec import CompressAICodec
from hac.core.metrics import bits_per_pixel
from hac.core.images import load_image
from hac.codecs.jpeg_rate import jpeg_quantization_tables, jpeg_rate_proxy
from hac.core.metrics import psnr
from random_codecs import Gain, calibrated

FAMILIES = {
    "factorized": lambda: FactorizedPrior(16, 16),
    "scale": lambda: ScaleHyperprior(16, 16),
    "mean-scale": lambda: MeanScaleHyperprior(16, 16),
    "autoregressive": lambda: JointAutoregressiveHierarchicalPriors(16, 16),
    "cheng2020-anchor": lambda: Cheng2020Anchor(16),
}


def transparent(step: float = 1 / 64) -> CompressionModel:
    """A factorized-prior codec that quantises pixels (4x4 unshuffled) with ``step``; random entropy model."""
    model = FactorizedPrior(48, 48)
    model.g_a = nn.Sequential(nn.PixelUnshuffle(4), Gain(1 / step))
    model.g_s = nn.Sequential(Gain(step), nn.PixelShuffle(4))
    return model.eval()


def grid_images(*shape: int, seed: int = 0) -> torch.Tensor:
    """Random 8-bit valued images in [0, 1]."""
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float() / 255


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def crops(photo_dir) -> torch.Tensor:
    """Two real 64x64 photo crops (8-bit valued)."""
    return torch.stack([load_image(photo_dir / name)[:, 100:164, 100:164] for name in ("chelsea.png", "coffee.png")])


# --------------------------------------------------------------------------- the surrogate


@pytest.mark.parametrize("family", FAMILIES)
def test_rd_surrogate_has_fast_modes_values_and_gradients(family: str) -> None:
    x = grid_images(2, 3, 70, 50)
    codec = CompressAICodec(calibrated(FAMILIES[family](), x))
    fast = codec(x)
    x_in = x.clone().requires_grad_(True)
    x_hat, bits = codec.rd_surrogate(x_in)
    assert x_hat.shape == x.shape and bits.shape == (2,)
    assert torch.equal(x_hat.detach(), fast.x_hat)  # observed: identical
    assert torch.allclose(bits.detach().double(), fast.bpp.double() * 70 * 50, rtol=1e-5, atol=1e-3)
    (gradient,) = torch.autograd.grad(bits.sum() + x_hat.sum(), x_in)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_rd_surrogate_ignores_the_training_flag() -> None:
    x = grid_images(1, 3, 64, 64)
    model = calibrated(MeanScaleHyperprior(16, 16), x)
    codec = CompressAICodec(model)
    reference = codec.rd_surrogate(x)
    model.train()  # noise instead of rounding in CompressAI's own forward, not here
    again = codec.rd_surrogate(x)
    assert torch.equal(reference[0], again[0]) and torch.equal(reference[1], again[1])


# --------------------------------------------------------------------------- learned codecs


def test_rate_attack_raises_estimated_and_real_bits() -> None:
    x = grid_images(2, 3, 64, 64, seed=1)
    codec = CompressAICodec(calibrated(MeanScaleHyperprior(16, 16), x))
    result, x_adv = evaluate_codec_attack(codec, x, CodecAttackSettings("rate", 4 / 255, "pgd", steps=5))
    with torch.no_grad():
        clean_bits, adv_bits = codec.rd_surrogate(x)[1], codec.rd_surrogate(x_adv)[1]
    assert (adv_bits > clean_bits * 1.02).all()  # observed +5.1 % and +5.3 %
    assert (result.adv_bpp > result.clean_bpp * 1.01).all()  # real bitstream; observed +5.3 %
    assert (result.bpp_ratio > 1.01).all()


def test_distortion_attack_lowers_psnr_more_than_noise(crops) -> None:
    codec = CompressAICodec(transparent())
    attacked, _ = evaluate_codec_attack(codec, crops, CodecAttackSettings("distortion", 4 / 255, "pgd", steps=5))
    noise, _ = evaluate_codec_attack(codec, crops, CodecAttackSettings("distortion", 4 / 255, "noise"),
                                     generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert 44 < attacked.clean_psnr.mean() < 49  # observed 46.5 dB
    assert (attacked.adv_psnr < attacked.clean_psnr - 5).all()  # observed 34.1 dB
    assert (attacked.psnr_drop > 0).all()
    assert attacked.adv_psnr.mean() < noise.adv_psnr.mean() - 0.5  # observed 34.1 vs 35.7 dB


def test_shift_moves_every_pixel_towards_mid_grey_and_starts_keep_the_worst(crops) -> None:
    x = torch.stack([torch.full((3, 16, 16), 40 / 255), torch.full((3, 16, 16), 200 / 255)])
    shifted = attack_codec(CompressAICodec(transparent()), x, CodecAttackSettings("distortion", 4 / 255, "shift"))
    assert torch.allclose((shifted - x)[0], torch.full((3, 16, 16), 4 / 255), atol=1e-6)  # dark image: brighter
    assert torch.allclose((shifted - x)[1], torch.full((3, 16, 16), -4 / 255), atol=1e-6)  # light image: darker

    codec = CompressAICodec(transparent())
    objective = objective_function(codec, "distortion", crops)
    values = {}
    for starts in [("zero",), ("shift",), ("zero", "shift")]:
        x_adv = attack_codec(codec, crops, CodecAttackSettings("distortion", 4 / 255, "pgd", steps=3, starts=starts))
        with torch.no_grad():
            values[starts] = objective(x_adv)
    both = values["zero", "shift"]
    assert torch.equal(both, torch.maximum(values["zero",], values["shift",]))  # per image, the worse run
    assert not torch.equal(values["zero",], values["shift",])  # the two starts end in different places
    with torch.no_grad():
        at_shift = objective(attack_codec(codec, crops, CodecAttackSettings("distortion", 4 / 255, "shift")))
    assert (values["shift",] >= at_shift).all()  # PGD never ends worse than where it started


def test_pgd_keeps_its_best_iterate_when_a_step_overshoots() -> None:
    x = torch.full((2, 3, 4, 4), 0.5)
    eps = 4 / 255
    objective = lambda x_adv: -((x_adv - x - 0.3 * eps) ** 2).flatten(1).mean(1)  # best at delta = 0.3 eps
    last, _ = _signed_steps(objective, x, torch.zeros_like(x), 1, eps, eps)
    best, value = _signed_steps(objective, x, torch.zeros_like(x), 1, eps, eps, keep_best=True)
    assert torch.allclose(last, torch.full_like(x, eps))  # the one signed step overshoots to eps
    assert torch.equal(best, torch.zeros_like(x))  # the start was better, and is kept
    assert torch.allclose(value, objective(x))


@pytest.mark.parametrize(
    "settings",
    [
        CodecAttackSettings("rate", 3 / 255, "pgd", steps=3, starts="random,zero"),
        CodecAttackSettings("distortion", 3 / 255, "pgd", steps=2, starts=("shift",)),
        CodecAttackSettings("distortion", 4 / 255, "shift"),
        CodecAttackSettings("distortion", 2 / 255, "fgsm"),
        CodecAttackSettings("rate", 8 / 255, "noise"),
    ],
    ids=lambda s: s.describe(),
)
def test_budget_range_and_grid_are_respected(settings: CodecAttackSettings) -> None:
    x = grid_images(2, 3, 64, 64, seed=2)
    x[:, :, :8] = 0.0  # saturated pixels: the clamp to [0, 1] must hold
    x[:, :, -8:] = 1.0
    codec = CompressAICodec(calibrated(MeanScaleHyperprior(16, 16), x))
    x_adv = attack_codec(codec, x, settings, torch.Generator().manual_seed(0))
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= settings.eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv * 255, torch.round(x_adv * 255))
    assert (x_adv != x).any()


def test_reported_numbers_come_from_the_real_bitstream() -> None:
    x = grid_images(2, 3, 64, 64, seed=3)
    model = calibrated(MeanScaleHyperprior(16, 16), x)
    codec = CompressAICodec(model, mode="fast")
    result, x_adv = evaluate_codec_attack(codec, x, CodecAttackSettings("rate", 4 / 255, steps=3))
    for index in range(2):
        with torch.no_grad():
            encoded = model.compress(x_adv[index : index + 1])
            decoded = model.decompress(encoded["strings"], encoded["shape"])["x_hat"].clamp(0, 1)
        bits = 8 * sum(len(strings[0]) for strings in encoded["strings"])
        assert result.adv_bpp[index].item() == pytest.approx(bits / (64 * 64), rel=1e-6)
        expected = psnr(torch.round(decoded * 255) / 255, x[index : index + 1])
        assert result.adv_psnr[index].item() == pytest.approx(expected.item(), abs=1e-4)
    # and not from the surrogate's estimate, which differs from the real rate
    with torch.no_grad():
        estimate = codec.rd_surrogate(x_adv)[1] / (64 * 64)
    assert not torch.allclose(estimate, result.adv_bpp, rtol=1e-4, atol=0)


# --------------------------------------------------------------------------- JPEG


def test_jpeg_tables_are_pillows(tmp_path) -> None:
    array = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    for quality in (1, 10, 25, 50, 75, 95):
        path = tmp_path / f"q{quality}.jpg"
        Image.fromarray(array).save(path, quality=quality)
        with Image.open(path) as image:
            tables = image.quantization
        ours = jpeg_quantization_tables(quality).int()
        assert list(tables[0]) == ours[0].flatten().tolist()
        assert list(tables[1]) == ours[1].flatten().tolist()


def test_jpeg_rate_proxy_follows_the_real_rate(photo_dir) -> None:
    x = torch.stack([load_image(photo_dir / name)[:, :128, :128] for name in ("chelsea.png", "coffee.png", "camera.png")])
    real = create_codec("jpeg:q=25")(x).bpp
    proxy = jpeg_rate_proxy(x, 25)
    assert proxy.shape == (3,)
    assert torch.equal(torch.argsort(real), torch.argsort(proxy))


@pytest.mark.parametrize("objective", ["distortion", "rate"])
def test_jpeg_attacks_move_the_real_numbers(crops, objective: str) -> None:
    codec = create_codec("jpeg:q=25")
    result, _ = evaluate_codec_attack(codec, crops, CodecAttackSettings(objective, 4 / 255, "pgd", steps=5))
    if objective == "distortion":
        # observed drops of 0.04 % and 2.1 % (kornia's differentiable JPEG is a loose surrogate)
        assert (result.adv_psnr < result.clean_psnr).all() and result.psnr_drop.mean() > 0.5
    else:
        assert (result.bpp_ratio > 1.03).all()  # observed x1.06 and x1.05


# --------------------------------------------------------------------------- settings and results


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eps": -4 / 255}, r"eps must be a number in \(0, 1\]"),
        ({"eps": 0}, r"eps must be a number in \(0, 1\]"),
        ({"objective": "psnr"}, "unknown codec-attack objective 'psnr'; valid: distortion, rate"),
        ({"method": "cw"}, "unknown codec-attack method 'cw'"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"alpha": -1.0}, "alpha"),
        ({"starts": "zero,middle"}, "PGD starts must be distinct values of zero, random, shift"),
        ({"starts": ()}, "PGD starts must be distinct"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CodecAttackSettings(**kwargs)


def test_unsupported_codec_and_off_grid_input_are_refused() -> None:
    with pytest.raises(ValueError, match="no differentiable rate estimate"):
        attack_codec(create_codec("webp:q=50"), grid_images(1, 3, 32, 32), CodecAttackSettings("rate"))
    with pytest.raises(ValueError, match="8-bit valued"):
        attack_codec(create_codec("jpeg:q=50"), torch.full((1, 3, 32, 32), 0.5), CodecAttackSettings())
    with pytest.raises(ValueError, match="fraction"):
        AdversarialTrainingSettings(fraction=1.5)
    with pytest.raises(ValueError, match="unknown codec-attack objective 'noise'"):
        AdversarialTrainingSettings(objectives="distortion,noise")


def test_results_join_and_serialise() -> None:
    x = grid_images(1, 3, 32, 32)
    codec = create_codec("jpeg:q=50")
    settings = CodecAttackSettings("rate", 2 / 255, "fgsm")
    parts = [evaluate_codec_attack(codec, x, settings)[0] for _ in range(2)]
    joined = CodecAttackResult.concat(parts)
    assert joined.images == 2
    record = json.loads(json.dumps(joined.to_dict()))
    assert record["codec"] == "jpeg:q=50" and record["eps_255"] == pytest.approx(2)
    assert len(record["per_image"]["bpp_ratio"]) == 2
    assert record["psnr_drop_pct"] == pytest.approx(joined.psnr_drop.double().mean().item())


# --------------------------------------------------------------------------- adversarial training


def test_adversarial_batch_mixes_and_keeps_the_model_as_it_was() -> None:
    x = grid_images(4, 3, 64, 64, seed=4)
    model = calibrated(MeanScaleHyperprior(16, 16), x).train()
    settings = AdversarialTrainingSettings(eps=4 / 255, steps=2, objectives=("distortion", "rate"), fraction=0.5)
    mixed = adversarial_batch(model, x, settings, torch.Generator().manual_seed(0))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert (mixed[:2] != x[:2]).flatten(1).any(1).all()  # attacked: one per objective
    assert torch.equal(mixed[2:], x[2:])  # clean
    assert (mixed - x).abs().max() <= 4 / 255 + 1e-6 and mixed.min() >= 0 and mixed.max() <= 1


def test_attacked_rows_are_the_rows_adversarial_batch_gives_each_objective() -> None:
    settings = AdversarialTrainingSettings(eps=4 / 255, steps=1, objectives=("rate", "distortion", "rate"), fraction=0.75)
    assert attacked_rows(settings, 8, "rate").tolist() == [0, 2, 3, 5]
    assert attacked_rows(settings, 8, "distortion").tolist() == [1, 4]
    x = grid_images(8, 3, 64, 64, seed=6)
    model = calibrated(MeanScaleHyperprior(16, 16), x).train()
    mixed = adversarial_batch(model, x, settings, torch.Generator().manual_seed(0))
    changed = (mixed != x).flatten(1).any(1).nonzero().flatten().tolist()
    assert changed == [0, 1, 2, 3, 4, 5]


def test_rate_gap_is_the_bits_an_attack_added_and_trains_only_the_attacked_side() -> None:
    x = grid_images(3, 3, 64, 64, seed=7)
    model = calibrated(MeanScaleHyperprior(16, 16), x).eval()
    settings = AdversarialTrainingSettings(eps=8 / 255, steps=3, objectives=("rate",), fraction=1.0)
    attacked = adversarial_inputs(model, x, "rate", settings, torch.Generator().manual_seed(0))
    pixels = 64 * 64
    with torch.no_grad():
        clean_bpp = bits_per_pixel(model(x)["likelihoods"], pixels)
        attacked_bpp = bits_per_pixel(model(attacked)["likelihoods"], pixels)
        total = sum(torch.log2(lik).sum() for lik in model(x)["likelihoods"].values())
    assert clean_bpp.sum().item() == pytest.approx(-total.item() / pixels, rel=1e-5)  # per image, summing to the batch's bits
    assert (attacked_bpp > clean_bpp).all()
    out = model(attacked)
    gap = rate_gap(model, out["likelihoods"], x)
    assert gap.item() == pytest.approx((attacked_bpp - clean_bpp).mean().item(), rel=1e-4)
    assert rate_gap(model, model(x)["likelihoods"], x).item() == pytest.approx(0, abs=1e-6)  # no attack, no gap
    model.train()  # quantisation noise, so that gradients reach the encoder
    rate_gap(model, model(attacked)["likelihoods"], x).backward()
    assert model.g_a[0].weight.grad.abs().sum() > 0
    attacked_side_only = rate_gap(model, {k: v.detach() for k, v in model(attacked)["likelihoods"].items()}, x)
    assert not attacked_side_only.requires_grad  # the clean reference carries no gradient


def test_latent_shift_measures_the_move_in_predicted_scales_and_trains_the_encoder() -> None:
    x = grid_images(2, 3, 64, 64, seed=8)
    model = calibrated(MeanScaleHyperprior(16, 16), x).train()
    noisy = (x + torch.sign(torch.randn_like(x)) * 4 / 255).clamp(0, 1)
    assert latent_shift(model, x, x).item() == 0
    shift = latent_shift(model, noisy, x)
    with torch.no_grad():
        y_clean, y_noisy = model.g_a(x), model.g_a(noisy)
        scales = model.h_s(model.h_a(y_clean)).chunk(2, 1)[0].clamp_min(0.11)
    assert shift.item() == pytest.approx((((y_noisy - y_clean) / scales) ** 2).mean().item(), rel=1e-5)
    shift.backward()
    assert model.g_a[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.h_s.parameters())  # the scales are a fixed yardstick
    with pytest.raises(ValueError, match="needs a scale or mean-scale hyperprior"):
        latent_shift(calibrated(FactorizedPrior(16, 16), x), noisy, x)


def test_robustness_report_compares_versions() -> None:
    x = grid_images(1, 3, 64, 64, seed=5)
    before = calibrated(MeanScaleHyperprior(16, 16), x)
    after = calibrated(MeanScaleHyperprior(16, 16), x)
    attacks = [CodecAttackSettings("rate", 4 / 255, "fgsm")]
    report = robustness_report({"before": before, "after": after}, [x[0]], attacks, lmbda=0.013)
    rows = report.rows()
    assert [row["version"] for row in rows] == ["before", "after"]
    for row in rows:
        assert row["adv_rd_cost"] == pytest.approx(rd_cost(row["adv_bpp"], row["adv_psnr"], 0.013), rel=1e-6)
    (change,) = report.changes("before", "after")
    assert change["objective"] == "rate" and "adv_rd_cost_change_pct" in change
    assert "before" in report.format_table()


def training_folder(tmp_path, seed: int):
    """Three 64 px PNGs in ``tmp_path/train`` for a few training steps."""
    data = tmp_path / "train"
    data.mkdir()
    for index in range(3):
        Image.fromarray((grid_images(3, 64, 64, seed=seed + index) * 255).byte().permute(1, 2, 0).numpy()).save(data / f"{index}.png")
    return data


def test_adversarial_fine_tuning_runs_and_resumes(tmp_path) -> None:
    from hac.training import load_checkpoint
    from hac.cli.train import main as train_main

    data = training_folder(tmp_path, seed=10)
    run_dir = tmp_path / "run"
    common = ["--run-dir", str(run_dir), "--log-every", "1", "--checkpoint-every", "2", "--eval-every", "0", "--threads", "1"]
    args = ["--data", str(data), "--N", "8", "--M", "8", "--crop", "64", "--batch-size", "2", "--lr", "1e-3",
            "--adversarial", "--adv-eps", "4/255", "--adv-steps", "1", "--adv-objective", "distortion,rate"]  # fmt: skip
    assert train_main([*common, *args, "--steps", "2"]) == 0
    first = load_checkpoint(run_dir / "checkpoint.pt")
    assert first["step"] == 2 and first["config"]["adversarial"] is True
    assert first["config"]["adv_eps"] == pytest.approx(4 / 255)
    assert train_main([*common, "--resume", "--steps", "3"]) == 0  # the adversarial settings come from the checkpoint
    resumed = load_checkpoint(run_dir / "checkpoint.pt")
    assert resumed["step"] == 3 and resumed["config"]["adv_objective"] == "distortion,rate"
    assert not torch.equal(first["model"]["g_a.0.weight"], resumed["model"]["g_a.0.weight"])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    # exported under its own name, so the shipped hac-hyperprior-q2 is not overwritten; the card says how it was tuned
    weights = tmp_path / "weights"
    assert train_main(["export", str(run_dir / "checkpoint.pt"), "--quality", "2", "--out-dir", str(weights),
                       "--name", "hac-hyperprior-adv-q2"]) == 0  # fmt: skip
    assert sorted(p.name for p in weights.iterdir()) == ["hac-hyperprior-adv-q2.md", "hac-hyperprior-adv-q2.safetensors"]
    assert "adversarial fine-tuning | PGD-1 at ε = 4/255 on the distortion,rate" in (weights / "hac-hyperprior-adv-q2.md").read_text()
    assert train_main(["export", str(run_dir / "checkpoint.pt"), "--out-dir", str(weights), "--name", "../escape"]) == 2


def test_the_penalty_weights_add_their_terms_to_the_loss_and_the_card(tmp_path) -> None:
    from hac.cli.train import main as train_main

    data = training_folder(tmp_path, seed=30)
    args = ["--data", str(data), "--N", "8", "--M", "8", "--crop", "64", "--batch-size", "2", "--lr", "1e-3", "--lmbda", "0.01",
            "--steps", "2", "--log-every", "1", "--eval-every", "0", "--threads", "1", "--adversarial", "--adv-eps", "8/255",
            "--adv-steps", "2", "--adv-objective", "rate", "--adv-fraction", "0.5",
            "--adv-rate-gap-weight", "3", "--adv-latent-weight", "0.5"]  # fmt: skip
    run_dir = tmp_path / "run"
    assert train_main(["--run-dir", str(run_dir), *args]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:  # loss = lambda * 255^2 * MSE + bpp + the weighted penalties
        assert record["rate_gap"] >= 0 and record["latent_shift"] > 0
        expected = 0.01 * 255**2 * record["mse"] + record["bpp"] + 3 * record["rate_gap"] + 0.5 * record["latent_shift"]
        assert record["loss"] == pytest.approx(expected, rel=1e-5)
    assert any(record["rate_gap"] > 0 for record in records)
    weights = tmp_path / "weights"
    assert train_main(["export", str(run_dir / "checkpoint.pt"), "--quality", "1", "--out-dir", str(weights), "--name", "adv"]) == 0
    assert "rate gap weighted 3, latent shift weighted 0.5 (" in (weights / "adv.md").read_text()
    distortion_only = [a if a != "rate" else "distortion" for a in args]
    assert train_main(["--run-dir", str(tmp_path / "other"), *distortion_only]) == 2  # no rate-attacked rows
    no_adversarial = [a for a in args if a != "--adversarial"]
    assert train_main(["--run-dir", str(tmp_path / "third"), *no_adversarial]) == 2


def test_classifier_attacked_batch_attacks_the_first_images_within_budget() -> None:
    from hac.training.adversarial import classifier_attacked_batch
    from hac.attacks.classifier_attacks import create_attack

    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = grid_images(4, 3, 16, 16, seed=5)
    mixed = classifier_attacked_batch(create_attack("pgd:eps=4/255,steps=3", classifier), classifier, x, 0.5)
    assert torch.equal(mixed[2:], x[2:])  # the clean half is untouched
    assert (mixed[:2] != x[:2]).any() and (mixed - x).abs().max() <= 4 / 255 + 1e-6
    assert torch.equal(mixed * 255, torch.round(mixed * 255))  # on the 8-bit grid
    with torch.no_grad():  # the attack raised the loss on the classifier's own clean predictions
        labels = classifier(x[:2]).argmax(1)
        before = nn.functional.cross_entropy(classifier(x[:2]), labels)
        after = nn.functional.cross_entropy(classifier(mixed[:2]), labels)
    assert after > before


def test_purifier_fine_tuning_runs_with_held_out_images(tmp_path) -> None:
    from hac.training import load_checkpoint
    from hac.cli.train import main as train_main

    data = training_folder(tmp_path, seed=20)
    held_out = tmp_path / "image_ids.txt"
    held_out.write_text("# the evaluation's images\n0.png\n")
    run_dir = tmp_path / "run"
    args = ["--run-dir", str(run_dir), "--data", str(data), "--N", "8", "--M", "8", "--crop", "64", "--batch-size", "2",
            "--steps", "2", "--log-every", "1", "--eval-every", "0", "--threads", "1", "--exclude", str(held_out),
            "--purify-against", "efficientnet-lite0", "--purify-attack", "fgsm:eps=4/255", "--purify-fraction", "0.5"]  # fmt: skip
    assert train_main(args) == 0
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["step"] == 2 and checkpoint["config"]["purify_against"] == "efficientnet-lite0"
    log = (run_dir / "train.log").read_text()
    assert "leaving out 1 images" in log and "decoded 2 images" in log
    assert train_main([*args[:2], "--data", str(data), "--adversarial", "--purify-against", "efficientnet-lite0"]) == 2
    weights = tmp_path / "weights"
    assert train_main(["export", str(run_dir / "checkpoint.pt"), "--quality", "1", "--out-dir", str(weights),
                       "--name", "hac-hyperprior-purify-q1"]) == 0  # fmt: skip
    card = (weights / "hac-hyperprior-purify-q1.md").read_text()
    assert "| purifier fine-tuning | `fgsm:eps=4/255` on `efficientnet-lite0`" in card and "image_ids.txt" in card


def test_logit_distance_measures_what_the_classifier_sees_and_trains_the_reconstruction() -> None:
    from hac.training.adversarial import logit_distance

    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    classifier.requires_grad_(False)
    x = grid_images(2, 3, 16, 16, seed=6)
    assert logit_distance(classifier, x.clone(), x).item() == 0
    x_hat = (x + 0.2 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([x_hat], lr=0.01)
    distances = []
    for _ in range(50):  # descending the distance moves the reconstruction's logits towards the clean ones
        optimizer.zero_grad()
        distance = logit_distance(classifier, x_hat, x)
        distance.backward()
        optimizer.step()
        distances.append(distance.item())
    assert distances[0] > 0 and distances[-1] < 0.5 * distances[0]


def test_purifier_fine_tuning_with_the_logit_loss_logs_and_adds_it(tmp_path) -> None:
    from hac.cli.train import main as train_main

    data = training_folder(tmp_path, seed=21)
    run_dir = tmp_path / "run"
    args = ["--run-dir", str(run_dir), "--data", str(data), "--N", "8", "--M", "8", "--crop", "64", "--batch-size", "2",
            "--steps", "2", "--log-every", "1", "--eval-every", "0", "--threads", "1", "--lmbda", "0.01",
            "--purify-against", "efficientnet-lite0", "--purify-attack", "fgsm:eps=4/255", "--purify-logit-weight", "2"]  # fmt: skip
    assert train_main(args) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:  # loss = lambda * 255^2 * MSE + bpp + weight * logit distance
        assert record["logits"] > 0
        assert record["loss"] == pytest.approx(0.01 * 255**2 * record["mse"] + record["bpp"] + 2 * record["logits"], rel=1e-5)
    weights = tmp_path / "weights"
    assert train_main(["export", str(run_dir / "checkpoint.pt"), "--quality", "1", "--out-dir", str(weights),
                       "--name", "hac-hyperprior-logits-q1"]) == 0  # fmt: skip
    assert "logit distance weighted 2 |" in (weights / "hac-hyperprior-logits-q1.md").read_text()
    no_classifier = [a for a in args if a not in ("--purify-against", "efficientnet-lite0")]
    assert train_main([*no_classifier[:1], str(tmp_path / "other"), *no_classifier[2:]]) == 2  # needs --purify-against


def test_adversarial_fine_tuning_refuses_bad_settings(tmp_path) -> None:
    from hac.training import TrainConfig, train

    data = tmp_path / "train"
    data.mkdir()
    Image.fromarray((grid_images(3, 64, 64) * 255).byte().permute(1, 2, 0).numpy()).save(data / "0.png")
    config = TrainConfig(data=str(data), run_dir=str(tmp_path / "run"), N=8, M=8, crop=64, batch_size=1, steps=1,
                         adversarial=True, adv_eps=-1 / 255, threads=1)  # fmt: skip
    with pytest.raises(ValueError, match=r"eps must be a number in \(0, 1\]"):
        train(config)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def tiny_folder(tmp_path, photo_dir):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        array = np.asarray(Image.open(photo_dir / name).convert("RGB"))[100:172, 100:180]
        Image.fromarray(array).save(folder / name)
    return folder


def test_worst_case_takes_each_measure_from_the_attack_that_hurts_most() -> None:
    from hac.attacks.codec_attacks import worst_case

    def row(codec, method, objective, drop, ratio, clean=1.0, adv=None):
        return {"codec": codec, "method": method, "objective": objective, "eps_255": 4.0, "psnr_drop_pct": drop,
                "bpp_ratio": ratio, **({"clean_rd_cost": clean, "adv_rd_cost": adv} if adv is not None else {})}  # fmt: skip

    rows = [row("a", "pgd", "distortion", 8.0, 0.98, adv=1.7), row("a", "shift", "distortion", 5.0, 1.0, adv=1.4),
            row("a", "pgd", "rate", 1.0, 1.5, adv=1.5), row("b", "pgd", "distortion", 4.0, 0.97, adv=1.3),
            row("b", "shift", "distortion", 4.5, 1.0, adv=1.4), row("b", "pgd", "rate", -1.0, 1.25, adv=1.2)]  # fmt: skip
    first, second = worst_case(rows)
    assert (first["psnr_drop_pct"], first["psnr_drop_pct_attack"]) == (8.0, "pgd distortion")
    assert first["bit_increase"] == pytest.approx(0.5) and first["bit_increase_attack"] == "pgd rate"
    assert first["added_rd_cost"] == pytest.approx(0.7) and "added_rd_cost_change_pct" not in first
    assert (second["psnr_drop_pct"], second["psnr_drop_pct_attack"]) == (4.5, "shift distortion")  # the shift beat PGD here
    assert second["added_rd_cost_attack"] == "shift distortion" and second["attacks"] == 3
    assert second["psnr_drop_pct_change_pct"] == pytest.approx(-43.75)
    assert second["bit_increase_change_pct"] == pytest.approx(-50.0)
    assert second["added_rd_cost_change_pct"] == pytest.approx(100 * (0.4 / 0.7 - 1))
    without_costs = worst_case([{k: v for k, v in r.items() if "rd_cost" not in k} for r in rows])
    assert "added_rd_cost" not in without_costs[0]


def test_cli_attacks_writes_and_skips(tiny_folder, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main([
        "codec-attack", "--data", str(tiny_folder), "--codecs", "jpeg:q=25", "bmshj2018-factorized:q=1", "webp:q=50",
        "--eps", "2/255,4/255", "--objective", "distortion,rate", "--steps", "2", "--crop", "64", "--out", str(out),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipped bmshj2018-factorized:q=1" in captured.err  # no weights offline: skipped, not a crash
    assert "skipped webp:q=50 rate" in captured.err
    per_attack, worst = captured.out.split("worst case over the attacks")
    assert per_attack.count("jpeg:q=25") == 4 and worst.count("jpeg:q=25") == 2  # one worst case per eps
    with open(out / "codec_attack.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["objective"], float(r["eps_255"])) for r in rows} == {(o, e) for o in ("distortion", "rate") for e in (2.0, 4.0)}
    assert all(float(r["linf_255"]) <= float(r["eps_255"]) + 1e-3 for r in rows)
    record = json.loads((out / "codec_attack.json").read_text())
    assert record["images"] == ["chelsea.png", "coffee.png"] and len(record["skipped"]) == 3
    assert (out / "codec_attack_distortion.png").stat().st_size > 0 and (out / "codec_attack_rate.png").is_file()


def test_cli_learned_codec_from_local_weights(tiny_folder, tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    model = calibrated(MeanScaleHyperprior(16, 16), load_image(tiny_folder / "chelsea.png")[None, :, :64, :64])
    model.update(force=True)
    weights = tmp_path / "tiny.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(weights))
    code = main([
        "codec-attack", "--data", str(tiny_folder), "--limit", "1", "--crop", "64", "--eps", "4/255",
        "--objective", "rate", "--method", "fgsm", "--codecs", f"hac-hyperprior:q=3,weights={weights}",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (row,) = [line for line in captured.out.splitlines() if line.startswith("hac-hyperprior")]
    assert float(row.split()[8]) > 1.0  # bpp factor of the rate attack, from the real bitstream
    assert "skipped" not in captured.err


def test_cli_compares_codecs_with_their_rd_cost(tiny_folder, tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    x = load_image(tiny_folder / "chelsea.png")[None, :, :64, :64]
    specs = []
    for seed in (0, 1):  # two versions of one codec, e.g. before and after adversarial fine-tuning
        torch.manual_seed(seed)
        model = calibrated(MeanScaleHyperprior(16, 16), x)
        model.update(force=True)
        weights = tmp_path / f"v{seed}.safetensors"
        save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(weights))
        specs.append(f"hac-hyperprior:q=3,weights={weights}")
    out = tmp_path / "out"
    code = main([
        "codec-attack", "--data", str(tiny_folder), "--limit", "1", "--crop", "64", "--eps", "4/255",
        "--objective", "distortion,rate", "--method", "fgsm", "--lmbda", "0.013", "--codecs", *specs, "--out", str(out),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((out / "codec_attack.json").read_text())
    costs = {(row["version"], row["objective"]): row for row in record["rd_costs"]}
    for row in record["rd_costs"]:
        assert row["clean_rd_cost"] == pytest.approx(row["clean_bpp"] + 0.013 * 255**2 * 10 ** (-row["clean_psnr"] / 10), rel=0.02)
    with open(out / "changes_vs_first.csv") as handle:
        changes = list(csv.DictReader(handle))
    assert [(c["codec"], c["versus"], c["objective"]) for c in changes] == [(specs[1], specs[0], "distortion"), (specs[1], specs[0], "rate")]
    for change in changes:
        old, new = costs[specs[0], change["objective"]], costs[specs[1], change["objective"]]
        expected = 100 * (new["adv_rd_cost"] - old["adv_rd_cost"]) / old["adv_rd_cost"]
        assert float(change["adv_rd_cost_change_pct"]) == pytest.approx(expected, rel=1e-6)
        assert f"attacked R-D cost {expected:+.1f} %" in captured.out
    with open(out / "worst_case.csv") as handle:  # over both objectives, per version
        worst = {row["codec"]: row for row in csv.DictReader(handle)}
    added = {spec: max(costs[spec, o]["adv_rd_cost"] - costs[spec, o]["clean_rd_cost"] for o in ("distortion", "rate")) for spec in specs}
    assert float(worst[specs[0]]["added_rd_cost"]) == pytest.approx(added[specs[0]], rel=1e-9)
    assert float(worst[specs[1]]["added_rd_cost_change_pct"]) == pytest.approx(100 * (added[specs[1]] / added[specs[0]] - 1), rel=1e-6)
    assert worst[specs[0]]["bit_increase_attack"] == "fgsm rate" and worst[specs[0]]["added_rd_cost_change_pct"] == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps=-4/255"], "eps must be a number in (0, 1]"),
        (["--eps", "four"], "eps 'four' is not a number"),
        (["--objective", "psnr"], "unknown codec-attack objective 'psnr'"),
        (["--crop", "0"], "--crop must be a positive size"),
        (["--lmbda", "0"], "--lmbda must be positive"),
        (["--method", "pgd,cw"], "--method 'pgd,cw': choose one or more of pgd, fgsm, noise, shift"),
    ],
)
def test_cli_bad_settings_give_one_clear_line(tiny_folder, capsys, args, message) -> None:
    assert main(["codec-attack", "--data", str(tiny_folder), "--codecs", "jpeg:q=25", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_resampled_codec_is_attacked_for_distortion_through_its_surrogate_but_not_for_rate() -> None:
    x = grid_images(2, 3, 48, 48)
    codec = create_codec("jpeg:q=50,scale=0.75")
    with pytest.raises(ValueError, match="no differentiable rate estimate.*at scale 1"):
        attack_codec(codec, x, CodecAttackSettings("rate"))
    x_adv = attack_codec(codec, x, CodecAttackSettings("distortion", eps=4 / 255, steps=3, starts="zero"))
    assert (x_adv - x).abs().max() <= 4 / 255 + 1e-6
    assert (psnr(codec(x_adv).x_hat, x) < psnr(codec(x).x_hat, x)).all()
