"""Publishing hac's own weights on the Hugging Face Hub: one repository, a folder and a model card per family.

:func:`stage` writes the exact folder that is uploaded::

    README.md                      the repository's card: the families, every file with its sha256
    SHA256SUMS                     ``<sha256>  <path>`` per weights file (``sha256sum -c`` reads it)
    <family>/README.md             the family's card: YAML metadata (licence, library, tags, base model,
                                   metrics measured on Kodak / CIFAR-10), then its files and their cards
    <family>/<name>.safetensors    the weights
    <family>/<name>.md             the card written when the file was exported

:func:`upload` sends it with ``HfApi.create_repo`` + ``upload_folder`` and tags the commit.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from .loading import sha256_of
from .published import HubLocation
from .resolve import resolve_weights
from .specs import WEIGHTS, OwnWeightSpec

__all__ = ["FAMILY_TAGS", "Staged", "own_specs", "stage", "upload"]

FAMILY_TAGS = ["image-compression", "learned-image-compression", "adversarial-robustness", "safetensors"]
_MEASURED = re.compile(r"## Measured on `(?P<dataset>[^`]+)` \((?P<images>\d+) images")
_RESULT = re.compile(r"\*\*(?P<bpp>[\d.]+) bpp, (?P<psnr>[\d.]+) dB\*\*")
_BASE_FAMILY = {"hac-hyperprior-adv": "hac-hyperprior", "hac-hyperprior-robust": "hac-hyperprior-adv"}
"""The family each fine-tuned family started from (their cards give the lineage per file)."""


@dataclass(frozen=True)
class Staged:
    """A folder ready to upload and what is in it."""

    folder: Path
    sha256: dict[str, str]  # file name -> digest
    families: dict[str, list[str]]  # family -> spec names


def own_specs(names: Iterable[str] = ()) -> list[OwnWeightSpec]:
    """hac's own registered specs (all, or those whose name contains one of ``names``)."""
    names = list(names)
    specs = [spec for spec in map(WEIGHTS.get, WEIGHTS.names()) if isinstance(spec, OwnWeightSpec)]
    return [spec for spec in specs if not names or any(part in spec.name for part in names)]


def _measured(card: str) -> dict | None:
    measured, result = _MEASURED.search(card), _RESULT.search(card)
    if not (measured and result):
        return None
    return {"dataset": measured["dataset"], "images": int(measured["images"]),
            "bpp": float(result["bpp"]), "psnr": float(result["psnr"])}


def _family_metadata(family: str, entries: list[tuple[OwnWeightSpec, str]], repo_id: str) -> dict:
    results = []
    for spec, card in entries:
        measured = _measured(card)
        if measured is None:
            continue
        results.append({"name": spec.name, "results": [{
            "task": {"type": "image-to-image", "name": "Image compression"},
            "dataset": {"name": measured["dataset"], "type": measured["dataset"]},
            "metrics": [
                {"type": "bpp", "value": measured["bpp"], "name": f"bits per pixel ({measured['images']} images)"},
                {"type": "psnr", "value": measured["psnr"], "name": f"PSNR dB ({measured['images']} images)"},
            ],
        }]})
    metadata = {
        "license": entries[0][0].license.lower(),
        "library_name": "hac",
        "tags": [*FAMILY_TAGS, family],
        "metrics": ["psnr", "bpp"],
    }
    if family in _BASE_FAMILY:
        metadata["base_model"] = repo_id
        metadata["base_model_relation"] = "finetune"
    if results:
        metadata["model-index"] = results
    return metadata


def _front_matter(metadata: dict) -> str:
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n"


def stage(specs: list[OwnWeightSpec], out: str | Path, location: HubLocation, *, check_hashes: bool = True) -> Staged:
    """Write the folder :func:`upload` sends (see the module docstring) from the local files of ``specs``.

    Args:
        specs: hac's own specs to publish (their files must be in hac's own folders).
        out: a new or empty folder.
        location: the repository and revision the cards name.
        check_hashes: refuse a file whose sha256 differs from ``published.json`` (pass ``False`` to
            publish retrained files, then record them with ``--write-manifest``).

    Raises:
        FileExistsError: ``out`` holds files.
        hac.hub.MissingWeightsError: a file is not on this machine.
        ValueError: ``out`` holds files, nothing to publish, or a file that is not the one ``published.json`` records.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; give a new folder for the staged upload")
    if not specs:
        raise ValueError("no weights to publish: none of hac's own weights matched")
    families: dict[str, list[tuple[OwnWeightSpec, str]]] = {}
    digests: dict[str, str] = {}
    for spec in specs:
        resolved = resolve_weights(spec, allow_download=False)
        digest = sha256_of(resolved.path)
        if check_hashes and spec.sha256 and digest != spec.sha256:
            raise ValueError(
                f"{resolved.path} (sha256 {digest[:12]}…) is not the file published.json records for {spec.name} "
                f"({spec.sha256[:12]}…); to publish retrained weights pass --write-manifest, which records the new hashes"
            )
        target = out / spec.family / Path(spec.filename).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(resolved.path, target)
        card_path = resolved.path.with_suffix(".md")
        card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
        if card:
            target.with_suffix(".md").write_text(card, encoding="utf-8")
        digests[target.name] = digest
        families.setdefault(spec.family, []).append((spec, card))
    lines = []
    for family, entries in families.items():
        body = [f"# {family}\n", f"hac's {family} weights ({len(entries)} file{'s' * (len(entries) != 1)}), "
                "loaded by `hac` (`pip install hac`; `create_codec(...)` fetches them from this repository).\n",
                "| file | sha256 | measured |", "|---|---|---|"]
        for spec, card in entries:
            name = Path(spec.filename).name
            measured = _measured(card)
            result = f"{measured['bpp']} bpp, {measured['psnr']} dB on {measured['dataset']}" if measured else ""
            body.append(f"| `{name}` | `{digests[name]}` | {result} |")
            lines.append(f"{digests[name]}  {family}/{name}")
        if family in _BASE_FAMILY:
            body.append(f"\nFine-tuned from the `{_BASE_FAMILY[family]}` family in this repository; each file's card "
                        "gives its lineage.")
        body.append("\nEach file's own card (`<name>.md` beside it) says how it was trained and measured.")
        metadata = _family_metadata(family, entries, location.repo_id)
        (out / family / "README.md").write_text(_front_matter(metadata) + "\n" + "\n".join(body) + "\n", encoding="utf-8")
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    root = {"license": "mit", "library_name": "hac", "tags": FAMILY_TAGS}
    listing = "\n".join(f"- [`{family}/`]({family}/README.md): {', '.join(spec.name for spec, _ in entries)}"
                        for family, entries in families.items())
    (out / "README.md").write_text(
        _front_matter(root) + "\n# hac weights\n\nThe codecs hac trained itself, one folder and card per family:\n\n"
        f"{listing}\n\nhac pins revision `{location.revision}` of `{location.repo_id}` and checks every file "
        "against `SHA256SUMS`.\n", encoding="utf-8",
    )
    return Staged(out, digests, {family: [spec.name for spec, _ in entries] for family, entries in families.items()})


def upload(staged: Staged, repo_id: str, tag: str, *, token: str | None = None) -> str:
    """Upload a staged folder to ``repo_id`` (created if missing) and tag the commit ``tag``; returns its hash."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=staged.folder, repo_type="model",
                               commit_message=f"hac weights: {', '.join(staged.families)}")
    api.create_tag(repo_id, tag=tag, revision=commit.oid, repo_type="model")
    return commit.oid
