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
    """spaces.yaml is what hac.app.space declares: ZeroGPU, a Python ZeroGPU builds (3.10 or 3.12), this Gradio,
    every Hub file the app loads preloaded (the classifiers, hac's own weights at the pinned revision)."""
    from hac.app.space import space_settings
    from hac.hub import hub_location

    spaces = _spaces()
    assert spaces == space_settings()
    assert spaces["sdk"] == "gradio" and spaces["sdk_version"] == gradio.__version__
    assert (ROOT / spaces["app_file"]).is_file()
    assert spaces["python_version"].startswith(("3.10", "3.12")) and spaces["suggested_hardware"] == "zero-a10g"
    assert spaces["license"] == "mit" and len(spaces.get("short_description", "")) <= 60
    entries = [CLASSIFIERS.get(name) for name in CLASSIFIERS.names()]
    hub = sorted(f"{e.weights.repo_id} {e.weights.filename}" for e in entries if e.weights.repo_id)
    location = hub_location()
    own = [line for line in spaces["preload_from_hub"] if line.startswith(location.repo_id + " ")]
    assert sorted(set(spaces["preload_from_hub"]) - set(own)) == hub
    repo, files, revision = own[0].split(" ")
    assert revision == location.revision and len(files.split(",")) == len(location.sha256)
    assert location.repo_id in spaces["models"]


# --- hac's own weights on the Hub ------------------------------------------------------------------


def put_in_hf_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str, ref: str | None = None) -> None:
    """Lay ``files`` (path in repo -> bytes) out as huggingface_hub's cache does, at ``commit`` (and ``refs/<ref>``)."""
    import hashlib

    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    for name, payload in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(payload).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(payload)
        snapshot = repo_dir / "snapshots" / commit / name
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.symlink_to(blob)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / (ref or "main")).write_text(commit)


def test_publish_dry_run_writes_cards_with_metadata_and_matching_hashes(tmp_path):
    import hashlib

    from hac.cli import main

    out = tmp_path / "staged"
    assert main(["weights", "publish", "--repo-id", "someone/hac-weights", "--dry-run", str(out)]) == 0
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert len(sums) == 10 and {path.split("/")[0] for path in sums} == {
        "hac-hyperprior", "hac-hyperprior-adv", "hac-hyperprior-robust", "hac-comdefend-cifar10"}
    for path, digest in sums.items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == digest
    for family in {path.split("/")[0] for path in sums}:
        card = (out / family / "README.md").read_text()
        metadata = _front_matter(card)
        assert {"license", "library_name", "tags", "metrics", "model-index"} <= metadata.keys(), family
        assert metadata["license"] == "mit" and metadata["library_name"] == "hac"
        for entry in metadata["model-index"]:
            values = {m["type"]: m["value"] for m in entry["results"][0]["metrics"]}
            assert values["bpp"] > 0 and 20 < values["psnr"] < 40
        assert all(digest in card for path, digest in sums.items() if path.startswith(family + "/"))
    assert _front_matter((out / "hac-hyperprior-robust" / "README.md").read_text())["base_model"] == "someone/hac-weights"
    assert "base_model" not in _front_matter((out / "hac-hyperprior" / "README.md").read_text())


def test_publish_refuses_a_non_empty_folder_and_a_bad_repo_id(tmp_path, capsys):
    from hac.cli import main

    (tmp_path / "x").write_text("")
    assert main(["weights", "publish", "--repo-id", "someone/w", "--dry-run", str(tmp_path)]) == 2
    assert main(["weights", "publish", "--repo-id", "no-slash", "--dry-run", str(tmp_path / "new")]) == 2
    assert "is not empty" in capsys.readouterr().err


def _own_spec_from_hub(monkeypatch, tmp_path, payload: bytes):
    """hac-hyperprior-q1 as an installed hac sees it: no own folder holds it, a Hub-layout cache at a pinned commit does."""
    from hac import hub

    commit = "a" * 40
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path / "hac-cache"))
    monkeypatch.setenv("HAC_WEIGHTS_REPO", "someone/hac-weights")
    monkeypatch.setenv("HAC_WEIGHTS_REVISION", commit)
    spec = hub.own_weight_spec("hac-hyperprior-q1", "hac-hyperprior", license="MIT", paper="", description="")
    assert (spec.repo_id, spec.revision) == ("someone/hac-weights", commit)
    cache = tmp_path / "hf-cache"
    put_in_hf_cache(cache, spec.repo_id, {spec.filename: payload}, commit)
    return spec, cache


def test_own_weights_resolve_from_a_hub_cache_offline_at_the_pinned_revision(monkeypatch, tmp_path):
    from hac import hub

    shipped = hub.shipped_weights_dir() / "hac-hyperprior-q1.safetensors"
    spec, cache = _own_spec_from_hub(monkeypatch, tmp_path, shipped.read_bytes())
    resolved = hub.resolve_weights(spec, cache_dir=cache)
    assert resolved.origin == "hub-cache" and spec.revision in str(resolved.path)
    state = hub.load_weights(spec, cache_dir=cache)
    assert state.keys() == hub.load_state_dict(shipped).keys()


def test_own_weights_with_another_hash_from_the_hub_are_refused(monkeypatch, tmp_path):
    import pytest

    from hac import hub

    shipped = hub.shipped_weights_dir() / "hac-hyperprior-q2.safetensors"  # the wrong file under q1's name
    spec, cache = _own_spec_from_hub(monkeypatch, tmp_path, shipped.read_bytes())
    with pytest.raises(hub.UnsafeWeightsError, match=r"sha256 mismatch .*expected 0018b047"):
        hub.load_weights(spec, cache_dir=cache)


def test_published_hashes_are_the_files_in_this_checkout():
    from hac import hub
    from hac.cli.weights import register_all_specs

    register_all_specs()
    for spec in (s for s in map(hub.WEIGHTS.get, hub.WEIGHTS.names()) if isinstance(s, hub.OwnWeightSpec)):
        path = hub.resolve_weights(spec, allow_download=False).path
        assert hub.sha256_of(path) == spec.sha256, (
            f"{path} is not the file hac/hub/published.json records; publish it "
            "(`python -m hac weights publish --repo-id ORG/NAME --write-manifest`)")
