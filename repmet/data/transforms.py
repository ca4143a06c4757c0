"""Image transforms: random shifts for in-memory batches, resize/crop/normalise for photos.

In-memory sets are transformed a batch at a time on tensors (:class:`RandomShift`); photo sets one
decoded PIL image at a time (:func:`photo_transforms`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from repmet.errors import ArgumentError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Resize the shorter side to size / 0.875 before the centre crop, the usual ImageNet evaluation.
EVAL_CROP_FRACTION = 0.875
DEFAULT_PHOTO_SIZE = 224

Transform = Callable[[Image.Image], torch.Tensor]
BatchTransform = Callable[[torch.Tensor], torch.Tensor]


class RandomShift:
    """Moves each image of a batch by its own random offset of up to ``max_shift`` pixels in each
    direction, filling with the edge values: light augmentation for small in-memory images."""

    def __init__(self, max_shift: int) -> None:
        if max_shift < 1:
            raise ArgumentError(f"max_shift must be at least 1 pixel, got {max_shift}")
        self.max_shift = max_shift

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        size, channels, height, width = batch.shape
        shift = self.max_shift
        padded = F.pad(batch, (shift, shift, shift, shift), mode="replicate")
        offsets = torch.randint(0, 2 * shift + 1, (2, size))
        rows = offsets[0, :, None] + torch.arange(height)
        cols = offsets[1, :, None] + torch.arange(width)
        return padded[
            torch.arange(size)[:, None, None, None],
            torch.arange(channels)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]


def photo_transforms(
    image_size: int, *, pretrained_normalization: bool, augment: bool
) -> tuple[Transform, Transform | None]:
    """The evaluation transform (resize shorter side, centre crop) and, when ``augment``, the
    training transform (random resized crop, horizontal flip), both ending in normalisation.
    torchvision is imported here: the in-memory sets never need it."""
    from torchvision import transforms

    if pretrained_normalization:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    to_tensor = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    evaluation = transforms.Compose(
        [
            transforms.Resize(round(image_size / EVAL_CROP_FRACTION)),
            transforms.CenterCrop(image_size),
            *to_tensor,
        ]
    )
    if not augment:
        return evaluation, None
    training = transforms.Compose(
        [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), *to_tensor]
    )
    return evaluation, training
