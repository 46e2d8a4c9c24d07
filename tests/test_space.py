"""The Hugging Face Space settings: spaces.yaml is README.md's front matter, and it matches the project."""

from __future__ import annotations

from pathlib import Path

import gradio
import yaml

from hac.models.classifiers import CLASSIFIERS

ROOT = Path(__file__).resolve().parent.parent


def _spaces() -> dict:
    return yaml.safe_load((ROOT / "spaces.yaml").read_text(encoding="utf-8"))


def _front_matter(text: str) -> dict | None:
    """The YAML block between the first two ``---`` lines at the very top, or None."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        return None
    return yaml.safe_load("\n".join(lines[1:end]))


def test_readme_front_matter_is_spaces_yaml():
    front = _front_matter((ROOT / "README.md").read_text(encoding="utf-8"))
    assert front is not None, "README.md must start with the Space settings of spaces.yaml between '---' lines"
    assert front == _spaces()


def test_space_settings_match_the_project():
    spaces = _spaces()
    assert spaces["sdk"] == "gradio" and spaces["sdk_version"] == gradio.__version__
    assert (ROOT / spaces["app_file"]).is_file()
    assert spaces["python_version"] == "3.11" and spaces["license"] == "mit"
    assert len(spaces.get("short_description", "")) <= 60
    entries = [CLASSIFIERS.get(name) for name in CLASSIFIERS.names()]
    hub = sorted(f"{e.weights.repo_id} {e.weights.filename}" for e in entries if e.weights.repo_id)
    assert sorted(spaces["preload_from_hub"]) == hub
