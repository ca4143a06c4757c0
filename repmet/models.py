"""Embedding networks by name: a backbone followed by a linear embedding layer.

``build_model("small-cnn", embedding_dim=..., in_channels=..., image_size=...)`` returns a module
mapping images [B, C, H, W] to embeddings [B, E], L2-normalised when the caller asks: whether to
normalise is a choice of the loss (its catalogue entry's default), not of the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from repmet.errors import ArgumentError, ConfigError, DataNotFoundError
from repmet.registry import Registry

SMALL_CNN_WIDTHS = (16, 32, 64)
# The small CNN halves its feature maps after a block only while they stay at least this wide.
SMALL_CNN_MIN_SIDE = 4
# Side of the grid the small CNN pools its last feature map to, keeping coarse layout.
SMALL_CNN_POOLED_SIDE = 2


@dataclass(frozen=True)
class ModelSpec:
    """What :data:`MODELS` holds.

    Attributes:
        build_backbone: ``(in_channels, image_size) -> (module, feature_dim)``; the module maps
            [B, C, H, W] to features [B, feature_dim] and starts from a random initialisation.
        pretrained: loads ImageNet weights into the backbone, or None when the family has none.
        fold_stem: for RGB families (built with 3 channels so that RGB weights load), turns the
            stem into one taking the given number of channels; None builds for the input's
            channels directly.
    """

    build_backbone: Callable[[int, int], tuple[nn.Module, int]]
    pretrained: Callable[[nn.Module], None] | None = None
    fold_stem: Callable[[nn.Module, int], None] | None = None


MODELS: Registry[ModelSpec] = Registry("model")


class EmbeddingNet(nn.Module):
    """Backbone features -> linear embedding, L2-normalised onto the unit sphere if ``normalize``.

    Attributes:
        embedding_dim: E, the size of an embedding.
        normalize: whether embeddings have unit L2 norm.
        freeze_backbone: whether only the embedding layer trains; the frozen backbone also stays
            in eval mode so that its batch-norm statistics do not drift.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        *,
        embedding_dim: int,
        normalize: bool,
        freeze_backbone: bool,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, embedding_dim)
        self.embedding_dim = embedding_dim
        self.normalize = normalize
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.head(self.backbone(images))
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings

    def train(self, mode: bool = True) -> EmbeddingNet:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _small_cnn(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    """Three conv-bn-relu blocks, max-pooling after a block while the map stays >= 4 pixels
    wide (8x8 input: once; 32x32: three times), then an adaptive 2x2 average pool."""
    layers: list[nn.Module] = []
    side, channels = image_size, in_channels
    for width in SMALL_CNN_WIDTHS:
        layers.append(_conv_block(channels, width))
        channels = width
        if side // 2 >= SMALL_CNN_MIN_SIDE:
            layers.append(nn.MaxPool2d(2))
            side //= 2
    layers += [nn.AdaptiveAvgPool2d(SMALL_CNN_POOLED_SIDE), nn.Flatten()]
    return nn.Sequential(*layers), channels * SMALL_CNN_POOLED_SIDE**2


def _adapt_stem(resnet: nn.Module, in_channels: int) -> None:
    """Replaces conv1 by one taking ``in_channels``, each channel weighted by the RGB kernels'
    sum divided by ``in_channels``: an image whose channels are all equal then gets exactly the
    response the RGB stem gives to that grey image repeated over R, G and B."""
    stem = resnet.conv1
    adapted = nn.Conv2d(
        in_channels,
        stem.out_channels,
        kernel_size=stem.kernel_size,
        stride=stem.stride,
        padding=stem.padding,
        bias=False,
    )
    with torch.no_grad():
        grey_kernel = stem.weight.sum(dim=1, keepdim=True)
        adapted.weight.copy_(grey_kernel.expand(-1, in_channels, -1, -1) / in_channels)
    resnet.conv1 = adapted


def _resnet_spec(name: str, weights: str) -> None:
    """Registers torchvision's ResNet ``name`` (its classifier replaced by the embedding layer)
    and its ImageNet ``weights`` (an attribute path in ``torchvision.models``). torchvision is
    imported when a ResNet is built: it takes longer to import than the rest of the suite, and a
    small-CNN run never needs it."""

    def build_backbone(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
        from torchvision import models

        resnet = getattr(models, name)(weights=None)
        feature_dim = resnet.fc.in_features
        resnet.fc = nn.Identity()
        return resnet, feature_dim

    def load_pretrained(resnet: nn.Module) -> None:
        from torchvision import models

        enum_name, _, member = weights.partition(".")
        imagenet = getattr(getattr(models, enum_name), member)
        try:
            state = imagenet.get_state_dict(progress=False)
        except Exception as error:  # noqa: BLE001 - offline, blocked or corrupt: same remedy
            cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(imagenet.url).name
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise DataNotFoundError(
                f"pretrained ImageNet weights for {name} are not available ({reason}); put "
                f"{imagenet.url} at {cache} or pass weights=PATH to a state_dict file"
            ) from None
        _load_backbone_state(resnet, state, source=f"torchvision's {name} weights")

    MODELS.add(
        name,
        ModelSpec(build_backbone, pretrained=load_pretrained, fold_stem=_adapt_stem),
    )


def _load_backbone_state(backbone: nn.Module, state: dict, *, source: str) -> None:
    """Loads a state_dict into a backbone, ignoring a classifier (``fc.*``) it may carry."""
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    try:
        backbone.load_state_dict(state)
    except RuntimeError as error:
        first_problem = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise ConfigError(f"{source} do not fit this network: {first_problem}") from None


def _load_weights_file(backbone: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise DataNotFoundError(f"weights file {path} not found; pass the path of a state_dict")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConfigError(f"weights file {path} holds a {type(state).__name__}, not a state_dict")
    _load_backbone_state(backbone, state, source=f"the weights in {path}")


MODELS.add("small-cnn", ModelSpec(_small_cnn))
_resnet_spec("resnet18", "ResNet18_Weights.IMAGENET1K_V1")
_resnet_spec("resnet50", "ResNet50_Weights.IMAGENET1K_V2")


def _check_positive(field: str, value: int) -> None:
    if value < 1:
        raise ArgumentError(f"{field} must be at least 1, got {value}")


def build_model(
    name: str,
    *,
    embedding_dim: int,
    in_channels: int,
    image_size: int,
    pretrained: bool = False,
    weights: str | os.PathLike | None = None,
    freeze_backbone: bool = False,
    normalize: bool = False,
) -> EmbeddingNet:
    """Builds the named embedding network, mapping [B, in_channels, H, W] to [B, embedding_dim].

    Args:
        name: a registered model (``MODELS.names()``): small-cnn, resnet18, resnet50.
        embedding_dim: size E of the embedding.
        in_channels: image channels; a ResNet's RGB stem is folded to this many channels.
        image_size: side of the square input (the small CNN sizes its pooling to it).
        pretrained: start from torchvision's ImageNet weights (cached, or downloaded).
        weights: a state_dict file for the backbone to start from instead (a classifier in it is
            ignored); giving it implies ``pretrained``.
        freeze_backbone: train only the embedding layer.
        normalize: L2-normalise the embeddings (a choice of the loss, see repmet.catalogue).

    Raises:
        UnknownNameError: ``name`` is not registered.
        DataNotFoundError: pretrained weights were asked for and are not available.
        ConfigError: an invalid size, or weights that do not fit the network.
    """
    spec = MODELS.get(name)
    _check_positive("embedding_dim", embedding_dim)
    _check_positive("in_channels", in_channels)
    _check_positive("image_size", image_size)
    if pretrained and weights is None and spec.pretrained is None:
        raise ConfigError(f"model {name!r} has no pretrained weights; pass weights=PATH instead")
    # Weights of RGB families fit an RGB stem: load them first, then fold the stem's channels.
    built_channels = 3 if spec.fold_stem is not None else in_channels
    backbone, feature_dim = spec.build_backbone(built_channels, image_size)
    if weights is not None:
        _load_weights_file(backbone, Path(weights))
    elif pretrained:
        spec.pretrained(backbone)
    if spec.fold_stem is not None and in_channels != built_channels:
        spec.fold_stem(backbone, in_channels)
    return EmbeddingNet(
        backbone,
        feature_dim,
        embedding_dim=embedding_dim,
        normalize=normalize,
        freeze_backbone=freeze_backbone,
    )
