"""Decoder-only fine-tuning (hac.training.decoder_tuning, ``--decoder-only``) on tiny models and generated images."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from hac.training import TrainConfig, build_model, export, load_checkpoint, load_model_weights, train
from hac.cli.train import main
from hac.training.crops import ImageBank
from hac.training.decoder_tuning import decoder_terms, freeze_all_but_decoder, quantized_latents

from test_realism import _plain_checkpoint
from test_train import image_dir, _config  # noqa: F401  (the generated image folder)


def test_decoder_terms_are_the_weighted_error_of_decoding_the_real_latents_and_train_only_the_decoder():
    torch.manual_seed(0)
    model = build_model("mbt2018-mean", 16, 16)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    params = freeze_all_but_decoder(model)
    terms = decoder_terms(model, x, lmbda=0.02)
    by_hand = F.mse_loss(model.g_s(quantized_latents(model, x)), x)
    assert terms["mse"].item() == pytest.approx(by_hand.item())
    assert terms["loss"].item() == pytest.approx(0.02 * 255**2 * by_hand.item())
    terms["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("g_s."))


def test_freezing_refuses_a_model_without_a_mean_scale_hyperprior():
    with pytest.raises(ValueError, match="needs a mean-scale hyperprior"):
        freeze_all_but_decoder(build_model("bmshj2018-hyperprior", 16, 16))


def test_a_decoder_only_run_improves_the_decoding_of_the_same_bitstreams(image_dir, tmp_path):
    plain = _plain_checkpoint(image_dir, tmp_path)
    run_dir = tmp_path / "decoder"
    common = ["--run-dir", str(run_dir), "--threads", "1", "--log-every", "1", "--checkpoint-every", "0"]
    assert main(["--data", str(image_dir), "--init-from", str(plain), "--N", "16", "--M", "16", "--crop", "64",
                 "--batch-size", "4", "--lmbda", "0.01", "--steps", "30", "--lr", "3e-3", "--decoder-only", *common]) == 0
    before, after = load_checkpoint(plain)["model"], load_checkpoint(run_dir / "checkpoint.pt")["model"]
    changed = {key.split(".")[0] for key in before if not torch.equal(before[key], after[key])}
    assert changed == {"g_s"}

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 31))
    assert all("mse" in r and "bpp" not in r and "aux" not in r for r in records)

    x = ImageBank(image_dir, 64).sample(8, torch.Generator().manual_seed(5))
    errors, strings = [], []
    for state in (before, after):
        model = build_model("mbt2018-mean", 16, 16)
        model.load_state_dict(state)
        model.eval().update(force=True)
        with torch.no_grad():
            coded = model.compress(x)
            errors.append(F.mse_loss(model.decompress(**coded)["x_hat"], x).item())
        strings.append(coded["strings"])
    assert strings[0] == strings[1]
    assert errors[1] < 0.9 * errors[0], errors


def test_a_decoder_only_run_resumes_and_refuses_to_switch_mode(image_dir, tmp_path):
    plain = _plain_checkpoint(image_dir, tmp_path)
    run_dir = tmp_path / "decoder"
    train(_config(image_dir, run_dir, init_from=str(plain), decoder_only=True, steps=3))
    assert main(["--run-dir", str(run_dir), "--threads", "1", "--resume", "--steps", "5"]) == 0
    resumed = load_checkpoint(run_dir / "checkpoint.pt")
    assert resumed["step"] == 5 and resumed["config"]["decoder_only"] is True
    with pytest.raises(ValueError, match="cannot resume .* with decoder_only=False: it was trained with True"):
        train(_config(image_dir, run_dir, init_from=str(plain), steps=8), resume=True)


@pytest.mark.parametrize("overrides, message", [
    ({"decoder_only": True, "realism_weight": 0.5, "init_from": "w"}, "already trains the decoder alone"),
    ({"decoder_only": True, "adversarial": True, "init_from": "w"}, "--decoder-only fine-tunes .* not combine with --adversarial"),
    ({"decoder_only": True, "architecture": "bmshj2018-hyperprior", "init_from": "w"}, "nor with architecture"),
    ({"decoder_only": True}, "--decoder-only trains the decoder .* pass --init-from WEIGHTS"),
])
def test_bad_decoder_only_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="", run_dir="", **overrides).validate()


def test_the_exported_card_names_the_decoder_only_fine_tune(image_dir, tmp_path):
    plain = _plain_checkpoint(image_dir, tmp_path)
    path = train(_config(image_dir, tmp_path / "decoder", init_from=str(plain), decoder_only=True, steps=2))
    weights = export(path, tmp_path / "out", quality=1, name="tiny-decoder")
    card = (tmp_path / "out" / "tiny-decoder.md").read_text()
    assert "| decoder-only fine-tuning | `g_s` alone" in card and f"| initialised from | {plain} |" in card
    assert "aux Adam" not in card  # the entropy models were frozen
    load_model_weights(build_model("mbt2018-mean", 16, 16), weights)
