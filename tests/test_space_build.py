"""``hac space build``: the folder starts offline with every weight from a Hub cache, serves the page and
answers an attack click in a real browser; it holds only what the app uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hac import hub
from hac.app.serving import free_port
from hac.cli import main
from hac.cli.weights import register_all_specs

from test_browser import CHROMIUM_ARGS, TIMEOUT_MS, _chromium, _loaded_width, serving
from test_space import _front_matter, put_in_hf_cache

COMMIT = "c0ffee" + "0" * 34
REPO = "someone/hac-weights"


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The built folder and an HF cache holding hac's weights at a pinned commit (no checkout, no package copy)."""
    root = tmp_path_factory.mktemp("space")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAC_WEIGHTS_REPO", REPO)
        patch.setenv("HAC_WEIGHTS_REVISION", COMMIT)
        assert main(["space", "build", str(root / "out")]) == 0
        register_all_specs()
        files = {}
        for spec in (s for s in map(hub.WEIGHTS.get, hub.WEIGHTS.names()) if isinstance(s, hub.OwnWeightSpec)):
            files[hub.own_weight_spec(spec.name, spec.family, license="", paper="", description="").filename] = \
                hub.resolve_weights(spec, allow_download=False).path.read_bytes()
    put_in_hf_cache(root / "hf-cache", REPO, files, COMMIT)
    return root / "out", root / "hf-cache"


def test_the_folder_holds_the_app_and_no_weights_tests_or_training(space):
    out, _ = space
    names = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    assert {"app.py", "README.md", "requirements.txt", "hac/__init__.py", "hac/app/ui.py", "hac/hub/published.json"} <= names
    assert not [n for n in names if n.endswith((".safetensors", ".pyc")) or n.startswith(("tests/", "docs/", "weights/"))]
    assert not [n for n in names if n.startswith(("hac/training/", "hac/cli/"))]
    settings = _front_matter((out / "README.md").read_text())
    assert settings["suggested_hardware"] == "zero-a10g" and settings["python_version"].startswith(("3.10", "3.12"))
    assert f"{REPO} " in settings["preload_from_hub"][-1] and settings["preload_from_hub"][-1].endswith(COMMIT)
    import json

    published = json.loads((out / "hac" / "hub" / "published.json").read_text())
    assert (published["repo_id"], published["revision"]) == (REPO, COMMIT)  # what the Space fetches = what it preloads
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith("torch==") and "spaces>=0.40" in requirements
    assert not any(line.startswith("gradio") for line in requirements)


def _env(cache: Path, port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HAC_WEIGHTS_DIR", "HF_HOME")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HAC_CACHE_DIR": str(cache.parent / "hac-cache"),
            "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
            "OMP_NUM_THREADS": "1"}


def test_every_hac_module_in_the_folder_imports_from_it(space):
    out, cache = space
    script = ("import importlib, pathlib, hac; root = pathlib.Path(hac.__file__).parent; "
              "assert str(root).startswith(str(pathlib.Path.cwd())), root; "
              "[importlib.import_module('hac.' + '.'.join(p.relative_to(root).with_suffix('').parts).removesuffix('.__init__')) "
              "for p in root.rglob('*.py')]")
    result = subprocess.run([sys.executable, "-c", script], cwd=out, env=_env(cache, 0), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def space_url(space, tmp_path_factory):
    out, cache = space
    port = free_port()
    log = tmp_path_factory.mktemp("space-app") / "app.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=out, env=_env(cache, port),
                                   stdout=handle, stderr=subprocess.STDOUT)
    with serving(process, f"http://127.0.0.1:{port}/", log) as url:
        yield url


@pytest.mark.browser
@pytest.mark.slow
def test_the_space_serves_and_an_attack_through_hacs_codec_works_offline(space_url, photo_dir):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(space_url, wait_until="domcontentloaded")
        page.locator("#input-image input[type=file]").set_input_files(str(photo_dir / "chelsea.png"))
        page.locator("#input-image img").first.wait_for(state="visible")
        # hac's own codec: its weights can only come from the Hub cache (the folder has none, the hub is offline)
        page.get_by_label("…or a codec chain (overrides codec and quality)").fill("hac-hyperprior:q=1")
        page.locator("#run-attack").click()
        assert _loaded_width(page.locator("#purified img").first) == 224
        page.get_by_text("Label attacked").wait_for(state="visible")
        assert "hac-hyperprior:q=1" in page.locator("#summary").inner_text()
        browser.close()
