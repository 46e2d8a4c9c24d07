"""Where hac's own weights are published on the Hugging Face Hub: one repository, a pinned revision, a sha256 per file.

The facts live in ``published.json`` beside this module (``python -m hac weights publish ... --write-manifest``
rewrites it after an upload). ``$HAC_WEIGHTS_REPO`` and ``$HAC_WEIGHTS_REVISION`` point an install at
another copy (a fork or a mirror); the hashes stay, so a copy with other files is refused.

In the repository each family has a folder: ``<family>/<name>.safetensors`` beside its card.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .specs import OwnWeightSpec

__all__ = ["REPO_ENV", "REVISION_ENV", "MANIFEST", "HubLocation", "hub_location", "own_weight_spec", "write_manifest"]

REPO_ENV = "HAC_WEIGHTS_REPO"
REVISION_ENV = "HAC_WEIGHTS_REVISION"
MANIFEST = Path(__file__).resolve().with_name("published.json")


@dataclass(frozen=True)
class HubLocation:
    """hac's weights repository on the Hub.

    Attributes:
        repo_id: ``ORG/NAME``.
        revision: the pinned revision (a commit hash, or the tag ``hac weights publish`` created).
        sha256: file name (``hac-hyperprior-q1.safetensors``) -> full hex digest.
    """

    repo_id: str
    revision: str
    sha256: Mapping[str, str]

    @staticmethod
    def path_in_repo(family: str, filename: str) -> str:
        return f"{family}/{filename}"


def hub_location() -> HubLocation:
    """The location in ``published.json``, with ``$HAC_WEIGHTS_REPO`` / ``$HAC_WEIGHTS_REVISION`` applied.

    Raises:
        ValueError: ``$HAC_WEIGHTS_REPO`` is not of the form ``ORG/NAME``.
    """
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    repo_id = os.environ.get(REPO_ENV, "").strip() or manifest["repo_id"]
    revision = os.environ.get(REVISION_ENV, "").strip() or manifest["revision"]
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"${REPO_ENV} must be a Hub repository id ORG/NAME, got {repo_id!r}")
    return HubLocation(repo_id, revision, dict(manifest["sha256"]))


def write_manifest(location: HubLocation, path: Path = MANIFEST) -> Path:
    """Record a publication (repository, pinned revision, hashes) in ``published.json``."""
    data = {"repo_id": location.repo_id, "revision": location.revision, "sha256": dict(sorted(location.sha256.items()))}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def own_weight_spec(name: str, family: str, *, license: str, paper: str, description: str) -> OwnWeightSpec:
    """The spec of hac's own ``<name>.safetensors``, located in hac's Hub repository (see :func:`hub_location`)."""
    location = hub_location()
    filename = f"{name}.safetensors"
    return OwnWeightSpec(
        name=name,
        filename=location.path_in_repo(family, filename),
        repo_id=location.repo_id,
        revision=location.revision,
        sha256=location.sha256.get(filename),
        license=license,
        paper=paper,
        description=description,
        family=family,
    )
