"""Classifiers: the real embedded EfficientNet-Lite0 on real photos; CIFAR ResNets' key layout."""

from __future__ import annotations

import pytest
import torch

from hac.models.classifiers import (
    CIFAR10_CLASSES,
    classifier_names,
    create_classifier,
    imagenet_class_names,
    imagenet_index_of_synset,
)
from hac.models.cifar_resnet import cifar_resnet
from hac.hub import MissingWeightsError


def test_embedded_classifier_recognises_real_photos(classifier, photos):
    images, accepted = photos
    predicted = classifier(images).argmax(1).tolist()
    assert [p in ok for p, ok in zip(predicted, accepted)] == [True] * len(accepted), predicted


def test_classifier_resizes_any_input_and_normalises_inside(classifier, photos):
    images, _ = photos
    assert classifier.input_size == 224 and classifier.crop_pct == pytest.approx(0.875)
    # timm's own config for tf_efficientnet_lite0 (TF models use mean = std = 0.5)
    assert torch.allclose(classifier.mean.flatten(), torch.full((3,), 0.5))
    bigger = torch.nn.functional.interpolate(images, size=(300, 400), mode="bilinear")
    assert classifier(bigger).shape == (len(images), 1000)


def test_gradients_reach_the_pixels(classifier, photos):
    x = photos[0][:1].clone().requires_grad_(True)
    classifier(x)[0, 0].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_class_names_and_synsets():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[1] == "goldfish"
    assert imagenet_index_of_synset("n01440764") == 0
    with pytest.raises(ValueError, match="not an ImageNet-1k synset"):
        imagenet_index_of_synset("n99999999")


def test_unknown_classifier_lists_choices():
    with pytest.raises(ValueError, match="unknown classifier 'resnet-9000'; valid choices: .*efficientnet-lite0"):
        create_classifier("resnet-9000")
    assert {"efficientnet-lite0", "resnet50", "vit-b-16", "resnet20", "resnet56"} <= set(classifier_names())


@pytest.mark.parametrize("name", ["resnet50", "vit-b-16"])
def test_hub_classifiers_offline_say_how_to_fetch(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HAC_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=f"python -m hac weights download {name}"):
        create_classifier(name)


def test_hub_classifier_loads_from_a_local_hub_file(tmp_path):
    """resnet50 from a file in the Hub's layout (model.safetensors of timm's resnet50.tv2_in1k)."""
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet50.tv2_in1k", pretrained=False).eval()
    path = tmp_path / "model.safetensors"
    save_file(reference.state_dict(), str(path))
    model = create_classifier("resnet50", weights=path)
    x = torch.rand(1, 3, 224, 224)
    expected = reference((x - model.mean) / model.std)
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_cifar_resnet_loads_reference_layout(tmp_path):
    """A checkpoint in the published layout ({'state_dict': {'module.*': ...}}) loads with no leftover keys."""
    net = cifar_resnet(20)
    assert sum(p.numel() for p in net.parameters()) == 269_722  # ResNet-20: 0.27M parameters (He et al. 2016)
    path = tmp_path / "resnet20.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "best_prec1": 91.7}, path)
    model = create_classifier("resnet20", weights=path)
    assert model.input_size == 32 and model.class_names == list(CIFAR10_CLASSES)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    path = tmp_path / "wrong.th"
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(16, 3, 3, 3), "module.extra": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="missing keys .*unexpected keys .*extra"):
        create_classifier("resnet20", weights=path)


@pytest.mark.shared_data
@pytest.mark.parametrize("depth", [20, 56])
def test_real_cifar_resnets_classify_real_samples(shared_dir, depth):
    from hac.core.images import load_image

    weights = next((shared_dir / "weights" / "cifar10-resnet").glob(f"resnet{depth}-*.th"))
    model = create_classifier(f"resnet{depth}", weights=weights)
    files = sorted((shared_dir / "data" / "samples").glob("cifar10_*.png"))
    x = torch.stack([load_image(f) for f in files])
    labels = torch.tensor([int(f.stem.rsplit("_", 1)[1]) for f in files])
    accuracy = (model(x).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.85
