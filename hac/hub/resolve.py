"""Where a weights file is found, in a fixed order.

:func:`resolve_weights` finds the file, in this order:

1. an explicit local path given by the user;
2. a file shipped inside an installed package (the embedded defaults);
3. the project's ``weights/`` folder (or ``$HAC_WEIGHTS_DIR``);
4. the Hugging Face Hub cache, then a Hub download (for Hub-hosted weights), or
   hac's own download cache, then a download (for weights published at a URL).

Offline (``HF_HUB_OFFLINE=1`` or ``HAC_OFFLINE=1``) step 4 never touches the
network, and a missing file raises :class:`MissingWeightsError`, which names the
model, where its weights live and the command that fetches them.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

import torch

from .specs import MissingWeightsError, ResolvedWeights, WeightSpec, get_weight_spec

__all__ = ["resolve_weights", "weights_available", "download_weights", "is_offline", "default_weights_dir"]

logger = logging.getLogger(__name__)

PROJECT_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


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
