"""Where a weights file is found, in a fixed order.

:func:`resolve_weights` returns the first of these that holds the file, with its origin
(the name in brackets, which ``hac weights`` prints):

1. an explicit local path given by the user (``explicit``);
2. hac's own folders: ``$HAC_WEIGHTS_DIR`` when set (``HAC_WEIGHTS_DIR``), which then replaces
   the two below; else the checkout's ``weights/`` when hac runs from a source checkout
   (``checkout``), then the files shipped inside the hac package, ``hac/hub/shipped/`` (``package``);
3. a file embedded in another installed package, e.g. EfficientNet-Lite0's (``package``);
4. hac's cache folder, ``$HAC_CACHE_DIR/weights`` or ``~/.cache/hac/weights`` (``hac-cache``);
5. the Hugging Face cache (``hub-cache``), then a Hub download (``hub-download``), for Hub-hosted
   weights; a download into hac's cache (``url-download``), for weights published at a URL.

Offline (``HF_HUB_OFFLINE=1`` or ``HAC_OFFLINE=1``) step 5 never touches the network, and a
missing file raises :class:`MissingWeightsError`, which names the model, where its weights
live and the command that fetches them.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

import torch

from ..core.checkout import checkout_root
from .specs import MissingWeightsError, ResolvedWeights, WeightSpec, get_weight_spec

__all__ = [
    "resolve_weights",
    "weights_available",
    "download_weights",
    "is_offline",
    "default_weights_dir",
    "shipped_weights_dir",
    "own_folders",
    "ORIGINS",
]

logger = logging.getLogger(__name__)

ORIGINS = {
    "explicit": "the path given",
    "weights-dir": "the weights folder given",
    "HAC_WEIGHTS_DIR": "$HAC_WEIGHTS_DIR",
    "checkout": "the checkout's weights/",
    "package": "shipped inside a package, hac or another",
    "hac-cache": "hac's cache folder",
    "hub-cache": "the Hugging Face cache",
    "hub-download": "downloaded from the Hugging Face Hub",
    "url-download": "downloaded from its URL",
}


def is_offline() -> bool:
    """True when the environment forbids network access (read at call time)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HAC_OFFLINE", ""))
    return any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)


def shipped_weights_dir() -> Path:
    """The weights shipped inside the hac package (the embedded defaults)."""
    return Path(__file__).resolve().parent / "shipped"


def _cache_dir() -> Path:
    override = os.environ.get("HAC_CACHE_DIR")
    base = Path(override) if override else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hac"
    return base / "weights"


def default_weights_dir() -> Path:
    """Where weights made on this machine go (converted, copied): ``$HAC_WEIGHTS_DIR`` if set,
    else the checkout's ``weights/`` when hac runs from one, else hac's cache folder."""
    override = os.environ.get("HAC_WEIGHTS_DIR")
    if override:
        return Path(override)
    root = checkout_root()
    return root / "weights" if root is not None else _cache_dir()


def own_folders(weights_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """hac's own weights folders (step 2), in the order searched, each with its origin name."""
    if weights_dir is not None:
        return [(Path(weights_dir), "weights-dir")]
    override = os.environ.get("HAC_WEIGHTS_DIR")
    if override:
        return [(Path(override), "HAC_WEIGHTS_DIR")]
    root = checkout_root()
    return ([(root / "weights", "checkout")] if root is not None else []) + [(shipped_weights_dir(), "package")]


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


def _url_download(spec: WeightSpec) -> tuple[Path, str]:
    cached = _cache_dir() / spec.local_filename
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
        weights_dir: a folder to look in instead of hac's own folders (step 2).
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
    for folder, origin in own_folders(weights_dir):
        if (folder / spec.local_filename).is_file():
            return ResolvedWeights(spec, folder / spec.local_filename, origin)
    if spec.package_file:
        embedded = _package_path(spec)
        if embedded is not None:
            return ResolvedWeights(spec, embedded, "package")
    cached = _cache_dir() / spec.local_filename
    if cached.is_file():
        return ResolvedWeights(spec, cached, "hac-cache")
    # Offline always wins, even over an explicit download request.
    allow_download = (allow_download is not False) and not is_offline()
    found = None
    if spec.repo_id:
        found = _hub_path(spec, cache_dir, allow_download)
    elif spec.url and allow_download:
        found = _url_download(spec)
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
