"""Embedding networks: shapes, normalisation, frozen backbones, weights from files, and errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18, resnet50

from repmet.errors import ArgumentError, ConfigError, DataNotFoundError, UnknownNameError
from repmet.models import MODELS, build_model


@pytest.mark.parametrize(("in_channels", "image_size"), [(1, 8), (3, 8), (1, 28), (3, 32)])
def test_small_cnn_embeds_small_images(in_channels: int, image_size: int) -> None:
    model = build_model(
        "small-cnn", embedding_dim=24, in_channels=in_channels, image_size=image_size
    )
    embeddings = model(torch.randn(5, in_channels, image_size, image_size))
    assert embeddings.shape == (5, 24)
    assert model.embedding_dim == 24 and model.normalize is False
    # Unnormalised by default: norms are whatever the network produces.
    assert not torch.allclose(embeddings.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize(
    ("name", "in_channels"), [("resnet18", 3), ("resnet18", 1), ("resnet50", 3)]
)
def test_resnets_give_unit_norm_embeddings_when_asked(name: str, in_channels: int) -> None:
    model = build_model(
        name, embedding_dim=16, in_channels=in_channels, image_size=32, normalize=True
    ).eval()
    with torch.no_grad():
        embeddings = model(torch.randn(3, in_channels, 32, 32))
    assert embeddings.shape == (3, 16) and model.normalize is True
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))


def test_normalisation_is_the_callers_choice_for_every_network() -> None:
    small = build_model("small-cnn", embedding_dim=8, in_channels=1, image_size=8, normalize=True)
    torch.testing.assert_close(small(torch.randn(4, 1, 8, 8)).norm(dim=1), torch.ones(4))
    resnet = build_model("resnet18", embedding_dim=8, in_channels=3, image_size=32)
    assert resnet.normalize is False


def test_every_parameter_of_the_small_cnn_learns() -> None:
    model = build_model("small-cnn", embedding_dim=8, in_channels=1, image_size=8)
    model(torch.randn(6, 1, 8, 8)).pow(2).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_freeze_backbone_trains_only_the_embedding_layer() -> None:
    model = build_model(
        "resnet18", embedding_dim=8, in_channels=3, image_size=32, freeze_backbone=True
    )
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    model.train()
    assert model.training and model.head.training and not model.backbone.training
    running_mean = model.backbone.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 3 + 1).sum().backward()
    assert torch.equal(model.backbone.bn1.running_mean, running_mean)  # statistics frozen too
    assert model.head.weight.grad is not None and model.backbone.conv1.weight.grad is None


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty weights cache and a network that cannot resolve hosts, as on this machine."""

    def unreachable(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_pretrained_weights_that_cannot_be_had_are_one_clear_error(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _offline(monkeypatch, tmp_path)
    with pytest.raises(DataNotFoundError) as caught:
        build_model(name, embedding_dim=8, in_channels=3, image_size=32, pretrained=True)
    message = str(caught.value)
    assert "\n" not in message and name in message and "Name or service not known" in message
    assert str(tmp_path / "torch-home") in message and "weights=PATH" in message


def test_cached_pretrained_weights_are_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _offline(monkeypatch, tmp_path)
    from torchvision.models import ResNet18_Weights

    reference = resnet18()
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / Path(ResNet18_Weights.IMAGENET1K_V1.url).name)
    model = build_model("resnet18", embedding_dim=8, in_channels=3, image_size=32, pretrained=True)
    torch.testing.assert_close(
        model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight
    )


def test_weights_from_a_path_are_loaded_into_the_backbone(tmp_path: Path) -> None:
    reference = resnet18()
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", embedding_dim=8, in_channels=3, image_size=32, weights=path)
    loaded = model.backbone.state_dict()
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_a_grey_stem_answers_like_the_rgb_stem_on_a_repeated_grey_image(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pt"
    torch.save(resnet18().state_dict(), path)
    common = {"embedding_dim": 8, "image_size": 32, "weights": path}
    grey = build_model("resnet18", in_channels=1, **common).eval()
    rgb = build_model("resnet18", in_channels=3, **common).eval()
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            grey.backbone(images), rgb.backbone(images.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-4
        )


def test_weights_that_do_not_fit_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pt"
    torch.save(resnet50().state_dict(), path)
    with pytest.raises(ConfigError, match="do not fit"):
        build_model("resnet18", embedding_dim=8, in_channels=3, image_size=32, weights=path)


def test_a_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "none.pt")):
        build_model(
            "resnet18", embedding_dim=8, in_channels=3, image_size=32, weights=tmp_path / "none.pt"
        )


def test_the_small_cnn_has_no_pretrained_weights() -> None:
    with pytest.raises(ConfigError, match="no pretrained weights"):
        build_model("small-cnn", embedding_dim=8, in_channels=1, image_size=8, pretrained=True)


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError) as caught:
        build_model("vgg16", embedding_dim=8, in_channels=3, image_size=32)
    assert MODELS.names() == ["resnet18", "resnet50", "small-cnn"]
    assert all(name in str(caught.value) for name in MODELS.names())


@pytest.mark.parametrize("field", ["embedding_dim", "in_channels", "image_size"])
def test_sizes_must_be_positive(field: str) -> None:
    sizes = {"embedding_dim": 8, "in_channels": 1, "image_size": 8, field: 0}
    with pytest.raises(ArgumentError, match=f"{field} must be at least 1, got 0"):
        build_model("small-cnn", **sizes)
