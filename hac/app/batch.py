"""The batch tab's handlers: a preset plus the user's edits -> :func:`hac.evaluation.runner.evaluate`.

The tab shows a preset's top-level axes as editable text (attacks without their
budget, budgets in 1/255, codec chains, rounds, threat models). Left as shown, the
preset runs exactly as defined (including its ``grid`` blocks, if any); once any
field is edited, the fields define one plain grid instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import gradio as gr
import pandas as pd

from ..attacks.classifier_attacks import ATTACKS
from ..core.specs import ComponentSpec, format_spec, parse_spec
from ..attacks.threats import ThreatModel
from ..defence.budget import WorkEstimate, cell_work, estimate_work
from .cache import ModelCache
from ..evaluation.datasets import hub_offline
from .files import HUB_SUBSETS, RunFiles, hub_subsets, resolve_data_folder
from .handlers import user_error, user_errors
from .limits import MAX_IMAGES, AppLimits, check_attack_caps, check_chain, request_deadline

__all__ = [
    "SAMPLE_DATASET",
    "MAX_BATCH_IMAGES",
    "MAX_BATCH_WORK",
    "TABLE_COLUMNS",
    "BatchFields",
    "BatchOutputs",
    "batch_presets",
    "preset_fields",
    "preset_description",
    "run_batch",
]

SAMPLE_DATASET = "sample: 5 scikit-image photos"
MAX_BATCH_IMAGES = MAX_IMAGES
"""Most images one batch run in the app may use."""
MAX_BATCH_WORK = 500
"""Most (image, grid cell) pairs one batch run in the app may evaluate; larger grids belong on the command line."""
TABLE_COLUMNS = (
    "classifier", "threat", "attack", "codec", "rounds", "images", "clean_acc", "adv_acc", "defended_acc",
    "clean_defended_acc", "bpp", "psnr", "linf_255", "seconds", "status",
)

PAIRED_TABLE_COLUMNS = (
    "threat", "attack", "rounds", "measure", "codec", "reference", "images", "accuracy", "reference_accuracy",
    "difference", "ci_low", "ci_high", "only_codec", "only_reference", "p_value",
)


class BatchFields(NamedTuple):
    """The editable fields of the batch tab, as text (what the components hold)."""

    limit: int
    attacks: str
    eps: str
    codecs: str
    rounds: str
    threats: list[str]


class BatchOutputs(NamedTuple):
    """What :func:`run_batch` returns, in the order of the batch tab's output components."""

    summary: pd.DataFrame
    plots: list[str]
    download: str
    status: str
    paired: pd.DataFrame


def _evaluate():
    try:
        from ..evaluation import runner as evaluate
    except ImportError as error:
        raise user_error(
            f"the batch evaluation is not available in this installation ({error}).", "Batch evaluation unavailable"
        ) from error
    return evaluate


def batch_presets() -> list[str]:
    """Names of the evaluation presets (empty when :mod:`hac.evaluation.runner` is unavailable)."""
    try:
        from ..evaluation.runner import PRESETS
    except ImportError:
        return []
    return list(PRESETS)


def _preset(name: str) -> dict:
    presets = _evaluate().PRESETS
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; valid choices: {', '.join(presets)}")
    return presets[name]


def _number(value: float) -> str:
    return f"{round(value, 4):g}"


def preset_fields(preset: str) -> BatchFields:
    """The preset's top-level axes as the tab's fields (its ``grid`` blocks, if any, are not shown)."""
    with user_errors():
        raw = _preset(preset)
        top = _evaluate().load_config({key: value for key, value in raw.items() if key != "grid"}).blocks[0]
    attacks = dict.fromkeys(
        format_spec(ComponentSpec(attack.name, {k: v for k, v in attack.params if k != "eps"})) for attack in top.attacks
    )
    eps = sorted({attack.eps * 255 for attack in top.attacks if attack.eps is not None})
    return BatchFields(
        limit=int(raw.get("data", {}).get("limit") or 0),
        attacks="; ".join(attacks),
        eps=", ".join(_number(value) for value in eps),
        codecs="; ".join(codec.chain for codec in top.codecs),
        rounds=", ".join(str(r) for r in top.rounds),
        threats=[threat.value for threat in top.threats],
    )


def preset_description(preset: str) -> str:
    """One paragraph about the preset, for the tab."""
    with user_errors():
        raw = _preset(preset)
    text = f"**{preset}** — {raw.get('description', '').rstrip('.')}."
    if "grid" in raw:
        text += (f" This preset combines {len(raw['grid'])} grid blocks; the fields show its top-level axes. "
                 "Run it unchanged to get all blocks; editing a field replaces them by one grid of the fields.")
    return text


def _split(text: str | None, separator: str) -> list[str]:
    return [part.strip() for part in (text or "").split(separator) if part.strip()]


def _numbers(name: str, text: str | None, cast) -> list:
    values = []
    for part in _split((text or "").replace(";", ","), ","):
        try:
            values.append(cast(part))
        except ValueError:
            raise ValueError(f"{name} must be a comma-separated list of numbers, got {part!r}") from None
    return values


def _same(fields: BatchFields, preset: BatchFields) -> bool:
    def norm(value: Any) -> Any:
        return sorted(value) if isinstance(value, list) else " ".join(str(value).split())

    return all(norm(a) == norm(b) for a, b in zip(fields[1:], preset[1:]))


def _config_from_fields(preset: str, fields: BatchFields) -> dict:
    """The config mapping: the preset itself if the axes are unchanged, else the preset's settings with the fields' grid."""
    raw = dict(_preset(preset))
    if _same(fields, preset_fields(preset)):
        return raw
    raw.pop("grid", None)
    eps = _numbers("eps", fields.eps, float)
    if any(not 0 < value <= 64 for value in eps):
        raise ValueError(f"every eps must be in (0, 64] (units of 1/255), got {fields.eps!r}")
    attacks = []
    for text in _split(fields.attacks, ";"):
        spec = parse_spec(text)
        entry = ATTACKS.get(spec.name)  # unknown name -> ValueError listing the valid ones
        params = dict(spec.params)
        if eps and "eps" in entry.defaults and entry.norm == "Linf" and "eps" not in params:
            params["eps"] = [f"{_number(value)}/255" for value in eps]
        attacks.append({"name": spec.name, **params})
    if not attacks:
        raise ValueError("give at least one attack, e.g. 'fgsm' or 'pgd:steps=10'")
    codecs = _split(fields.codecs, ";")
    if not codecs:
        raise ValueError("give at least one codec chain, e.g. 'jpeg:q=25' or 'jpeg:q=50+webp:q=80'")
    rounds = _numbers("rounds", fields.rounds, int) or [1]
    threats = [ThreatModel(threat) for threat in fields.threats] or [ThreatModel.OBLIVIOUS]
    return {**raw, "attacks": attacks, "codecs": codecs, "rounds": rounds, "threats": threats}


def _dataset_path(files: RunFiles, dataset: str) -> Path | str:
    """The sample's folder, a Hub subset's ``hf://`` URL, or a folder under ``$HAC_DATA_ROOT``.

    Raises:
        ValueError: a Hub subset while offline, or one not offered here (no token for a gated one).
    """
    if dataset == SAMPLE_DATASET:
        return files.sample_dataset()
    if dataset in HUB_SUBSETS:
        if hub_offline():
            raise ValueError(f"{dataset} is streamed from the Hub, and this server is offline (HF_HUB_OFFLINE is set); "
                             "choose the bundled sample or a local folder")
        if dataset not in hub_subsets():
            raise ValueError(f"{dataset} is gated: log in with `hf auth login` (or set HF_TOKEN) after accepting its terms")
        return HUB_SUBSETS[dataset]
    return resolve_data_folder(dataset)


def _work(config, images: int, preset: str, dataset: str, edited: bool) -> tuple[WorkEstimate, str]:
    """``images`` times the grid's cells (:mod:`hac.defence.budget`), and the ``hac eval`` command for the same grid."""
    works = [cell_work(cell.attack, "oblivious" if cell.is_baseline else cell.threat, None if cell.is_baseline else cell.codec,
                       cell.rounds, config.eot_samples) for cell in config.cells()]
    source = f"--config CONFIG.yaml (preset {preset} with the tab's fields)" if edited else f"--preset {preset}"
    command = f"python -m hac eval {source} --data {dataset if dataset != SAMPLE_DATASET else 'FOLDER'} " \
              f"--limit {images} --out runs/{config.name}"
    return estimate_work(images, works), command


def batch_estimate(fields: Mapping[str, Any]) -> tuple[WorkEstimate, str]:
    """The tab's work from its fields alone (:func:`run_batch`'s arguments by name), before the dataset is
    read: as many images as 'Images' asks for, else the preset's count, else :data:`MAX_BATCH_IMAGES`.

    Raises:
        ValueError: a field the tab refuses.
    """
    limit = _limit(fields["limit"])
    raw = BatchFields(limit or 0, fields["attacks"], fields["eps"], fields["codecs"], fields["rounds"],
                      list(fields["threats"] or []))
    config = _evaluate().load_config(_config_from_fields(fields["preset"], raw))
    images = limit or config.data.limit or MAX_BATCH_IMAGES
    return _work(config, images, fields["preset"], fields["dataset"], not _same(raw, preset_fields(fields["preset"])))


def _check_work(config, images: int, limits: AppLimits, preset: str, dataset: str, edited: bool) -> None:
    """Refuse cells over the per-field caps and a grid over the work budget (see :mod:`hac.app.limits`)."""
    for cell in config.cells():
        check_attack_caps("attacks", parse_spec(cell.attack))
        if not cell.is_baseline:
            check_chain("codec chains", cell.codec, cell.rounds)
    estimate, command = _work(config, images, preset, dataset, edited)
    limits.check(estimate, "This batch", command)


def _check_size(evaluate, config, data: Path | str, limit: int | None) -> int:
    """The number of images; refuses grids over :data:`MAX_BATCH_IMAGES` / :data:`MAX_BATCH_WORK`."""
    cells = [cell for cell in config.cells() if not cell.is_baseline]
    _, ids = evaluate.select_images(config.with_data(path=str(data), limit=limit))
    if len(ids) > MAX_BATCH_IMAGES:
        raise ValueError(f"the app evaluates at most {MAX_BATCH_IMAGES} images per run, this dataset selection has "
                         f"{len(ids)}; set 'Images' to {MAX_BATCH_IMAGES} or fewer")
    work = len(ids) * len(cells)
    if work > MAX_BATCH_WORK:
        raise ValueError(
            f"this grid is too large for the app: {len(ids)} images x {len(cells)} cells = {work:,} evaluations, over the "
            f"limit of {MAX_BATCH_WORK:,}. Use fewer images or settings, or run it with `python -m hac eval`."
        )
    return len(ids)


def _limit(value) -> int | None:
    """The 'Images' field as a count (0 or empty: the preset's); a clear error for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BATCH_IMAGES:
        raise ValueError(f"Images must be a whole number in [0, {MAX_BATCH_IMAGES}] (0: the preset's), got {value!r}")
    return value or None


def _paired_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(PAIRED_TABLE_COLUMNS)).round(4)


def _table(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if not rows or c in rows[0]])
    return frame.round(4)


def run_batch(
    cache: ModelCache,
    files: RunFiles,
    dataset: str,
    preset: str,
    limit: int | None = None,
    attacks: str = "",
    eps: str = "",
    codecs: str = "",
    rounds: str = "",
    threats: list[str] | None = None,
    compare_to: str = "",
    progress: gr.Progress = gr.Progress(),
    *,
    limits: AppLimits = AppLimits(),
) -> BatchOutputs:
    """Evaluate a preset (with the tab's edits) on a dataset; see :func:`hac.evaluation.runner.evaluate`.

    Args:
        cache, files: the app's shared model cache (its classifiers are reused) and scratch folder.
        dataset: :data:`SAMPLE_DATASET`, a Hub subset (:data:`hac.app.files.HUB_SUBSETS`; the first ``limit``
            rows, at most :data:`MAX_BATCH_IMAGES`) or a folder name under ``$HAC_DATA_ROOT`` (ImageNet layout
            or the Hub's parquet layout).
        preset: a key of :data:`hac.evaluation.runner.PRESETS`.
        limit: images to use (0 or ``None``: the preset's).
        attacks, eps, codecs, rounds, threats: the tab's fields (see :class:`BatchFields`).
        compare_to: a codec chain of the grid to compare every other one with, image by image
            (:func:`hac.evaluation.paired.paired_rows`; empty: no comparison).
        progress: Gradio's live progress bar (a ``gr.Progress()`` default is what makes
            Gradio inject it; outside a request it does nothing).
        limits: the app's work budget and time limit (see :mod:`hac.app.limits`).

    Returns:
        The summary table, the plots (PNG paths), a zip of every file written, a status paragraph and
        the paired comparison (empty without ``compare_to``).

    Raises:
        gradio.Error: evaluation unavailable, a bad field, missing data or weights, or a grid over the limits.
    """
    evaluate = _evaluate()
    from ..evaluation.paired import check_reference, paired_rows, write_paired

    with user_errors():
        limit = _limit(limit)
        fields = BatchFields(limit or 0, attacks, eps, codecs, rounds, list(threats or []))
        config = evaluate.load_config(_config_from_fields(preset, fields))
        compare_to = (compare_to or "").strip()
        if compare_to:
            check_reference(config.cells(), compare_to)
        data = _dataset_path(files, dataset)
        limit = int(limit) if limit else None
        if isinstance(data, str) and not (limit or config.data.limit):  # a Hub split: never all of it
            limit = MAX_BATCH_IMAGES
        images = _check_size(evaluate, config, data, limit)
        _check_work(config, images, limits, preset, dataset, not _same(fields, preset_fields(preset)))
        classifiers = {name for block in config.blocks for name in block.classifiers}
        models = {name: cache.classifier(name) for name in sorted(classifiers)}
        out = files.new_run("batch")
        progress((0, None), desc=f"{images} images, {len(config.cells())} cells: starting")
        results = evaluate.evaluate(
            config, out, progress=lambda done, total, message: progress((done, total), desc=message),
            data=data, limit=limit, device=cache.device, models=models, stop=request_deadline(limits.time_limit),
        )
        results.write(out)
        paired = []
        if compare_to:
            paired = paired_rows(results, compare_to)
            write_paired(paired, out)
        plots = [str(path) for path in evaluate.make_plots(results, out)]
    archive = shutil.make_archive(str(out.parent / f"{out.name}-results"), "zip", root_dir=out)
    rows = results.summary_rows()
    status = [f"Done: {len(rows)} cells on {len(results.image_ids)} images in {results.run['wall_seconds']:.1f} s "
              f"(`{config.name}`). `adv_acc` is the undefended classifier under attack, `defended_acc` the accuracy "
              "after purification, `clean_defended_acc` the price of the defence on clean images."]
    status += [f"**⚠ Warning:** {message}" for message in results.warnings()]
    status += [f"**⚠ Skipped** {key}: {reason}" for key, reason in _skipped(results)]
    return BatchOutputs(_table(rows), plots, archive, "\n\n".join(status), _paired_table(paired))


def _skipped(results) -> list[tuple[str, str]]:
    cells = {cell.id: cell.key for cell in results.cells}
    return [(cells.get(cell_id, cell_id), str(reason)) for cell_id, reason in results.skipped_cells.items()]
