"""Realism fine-tuning of a codec's decoder (hac.training.realism) on tiny models and generated images."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from hac.training import TrainConfig, build_model, load_checkpoint, load_model_weights, train
from hac.cli.train import main
from hac.training.decoder_tuning import quantized_latents
from hac.training.realism import PatchDiscriminator, discriminator_loss

from test_train import image_dir, _config  # noqa: F401  (the generated image folder)


def _tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("mbt2018-mean", 16, 16).eval()
    model.update(force=True)
    return model


def test_quantized_latents_decode_to_what_the_bitstream_decodes():
    model = _tiny_model()
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        coded = model.decompress(**model.compress(x))["x_hat"]
        decoded = model.g_s(quantized_latents(model, x)).clamp(0, 1)  # decompress clamps too
    assert torch.allclose(decoded, coded, atol=1e-4), (decoded - coded).abs().max()


def test_the_discriminator_learns_to_tell_clean_from_blurred_crops():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(width=8)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    blurred = F.avg_pool2d(x, 5, stride=1, padding=2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = discriminator_loss(discriminator, x, blurred)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2 * torch.log(torch.tensor(2.0)).item(), abs=0.1)  # undecided at the start
    assert losses[-1] < 0.5 * losses[0], losses


def _realism_config(image_dir, run_dir, init, **overrides) -> TrainConfig:
    return _config(image_dir, run_dir, init_from=str(init), realism_weight=0.5, disc_width=8, **overrides)


def _plain_checkpoint(image_dir, tmp_path):
    return train(_config(image_dir, tmp_path / "plain", steps=5, checkpoint_every=0))


def test_realism_fine_tuning_changes_only_the_decoder_and_keeps_the_bitstreams(image_dir, tmp_path):
    plain = _plain_checkpoint(image_dir, tmp_path)
    run_dir = tmp_path / "realism"
    train(_realism_config(image_dir, run_dir, plain, steps=6, lr=1e-3))
    before, after = load_checkpoint(plain)["model"], load_checkpoint(run_dir / "checkpoint.pt")["model"]
    changed = {key.split(".")[0] for key in before if not torch.equal(before[key], after[key])}
    assert changed == {"g_s"}

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all({"gan", "features", "disc", "mse"} <= r.keys() and "bpp" not in r for r in records)
    assert "gan " in (run_dir / "train.log").read_text()

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    strings = []
    for state in (before, after):
        model = build_model("mbt2018-mean", 16, 16)
        model.load_state_dict(state)
        model.eval().update(force=True)
        strings.append(model.compress(x)["strings"])
    assert strings[0] == strings[1]


def test_a_realism_run_resumes_with_its_discriminator(image_dir, tmp_path):
    plain = _plain_checkpoint(image_dir, tmp_path)
    run_dir = tmp_path / "realism"
    train(_realism_config(image_dir, run_dir, plain, steps=3))
    first = load_checkpoint(run_dir / "checkpoint.pt")
    assert {"discriminator", "disc_optimizer"} <= first.keys()
    common = ["--run-dir", str(run_dir), "--threads", "1", "--log-every", "1"]
    assert main([*common, "--resume", "--steps", "5"]) == 0
    second = load_checkpoint(run_dir / "checkpoint.pt")
    assert second["step"] == 5
    assert any(not torch.equal(first["discriminator"][k], second["discriminator"][k]) for k in first["discriminator"])

    plain_run = tmp_path / "plain-resumed"
    train(_config(image_dir, plain_run, steps=2))
    with pytest.raises(ValueError, match="cannot resume .* with realism_weight=0.5: it was trained with 0.0"):
        train(_realism_config(image_dir, plain_run, plain, steps=4), resume=True)


@pytest.mark.parametrize("overrides, message", [
    ({"realism_weight": -1.0}, "realism_weight=-1.0 and realism_feature_weight=1.0 must be >= 0"),
    ({"realism_weight": 0.5, "adversarial": True}, "does not combine with --adversarial or --purify-against"),
    ({"realism_weight": 0.5, "architecture": "bmshj2018-hyperprior"}, "nor with architecture 'bmshj2018-hyperprior'"),
    ({"realism_weight": 0.5, "disc_width": 0}, "disc_width=0 positive"),
    ({"realism_weight": 0.5}, "pass --init-from WEIGHTS"),
])
def test_bad_realism_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="", run_dir="", **overrides).validate()


def test_the_exported_card_names_the_realism_fine_tune(image_dir, tmp_path):
    from hac.training import export

    plain = _plain_checkpoint(image_dir, tmp_path)
    path = train(_realism_config(image_dir, tmp_path / "realism", plain, steps=2))
    weights = export(path, tmp_path / "out", quality=1, name="tiny-realism")
    card = (tmp_path / "out" / "tiny-realism.md").read_text()
    assert "| realism fine-tuning | decoder only" in card and "GAN loss weighted 0.5" in card
    model = build_model("mbt2018-mean", 16, 16)
    load_model_weights(model, weights)
