"""The "Attack the codec" tab's handler called directly: a real photo, the real JPEG codec, user errors as gr.Error."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import pytest
import torch

from hac.app import ModelCache, codec_attack
from hac.codecs import create_codec
from hac.core.images import load_image
from hac.core.metrics import psnr

from conftest import BAD_UPLOADS, PNG_SIGNATURE

ROWS = ("clean", "attacked (PGD)", "random ±ε noise (baseline)")


def _table(summary: str) -> dict[str, list[float]]:
    """The summary's table: row label -> its numbers (bpp, PSNR, and for attacked rows drop %, ratio, input PSNR)."""
    rows = {}
    for line in summary.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in ROWS:
            rows[cells[0]] = [float(re.sub(r"[^0-9.\-]", "", cell)) for cell in cells[1:] if cell != "—"]
    assert set(rows) == set(ROWS), summary
    return rows


@pytest.fixture(scope="module")
def outputs(cache, files, photo_dir) -> dict[str, codec_attack.CodecAttackOutputs]:
    """Both objectives on chelsea.png (451x300) with JPEG q=25, eps 8/255, PGD-3."""
    return {
        objective: codec_attack.run_codec_attack(cache, files, photo_dir / "chelsea.png", "jpeg", 25, objective, 8, 3)
        for objective in ("distortion", "rate")
    }


@pytest.mark.parametrize("objective", ["distortion", "rate"])
def test_numbers_and_images_come_from_the_real_jpeg(outputs, objective):
    out = outputs[objective]
    for path in out[:5]:
        assert Path(path).read_bytes().startswith(PNG_SIGNATURE)
    clean, attacked = load_image(out.clean_input)[None], load_image(out.attacked_input)[None]
    assert clean.shape == attacked.shape == (1, 3, codec_attack.IMAGE_SIZE, codec_attack.IMAGE_SIZE)
    assert (attacked - clean).abs().max() * 255 == pytest.approx(8, abs=1e-4)  # on the 8-bit grid, within eps
    rows = _table(out.summary)
    jpeg = create_codec("jpeg:q=25")  # Pillow, independently of the tab
    shown = {ROWS[0]: (clean, out.clean_reconstruction), ROWS[1]: (attacked, out.attacked_reconstruction)}
    for label, (image, png) in shown.items():
        real = jpeg(image)
        assert torch.equal(load_image(png)[None], real.x_hat)  # the image shown is the real decoder's output
        assert rows[label][0] == pytest.approx(real.bpp.item(), abs=6e-4)
        assert rows[label][1] == pytest.approx(psnr(real.x_hat, clean).item(), abs=6e-3)
    assert rows[ROWS[1]][4] == pytest.approx(psnr(attacked, clean).item(), abs=6e-3)  # the perturbation's own PSNR
    starts = ",starts=zero+shift" if objective == "distortion" else ""  # the distortion attack also starts from the shift
    assert f"`pgd:objective={objective},eps=8/255,steps=3{starts}`" in out.summary and "`jpeg:q=25`" in out.summary


def test_distortion_attack_lowers_psnr_far_more_than_noise(outputs):
    rows = _table(outputs["distortion"].summary)
    clean_psnr, attacked, noise = rows[ROWS[0]][1], rows[ROWS[1]], rows[ROWS[2]]
    assert 29 < clean_psnr < 33  # observed 30.93 dB
    assert attacked[1] < clean_psnr - 1  # observed 28.83 dB
    assert attacked[2] > noise[2] + 2  # PSNR drop: observed 6.8 % against 1.8 % for noise


def test_rate_attack_raises_bits_far_more_than_noise(outputs):
    rows = _table(outputs["rate"].summary)
    clean, attacked, noise = rows[ROWS[0]], rows[ROWS[1]], rows[ROWS[2]]
    assert attacked[0] > clean[0]
    assert attacked[3] > 1.2 and attacked[3] > noise[3] + 0.15  # bpp ratio: observed x1.39 against x1.05


def test_choices_offer_only_attackable_codecs(no_downloaded_weights):
    labels = dict((name, label) for label, name in codec_attack.codec_attack_choices())
    assert list(labels)[0] == "jpeg" and labels["jpeg"] == "jpeg"
    assert "webp" not in labels  # no differentiable stand-in
    assert labels["hac-hyperprior"] == "hac-hyperprior (weights not downloaded)"


def test_learned_codec_from_local_weights_is_offered_and_attacked(files, photo_dir, tmp_path, monkeypatch):
    """Mechanics with a tiny random hyperprior saved where hac looks for hac-hyperprior-q3 (no real weights here)."""
    from compressai.models import MeanScaleHyperprior
    from safetensors.torch import save_file

    from random_codecs import calibrated

    photo = photo_dir / "chelsea.png"
    model = calibrated(MeanScaleHyperprior(16, 16), load_image(photo)[None, :, :64, :64])
    model.update(force=True)
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "weights").mkdir()
    save_file({key: value.contiguous() for key, value in model.state_dict().items()},
              str(tmp_path / "weights" / "hac-hyperprior-q3.safetensors"))
    assert ("hac-hyperprior", "hac-hyperprior") in codec_attack.codec_attack_choices()
    out = codec_attack.run_codec_attack(ModelCache(), files, str(photo), "hac-hyperprior", 3, "rate", 4, 2)
    rows = _table(out.summary)
    assert "`hac-hyperprior:q=3` · **attack** `pgd:objective=rate,eps=4/255,steps=2`" in out.summary
    assert rows[ROWS[1]][3] > 1.0  # bpp factor from the real (entropy-coded) bitstream
    assert load_image(out.attacked_reconstruction).shape == (3, codec_attack.IMAGE_SIZE, codec_attack.IMAGE_SIZE)


@pytest.mark.slow
def test_robust_family_loses_less_than_the_plain_codec_in_the_tab(cache, files, photo_dir):
    """The shipped robust family is offered by name and resists the tab's own attacks (PGD-5 at 4/255).
    Observed on chelsea.png at q3: PSNR drop 11.17 % plain against 4.74 % robust, bits x1.549 against x1.336."""
    labels = dict((name, label) for label, name in codec_attack.codec_attack_choices())
    assert labels["hac-hyperprior-robust"] == "hac-hyperprior-robust"  # weights/ has it: no "not downloaded"
    photo = str(photo_dir / "chelsea.png")
    worst = {
        codec: {
            objective: _table(codec_attack.run_codec_attack(cache, files, photo, codec, 3, objective, 4, 5).summary)[ROWS[1]]
            for objective in ("distortion", "rate")
        }
        for codec in ("hac-hyperprior", "hac-hyperprior-robust")
    }
    plain, robust = worst["hac-hyperprior"], worst["hac-hyperprior-robust"]
    assert robust["distortion"][2] < 0.6 * plain["distortion"][2]  # PSNR drop %
    assert robust["rate"][3] - 1 < 0.8 * (plain["rate"][3] - 1)  # bit increase


def test_codec_without_weights_says_how_to_get_them(cache, files, photo_dir, no_downloaded_weights):
    with pytest.raises(gr.Error, match=r"copy the file into weights/hac-hyperprior-q3\.safetensors"):
        codec_attack.run_codec_attack(cache, files, str(photo_dir / "chelsea.png"), "hac-hyperprior", 3)
    with pytest.raises(gr.Error, match=r"python -m hac weights download mbt2018-mean-mse-3"):
        codec_attack.run_codec_attack(cache, files, str(photo_dir / "chelsea.png"), "mbt2018-mean", 3, "rate")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"codec": "nocodec"}, "unknown codec 'nocodec'; valid choices: .*jpeg"),
        ({"codec": "webp"}, "codec 'webp' has no differentiable stand-in"),
        ({"quality": 500}, r"quality must be an integer in \[1, 100\], got 500"),
        ({"objective": "blur"}, "unknown codec-attack objective 'blur'; valid: distortion, rate"),
        ({"eps_255": 0}, r"ε must be in \(0, 16\] \(units of 1/255\), got 0"),
        ({"eps_255": 64}, r"ε must be in \(0, 16\]"),
        ({"eps_255": "4"}, r"ε must be in \(0, 16\]"),
        ({"steps": 0}, r"steps must be an integer in \[1, 50\]"),
        ({"steps": 1000}, r"steps must be an integer in \[1, 50\]"),
    ],
)
def test_bad_settings_are_clear_gr_errors(cache, files, photo_dir, changes, message):
    settings = dict(codec="jpeg", quality=25, objective="distortion", eps_255=4, steps=2)
    with pytest.raises(gr.Error, match=message):
        codec_attack.run_codec_attack(cache, files, str(photo_dir / "chelsea.png"), **{**settings, **changes})


@pytest.mark.parametrize("content, message", BAD_UPLOADS)
def test_bad_image_is_a_clear_gr_error(cache, files, tmp_path, content, message):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        codec_attack.run_codec_attack(cache, files, str(path))


def test_no_image_is_a_clear_gr_error(cache, files):
    with pytest.raises(gr.Error, match="Upload an image or pick one of the examples"):
        codec_attack.run_codec_attack(cache, files, None)
