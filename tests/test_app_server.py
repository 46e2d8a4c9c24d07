"""The real server: ``demo.launch`` on a free port, every public endpoint called through ``gradio_client``."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import httpx
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hac.app import RunFiles, build_demo, launch_kwargs
from hac.app.batch import SAMPLE_DATASET
from hac.app.serving import free_port
from hac.core.images import load_image, png_bytes
from hac.defence.pipeline import attack_and_purify

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(cache):
    demo = build_demo(cache, RunFiles())
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                **launch_kwargs(quiet=True))
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server, verbose=False, download_files=True)


def _attack(client: Client, image: Path, **changes):
    settings = dict(classifier="efficientnet-lite0", attack="fgsm", eps_255=4, steps=1, threat="bpda",
                    codec="jpeg", quality=25, chain="", rounds=1, seed=0)
    settings.update(changes)
    return client.predict(handle_file(str(image)), *settings.values(), api_name="/attack")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_public_endpoints_are_named(client):
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/attack", "/batch", "/batch_preset"} <= endpoints
    assert not {"/check_classifier", "/quality_for_codec"} & endpoints  # UI helpers stay private


def test_attack_through_the_server_is_bit_identical_to_the_library(client, cache, photo_dir):
    photo = photo_dir / "chelsea.png"
    out = _attack(client, photo)
    clean, adversarial, purified, perturbation, slider, *labels, table, summary, warnings, download = out
    assert Path(download).name == "adversarial.png"
    downloaded = Path(download).read_bytes()
    # the same run through the library, same seed
    classifier = cache.classifier("efficientnet-lite0")
    x = classifier.fit(load_image(photo)[None])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        report = attack_and_purify(x, classifier, "fgsm:eps=4/255", "jpeg:q=25", 1, "bpda")
    assert downloaded == png_bytes(report.adversarial[0])
    assert Path(adversarial).read_bytes() == downloaded  # the image shown is the image downloaded
    assert torch.equal(load_image(downloaded), report.adversarial[0])
    assert Path(clean).read_bytes() == png_bytes(report.clean[0])
    assert Path(purified).read_bytes() == png_bytes(report.purified.x[0])
    assert [Path(p).read_bytes() for p in slider] == [downloaded, Path(purified).read_bytes()]
    assert Path(perturbation).read_bytes().startswith(b"\x89PNG")
    top5 = {label["label"]: label["confidences"] for label in labels}
    assert all(len(confidences) == 5 for confidences in top5.values())
    assert table["headers"][:3] == ["round", "bpp (adversarial in)", "PSNR vs adversarial (dB)"]
    assert len(table["data"]) == 1
    assert "Label attacked" in summary and "Gradient check" in warnings


def test_the_pgd_default_runs_through_the_server(client, photo_dir):
    out = _attack(client, photo_dir / "rocket.jpg", attack="pgd", steps=3, chain="jpeg:q=25", rounds=2)
    assert "pgd:eps=4/255,steps=3" in out[9] and len(out[8]["data"]) == 2


def test_unreadable_upload_is_a_clear_error(client, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_text("definitely not a picture")
    with pytest.raises(AppError, match="holiday.png is not an image file this app can read"):
        _attack(client, bad)


def test_uploads_over_the_size_limit_are_refused(client, server, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20))
    with pytest.raises(ValueError, match="exceeds the maximum file size of 20971520 bytes"):
        _attack(client, big)  # the client reads the server's limit
    with big.open("rb") as handle:  # and the server enforces it for anyone who does not ask
        response = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.png", handle, "image/png")}, timeout=60)
    assert response.status_code == 413


def test_unavailable_classifier_says_how_to_fetch(client, photo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(AppError, match="python -m hac weights download resnet32"):
        _attack(client, photo_dir / "chelsea.png", classifier="resnet32")


def test_batch_preset_endpoint(client):
    assert client.predict("smoke", api_name="/batch_preset") == (4, "fgsm", "4", "jpeg:q=50", "1", ["oblivious"])


def test_batch_endpoint_runs_the_smoke_preset(client):
    table, plots, archive, status, paired = client.predict(
        SAMPLE_DATASET, "smoke", 4, "fgsm", "4", "jpeg:q=50", "1", ["oblivious"], "", api_name="/batch"
    )
    assert status.startswith("Done: 2 cells on 4 images")
    assert len(table["data"]) == 2 and "defended_acc" in table["headers"]
    assert plots and all(Path(item["image"]).read_bytes().startswith(b"\x89PNG") for item in plots)
    assert "summary.csv" in zipfile.ZipFile(archive).namelist()
    assert paired["data"] == [] and "p_value" in paired["headers"]  # no comparison asked for


def test_batch_endpoint_compares_two_codecs_image_by_image(client):
    table, _, archive, status, paired = client.predict(
        SAMPLE_DATASET, "smoke", 4, "fgsm", "4", "jpeg:q=50; jpeg:q=10", "1", ["oblivious"], "jpeg:q=50", api_name="/batch"
    )
    assert status.startswith("Done: 3 cells on 4 images")
    rows = [dict(zip(paired["headers"], row)) for row in paired["data"]]
    assert [(r["codec"], r["reference"], r["measure"]) for r in rows] == [
        ("jpeg:q=10", "jpeg:q=50", "defended"), ("jpeg:q=10", "jpeg:q=50", "clean_defended")]
    summary = {(r[table["headers"].index("codec")]): r for r in table["data"]}
    accuracy = summary["jpeg:q=10"][table["headers"].index("defended_acc")]
    assert rows[0]["images"] == 4 and rows[0]["accuracy"] == pytest.approx(accuracy)
    assert rows[0]["only_codec"] + rows[0]["only_reference"] <= 4 and 0 <= rows[0]["p_value"] <= 1
    assert "paired.csv" in zipfile.ZipFile(archive).namelist()
    with pytest.raises(AppError, match="'webp:q=5' is not a codec of this evaluation"):
        client.predict(SAMPLE_DATASET, "smoke", 4, "fgsm", "4", "jpeg:q=50", "1", ["oblivious"], "webp:q=5", api_name="/batch")


def test_too_large_batch_is_refused_and_the_server_keeps_serving(client, photo_dir):
    with pytest.raises(AppError, match="too large for the app"):
        client.predict(SAMPLE_DATASET, "smoke", 5, "fgsm; bim:steps=1; pgd:steps=1", "1, 2, 3, 4, 5, 6, 7, 8",
                       "; ".join(f"jpeg:q={q}" for q in range(5, 95, 10)), "1, 2", ["oblivious", "bpda"], "",
                       api_name="/batch")
    assert _attack(client, photo_dir / "coffee.png", threat="oblivious")[11].endswith("adversarial.png")


def test_concurrent_requests_all_complete_with_bounded_memory(client, server, photo_dir):
    photos = [photo_dir / name for name in ("chelsea.png", "coffee.png", "rocket.jpg", "camera.png")]
    _attack(client, photos[0], threat="oblivious")  # warm: the model is loaded once, before measuring
    before = _rss_bytes()
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            own = Client(server, verbose=False)  # one client per user
            results[i] = _attack(own, photos[i], threat="oblivious", seed=i)
        except BaseException as error:  # collected and re-raised below, never swallowed
            errors.append(error)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(photos))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise errors[0]
    assert sorted(results) == [0, 1, 2, 3]
    assert len({Path(out[11]).read_bytes() for out in results.values()}) == 4  # four different images came back
    grown = _rss_bytes() - before
    assert grown < 400 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB over 4 requests"
