"""The real app in a real browser: ``python app.py`` driven by headless Chromium through Playwright.

Uses Debian's Chromium (``apt-get install chromium``; never a Playwright download).
Screenshots land in ``artifacts/screenshots/`` as test artefacts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from pathlib import Path

import pytest

from hac.app.serving import free_port, start_app, stop, wait_until_served
from hub_layout import SYNSETS, write_hub_dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 300_000


def _chromium() -> str:
    import shutil

    return os.environ.get("HAC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """``python app.py`` as a user starts it, on a free port given through GRADIO_SERVER_PORT."""
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    data_root = tmp_path_factory.mktemp("data-root")
    if importlib.util.find_spec("datasets") is not None:  # a dataset in the Hub's parquet layout, offered by the batch tab
        write_hub_dataset(data_root / "tiny-hub", SYNSETS, [0, 1, 2, 1, 0, 2], size=(64, 64))
    with open(log, "wb") as out, pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAC_DATA_ROOT", str(data_root))
        process = start_app(port, out)
    with serving(process, f"http://127.0.0.1:{port}/", log) as url:
        yield url


@contextlib.contextmanager
def serving(process, url: str, log: Path):
    """``url`` once the app ``process`` serves it (the test fails with the log's tail if it does not); stopped after."""
    try:
        try:
            wait_until_served(url, process, timeout=180)
        except (RuntimeError, TimeoutError) as error:
            pytest.fail(f"{error}:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        stop(process)


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1300})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url, wait_until="domcontentloaded")
        yield page
        browser.close()


def _wait_for_rows(page, table: str, rows: int) -> None:
    # Gradio's dataframe is a virtual table; its grid reports the row count (header included).
    page.wait_for_function(
        "([sel, n]) => document.querySelector(sel + ' [role=grid]')?.getAttribute('aria-rowcount') === String(n)",
        arg=[table, rows + 1],
    )


def _loaded_width(image) -> int:
    """The natural width of an <img> once the browser has finished loading it (visible comes earlier)."""
    image.wait_for(state="visible")
    image.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return image.evaluate("img => img.naturalWidth")


def test_attack_tab_shows_three_images_and_predictions(page, photo_dir):
    page.locator("#input-image input[type=file]").set_input_files(str(photo_dir / "chelsea.png"))
    page.locator("#input-image img").first.wait_for(state="visible")
    page.locator("#run-attack").click()
    for elem_id in ("clean", "adversarial", "purified", "perturbation"):
        assert _loaded_width(page.locator(f"#{elem_id} img").first) == 224
    for elem_id in ("top5-clean", "top5-adversarial", "top5-purified"):
        page.locator(f"#{elem_id} .output-class, #{elem_id} h2").first.wait_for(state="visible")
    page.get_by_text("Label attacked").wait_for(state="visible")
    summary = page.locator("#summary").inner_text()
    assert "pgd:eps=4/255,steps=10" in summary and "jpeg:q=25" in summary
    _wait_for_rows(page, "#rounds-table", 1)
    page.locator("#download a").first.wait_for(state="attached")
    page.screenshot(path=str(SCREENSHOTS / "attack-tab.png"), full_page=True)


def test_batch_tab_runs_the_smallest_preset(page):
    page.get_by_role("tab", name="Batch evaluation").click()
    page.locator("#run-batch").wait_for(state="visible")
    assert page.locator("#preset input").input_value() == "smoke"
    codecs = page.get_by_label("Codec chains (';'-separated)")
    codecs.fill("jpeg:q=50; jpeg:q=10,scale=0.75")
    page.locator("#batch-compare textarea, #batch-compare input").first.fill("jpeg:q=50")
    page.locator("#run-batch").click()
    page.get_by_text("Done: 3 cells on 4 images").wait_for(state="visible")
    _wait_for_rows(page, "#batch-summary", 3)
    _wait_for_rows(page, "#batch-paired", 2)
    assert "jpeg:q=10,scale=0.75" in page.locator("#batch-paired").inner_text()
    page.locator("#batch-plots img").first.wait_for(state="visible")
    page.screenshot(path=str(SCREENSHOTS / "batch-tab.png"), full_page=True)


def _open_codec_tab_on_coffee(page) -> None:
    page.get_by_role("tab", name="Attack the codec").click()
    page.locator("#codec-examples button").nth(1).click()  # coffee.png
    page.locator("#codec-input-image img").first.wait_for(state="visible")


def _attack_the_codec(page, objective: str, eps: str, steps: int) -> None:
    page.locator("#codec-objective").get_by_label(objective, exact=True).check()
    page.locator("#codec-eps").get_by_label(eps, exact=True).check()
    box = page.locator("#codec-steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")
    page.locator("#run-codec-attack").click()


def test_codec_attack_tab_attacks_jpeg_on_an_example(page):
    _open_codec_tab_on_coffee(page)
    assert page.locator("#codec-attack-codec input").input_value() == "jpeg"
    _attack_the_codec(page, "rate", "8/255", 3)
    page.locator("#codec-summary table").wait_for(state="visible")
    for elem_id in ("codec-clean-reconstruction", "codec-attacked-reconstruction", "codec-clean-input",
                    "codec-attacked-input", "codec-perturbation"):
        assert _loaded_width(page.locator(f"#{elem_id} img").first) == 256
    summary = page.locator("#codec-summary").inner_text()
    assert "pgd:objective=rate,eps=8/255,steps=3" in summary and "jpeg:q=25" in summary
    for row in ("clean", "attacked (PGD)", "random ±ε noise (baseline)"):
        assert row in summary
    ratio = float(re.search(r"bpp increase: ×([0-9.]+)", summary).group(1))
    assert ratio > 1.2  # JPEG q=25 on coffee.png: observed x1.35
    page.screenshot(path=str(SCREENSHOTS / "codec-attack-tab.png"), full_page=True)


def test_codec_attack_tab_offers_the_robust_family(page):
    """The shipped robust codec picked from the dropdown: its quality slider follows, its attack is measured."""
    _open_codec_tab_on_coffee(page)
    dropdown = page.locator("#codec-attack-codec input")
    dropdown.click()
    dropdown.fill("hac-hyperprior-robust")
    page.get_by_role("option", name="hac-hyperprior-robust", exact=True).click()
    page.get_by_text("q in 1..3").wait_for(state="visible")
    _attack_the_codec(page, "distortion", "4/255", 3)
    page.get_by_text("hac-hyperprior-robust:q=1").wait_for(state="visible")  # the jpeg test's table may still show
    summary = page.locator("#codec-summary").inner_text()
    assert "pgd:objective=distortion,eps=4/255,steps=3" in summary
    drop = float(re.search(r"PSNR drop: (-?[0-9.]+) %", summary).group(1))
    assert 0 < drop < 5  # coffee.png at q1: observed 3.08 % robust, 6.62 % for the plain hac-hyperprior
    page.screenshot(path=str(SCREENSHOTS / "codec-attack-robust.png"), full_page=True)


def test_about_tab_explains_the_threat_models(page):
    page.get_by_role("tab", name="About").click()
    about = page.locator("#about")
    about.get_by_text("Threat models: what the attacker knows").wait_for(state="visible")
    text = about.inner_text()
    for words in ("Oblivious", "BPDA", "Straight-through", "EOT", "Human Aligned Compression for Robust Models"):
        assert words in text
    page.screenshot(path=str(SCREENSHOTS / "about-tab.png"), full_page=True)


def test_batch_tab_runs_a_hub_layout_dataset(page):
    pytest.importorskip("datasets")
    page.get_by_role("tab", name="Batch evaluation").click()
    page.locator("#batch-dataset input").click()
    page.get_by_role("option", name="tiny-hub").click()
    page.get_by_label(re.compile(r"^Images")).fill("3")  # the first 3 rows of the parquet split
    page.locator("#run-batch").click()
    page.wait_for_function("() => document.querySelector('#batch-status')?.innerText.includes('on 3 images')")
    _wait_for_rows(page, "#batch-summary", 3)
    page.screenshot(path=str(SCREENSHOTS / "batch-tab-hub-dataset.png"), full_page=True)
