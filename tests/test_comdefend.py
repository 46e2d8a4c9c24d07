"""ComDefend (hac.codecs.comdefend), its weight converter (hac.codecs.comdefend_conversion) and its training.

Mechanics run on random weights written to tmp_path; the official CIFAR-10 weights
in ../shared are used (marker ``shared_data``) for the claim that the layout and
activations are right: loaded correctly they reconstruct CIFAR-10 at about 25-31 dB
(measured here: 29.5 dB on the 20 foolbox CIFAR-10 samples).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hac import hub
from hac.cli import main as cli_main
from hac.codecs import create_codec
from hac.codecs.comdefend import (
    BITS_PER_PIXEL,
    ComCNN,
    ComDefend,
    ComDefendCodec,
    RecCNN,
    from_tiles,
    load_comdefend,
    to_tiles,
)
from hac.codecs.comdefend_conversion import comdefend_layer_shapes, convert_comdefend
from hac.hub.convert import read_weight_list
from hac.hub import UnsafeWeightsError
from hac.core.metrics import psnr

safetensors_torch = pytest.importorskip("safetensors.torch")

# sum over layers of 9 * c_in * c_out + c_out, written out independently of the code
COM_PARAMETERS = 9 * (3 * 16 + 16 * 32 + 32 * 64 + 64 * 128 + 128 * 256 + 256 * 128 + 128 * 64 + 64 * 32 + 32 * 12) + 732
REC_PARAMETERS = 9 * (12 * 32 + 32 * 64 + 64 * 128 + 128 * 256 + 256 * 128 + 128 * 64 + 64 * 32 + 32 * 16 + 16 * 3) + 723


def _write_official_layout(path: Path, arrays: list, archive: bool = True) -> Path:
    """Write ``arrays`` as the official files do: an .npz archive (named .npy) holding w = object array."""
    packed = np.empty(len(arrays), dtype=object)
    for index, array in enumerate(arrays):
        packed[index] = array
    with open(path, "wb") as handle:
        if archive:
            np.savez(handle, w=packed)
        else:
            np.save(handle, packed, allow_pickle=True)
    return path


def _fake_official(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    files = []
    for network, name in (("com", "enc20_0.0001.npy"), ("rec", "dec20_0.0001.npy")):
        arrays = [rng.normal(0, 0.1, shape).astype(np.float32) for shape in comdefend_layer_shapes(network)]
        files.append(_write_official_layout(folder / name, arrays))
    return files[0], files[1]


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A seeded random ComDefend whose codes lie far from the threshold (so float noise never flips a bit)."""
    torch.manual_seed(0)
    model = ComDefend()
    with torch.no_grad():
        model.com.convs[-1].weight.mul_(50)
        model.com.convs[-1].bias.mul_(50)
    path = tmp_path_factory.mktemp("comdefend") / "random.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    return path


def _smooth_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, 4, 4, generator=generator)
    return F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


# --------------------------------------------------------------------------- architecture


def test_architecture_shapes_and_parameter_counts():
    com, rec = ComCNN(), RecCNN()
    assert sum(p.numel() for p in com.parameters()) == COM_PARAMETERS == 783_372
    assert sum(p.numel() for p in rec.parameters()) == REC_PARAMETERS == 783_363
    assert [tuple(c.weight.shape) for c in com.convs][::4] == [(16, 3, 3, 3), (256, 128, 3, 3), (12, 32, 3, 3)]
    x = torch.rand(2, 3, 20, 28)
    code = com(x)
    assert code.shape == (2, 12, 20, 28)
    y = rec((code > 0).float())
    assert y.shape == (2, 3, 20, 28) and 0 < y.min() and y.max() < 1
    keys = list(ComDefend().state_dict())
    assert len(keys) == 36 and keys[0] == "com.convs.0.weight" and keys[-1] == "rec.convs.8.bias"


def test_comcnn_centres_its_input():
    com = ComCNN()
    x = torch.rand(1, 3, 8, 8)
    reference = x - 0.5
    for index, conv in enumerate(com.convs):
        reference = conv(reference)
        reference = F.elu(reference) if index < 8 else reference
    assert torch.allclose(com(x), reference)


# --------------------------------------------------------------------------- conversion


def test_fake_official_weights_convert_and_load(tmp_path, capsys):
    enc, dec = _fake_official(tmp_path)
    out = tmp_path / "converted" / "comdefend.safetensors"
    assert cli_main(["convert", "comdefend", "--enc", str(enc), "--dec", str(dec), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    state = safetensors_torch.load_file(str(out))
    model = ComDefend()
    assert set(state) == set(model.state_dict())
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == "hac-comdefend/1" and meta["layout"] == "OIHW"
    assert meta["enc_sha256"] == hub.sha256_of(enc)
    codec = create_codec("comdefend", weights=str(out))
    assert codec(torch.rand(1, 3, 32, 32)).x_hat.shape == (1, 3, 32, 32)


def test_conversion_turns_hwio_into_torch_layout(tmp_path):
    """The converted first layer computes TF's 'same' cross-correlation with the HWIO kernel."""
    enc, dec = _fake_official(tmp_path, seed=3)
    out = convert_comdefend(enc, dec, tmp_path / "c.safetensors")
    state = safetensors_torch.load_file(str(out))
    kernel, bias = read_weight_list(enc, comdefend_layer_shapes("com"))[:2]  # (3, 3, 3, 16) HWIO, (16,)
    x = np.random.default_rng(1).random((5, 7, 3)).astype(np.float32)  # H, W, C
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((5, 7, 16), dtype=np.float64)
    for row in range(5):
        for col in range(7):
            expected[row, col] = np.einsum("hwi,hwio->o", padded[row : row + 3, col : col + 3], kernel) + bias
    actual = F.conv2d(torch.from_numpy(x).permute(2, 0, 1)[None], state["com.convs.0.weight"], state["com.convs.0.bias"], padding=1)
    assert np.allclose(actual[0].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_plain_npy_object_array_is_read_too(tmp_path):
    shapes = comdefend_layer_shapes("rec")
    arrays = [np.full(shape, index, dtype=np.float32) for index, shape in enumerate(shapes)]
    path = _write_official_layout(tmp_path / "dec.npy", arrays, archive=False)
    read = read_weight_list(path, shapes)
    assert [a.shape for a in read] == shapes and read[5][0] == 5


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda arrays: arrays[:17], r"object array of 18 weight arrays; it holds a object array of shape \(17,\)"),
        (lambda arrays: arrays[:2] + [arrays[2].transpose(3, 2, 0, 1)] + arrays[3:], r"entry 2 has shape \(32, 16, 3, 3\), expected \(3, 3, 16, 32\)"),
        (lambda arrays: arrays[:2] + [arrays[2].astype(np.int32)] + arrays[3:], "entry 2 should be a float array"),
        (lambda arrays: arrays[:1] + [{"bias": arrays[1]}] + arrays[2:], "entry 1 should be a float array of shape .* it is a dict"),
        (lambda arrays: arrays[:1] + [arrays[1][:, None]] + arrays[2:], r"entry 1 has shape \(16, 1\), expected \(16,\)"),
    ],
)
def test_malformed_official_file_is_refused(tmp_path, mutate, message):
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=shape).astype(np.float32) for shape in comdefend_layer_shapes("com")]
    path = _write_official_layout(tmp_path / "enc.npy", mutate(arrays))
    with pytest.raises(ValueError, match=message):
        read_weight_list(path, comdefend_layer_shapes("com"))


def test_swapped_files_name_the_mistake(tmp_path, capsys):
    enc, dec = _fake_official(tmp_path)
    code = cli_main(["convert", "comdefend", "--enc", str(dec), "--dec", str(enc), "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "enc* is ComCNN" in err
    assert not (tmp_path / "x.safetensors").exists()


class _Hostile:
    """Pickles as a call to os.mkdir: what a malicious weights file could do with np.load(allow_pickle=True)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def test_pickle_with_code_is_refused_before_running_it(tmp_path):
    marker = tmp_path / "pwned"
    shapes = comdefend_layer_shapes("com")
    arrays = [np.zeros(shape, dtype=np.float32) for shape in shapes]
    arrays[4] = _Hostile(marker)
    path = _write_official_layout(tmp_path / "enc.npy", arrays)
    with pytest.raises(UnsafeWeightsError, match=r"refers to posix\.mkdir|refers to nt\.mkdir"):
        read_weight_list(path, shapes)
    assert not marker.exists()


def test_other_archives_and_non_arrays_are_refused(tmp_path):
    with open(tmp_path / "two.npy", "wb") as handle:
        np.savez(handle, w=np.zeros(3), v=np.zeros(3))
    with pytest.raises(ValueError, match="exactly one array .* it holds"):
        read_weight_list(tmp_path / "two.npy", comdefend_layer_shapes("com"))
    np.save(tmp_path / "plain.npy", np.zeros((18,), dtype=np.float32))
    with pytest.raises(ValueError, match="it holds a float32 array of shape"):
        read_weight_list(tmp_path / "plain.npy", comdefend_layer_shapes("com"))
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="not a numpy array file"):
        read_weight_list(tmp_path / "text.npy", comdefend_layer_shapes("com"))
    with pytest.raises(FileNotFoundError):
        read_weight_list(tmp_path / "absent.npy", comdefend_layer_shapes("com"))


def test_codec_refuses_numpy_pickles_and_wrong_state_dicts(tmp_path):
    enc, _ = _fake_official(tmp_path)
    with pytest.raises(ValueError, match="numpy pickle; hac never loads those"):
        create_codec("comdefend", weights=str(enc))
    state = ComDefend().state_dict()
    state.pop("rec.convs.8.bias")
    state["extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: rec\.convs\.8\.bias; unexpected keys: extra"):
        load_comdefend(state)


def test_missing_weights_say_how_to_convert(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(hub.MissingWeightsError, match="python -m hac convert comdefend"):
        create_codec("comdefend")
    with pytest.raises(hub.MissingWeightsError, match="hac-comdefend-cifar10"):
        create_codec("comdefend:pretrained=hac")
    assert cli_main(["convert", "comdefend"]) == 2  # offline, nothing cached
    assert "comdefend-official-enc" in capsys.readouterr().err


# --------------------------------------------------------------------------- codec behaviour


def test_tiling_matches_a_direct_pass_on_a_32px_image(random_weights):
    x = _smooth_images(3, 32, 32)
    tiled = create_codec("comdefend", weights=str(random_weights))
    direct = create_codec("comdefend", weights=str(random_weights), tile=0)
    a, b = tiled(x), direct(x)
    assert torch.allclose(a.x_hat, b.x_hat, atol=1e-6)
    assert a.bpp.tolist() == b.bpp.tolist() == [BITS_PER_PIXEL] * 3


def test_tiling_handles_odd_sizes(random_weights):
    codec = create_codec("comdefend", weights=str(random_weights))
    x = _smooth_images(2, 45, 70, seed=1)
    out = codec(x)
    assert out.x_hat.shape == (2, 3, 45, 70)
    assert out.bpp.tolist() == pytest.approx([12 * 64 * 96 / (45 * 70)] * 2)  # padded to 64 x 96
    # Each 32x32 tile is coded on its own: the tile at row 1, column 2 of the replicate-padded image.
    padded = F.pad(x, (0, 26, 0, 19), mode="replicate")
    with torch.no_grad():
        alone = codec.model.reconstruct(padded[:, :, 32:64, 64:96])
    assert torch.allclose(out.x_hat[:, :, 32:45, 64:70], alone[:, :, :13, :6], atol=1e-5)


def test_tiles_round_trip():
    x = torch.rand(2, 3, 45, 70)
    tiles, layout = to_tiles(x, 32)
    assert tiles.shape == (2 * 2 * 3, 3, 32, 32)
    padded = F.pad(x, (0, 26, 0, 19), mode="replicate")
    assert torch.equal(tiles[4], padded[0, :, 32:64, 32:64])  # image 0, row 1, column 1
    assert torch.equal(from_tiles(tiles, layout), x)


def test_surrogate_gives_the_forward_value_and_real_gradients(random_weights):
    codec = create_codec("comdefend", weights=str(random_weights))
    assert codec.has_surrogate() and not codec.stochastic
    x = _smooth_images(2, 40, 36, seed=2).requires_grad_(True)
    y = codec.surrogate(x)
    assert torch.allclose(y, codec(x.detach()).x_hat, atol=1e-6)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the hard threshold alone would give no gradient at all
    z = x.detach().clone().requires_grad_(True)
    codec.model.rec(codec.model.binarize(codec.model.com(z))).sum().backward()
    assert z.grad is None or z.grad.abs().sum() == 0


def test_noise_makes_the_codec_stochastic(random_weights):
    deterministic = create_codec("comdefend", weights=str(random_weights))
    noisy = create_codec(f"comdefend:noise=200,weights={random_weights}")
    assert noisy.stochastic and not deterministic.stochastic
    assert "noise=200.0" in noisy.describe()
    x = _smooth_images(1, 32, 32)
    assert torch.equal(deterministic(x).x_hat, deterministic(x).x_hat)
    torch.manual_seed(0)
    first = noisy(x).x_hat
    assert not torch.equal(first, noisy(x).x_hat)
    torch.manual_seed(0)
    assert torch.equal(first, noisy(x).x_hat)  # seeded by torch's global generator


@pytest.mark.parametrize("params, message", [
    ({"tile": -1}, "tile must be 0"),
    ({"noise": -1}, "noise must be a finite standard deviation >= 0"),
    ({"pretrained": "imagenet"}, "pretrained must be one of official, hac"),
])
def test_bad_parameters_name_the_valid_values(random_weights, params, message):
    with pytest.raises(ValueError, match=message):
        create_codec("comdefend", weights=str(random_weights), **params)


def test_compress_packs_twelve_bits_per_pixel(random_weights):
    model = ComDefendCodec(weights=str(random_weights)).model
    x = _smooth_images(2, 24, 40)
    encoded = model.compress(x)
    assert [len(s) for s in encoded["strings"][0]] == [12 * 24 * 40 // 8] * 2
    decoded = model.decompress(encoded["strings"], encoded["shape"])["x_hat"]
    with torch.no_grad():
        assert torch.allclose(decoded, model.reconstruct(x), atol=1e-6)


# --------------------------------------------------------------------------- training


@pytest.mark.slow
def test_a_few_training_steps_lower_the_loss(tmp_path):
    """Bright images: the untrained RecCNN outputs about 0.5 grey, and a few steps fix that.

    Observed (lr 1e-3): loss 0.074 at step 1, about 0.01 from step 6 on, with an
    occasional spike (0.38 once): the noise of std 20 on the code makes single batches noisy.
    """
    from hac.training import TrainConfig, train

    data = tmp_path / "images"
    data.mkdir()
    images = ((0.6 + 0.3 * _smooth_images(16, 32, 32, seed=4)).clamp(0, 1) * 255).round().to(torch.uint8)
    for index, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(data / f"{index}.png")
    config = TrainConfig(
        data=str(data), run_dir=str(tmp_path / "run"), architecture="comdefend", crop=16, batch_size=4,
        steps=15, lr=1e-3, lr_schedule="constant", lmbda=1e-4, log_every=1, checkpoint_every=0, snapshot_every=0,
        eval_every=0, threads=1,
    )
    train(config)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 15 and "aux" not in records[0] and records[0]["bpp"] == BITS_PER_PIXEL
    assert np.median(losses[-5:]) < 0.5 * losses[0], losses


def test_comdefend_runs_start_from_its_defaults(tmp_path):
    from hac.cli.train import main
    from hac.training import ARCHITECTURES

    defaults = ARCHITECTURES.get("comdefend").defaults
    assert defaults["crop"] == 32 and defaults["lmbda"] == 1e-4
    images = tmp_path / "images"
    images.mkdir()
    for index, image in enumerate((_smooth_images(2, 32, 32) * 255).round().to(torch.uint8)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(images / f"{index}.png")
    run = tmp_path / "run"
    args = ["--architecture", "comdefend", "--data", str(images), "--run-dir", str(run), "--steps", "1", "--batch-size", "2", "--threads", "1"]
    assert main(args) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["crop"] == 32 and config["lmbda"] == 1e-4 and config["lr"] == 1e-3 and config["batch_size"] == 2
    out = tmp_path / "weights"
    assert main(["export", str(run / "checkpoint.pt"), "--out-dir", str(out)]) == 0
    codec = create_codec("comdefend", pretrained="hac", weights=str(out / "hac-comdefend-cifar10.safetensors"))
    assert codec(torch.rand(1, 3, 32, 32)).bpp.item() == BITS_PER_PIXEL
    assert "MSE + λ·mean(b²)" in (out / "hac-comdefend-cifar10.md").read_text()


# --------------------------------------------------------------------------- official weights


@pytest.mark.shared_data
def test_official_weights_reconstruct_cifar10(shared_dir, tmp_path):
    source = shared_dir / "weights" / "comdefend"
    out = convert_comdefend(source / "enc20_0.0001.npy", source / "dec20_0.0001.npy", tmp_path / "official.safetensors")
    files = sorted((shared_dir / "data" / "samples").glob("cifar10_*.png"))
    assert len(files) == 20
    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]).float() / 255
    codec = create_codec("comdefend", weights=str(out))
    x_hat = codec(x).x_hat.mul(255).round().div(255)
    value = psnr(x_hat, x).mean().item()
    assert 25 < value < 32, value  # measured: 29.5 dB (an RGB/BGR or layout mistake costs > 0.5 dB or everything)
    assert codec.weight_spec.name == "comdefend-official"


# --------------------------------------------------------------------------- hac's shipped weights


def test_shipped_hac_weights_reconstruct_real_photos(photo_dir):
    """hac/hub/shipped/hac-comdefend-cifar10.safetensors (shipped in the package) codes 32x32 tiles of real photos."""
    from hac.core.images import load_image, resize_and_center_crop

    codec = create_codec("comdefend", pretrained="hac")
    assert codec.weight_spec.name == "hac-comdefend-cifar10"
    x = torch.cat([resize_and_center_crop(load_image(photo_dir / name)[None], 96, 1.0)
                   for name in ("chelsea.png", "coffee.png", "astronaut.png")])
    x = x.mul(255).round().div(255)
    out = codec(x)
    values = psnr(out.x_hat, x)
    assert (out.bpp == BITS_PER_PIXEL).all()
    assert values.min() > 22, values  # measured: 27.9, 24.9, 23.6 dB (the official weights: 31.6, 26.7, 26.8)


@pytest.mark.shared_data
def test_shipped_hac_weights_reconstruct_cifar10_samples(shared_dir):
    files = sorted((shared_dir / "data" / "samples").glob("cifar10_*.png"))
    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]).float() / 255
    x_hat = create_codec("comdefend", pretrained="hac")(x).x_hat.mul(255).round().div(255)
    assert psnr(x_hat, x).mean().item() > 25  # measured: 26.8 dB (the official weights: 29.5)
