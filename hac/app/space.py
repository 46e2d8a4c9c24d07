"""The Hugging Face Space: its settings (README front matter) and the folder ``hac space build OUT`` writes.

The settings are declared here once; the checkout's ``spaces.yaml`` and README front matter are kept equal
to :func:`space_settings` by ``tests/test_space.py``. Hugging Face's Spaces configuration reference lists
the fields; ZeroGPU (``suggested_hardware: zero-a10g``, the ``spaces`` package) needs the Gradio SDK and
builds on the Python versions it supports (3.10 and 3.12; 3.11 is not one of them).

The folder holds ``app.py``, ``README.md`` (front matter + how to push), ``requirements.txt`` and the
``hac`` package without its weights (the Space preloads them from the Hub: ``preload_from_hub``, from the
repository and revision in effect at build time, recorded in the folder's ``published.json``), its command
line and its training code. Push it with one ``huggingface_hub`` call (see :data:`PUSH_COMMAND`).
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio
import yaml

from ..core.checkout import checkout_root
from ..hub import WEIGHTS, OwnWeightSpec, hub_location
from ..hub.published import write_manifest

__all__ = ["SPACE_SETTINGS", "PUSH_COMMAND", "SpaceFolder", "space_settings", "space_requirements", "build_space"]

SPACE_SETTINGS = {
    "title": "hac: compression vs. attacks",
    "emoji": "🗜️",
    "colorFrom": "indigo",
    "colorTo": "green",
    "sdk": "gradio",
    "app_file": "app.py",
    "python_version": "3.12.12",
    "suggested_hardware": "zero-a10g",
    "license": "mit",
    "short_description": "Attack an image, purify it by compression, see what survives",
    "tags": ["adversarial-robustness", "image-compression", "image-classification", "zerogpu"],
    "pinned": False,
}
"""The fixed fields; :func:`space_settings` adds the Gradio version, the models and what to preload."""

PUSH_COMMAND = (
    "python -c \"from huggingface_hub import HfApi; api = HfApi(); "
    "api.create_repo('ORG/NAME', repo_type='space', space_sdk='gradio', space_hardware='zero-a10g', exist_ok=True); "
    "api.upload_folder(repo_id='ORG/NAME', repo_type='space', folder_path='OUT')\""
)
"""Creates the Space (ZeroGPU hardware needs a PRO or Enterprise account) and uploads the folder."""

_EXCLUDED = ("__pycache__", "*.pyc", "*.pyi", "*.safetensors", "shipped", "training", "cli", "__main__.py")
"""Not used by the app: weights (preloaded from the Hub), type stubs, training and the command line."""


def _hub_preloads() -> tuple[list[str], list[str]]:
    """``preload_from_hub`` lines (``REPO FILES [REVISION]``) and the model repositories the app uses."""
    from ..cli.weights import register_all_specs
    from ..models.classifiers import CLASSIFIERS

    register_all_specs()
    classifiers = [CLASSIFIERS.get(name).weights for name in CLASSIFIERS.names()]
    hub = [spec for spec in classifiers if spec.repo_id]
    own = sorted(spec.filename for spec in map(WEIGHTS.get, WEIGHTS.names()) if isinstance(spec, OwnWeightSpec))
    location = hub_location()
    lines = [f"{spec.repo_id} {spec.filename}" for spec in hub]
    lines.append(f"{location.repo_id} {','.join(own)} {location.revision}")
    return lines, [*(spec.repo_id for spec in hub), location.repo_id]


def space_settings() -> dict:
    """The README front matter of the Space (``$HAC_WEIGHTS_REPO``/``$HAC_WEIGHTS_REVISION`` apply)."""
    preload, models = _hub_preloads()
    settings = dict(SPACE_SETTINGS)
    settings["sdk_version"] = gradio.__version__
    settings["preload_from_hub"] = preload
    settings["models"] = models
    return settings


def front_matter(settings: dict) -> str:
    return "---\n" + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True) + "---\n"


def _runtime_requirements() -> list[str]:
    try:
        return [r for r in importlib.metadata.requires("hac") or [] if "extra ==" not in r]
    except importlib.metadata.PackageNotFoundError:
        root = checkout_root()
        if root is None:
            raise FileNotFoundError("hac is neither installed with its metadata nor run from a checkout: "
                                    "`pip install .` in the checkout first") from None
        try:
            import tomllib  # novm (Python 3.11+; tomli below on 3.10)
        except ImportError:  # Python 3.10
            import tomli as tomllib
        return list(tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"])


def space_requirements() -> list[str]:
    """hac's runtime dependencies on the torch builds this hac runs with, plus ``spaces`` (ZeroGPU).

    Gradio is left out: the Space installs the ``sdk_version`` of its front matter.
    """
    pins = {name: importlib.metadata.version(name).split("+")[0] for name in ("torch", "torchvision")}
    lines = [f"{name}=={version}" for name, version in pins.items()]
    for requirement in _runtime_requirements():
        name = re.split(r"[ <>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if name not in (*pins, "gradio"):
            lines.append(requirement)
    return [*lines, "spaces>=0.40"]


@dataclass(frozen=True)
class SpaceFolder:
    path: Path
    files: int
    bytes: int


_README_BODY = """
# hac — compression vs. adversarial attacks

Attack an image, purify it by compression, and see what the classifier says, under an attacker who knows
about the defence. Source, results and the command line: the `hac` package (`pip install hac`).

This folder was written by `hac space build`. Push it as a ZeroGPU Space with:

```bash
{push}
```

Every weight the app needs comes from the Hub (`preload_from_hub` above): the timm classifiers, and hac's
own codecs from `{repo}` at revision `{revision}` (each file checked against its sha256).
"""


def build_space(out: str | Path) -> SpaceFolder:
    """Write the deployable Space folder to ``out`` (a new or empty folder).

    Raises:
        ValueError: ``out`` holds files.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; give a new folder for the Space")
    package = Path(__file__).resolve().parents[1]
    shutil.copytree(package, out / "hac", ignore=shutil.ignore_patterns(*_EXCLUDED))
    (out / "app.py").write_text(
        '"""The Space\'s entry point (written by `hac space build`)."""\n\n'
        "from hac.app import build_demo, launch_kwargs\n\ndemo = build_demo()\n\n"
        'if __name__ == "__main__":\n    demo.launch(**launch_kwargs())\n', encoding="utf-8")
    location = hub_location()
    write_manifest(location, out / "hac" / "hub" / "published.json")  # the Space fetches what its README preloads
    (out / "README.md").write_text(front_matter(space_settings()) + _README_BODY.format(
        push=PUSH_COMMAND.replace("OUT", str(out)), repo=location.repo_id, revision=location.revision), encoding="utf-8")
    (out / "requirements.txt").write_text("\n".join(space_requirements()) + "\n", encoding="utf-8")
    files = [path for path in out.rglob("*") if path.is_file()]
    return SpaceFolder(out, len(files), sum(path.stat().st_size for path in files))
