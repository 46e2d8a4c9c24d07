"""The app's handlers called directly (no server): real photos, real models, user errors as gr.Error."""

from __future__ import annotations

import gc
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from hac.app import ModelCache, RunFiles, build_demo
from hac.app import batch
from hac.app import handlers
from hac.app.files import DATA_ROOT_ENV, EXAMPLE_PHOTOS, example_paths, resolve_data_folder
from hac.hub import MissingWeightsError

from conftest import BAD_UPLOADS, PHOTO_CLASSES, PNG_SIGNATURE


def _pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


# --- attack & purify -------------------------------------------------------------------------


@pytest.mark.slow
def test_attack_handler_on_a_real_photo(cache, files, photo_dir):
    out = handlers.run_attack(cache, files, str(photo_dir / "chelsea.png"), "efficientnet-lite0", "fgsm", 4, 3,
                              "bpda", "jpeg", 25, "", 1)
    images = {key: getattr(out, key) for key in ("clean", "adversarial", "purified", "perturbation")}
    for path in images.values():
        assert Path(path).read_bytes().startswith(PNG_SIGNATURE)
    clean, adversarial, purified = (_pixels(images[k]).astype(int) for k in ("clean", "adversarial", "purified"))
    assert clean.shape == adversarial.shape == purified.shape == (224, 224, 3)
    assert np.abs(adversarial - clean).max() == 4  # FGSM at 4/255, exactly on the 8-bit grid
    assert out.slider == (out.adversarial, out.purified) and out.download == out.adversarial
    for top5 in (out.top5_clean, out.top5_adversarial, out.top5_purified):
        assert len(top5) == 5 and 0 < sum(top5.values()) <= 1.0001
    clean_top1 = max(out.top5_clean, key=out.top5_clean.get)
    assert int(clean_top1.rsplit("(", 1)[1].rstrip(")")) in PHOTO_CLASSES["chelsea.png"]
    assert f"**Label attacked:** {clean_top1.rsplit(' (', 1)[0]}" in out.summary
    assert "`fgsm:eps=4/255` under threat model **bpda**" in out.summary and "`jpeg:q=25` × 1" in out.summary
    assert list(out.rounds["round"]) == [1]
    assert 0.1 < out.rounds["bpp (adversarial in)"][0] < 3 and 24 < out.rounds["PSNR vs adversarial (dB)"][0] < 40
    assert "Gradient check: gradients look healthy" in out.warnings


@pytest.mark.slow
def test_attack_handler_with_a_chain_and_rounds(cache, files, photo_dir):
    out = handlers.run_attack(cache, files, str(photo_dir / "coffee.png"), "efficientnet-lite0", "pgd", 2, 2,
                              "straight-through", "jpeg", 25, "jpeg:q=50+webp:q=80", 2, seed=3)
    assert "`jpeg:q=50+webp:q=80` × 2" in out.summary and "pgd:eps=2/255,steps=2" in out.summary
    assert list(out.rounds["round"]) == [1, 2]
    assert (out.rounds["bpp (clean in)"] > 0).all()


def test_attack_handler_with_the_shipped_codec_at_a_reduced_scale(cache, files, photo_dir):
    out = handlers.run_attack(cache, files, str(photo_dir / "chelsea.png"), "efficientnet-lite0", "fgsm", 4, 1,
                              "oblivious", "jpeg", 25, "hac-hyperprior:q=1,scale=0.75", 1)
    assert "`hac-hyperprior:q=1,scale=0.75` × 1" in out.summary
    assert Image.open(out.purified).size == (224, 224)
    full = handlers.run_attack(cache, files, str(photo_dir / "chelsea.png"), "efficientnet-lite0", "fgsm", 4, 1,
                               "oblivious", "jpeg", 25, "hac-hyperprior:q=1", 1)
    assert 0.1 < out.rounds["bpp (clean in)"][0] < full.rounds["bpp (clean in)"][0]


def test_codec_without_weights_says_how_to_fetch(cache, files, photo_dir, no_downloaded_weights):
    with pytest.raises(gr.Error, match=r"python -m hac weights download mbt2018-mean-mse-3"):
        handlers.run_attack(cache, files, str(photo_dir / "chelsea.png"), "efficientnet-lite0", "fgsm", 4, 1,
                            "bpda", "mbt2018-mean", 3, "", 1)


@pytest.mark.parametrize("content, message", BAD_UPLOADS)
def test_bad_image_is_a_clear_gr_error(cache, files, tmp_path, content, message):
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(gr.Error, match=message):
        handlers.run_attack(cache, files, str(path), "efficientnet-lite0", "fgsm", 4, 1, "bpda", "jpeg", 25, "", 1)


def test_too_many_pixels_is_refused_before_decoding(cache, files, tmp_path):
    path = tmp_path / "huge.png"
    Image.new("RGB", (5000, 4000)).save(path)  # 20 M pixels, a few kB on disk
    with pytest.raises(gr.Error, match="over the limit of 16,000,000"):
        handlers.run_attack(cache, files, str(path), "efficientnet-lite0", "fgsm", 4, 1, "bpda", "jpeg", 25, "", 1)


def test_no_image_is_a_clear_gr_error(cache, files):
    with pytest.raises(gr.Error, match="Upload an image or pick one of the examples"):
        handlers.run_attack(cache, files, None)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"chain": "jpeg:q=500"}, r"jpeg quality q must be an integer in \[1, 95\]"),
        ({"chain": "nocodec"}, "unknown codec 'nocodec'; valid choices:"),
        ({"chain": "jpeg:q=25,scale=2"}, r"codec scale must be a number in \[0.25, 1\]"),
        ({"threat": "psychic"}, "unknown threat model 'psychic'; valid choices: oblivious, bpda"),
        ({"attack": "nope"}, "unknown attack 'nope'; valid choices:"),
        ({"rounds": 99}, r"rounds must be an integer in \[1, 10\]"),
        ({"steps": 0}, r"steps must be an integer in \[1, 200\]"),
        ({"classifier": "nonet"}, "unknown classifier 'nonet'; valid choices:"),
    ],
)
def test_bad_settings_are_clear_gr_errors(cache, files, photo_dir, changes, message):
    settings = dict(classifier="efficientnet-lite0", attack="pgd", eps_255=4, steps=2, threat="bpda",
                    codec="jpeg", quality=25, chain="", rounds=1)
    with pytest.raises(gr.Error, match=message):
        handlers.run_attack(cache, files, str(photo_dir / "chelsea.png"), **{**settings, **changes})


def test_unavailable_classifier_names_how_to_fetch(cache, files, photo_dir, no_downloaded_weights):
    choices = dict((value, label) for label, value in handlers.classifier_choices())
    assert choices["efficientnet-lite0"] == "efficientnet-lite0"
    assert choices["resnet20"] == "resnet20 (weights not downloaded)"
    with pytest.raises(gr.Error, match=r"Fetch them with: python -m hac weights download resnet20"):
        handlers.check_classifier("resnet20")
    with pytest.raises(gr.Error, match=r"python -m hac weights download resnet20"):
        handlers.run_attack(cache, files, str(photo_dir / "chelsea.png"), "resnet20", "fgsm", 4, 1, "bpda", "jpeg", 25, "", 1)
    handlers.check_classifier("efficientnet-lite0")  # available: no error


def test_codec_choices_and_quality_ranges(no_downloaded_weights):
    labels = dict((value, label) for label, value in handlers.codec_choices())
    assert labels["jpeg"] == "jpeg" and labels["webp"] == "webp"
    assert labels["mbt2018-mean"] == "mbt2018-mean (weights not downloaded)"
    assert list(labels)[:2] == ["jpeg", "webp"]
    slider = handlers.quality_for_codec("jpeg")
    assert (slider.minimum, slider.maximum, slider.value) == (1, 95, 25)
    with pytest.raises(gr.Error, match="weights download"):
        handlers.quality_for_codec("cheng2020-attn")


def test_elic_and_hific_qualities_are_slider_positions(no_downloaded_weights):
    """Their qualities are a list (λ·1000; low/med/high), so the integer slider picks one by position."""
    labels = dict((value, label) for label, value in handlers.codec_choices())
    assert labels["elic"] == "elic (weights not downloaded)" and labels["hific"] == "hific (weights not downloaded)"
    assert handlers.codec_quality_range("hific") == (1, 3, 2)  # starts at HiFiC's default, med
    assert handlers.codec_quality_range("elic") == (1, 6, 3)  # ELIC's default, 16
    assert handlers.codec_quality_range("hac-hyperprior") == (1, 3, 2)  # a run of integers: q itself
    with pytest.raises(MissingWeightsError, match=r"'hific-low'.*python -m hac convert hific"):
        handlers.codec_spec("hific", 1)
    with pytest.raises(MissingWeightsError, match=r"'elic-0450'"):
        handlers.codec_spec("elic", 6)
    with pytest.raises(ValueError, match=r"quality must be an integer in \[1, 3\], got 4"):
        handlers.codec_spec("hific", 4)
    with pytest.raises(gr.Error, match="hific-med"):
        handlers.quality_for_codec("hific")


def test_listed_quality_slider_names_what_is_here(no_downloaded_weights, tmp_path):
    """Only the file's presence is read here (the codec is not built), so a placeholder file will do."""
    (tmp_path / "weights").mkdir(exist_ok=True)
    (tmp_path / "weights" / "hific-high.safetensors").write_bytes(b"not loaded by these handlers")
    slider = handlers.quality_for_codec("hific")
    assert (slider.minimum, slider.maximum, slider.value) == (1, 3, 3)  # starts where the weights are
    assert slider.info == "q: 1 = low, 2 = med, 3 = high; weights here for q = high"
    assert handlers.codec_spec("hific", 3) == "hific:q=high"
    with pytest.raises(MissingWeightsError, match="'hific-med'"):
        handlers.codec_spec("hific", 2)


def test_attack_spec_from_the_tab_settings():
    assert handlers.attack_spec("pgd", 4, 10) == "pgd:eps=4/255,steps=10"
    assert handlers.attack_spec("fgsm", 8, 10) == "fgsm:eps=8/255"
    assert handlers.attack_spec("pgd-l2", 4, 5) == "pgd-l2:steps=5"  # L2 keeps its own radius
    assert handlers.attack_spec("deepfool", 4, 5) == "deepfool:steps=5"
    with pytest.raises(ValueError, match="epsilon must be in"):
        handlers.attack_spec("pgd", 0, 10)


# --- batch -----------------------------------------------------------------------------------


def test_preset_fields_show_the_preset():
    fields = batch.preset_fields("smoke")
    assert fields == batch.BatchFields(4, "fgsm", "4", "jpeg:q=50", "1", ["oblivious"])
    assert "hac-paper-small" in batch.batch_presets()
    assert "grid blocks" in batch.preset_description("hac-paper-small")


@pytest.mark.slow
def test_batch_handler_runs_the_smoke_preset_on_the_sample(cache, files):
    out = batch.run_batch(cache, files, batch.SAMPLE_DATASET, "smoke", *batch.preset_fields("smoke"))
    assert set(out.summary["threat"]) == {"none", "oblivious"}
    assert (out.summary["images"] == 4).all() and (out.summary["status"] == "done").all()
    assert out.summary["clean_acc"].between(0, 1).all()
    assert out.plots and all(Path(p).read_bytes().startswith(PNG_SIGNATURE) for p in out.plots)
    names = zipfile.ZipFile(out.download).namelist()
    assert {"summary.csv", "results.json", "image_ids.txt"} <= set(names)
    assert out.status.startswith("Done: 2 cells on 4 images")


def test_edited_fields_replace_the_preset_grid(monkeypatch):
    fields = batch.BatchFields(3, "fgsm; pgd:steps=2", "2, 4", "jpeg:q=25; webp:q=50", "1, 2", ["bpda"])
    config = batch._config_from_fields("hac-paper-small", fields)
    assert "grid" not in config and config["threats"] == ["bpda"] and config["rounds"] == [1, 2]
    assert config["attacks"] == [{"name": "fgsm", "eps": ["2/255", "4/255"]},
                                 {"name": "pgd", "steps": 2, "eps": ["2/255", "4/255"]}]
    unchanged = batch._config_from_fields("hac-paper-small", batch.preset_fields("hac-paper-small"))
    assert "grid" in unchanged


def test_too_large_batch_grid_is_refused(cache):
    files = RunFiles()
    eps = ", ".join(str(e) for e in range(1, 17))
    codecs = "; ".join(f"jpeg:q={q}" for q in range(10, 100, 10))
    with pytest.raises(gr.Error, match="this grid is too large for the app"):
        batch.run_batch(cache, files, batch.SAMPLE_DATASET, "smoke", 5, "fgsm; pgd:steps=1", eps, codecs, "1, 2, 3",
                        ["oblivious"])
    assert not [p for p in files.root.iterdir() if p.name.startswith("batch-")]  # refused before any work


@pytest.mark.parametrize("field, value, message", [
    ("eps", "four", "eps must be a comma-separated list of numbers"),
    ("attacks", "fgsm; zap", "unknown attack 'zap'"),
    ("codecs", "jpeg:q=0", r"jpeg quality q must be an integer in \[1, 95\]"),
])
def test_bad_batch_fields_are_clear_gr_errors(cache, files, field, value, message):
    fields = batch.preset_fields("smoke")._replace(**{field: value})
    with pytest.raises(gr.Error, match=message):
        batch.run_batch(cache, files, batch.SAMPLE_DATASET, "smoke", *fields)


def test_data_folders_stay_under_the_allowed_root(tmp_path, monkeypatch, cache, files):
    (tmp_path / "imagenette" / "n01440764").mkdir(parents=True)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    assert resolve_data_folder("imagenette") == (tmp_path / "imagenette").resolve()
    for escape in ("..", "../..", "/etc", "imagenette/../.."):
        with pytest.raises(ValueError, match="not a dataset folder under HAC_DATA_ROOT"):
            resolve_data_folder(escape)
    with pytest.raises(gr.Error, match="no dataset folder 'missing'"):
        batch.run_batch(cache, files, "missing", "smoke", *batch.preset_fields("smoke"))
    monkeypatch.delenv(DATA_ROOT_ENV)
    with pytest.raises(ValueError, match="set HAC_DATA_ROOT"):
        resolve_data_folder("imagenette")


# --- the pieces ------------------------------------------------------------------------------


def test_sample_dataset_is_imagenet_layout(files):
    root = files.sample_dataset()
    assert sorted(p.name for p in root.iterdir()) == sorted(synset for synset, _ in EXAMPLE_PHOTOS.values())
    assert files.sample_dataset() == root  # made once
    assert len(example_paths()) == 5


def test_run_files_keep_only_recent_runs():
    files = RunFiles(keep=2)
    runs = [files.new_run("attack") for _ in range(3)]
    assert not runs[0].exists() and runs[1].is_dir() and runs[2].is_dir()
    root = files.root
    del files
    gc.collect()
    assert not root.exists()  # removed with its owner


def test_model_cache_builds_once_and_evicts():
    cache = ModelCache(max_codecs=2)
    first = cache.chain("jpeg:q=25+webp:q=80")
    assert cache.chain("jpeg:q=25") [0] is first[0]
    cache.chain("webp:q=10")
    assert cache.loaded()["codecs"] == ["jpeg:q=25", "webp:q=10"]
    classifier = cache.classifier("efficientnet-lite0")
    assert cache.classifier("efficientnet-lite0") is classifier and not classifier.training
    with pytest.raises(ValueError, match="invalid codec chain"):
        cache.chain("jpeg:q=25+")


def test_building_the_demo_loads_no_model():
    cache = ModelCache()
    demo = build_demo(cache, RunFiles())
    assert cache.loaded() == {"classifiers": [], "codecs": []}
    public = sorted(fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public")
    assert public == ["attack", "audit", "batch", "batch_preset", "codec_attack"]
    assert demo._queue.max_size is not None and demo._queue.default_concurrency_limit >= 1


def test_every_component_uses_a_front_end_gradio_ships():
    """A component subclass must name one of Gradio's own front ends: an unknown name leaves the page on
    "Loading..." forever (the browser asks the server for a front end that does not exist)."""
    import inspect

    shipped = {cls.__name__.lower() for _, cls in inspect.getmembers(gr.components, inspect.isclass)}
    demo = build_demo(ModelCache(), RunFiles())
    names = {block.get_block_name() for block in demo.blocks.values()}
    assert {"slider", "number", "image"} <= names
    assert names - shipped - {"tabs", "tabitem", "row", "column", "group", "accordion", "form", "blocks"} == set()


def test_batch_tab_hub_subsets_offline_and_gated(monkeypatch, files):
    from hac.app.batch import _dataset_path
    from hac.app.files import GATED_SUBSETS, HUB_SUBSETS, hub_subsets

    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert hub_subsets() == [label for label in HUB_SUBSETS if label not in GATED_SUBSETS]
    with pytest.raises(ValueError, match="streamed from the Hub, and this server is offline"):
        _dataset_path(files, hub_subsets()[0])
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ValueError, match="is gated: log in with `hf auth login`"):
        _dataset_path(files, GATED_SUBSETS[0])
    assert _dataset_path(files, hub_subsets()[0]) == "hf://datasets/frgfm/imagenette/320px?split=validation"
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_token")
    assert GATED_SUBSETS[0] in hub_subsets()
