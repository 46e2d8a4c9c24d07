"""The Gradio Blocks: five tabs wired to :mod:`hac.app.handlers`, :mod:`hac.app.batch`, :mod:`hac.app.codec_attack` and :mod:`hac.app.audit`.

``build_demo()`` only lays out components and lists what is on this machine
(which weights are present); no model is loaded until a request needs one.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import gradio as gr

from ..attacks.classifier_attacks import attack_names
from ..models.classifiers import DEFAULT_CLASSIFIER
from ..attacks.codec_attacks import Objective
from ..attacks.threats import ThreatModel
from . import audit
from . import batch
from . import codec_attack
from . import gpu
from . import handlers
from . import work
from .about import ABOUT_MARKDOWN
from .cache import ModelCache
from ..evaluation.datasets import hub_offline
from .inputs import ImageUpload, NumberInput, SliderInput
from .files import DATA_ROOT_ENV, RunFiles, data_folders, example_paths, hub_subsets
from .limits import AppLimits

__all__ = ["build_demo", "launch_kwargs", "ImageUpload", "QUEUE_MAX_SIZE", "CONCURRENCY_LIMIT", "MAX_FILE_SIZE"]

QUEUE_MAX_SIZE = 32
"""Requests waiting at once; further ones are told the queue is full instead of piling up."""
CONCURRENCY_LIMIT = 1
"""Default handlers running at once per event (attacks are CPU/GPU bound: one at a time uses the machine best);
``$HAC_APP_CONCURRENCY`` overrides it."""
MAX_FILE_SIZE = "20mb"
"""Largest upload accepted by the server (Gradio refuses larger ones before they reach a handler)."""

START_CODEC = "jpeg"
"""The codec both codec dropdowns start at."""

_CSS = """
.hac-verdict table { font-size: 0.9em; }
.hac-note { font-size: 0.85em; opacity: 0.8; }
#codec-summary td { white-space: nowrap; }
"""


def _quality_slider() -> gr.Slider:
    """The quality slider as :func:`hac.app.handlers.quality_for_codec` sets it for :data:`START_CODEC`."""
    low, high, start = handlers.codec_quality_range(START_CODEC)
    name = handlers.codec_info(START_CODEC).quality_param
    return SliderInput(low, high, value=start, step=1, label=f"Quality {name}", info=handlers.quality_info(START_CODEC))


def _image(label: str, **kwargs: Any) -> gr.Image:
    # PNG everywhere: Gradio's default WebP is lossy and would itself purify the adversarial image.
    return gr.Image(label=label, format="png", type="filepath", interactive=False, buttons=["download", "fullscreen"], **kwargs)


def _image_input(elem_id: str, examples_id: str | None = None) -> ImageUpload:
    """An upload box (PNG, no lossy re-encoding) with the example photos under it."""
    image = ImageUpload(
        label="Image (PNG, JPEG, WebP, ...)",
        format="png",
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        height=260,
        elem_id=elem_id,
    )
    gr.Examples(
        examples=[[str(path)] for path in example_paths()],
        inputs=[image],
        cache_examples=False,
        label="Examples (public-domain photos from scikit-image)",
        elem_id=examples_id,
    )
    return image


def _attack_tab(cache: ModelCache, files: RunFiles, limits: AppLimits) -> None:
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            image = _image_input("input-image")
            classifier = gr.Dropdown(
                handlers.classifier_choices(), value=DEFAULT_CLASSIFIER, label="Classifier", elem_id="classifier"
            )
            with gr.Row():
                attack = gr.Dropdown(attack_names(), value="pgd", label="Attack", elem_id="attack")
                threat = gr.Dropdown(
                    list(ThreatModel.values()), value="bpda", label="Threat model",
                    info="what the attacker knows about the defence (see About)",
                )
            with gr.Row():
                eps = SliderInput(1, 32, value=4, step=1, label="ε (L∞, in 1/255)", info="L2/minimal attacks keep their own budget")
                steps = SliderInput(1, handlers.MAX_STEPS, value=10, step=1, label="Attack steps")
            with gr.Row():
                codec = gr.Dropdown(handlers.codec_choices(), value=START_CODEC, label="Codec", elem_id="codec")
                quality = _quality_slider()
            chain = gr.Textbox(
                label="…or a codec chain (overrides codec and quality)",
                placeholder="jpeg:q=25+webp:q=80, or hac-hyperprior:q=1,scale=0.75 (coded at 3/4 size)",
                max_lines=1,
            )
            with gr.Row():
                rounds = SliderInput(1, handlers.APP_MAX_ROUNDS, value=1, step=1, label="Purification rounds")
                seed = NumberInput(0, precision=0, minimum=0, label="Seed")
            run = gr.Button("Attack & purify", variant="primary", elem_id="run-attack")
        with gr.Column(scale=2):
            with gr.Row():
                clean_out = _image("Clean", elem_id="clean")
                adversarial_out = _image("Adversarial", elem_id="adversarial")
                purified_out = _image("Purified", elem_id="purified")
                perturbation_out = _image("Perturbation", elem_id="perturbation")
            with gr.Row():
                top5_clean = gr.Label(num_top_classes=5, label="Top-5: clean", elem_id="top5-clean")
                top5_adversarial = gr.Label(num_top_classes=5, label="Top-5: adversarial", elem_id="top5-adversarial")
                top5_purified = gr.Label(num_top_classes=5, label="Top-5: purified", elem_id="top5-purified")
            gr.Markdown(
                "The images are what the classifier sees (resized and centre-cropped to its input). "
                "Perturbation: grey is zero, full colour at ±ε.", elem_classes=["hac-note"],
            )
            summary = gr.Markdown(elem_classes=["hac-verdict"], elem_id="summary")
            warnings = gr.Markdown(elem_id="warnings")
            slider = gr.ImageSlider(
                label="Adversarial (left) vs purified (right)", format="png", type="filepath", max_height=420,
                interactive=False,
            )
            table = gr.Dataframe(label="Purification per round", headers=list(handlers.ROUND_COLUMNS), interactive=False,
                                 elem_id="rounds-table")
            download = gr.File(label="Adversarial image (exact PNG, for your own tests)", interactive=False, elem_id="download")

    classifier.change(handlers.check_classifier, classifier, None, api_visibility="private")
    codec.change(handlers.quality_for_codec, codec, quality, api_visibility="private")
    run.click(
        functools.partial(gpu.on_gpu(handlers.run_attack, work.attack_work), cache, files, limits=limits),
        inputs=[image, classifier, attack, eps, steps, threat, codec, quality, chain, rounds, seed],
        outputs=[
            clean_out, adversarial_out, purified_out, perturbation_out, slider,
            top5_clean, top5_adversarial, top5_purified, table, summary, warnings, download,
        ],
        api_name="attack",
        api_description="Attack one image, purify it, and classify clean / adversarial / purified.",
    )


def _codec_attack_tab(cache: ModelCache, files: RunFiles, limits: AppLimits) -> None:
    gr.Markdown(
        "Attack the codec itself: perturb the image (L∞ ≤ ε, PGD) so that the codec reconstructs it worse "
        "(**distortion**) or spends more bits on it (**rate**), as in Zhu, Sun et al. (2024). "
        f"The image is resized and centre-cropped to {codec_attack.IMAGE_SIZE}×{codec_attack.IMAGE_SIZE} "
        "(learned codecs are slow on a CPU). Gradients come from a differentiable stand-in of the codec; "
        "every number comes from the real codec; only codecs that have such a stand-in are offered.",
        elem_classes=["hac-note"],
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            image = _image_input("codec-input-image", examples_id="codec-examples")
            with gr.Row():
                codec = gr.Dropdown(
                    codec_attack.codec_attack_choices(), value=START_CODEC, label="Codec", elem_id="codec-attack-codec"
                )
                quality = _quality_slider()
            objective = gr.Radio(
                list(Objective.values()), value=Objective.DISTORTION.value, label="Objective", elem_id="codec-objective",
                info="distortion: lower the PSNR of the reconstruction against the clean image; rate: raise the bits "
                     "(needs a bit estimate: JPEG and the CompressAI codecs)",
            )
            eps = gr.Radio(
                [(f"{e}/255", e) for e in codec_attack.EPS_CHOICES], value=4, label="ε (L∞)", elem_id="codec-eps"
            )
            steps = SliderInput(1, codec_attack.MAX_STEPS, value=10, step=1, label="PGD steps", elem_id="codec-steps")
            run = gr.Button("Attack the codec", variant="primary", elem_id="run-codec-attack")
        with gr.Column(scale=2):
            with gr.Row():
                clean_out = _image("Clean image, reconstructed", elem_id="codec-clean-reconstruction")
                attacked_out = _image("Attacked image, reconstructed", elem_id="codec-attacked-reconstruction")
            with gr.Row():
                clean_in = _image("Clean input", elem_id="codec-clean-input")
                attacked_in = _image("Attacked input", elem_id="codec-attacked-input")
                perturbation = _image("Perturbation", elem_id="codec-perturbation")
            gr.Markdown("Perturbation: grey is zero, full colour at ±ε.", elem_classes=["hac-note"])
            summary = gr.Markdown(elem_classes=["hac-verdict"], elem_id="codec-summary")

    codec.change(handlers.quality_for_codec, codec, quality, api_visibility="private")
    run.click(
        functools.partial(gpu.on_gpu(codec_attack.run_codec_attack, work.codec_attack_work), cache, files, limits=limits),
        inputs=[image, codec, quality, objective, eps, steps],
        outputs=[clean_out, attacked_out, clean_in, attacked_in, perturbation, summary],
        api_name="codec_attack",
        api_description="Attack a codec's input (distortion or rate objective) and measure it with the real codec.",
    )


def _batch_tab(cache: ModelCache, files: RunFiles, limits: AppLimits) -> gr.Dropdown:
    presets = batch.batch_presets()
    folders, subsets = data_folders(), hub_subsets()
    gr.Markdown(
        "Evaluate a whole grid — attacks × budgets × codecs × rounds × threat models — on a folder of images "
        "(ImageNet layout: one folder per synset) or a subset streamed from the Hub (the first 'Images' rows). "
        "The bundled sample has five photos; "
        + (f"the folders under `{DATA_ROOT_ENV}` are offered too." if folders
           else f"set `{DATA_ROOT_ENV}` to offer your own folders.")
        + (" **This server is offline: the Hub subsets cannot be streamed.**" if hub_offline() else "")
    )
    if not presets:
        gr.Markdown("**⚠** The batch evaluation (`hac.evaluation.runner`) is not available in this installation.")
    start = batch.preset_fields(presets[0]) if presets else batch.BatchFields(0, "", "", "", "", ["oblivious"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            # custom values: folders added under the root after start-up; the handler checks every name
            dataset = gr.Dropdown([batch.SAMPLE_DATASET, *subsets, *folders], value=batch.SAMPLE_DATASET, label="Dataset",
                                  allow_custom_value=True, elem_id="batch-dataset")
            preset = gr.Dropdown(presets, value=presets[0] if presets else None, label="Preset", elem_id="preset")
            about = gr.Markdown(batch.preset_description(presets[0]) if presets else "")
            limit = NumberInput(start.limit, precision=0, minimum=0, maximum=batch.MAX_BATCH_IMAGES,
                              label=f"Images (at most {batch.MAX_BATCH_IMAGES}; 0 = the preset's)")
            attacks = gr.Textbox(start.attacks, label="Attacks (specs without ε, ';'-separated)", max_lines=2)
            eps = gr.Textbox(start.eps, label="ε for L∞ attacks (in 1/255, comma-separated)", max_lines=1)
            codecs = gr.Textbox(start.codecs, label="Codec chains (';'-separated)", max_lines=3)
            rounds = gr.Textbox(start.rounds, label="Rounds (comma-separated)", max_lines=1)
            threats = gr.CheckboxGroup(list(ThreatModel.values()), value=start.threats, label="Threat models")
            compare = gr.Textbox("", label="Compare every codec with (one of the codec chains; empty: no comparison)",
                                 max_lines=1, elem_id="batch-compare")
            run = gr.Button("Run evaluation", variant="primary", elem_id="run-batch")
        with gr.Column(scale=2):
            status = gr.Markdown(elem_id="batch-status")
            summary = gr.Dataframe(label="Summary (one row per cell)", headers=list(batch.TABLE_COLUMNS), interactive=False,
                                   elem_id="batch-summary")
            plots = gr.Gallery(label="Plots", columns=3, height=300, object_fit="contain", format="png",
                               interactive=False, elem_id="batch-plots")
            download = gr.File(label="All results (zip: CSV, JSON, plots)", interactive=False, elem_id="batch-download")
            paired = gr.Dataframe(label="Image by image against the compared codec: accuracy difference, its 95% interval, "
                                  "images only one of the two gets right, McNemar's p", headers=list(batch.PAIRED_TABLE_COLUMNS),
                                  interactive=False, elem_id="batch-paired")

    preset.change(batch.preset_fields, preset, [limit, attacks, eps, codecs, rounds, threats], api_name="batch_preset")
    preset.change(batch.preset_description, preset, about, api_visibility="private")
    run.click(
        functools.partial(gpu.on_gpu(batch.run_batch, work.batch_work), cache, files, limits=limits),
        inputs=[dataset, preset, limit, attacks, eps, codecs, rounds, threats, compare],
        outputs=[summary, plots, download, status, paired],
        api_name="batch",
        api_description="Run a batch evaluation of a preset (with edits) on a dataset; returns the summary, plots and a zip.",
    )
    return dataset


def _dataset_choices() -> gr.Dropdown:
    """The dataset dropdown with the folders under the data root now (listed at every page load)."""
    return gr.Dropdown(choices=[batch.SAMPLE_DATASET, *hub_subsets(), *data_folders()])


def build_demo(
    cache: ModelCache | None = None, files: RunFiles | None = None, concurrency_limit: int | None = None,
    limits: AppLimits | None = None,
) -> gr.Blocks:
    """The app: "Attack & purify", "Batch evaluation", "Attack the codec", "Audit" and "About" tabs, with a bounded queue.

    Args:
        cache: the model cache to share across requests (default: a new, empty one on
            :func:`hac.app.gpu.model_device`).
        files: scratch folder for results (default: a new private temporary folder).
        concurrency_limit: requests of one event served at once (default ``$HAC_APP_CONCURRENCY``
            or :data:`CONCURRENCY_LIMIT`); the others wait in a queue of :data:`QUEUE_MAX_SIZE`.
        limits: work budget and time limit per request (default :meth:`AppLimits.from_env`).
    """
    limits = limits or AppLimits.from_env()
    if concurrency_limit is None:
        concurrency_limit = int(os.environ.get("HAC_APP_CONCURRENCY", CONCURRENCY_LIMIT))
    if cache is None:
        cache = ModelCache(gpu.model_device())
    if gpu.on_zero_gpu():  # load the default classifier once here: models first loaded inside a GPU call are not kept
        cache.classifier(DEFAULT_CLASSIFIER)
    files = files or RunFiles()
    with gr.Blocks(title="hac — compression as an adversarial defence", analytics_enabled=False,
                   delete_cache=(900, 3600)) as demo:
        gr.Markdown(
            "# hac — does compression defend a classifier against adversarial attacks?\n"
            "Attack an image, purify it with a codec, and see what the classifier says — under an attacker who "
            "knows about the defence (BPDA by default), not only under the easy oblivious one."
        )
        with gr.Tabs():
            with gr.Tab("Attack & purify", id="attack"):
                _attack_tab(cache, files, limits)
            with gr.Tab("Batch evaluation", id="batch"):
                dataset = _batch_tab(cache, files, limits)
            with gr.Tab("Attack the codec", id="codec-attack"):
                _codec_attack_tab(cache, files, limits)
            with gr.Tab("Audit", id="audit"):
                audit.build_tab(cache, files, limits)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT_MARKDOWN, elem_id="about")
        demo.load(_dataset_choices, None, dataset, api_visibility="private")
    demo.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=concurrency_limit)
    return demo


def launch_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch``: upload limit, theme (system fonts, nothing fetched), CSS.

    Server name and port come from ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (Gradio reads them).
    """
    theme = gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    return {"max_file_size": MAX_FILE_SIZE, "theme": theme, "css": _CSS, "show_error": True, **overrides}
