"""hac as a user installs it: a built wheel in a fresh venv, used from outside the checkout.

The wheel is built offline from a copy of the sources (no build isolation: the installed
setuptools builds it), installed with ``--no-deps`` into a venv that sees the already-installed
dependencies (``--system-site-packages``), and every command runs from an empty folder with
``HF_HUB_OFFLINE=1`` and no ``HAC_WEIGHTS_DIR``, so the shipped weights must come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("hac-hyperprior-q1", "hac-hyperprior-q2", "hac-hyperprior-q3", "hac-comdefend-cifar10")
SUB_PACKAGES = ("core", "hub", "models", "codecs", "attacks", "defence", "evaluation", "rd", "training", "cli", "app")

pytestmark = pytest.mark.slow


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, wheel path, environment, empty working folder) of an installed hac."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "hac", source / "hac", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HAC_", "PYTHON"))}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"), "."],
         source, env)
    (wheel,) = (base / "dist").glob("hac-*.whl")
    venv.create(base / "venv", system_site_packages=True, with_pip=True)
    bin_dir = base / "venv" / ("Scripts" if os.name == "nt" else "bin")
    _run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)], base, env)
    work = base / "work"
    work.mkdir()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["HAC_CACHE_DIR"] = str(base / "cache")
    return bin_dir, wheel, env, work


def test_wheel_holds_every_sub_package_and_the_shipped_weights(installed):
    _, wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in SUB_PACKAGES:
        assert f"hac/{package}/__init__.py" in names, package
    for name in SHIPPED:
        assert {f"hac/hub/shipped/{name}.safetensors", f"hac/hub/shipped/{name}.md"} <= names, name
    assert not any(name.startswith(("tests/", "weights/", "training-state/")) for name in names)


def test_hac_is_imported_from_the_venv(installed):
    bin_dir, _, env, work = installed
    where = _run([str(bin_dir / "python"), "-c", "import hac; print(hac.__file__)"], work, env).strip()
    assert Path(where).is_relative_to(bin_dir.parent), where
    assert not Path(where).is_relative_to(ROOT), where


def test_commands_work_from_outside_the_checkout(installed):
    bin_dir, _, env, work = installed
    hac = str(bin_dir / "hac")
    assert "purify" in _run([hac, "--help"], work, env) and "train" in _run([bin_dir / "python", "-m", "hac", "--help"], work, env)
    listing = _run([hac, "weights"], work, env)
    package_dir = bin_dir.parent
    for name in SHIPPED:
        (line,) = [row for row in listing.splitlines() if row.startswith(name + " ")]
        assert " yes " in line and "package (" in line, line
        assert str(package_dir) in line and f"hac/hub/shipped/{name}.safetensors" in line, line
    image = work / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    out = _run([hac, "purify", "--image", str(image), "--codec", "hac-hyperprior:q=1", "--out", str(work / "out")], work, env)
    assert "hac-hyperprior:q=1" in out
    assert any((work / "out").iterdir())
    assert "{run,export,pack}" in _run([hac, "train", "--help"], work, env)
    assert "--eps" in _run([hac, "codec-attack", "--help"], work, env)
