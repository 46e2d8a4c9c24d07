"""The batch-evaluation config: one file (or dict) that expands to a grid of cells.

A config lists axes; every combination is one *cell*::

    classifier × codec config (chain, quality) × rounds × attack × ε × threat model

A YAML example (see ``configs/hac-paper-small.yaml``)::

    name: example
    data: {limit: 200, seed: 0}        # the folder comes from --data
    classifier: efficientnet-lite0
    codecs:
      - {name: jpeg, q: [25, 50]}      # a list-valued parameter is swept
      - jpeg:q=50+webp:q=80            # a chain spec (each round applies the chain)
    rounds: [1, 3]
    attacks:
      - {name: pgd, eps: [2/255, 4/255], steps: 10}   # a list of eps is swept
      - fgsm:eps=4/255
    threats: [oblivious, bpda]
    grid:                              # optional: union of blocks, each overriding the axes above
      - {threats: [oblivious]}
      - {threats: [bpda], rounds: [1]}

Every (classifier, attack) also gets an undefended baseline cell (threat and
codec ``none``, 0 rounds). Other keys: ``batch_size`` (16; one cell on one
batch is the unit of work and of resumption), ``seed`` (0; seeds every unit),
``eot_samples`` (8), ``ms_ssim`` (true; false skips the MS-SSIM of purified
adversarial and clean images, which costs about as much as a classifier
forward pass), ``max_cells`` (2000). ``data`` takes ``path`` (a folder, or a Hub
dataset ``hf://datasets/<owner>/<name>[/<config>]?split=validation[&pool=N]``), ``layout``
(auto / imagenet / cifar10 / hub), ``limit``, ``seed``, ``ids_file``,
``restrict_classes``, and for the Hub ``repo``, ``config``, ``split``, ``cache_dir``.

Errors name the offending key, e.g.
``config key 'attacks[1].eps': must be positive, got -1``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from ..attacks.classifier_attacks import ATTACKS, create_attack
from ..models.classifiers import CLASSIFIERS, DEFAULT_CLASSIFIER
from ..codecs.factory import check_codec_params
from .datasets import LAYOUTS
from ..defence.purify import MAX_ROUNDS
from ..core.specs import ComponentSpec, format_spec, parse_chain, parse_spec, parse_value
from ..attacks.threats import ThreatModel

__all__ = [
    "ConfigError",
    "DataConfig",
    "CodecChoice",
    "AttackChoice",
    "GridBlock",
    "Cell",
    "EvalConfig",
    "PRESETS",
    "BASELINE",
    "DEFAULT_MAX_CELLS",
    "load_config",
    "config_hash",
]

BASELINE = "none"
"""Threat model and codec of the undefended baseline cells."""

DEFAULT_MAX_CELLS = 2000

_TOP_KEYS = ("name", "description", "data", "classifier", "classifiers", "codecs", "rounds", "attacks", "threats",
             "grid", "batch_size", "seed", "max_cells", "eot_samples", "ms_ssim")
_AXES = ("classifiers", "codecs", "rounds", "attacks", "threats")
_DATA_KEYS = ("path", "layout", "limit", "seed", "ids_file", "restrict_classes", "repo", "config", "split", "cache_dir")


class ConfigError(ValueError):
    """An invalid evaluation config; the message starts with the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key {key!r}: {message}")
        self.key = key


@dataclass(frozen=True)
class DataConfig:
    """Which images: a folder (``path``, ``layout``) or a Hub dataset (``layout="hub"``), and which subset.

    Attributes:
        limit: evaluate a seeded subset of this many images (None: all).
        seed: seed of the subset draw.
        ids_file: a file listing the image ids to use (overrides ``limit``).
        restrict_classes: keep only the logits of the classes present in the
            data set (Imagenette's 10), as the HAC paper does.
    """

    path: str | None = None
    layout: str = "auto"
    limit: int | None = None
    seed: int = 0
    ids_file: str | None = None
    restrict_classes: bool = False
    repo: str = "frgfm/imagenette"
    config: str | None = "320px"
    split: str = "validation"
    cache_dir: str | None = None


@dataclass(frozen=True)
class CodecChoice:
    """One codec config: a canonical chain spec (``jpeg:q=25``), its family (``jpeg``) and quality."""

    chain: str
    family: str
    quality: float | None
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class AttackChoice:
    """One attack at one budget: canonical spec (``pgd:eps=4/255``), name, ε (None if unbounded), parameters."""

    spec: str
    name: str
    eps: float | None
    params: tuple[tuple[str, Any], ...] = ()
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class GridBlock:
    """One cartesian product of the axes."""

    classifiers: tuple[str, ...]
    codecs: tuple[CodecChoice, ...]
    rounds: tuple[int, ...]
    attacks: tuple[AttackChoice, ...]
    threats: tuple[ThreatModel, ...]

    @property
    def size(self) -> int:
        return len(self.classifiers) * len(self.codecs) * len(self.rounds) * len(self.attacks) * len(self.threats)


@dataclass(frozen=True)
class Cell:
    """One grid cell. The undefended baseline has ``threat == codec == "none"`` and ``rounds == 0``."""

    classifier: str
    threat: ThreatModel | str
    attack: str
    attack_name: str
    eps: float | None
    codec: str
    codec_family: str
    quality: float | None
    rounds: int

    @property
    def is_baseline(self) -> bool:
        return self.threat == BASELINE

    @property
    def key(self) -> str:
        """Human-readable identity, e.g. ``efficientnet-lite0 | bpda | pgd:eps=4/255 | jpeg:q=25 x3``."""
        return f"{self.classifier} | {self.threat} | {self.attack} | {self.codec} x{self.rounds}"

    @property
    def id(self) -> str:
        """Short stable id (hash of :attr:`key`), used in the result store."""
        return hashlib.sha1(self.key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class EvalConfig:
    """A validated evaluation config (build it with :func:`load_config`)."""

    name: str
    data: DataConfig
    blocks: tuple[GridBlock, ...]
    batch_size: int = 16
    seed: int = 0
    max_cells: int = DEFAULT_MAX_CELLS
    eot_samples: int = 8
    ms_ssim: bool = True
    description: str = ""

    def cells(self) -> list[Cell]:
        """Every cell of the grid, baselines first per (classifier, attack); duplicates across blocks merged.

        Raises:
            ConfigError: more than ``max_cells`` cells.
        """
        upper = sum(block.size for block in self.blocks)
        if upper > self.max_cells * 2 + 1000:  # refuse before materialising an absurd grid
            self._too_many(upper)
        cells: dict[str, Cell] = {}
        for block in self.blocks:
            for classifier, threat, attack, codec, rounds in itertools.product(
                block.classifiers, block.threats, block.attacks, block.codecs, block.rounds
            ):
                base = Cell(classifier, BASELINE, attack.spec, attack.name, attack.eps, BASELINE, BASELINE, None, 0)
                cells.setdefault(base.key, base)
                cell = Cell(classifier, threat, attack.spec, attack.name, attack.eps, codec.chain, codec.family, codec.quality, rounds)
                cells.setdefault(cell.key, cell)
        if len(cells) > self.max_cells:
            self._too_many(len(cells))
        return list(cells.values())

    def _too_many(self, count: int) -> None:
        raise ConfigError(
            "max_cells",
            f"the grid has {count} cells (classifiers x codec configs x rounds x attacks x threats, plus one "
            f"undefended baseline per classifier and attack), over max_cells={self.max_cells}; "
            "shrink the grid or raise max_cells",
        )

    def codec_choices(self) -> dict[str, CodecChoice]:
        """Canonical chain -> its first :class:`CodecChoice` (with the config key, for errors)."""
        choices: dict[str, CodecChoice] = {}
        for block in self.blocks:
            for codec in block.codecs:
                choices.setdefault(codec.chain, codec)
        return choices

    def attack_choices(self) -> dict[str, AttackChoice]:
        """Canonical attack spec -> :class:`AttackChoice`."""
        choices: dict[str, AttackChoice] = {}
        for block in self.blocks:
            for attack in block.attacks:
                choices.setdefault(attack.spec, attack)
        return choices

    def with_data(self, **changes: Any) -> "EvalConfig":
        """A copy with some :class:`DataConfig` fields replaced (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "limit" in changes:
            _positive_int(changes["limit"], "data.limit")
        return replace(self, data=replace(self.data, **changes))

    def to_dict(self) -> dict:
        """A plain dict that :func:`load_config` turns back into an equal config."""
        data = {k: v for k, v in vars(self.data).items()}
        blocks = [
            {
                "classifiers": list(block.classifiers),
                "codecs": [codec.chain for codec in block.codecs],
                "rounds": list(block.rounds),
                "attacks": [{"name": a.name, **dict(a.params)} for a in block.attacks],
                "threats": list(block.threats),
            }
            for block in self.blocks
        ]
        return {
            "name": self.name, "description": self.description, "data": data, "batch_size": self.batch_size,
            "seed": self.seed, "max_cells": self.max_cells, "eot_samples": self.eot_samples, "ms_ssim": self.ms_ssim,
            "grid": blocks,
        }


def config_hash(config: EvalConfig, image_ids: Sequence[str]) -> str:
    """What determines the numbers: cells, seeds, batch size, image ids and labelling (not the folder path or name).

    The codecs' weights are checked per cell instead (a commit records its codec's weights fingerprint),
    so cells skipped for missing weights can still be filled in later.
    """
    data = {k: v for k, v in vars(config.data).items() if k not in ("path", "cache_dir", "limit", "ids_file")}
    payload = {
        "cells": sorted(cell.key for cell in config.cells()),
        "batch_size": config.batch_size,
        "seed": config.seed,
        "eot_samples": config.eot_samples,
        "ms_ssim": config.ms_ssim,
        "data": data,
        "ids": list(image_ids),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- parsing


def _number(value: Any, key: str) -> float:
    if isinstance(value, str):
        value = parse_value(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number (e.g. 4/255 or 0.0157), got {value!r}")
    return float(value)


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"must be a positive integer, got {value!r}")
    return value


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}")
    return value


def _as_list(value: Any, key: str) -> list:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError(key, "must not be empty")
    return items


def _items(value: Any, key: str) -> list[tuple[Any, str]]:
    """(item, its key path): ``key[i]`` for the items of a list, ``key`` for a single value."""
    if isinstance(value, (list, tuple)):
        return [(item, f"{key}[{i}]") for i, item in enumerate(_as_list(value, key))]
    return [(value, key)]


def _check_keys(mapping: Any, allowed: Sequence[str], key: str) -> Mapping:
    if not isinstance(mapping, Mapping):
        raise ConfigError(key or "config", f"must be a mapping, got {type(mapping).__name__}")
    for name in mapping:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(where, f"unknown key; valid keys: {', '.join(allowed)}")
    return mapping


def _parse_classifiers(value: Any, key: str) -> tuple[str, ...]:
    names = _as_list(value, key)
    for name, where in _items(value, key):
        if name not in CLASSIFIERS:
            raise ConfigError(where, f"unknown classifier {name!r}; valid choices: {', '.join(CLASSIFIERS.names())}")
    return tuple(dict.fromkeys(names))


def _check_codec(spec: ComponentSpec, key: str) -> ComponentSpec:
    try:
        check_codec_params(spec.name, spec.params)
    except ValueError as error:
        raise ConfigError(key, str(error)) from None
    return spec


def _codec_choice(specs: list[ComponentSpec], key: str) -> CodecChoice:
    specs = [_check_codec(spec, key) for spec in specs]
    quality = next((spec.params["q"] for spec in specs if isinstance(spec.params.get("q"), (int, float))), None)
    return CodecChoice("+".join(format_spec(spec) for spec in specs), "+".join(spec.name for spec in specs), quality, key)


def _parse_codecs(value: Any, key: str) -> tuple[CodecChoice, ...]:
    choices = []
    for item, where in _items(value, key):
        if isinstance(item, str):
            try:
                choices.append(_codec_choice(parse_chain(item), where))
            except ConfigError:
                raise
            except ValueError as error:
                raise ConfigError(where, str(error)) from None
        elif isinstance(item, Mapping):
            if "name" not in item or not isinstance(item["name"], str):
                raise ConfigError(f"{where}.name", "a codec mapping needs a name, e.g. {name: jpeg, q: [25, 50]}")
            params = {k: v for k, v in item.items() if k != "name"}
            names = list(params)
            values = [[parse_value(v) if isinstance(v, str) else v for v in _as_list(params[k], f"{where}.{k}")] for k in names]
            for combo in itertools.product(*values):
                choices.append(_codec_choice([ComponentSpec(item["name"], dict(zip(names, combo)))], where))
        else:
            raise ConfigError(where, f"must be a codec spec such as 'jpeg:q=25' or a mapping, got {item!r}")
    return tuple(dict.fromkeys(choices))


def _parse_rounds(value: Any, key: str) -> tuple[int, ...]:
    rounds = []
    for item, where in _items(value, key):
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_ROUNDS:
            raise ConfigError(where, f"must be an integer in [1, {MAX_ROUNDS}], got {item!r}")
        rounds.append(item)
    return tuple(dict.fromkeys(rounds))


def _attack_choice(name: str, params: dict, key: str, eps_key: str) -> AttackChoice:
    if "eps" in params:
        params["eps"] = _number(params["eps"], eps_key)
        if params["eps"] <= 0:
            raise ConfigError(eps_key, f"must be positive, got {params['eps']:g}")
    try:
        attack = create_attack(ComponentSpec(name, params), nn.Identity())
    except ValueError as error:
        raise ConfigError(key, str(error)) from None
    return AttackChoice(attack.describe(), name, attack.params.get("eps"), tuple(sorted(params.items())), key)


def _parse_attacks(value: Any, key: str) -> tuple[AttackChoice, ...]:
    choices = []
    for item, where in _items(value, key):
        if isinstance(item, str):
            try:
                spec = parse_spec(item)
            except ValueError as error:
                raise ConfigError(where, str(error)) from None
            name, params = spec.name, dict(spec.params)
        elif isinstance(item, Mapping):
            if "name" not in item or not isinstance(item["name"], str):
                raise ConfigError(f"{where}.name", "an attack mapping needs a name, e.g. {name: pgd, eps: [4/255], steps: 10}")
            name, params = item["name"], {k: v for k, v in item.items() if k != "name"}
        else:
            raise ConfigError(where, f"must be an attack spec such as 'pgd:eps=4/255' or a mapping, got {item!r}")
        if name not in ATTACKS:
            raise ConfigError(f"{where}.name", f"unknown attack {name!r}; valid choices: {', '.join(ATTACKS.names())}")
        for param, val in params.items():
            if isinstance(val, (list, tuple)) and param != "eps":
                raise ConfigError(f"{where}.{param}", "only eps may be a list (one cell per value)")
        eps_values = _items(params["eps"], f"{where}.eps") if "eps" in params else [(None, "")]
        for eps, eps_key in eps_values:
            one = dict(params)
            if eps is not None:
                one["eps"] = eps
            choices.append(_attack_choice(name, one, where, eps_key))
    return tuple(dict.fromkeys(choices))


def _parse_threats(value: Any, key: str) -> tuple[ThreatModel, ...]:
    _as_list(value, key)
    threats = []
    for threat, where in _items(value, key):
        try:
            threats.append(ThreatModel(threat))
        except ValueError as error:
            raise ConfigError(where, str(error)) from None
    return tuple(dict.fromkeys(threats))


_PARSERS = {"classifiers": _parse_classifiers, "codecs": _parse_codecs, "rounds": _parse_rounds,
            "attacks": _parse_attacks, "threats": _parse_threats}
_DEFAULT_AXES = {"classifiers": [DEFAULT_CLASSIFIER], "rounds": [1], "threats": ["oblivious"]}


def _axes(mapping: Mapping, prefix: str, defaults: Mapping[str, tuple[Any, str]]) -> dict[str, tuple[Any, str]]:
    """Axis name -> (raw value, key path), ``classifier`` accepted for ``classifiers``."""
    axes = dict(defaults)
    if "classifier" in mapping and "classifiers" in mapping:
        raise ConfigError(f"{prefix}classifier", "give either classifier or classifiers, not both")
    for name in _AXES:
        source = "classifier" if name == "classifiers" and "classifier" in mapping else name
        if source in mapping:
            axes[name] = (mapping[source], f"{prefix}{source}")
    return axes


def _block(axes: Mapping[str, tuple[Any, str]], where: str) -> GridBlock:
    for name in ("codecs", "attacks"):
        if name not in axes:
            raise ConfigError(f"{where}{name}", "is required (at least one entry)")
    parsed = {name: _PARSERS[name](*axes[name]) for name in _AXES}
    return GridBlock(**parsed)


def _parse_data(value: Any) -> DataConfig:
    data = dict(_check_keys(value or {}, _DATA_KEYS, "data"))
    if data.get("layout", "auto") not in LAYOUTS:
        raise ConfigError("data.layout", f"must be one of {', '.join(LAYOUTS)}, got {data['layout']!r}")
    if data.get("limit") is not None:
        _positive_int(data["limit"], "data.limit")
    if "seed" in data:
        _int(data["seed"], "data.seed")
    _bool(data.get("restrict_classes", False), "data.restrict_classes")
    for name in ("path", "ids_file", "cache_dir"):
        if data.get(name) is not None:
            data[name] = str(data[name])
    return DataConfig(**data)


def _from_mapping(raw: Mapping) -> EvalConfig:
    raw = _check_keys(raw, _TOP_KEYS, "")
    defaults = {name: (value, name) for name, value in _DEFAULT_AXES.items()}
    top = _axes(raw, "", defaults)
    for name, (value, key) in top.items():
        _PARSERS[name](value, key)  # validate the shared axes even where every block overrides them
    if "grid" in raw:
        grid = raw["grid"]
        if not isinstance(grid, (list, tuple)) or not grid:
            raise ConfigError("grid", "must be a non-empty list of blocks, each overriding some axes")
        blocks = []
        for i, item in enumerate(grid):
            _check_keys(item, ("classifier", *_AXES), f"grid[{i}]")
            blocks.append(_block(_axes(item, f"grid[{i}].", top), f"grid[{i}]."))
    else:
        blocks = [_block(top, "")]
    name = raw.get("name", "eval")
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"must be a non-empty string, got {name!r}")
    config = EvalConfig(
        name=name,
        description=str(raw.get("description", "")),
        data=_parse_data(raw.get("data")),
        blocks=tuple(blocks),
        batch_size=_positive_int(raw.get("batch_size", 16), "batch_size"),
        seed=_int(raw.get("seed", 0), "seed"),
        max_cells=_positive_int(raw.get("max_cells", DEFAULT_MAX_CELLS), "max_cells"),
        eot_samples=_positive_int(raw.get("eot_samples", 8), "eot_samples"),
        ms_ssim=_bool(raw.get("ms_ssim", True), "ms_ssim"),
    )
    config.cells()  # checks max_cells
    return config


def load_config(source: str | Path | Mapping | EvalConfig) -> EvalConfig:
    """Validate a config given as a YAML/JSON file, a preset name, a dict, or an :class:`EvalConfig`.

    Raises:
        FileNotFoundError: a path that does not exist (and is no preset name).
        ConfigError: an invalid value; the message names its key.
    """
    if isinstance(source, EvalConfig):
        return source
    if isinstance(source, Mapping):
        return _from_mapping(copy.deepcopy(dict(source)))
    path = Path(source)
    if not path.is_file():
        if isinstance(source, str) and source in PRESETS:
            return _from_mapping(copy.deepcopy(PRESETS[source]))
        raise FileNotFoundError(f"config file not found: {path} (or name a preset: {', '.join(PRESETS)})")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
    else:
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path} must hold a mapping of config keys (name, data, codecs, attacks, ...)")
    return _from_mapping(raw)


PRESETS: dict[str, dict] = {
    "smoke": {
        "name": "smoke",
        "description": "4 images, FGSM 4/255, JPEG q=50, 1 round, oblivious: checks the whole path in seconds",
        "data": {"limit": 4, "seed": 0},
        "batch_size": 4,
        "classifier": "efficientnet-lite0",
        "codecs": ["jpeg:q=50"],
        "rounds": [1],
        "attacks": [{"name": "fgsm", "eps": "4/255"}],
        "threats": ["oblivious"],
    },
    "hac-paper-small": {
        "name": "hac-paper-small",
        "description": "The HAC protocol scaled to one CPU core (see configs/hac-paper-small.yaml)",
        "data": {"limit": 200, "seed": 0},
        "batch_size": 10,
        "classifier": "efficientnet-lite0",
        "codecs": [{"name": "jpeg", "q": [10, 25, 50, 75]}],
        "rounds": [1, 2, 3, 5],
        "attacks": [
            {"name": "fgsm", "eps": ["2/255", "4/255", "8/255"]},
            {"name": "bim", "eps": ["2/255", "4/255", "8/255"], "steps": 10},
            {"name": "pgd", "eps": ["2/255", "4/255", "8/255"], "steps": 10},
        ],
        "grid": [
            {"threats": ["oblivious"]},
            {"threats": ["bpda"], "attacks": [{"name": "pgd", "eps": "4/255", "steps": 10}],
             "codecs": [{"name": "jpeg", "q": [25, 50]}], "rounds": [1, 3]},
            {"threats": ["oblivious"], "attacks": [{"name": "pgd", "eps": "4/255", "steps": 10}],
             "codecs": ["hac-hyperprior:q=3"], "rounds": [1, 3]},
        ],
    },
}
