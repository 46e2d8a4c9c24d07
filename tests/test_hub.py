"""Weights resolution and safe loading, offline, through the real huggingface_hub calls."""

from __future__ import annotations

import hashlib
import pickle

import pytest
import torch
from safetensors.torch import save_file

from hac import hub
from hac.cli.weights import register_all_specs
from hac.hub import MissingWeightsError, UnsafeWeightsError, WeightSpec

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 2).state_dict()


def _put_in_hf_cache(cache, repo_id: str, filename: str, payload: bytes, revision: str = REVISION) -> None:
    """Lay a file out exactly as huggingface_hub's cache does (blobs, snapshots, refs)."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo_dir / "blobs" / hashlib.sha256(payload).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(payload)
    snapshot = repo_dir / "snapshots" / revision / filename
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(blob)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)


@pytest.fixture
def hub_spec(tmp_path):
    state = _tiny_state()
    source = tmp_path / "model.safetensors"
    save_file(state, str(source))
    payload = source.read_bytes()
    cache = tmp_path / "hf-cache"
    _put_in_hf_cache(cache, "someone/tiny-model", "model.safetensors", payload)
    spec = WeightSpec(
        name="tiny",
        filename="model.safetensors",
        repo_id="someone/tiny-model",
        revision=REVISION,
        sha256=hashlib.sha256(payload).hexdigest(),
    )
    return spec, cache, state


def test_hub_cache_is_found_offline_and_loads(hub_spec, tmp_path):
    spec, cache, state = hub_spec
    resolved = hub.resolve_weights(spec, cache_dir=cache, weights_dir=tmp_path / "empty")
    assert resolved.origin == "hub-cache"
    loaded = hub.load_weights(spec, cache_dir=cache, weights_dir=tmp_path / "empty")
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_unpinned_revision_follows_refs_main(hub_spec, tmp_path):
    spec, cache, _ = hub_spec
    unpinned = WeightSpec(name="tiny", filename=spec.filename, repo_id=spec.repo_id)
    assert hub.resolve_weights(unpinned, cache_dir=cache, weights_dir=tmp_path / "empty").origin == "hub-cache"


def test_wrong_sha256_is_refused(hub_spec, tmp_path):
    spec, cache, _ = hub_spec
    tampered = WeightSpec(name="tiny", filename=spec.filename, repo_id=spec.repo_id, revision=REVISION, sha256="00" * 32)
    with pytest.raises(UnsafeWeightsError, match="sha256 mismatch"):
        hub.load_weights(tampered, cache_dir=cache, weights_dir=tmp_path)


def test_missing_file_offline_names_model_source_and_command(tmp_path):
    spec = WeightSpec(name="absent-model", filename="model.safetensors", repo_id="someone/absent")
    with pytest.raises(MissingWeightsError) as error:
        hub.resolve_weights(spec, cache_dir=tmp_path / "cache", weights_dir=tmp_path)
    message = str(error.value)
    assert "absent-model" in message and "someone/absent" in message
    assert "python -m hac weights download absent-model" in message
    assert "offline" in message


def test_url_weights_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path))
    spec = WeightSpec(name="url-model", filename="m.pth", url="https://example.org/m.pth")
    with pytest.raises(MissingWeightsError, match="https://example.org/m.pth"):
        hub.resolve_weights(spec, weights_dir=tmp_path)
    cached = tmp_path / "weights" / "m.pth"
    cached.parent.mkdir()
    torch.save(_tiny_state(), cached)
    assert hub.resolve_weights(spec, weights_dir=tmp_path / "none").origin == "hac-cache"


def test_resolution_order_explicit_then_weights_dir(hub_spec, tmp_path):
    spec, cache, state = hub_spec
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    save_file(state, str(shipped / spec.local_filename))
    assert spec.local_filename == "tiny.safetensors"  # Hub files are all model.safetensors; weights/ keeps them apart
    assert hub.resolve_weights(spec, cache_dir=cache, weights_dir=shipped).origin == "weights-dir"
    explicit = tmp_path / "mine.safetensors"
    save_file(state, str(explicit))
    resolved = hub.resolve_weights(spec, explicit, cache_dir=cache, weights_dir=shipped)
    assert (resolved.origin, resolved.path) == ("explicit", explicit)
    with pytest.raises(FileNotFoundError, match="not found"):
        hub.resolve_weights(spec, tmp_path / "nope.safetensors")


def test_own_folders_in_order_env_replaces_checkout_and_package(tmp_path, monkeypatch):
    """$HAC_WEIGHTS_DIR, else the checkout's weights/, then hac's shipped files, then hac's cache."""
    from hac.hub import resolve

    state = _tiny_state()
    spec = WeightSpec(name="own", filename="own.safetensors")
    checkout, shipped, cache, env = (tmp_path / name for name in ("checkout", "shipped", "cache", "env"))
    for folder in (checkout / "weights", shipped, cache / "weights", env):
        folder.mkdir(parents=True)
        save_file(state, str(folder / spec.filename))
    monkeypatch.setattr(resolve, "checkout_root", lambda: checkout)
    monkeypatch.setattr(resolve, "shipped_weights_dir", lambda: shipped)
    monkeypatch.setenv("HAC_CACHE_DIR", str(cache))
    monkeypatch.delenv("HAC_WEIGHTS_DIR", raising=False)
    found = []
    for remove in (checkout / "weights", shipped, cache / "weights"):
        resolved = hub.resolve_weights(spec)
        found.append((resolved.origin, resolved.path.parent))
        (remove / spec.filename).unlink()
    assert found == [("checkout", checkout / "weights"), ("package", shipped), ("hac-cache", cache / "weights")]
    with pytest.raises(MissingWeightsError, match=f"put the file at {checkout / 'weights' / spec.filename}"):
        hub.resolve_weights(spec)
    save_file(state, str(shipped / spec.filename))
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(env))
    assert hub.resolve_weights(spec).origin == "HAC_WEIGHTS_DIR"
    (env / spec.filename).unlink()
    with pytest.raises(MissingWeightsError, match=f"put the file at {env / spec.filename}"):
        hub.resolve_weights(spec)  # the shipped copy is not looked at: the variable replaces hac's folders


def test_installed_hac_puts_made_weights_in_its_cache(tmp_path, monkeypatch):
    from hac.hub import resolve

    monkeypatch.setattr(resolve, "checkout_root", lambda: None)
    monkeypatch.delenv("HAC_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HAC_CACHE_DIR", str(tmp_path))
    assert hub.default_weights_dir() == tmp_path / "weights"
    assert resolve.own_folders() == [(hub.shipped_weights_dir(), "package")]


def test_shipped_defaults_resolve_from_the_package(monkeypatch):
    """hac's embedded defaults are package data (hac/hub/shipped), each with its model card."""
    monkeypatch.delenv("HAC_WEIGHTS_DIR", raising=False)
    register_all_specs()
    for name in ("hac-hyperprior-q1", "hac-hyperprior-q2", "hac-hyperprior-q3", "hac-comdefend-cifar10"):
        resolved = hub.resolve_weights(name)
        assert (resolved.origin, resolved.path.parent) == ("package", hub.shipped_weights_dir())
        assert resolved.path.with_suffix(".md").is_file()


class _Evil:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"weight": _Evil()}, handle)
    with pytest.raises(UnsafeWeightsError, match="refusing to load"):
        hub.load_state_dict(path)


def test_torch_checkpoint_is_unwrapped(tmp_path):
    path = tmp_path / "ckpt.th"
    torch.save({"state_dict": _tiny_state(), "best_prec1": 91.0}, path)
    assert set(hub.load_state_dict(path)) == {"weight", "bias"}


def test_non_state_dict_is_rejected(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="state dict"):
        hub.load_state_dict(path)


def test_embedded_classifier_weights_resolve_from_package():
    register_all_specs()
    resolved = hub.resolve_weights("efficientnet-lite0")
    assert resolved.origin == "package"
    assert resolved.path.name == "efficientnet-lite0-57934424.pth"


def test_unknown_weights_name_lists_choices():
    register_all_specs()
    with pytest.raises(ValueError, match="unknown weights .no-such-model.; valid choices: .*efficientnet-lite0"):
        hub.get_weight_spec("no-such-model")
