"""``digits-distorted``: a harder digits task built only from scikit-learn's bundled digits.

Every one of the 1,797 8x8 digits is drawn :data:`COPIES` times onto a 16x16 canvas, each copy with
its own random affine distortion, contrast, brightness and pixel noise. Nothing is downloaded and
the set is the same on every machine and every call:

1. The 8x8 digit (pixels 0..16 scaled to [0, 1]) is placed in the central :data:`FILL` of the
   canvas (12x12 of 16x16 pixels), so that rotations and shifts keep it on the canvas, and warped
   by ``v = Rot(theta) @ Shear(shear) @ diag(sx, sy) @ u + t`` (``u``: the digit's coordinates,
   ``v``: the canvas's, both in [-1, 1]); the canvas is sampled bilinearly through the inverse
   map with ``torch.nn.functional.affine_grid``/``grid_sample`` (zeros outside the digit, which
   is its background value). Per copy, uniformly: rotation ``theta`` in +-:data:`MAX_ROTATION_DEG`
   degrees, a common scale in :data:`SCALE_RANGE` times an aspect factor in
   ``1 +- MAX_ASPECT`` (sx = s * a, sy = s / a), horizontal shear in +-:data:`MAX_SHEAR`, and a
   translation of up to :data:`MAX_SHIFT_PIXELS` canvas pixels in each direction.
2. Photometric changes: ``pixel * contrast + brightness + noise`` with contrast uniform in
   :data:`CONTRAST_RANGE`, brightness uniform in :data:`BRIGHTNESS_RANGE` and independent
   Gaussian noise of standard deviation :data:`NOISE_STD` per pixel, clipped to [0, 1].

All random draws come from one CPU ``torch.Generator`` seeded with :data:`GENERATOR_SEED`, which
does not depend on the split seed: the images never change, only the split does.

The split is by source image: the 1,797 source digits are split 60/20/20, stratified by class with
the request's seed (the same split as ``digits``), and every copy follows its source, so distorted
copies of one drawing never straddle train, validation and test. Sizes: 4,308 / 1,440 / 1,440.
Copies are stored source-major: image ``i * COPIES + c`` is copy ``c`` of source digit ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from repmet.data.datasets import DatasetSplits
from repmet.data.in_memory import in_memory_splits
from repmet.data.registry import DATASETS, DataRequest
from repmet.data.splits import reindex_labels, stratified_split

#: Distorted copies of every source digit.
COPIES = 4
#: Seed of the generator that draws every distortion (fixed: independent of the split seed).
GENERATOR_SEED = 20_190_617
#: Side of the square canvas, in pixels.
CANVAS_SIDE = 16
#: Share of the canvas side the undistorted digit spans (12 of 16 pixels).
FILL = 0.75
MAX_ROTATION_DEG = 15.0
SCALE_RANGE = (0.85, 1.1)
MAX_ASPECT = 0.1
MAX_SHEAR = 0.2
MAX_SHIFT_PIXELS = 1.5
CONTRAST_RANGE = (0.6, 1.0)
BRIGHTNESS_RANGE = (0.0, 0.15)
NOISE_STD = 0.08


def _uniform(generator: torch.Generator, count: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)


@dataclass(frozen=True, kw_only=True)
class Distortion:
    """The ranges of a random affine warp and photometric change (see the module docstring);
    the defaults are ``digits-distorted``'s."""

    #: Share of the canvas side the undistorted image spans.
    fill: float = FILL
    max_rotation_deg: float = MAX_ROTATION_DEG
    scale_range: tuple[float, float] = SCALE_RANGE
    max_aspect: float = MAX_ASPECT
    max_shear: float = MAX_SHEAR
    #: In pixels of the output canvas.
    max_shift_pixels: float = MAX_SHIFT_PIXELS
    contrast_range: tuple[float, float] = CONTRAST_RANGE
    brightness_range: tuple[float, float] = BRIGHTNESS_RANGE
    noise_std: float = NOISE_STD


@dataclass(frozen=True)
class DrawnDistortions:
    """One draw of :class:`Distortion` per image: the ``[N, 2, 3]`` canvas -> source sampling
    matrices for ``affine_grid``, and each image's contrast and brightness."""

    sampling: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor


def draw_distortions(
    generator: torch.Generator, count: int, distortion: Distortion, *, canvas_side: int
) -> DrawnDistortions:
    """Draws ``count`` distortions, in a fixed order from ``generator``: rotation, scale, aspect,
    shear, shift, contrast, brightness."""
    theta = torch.deg2rad(
        _uniform(generator, count, -distortion.max_rotation_deg, distortion.max_rotation_deg)
    )
    scale = _uniform(generator, count, *distortion.scale_range) * distortion.fill
    aspect = _uniform(generator, count, 1 - distortion.max_aspect, 1 + distortion.max_aspect)
    shear = _uniform(generator, count, -distortion.max_shear, distortion.max_shear)
    # Pixels to normalised canvas coordinates: the canvas spans 2 units over canvas_side pixels.
    max_shift = 2.0 * distortion.max_shift_pixels / canvas_side
    shift = _uniform(generator, 2 * count, -max_shift, max_shift).reshape(count, 2)
    contrast = _uniform(generator, count, *distortion.contrast_range)
    brightness = _uniform(generator, count, *distortion.brightness_range)

    # Forward map source -> canvas: A = Rot(theta) @ Shear(shear) @ diag(sx, sy), then + shift.
    cos, sin = torch.cos(theta), torch.sin(theta)
    rotation = torch.stack([cos, -sin, sin, cos], dim=1).reshape(count, 2, 2)
    shearing = torch.zeros(count, 2, 2, dtype=torch.float64)
    shearing[:, 0, 0] = 1.0
    shearing[:, 0, 1] = shear
    shearing[:, 1, 1] = 1.0
    scaling = torch.diag_embed(torch.stack([scale * aspect, scale / aspect], dim=1))
    forward = rotation @ shearing @ scaling
    # grid_sample needs the inverse map canvas -> source: u = A^-1 (v - shift).
    inverse = torch.linalg.inv(forward)
    offset = -(inverse @ shift.unsqueeze(2))
    return DrawnDistortions(
        sampling=torch.cat([inverse, offset], dim=2).float(),
        contrast=contrast.float().view(-1, 1, 1, 1),
        brightness=brightness.float().view(-1, 1, 1, 1),
    )


def warp(sources: torch.Tensor, drawn: DrawnDistortions, *, canvas_side: int) -> torch.Tensor:
    """Each source image [N, 1, H, W] (background 0) warped onto its canvas, sampled
    bilinearly (zeros outside the source)."""
    grid = F.affine_grid(
        drawn.sampling, [sources.shape[0], 1, canvas_side, canvas_side], align_corners=False
    )
    return F.grid_sample(sources, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def photometric(
    images: torch.Tensor,
    drawn: DrawnDistortions,
    distortion: Distortion,
    generator: torch.Generator,
) -> torch.Tensor:
    """``pixel * contrast + brightness + noise`` (Gaussian, drawn now), clipped to [0, 1]."""
    noise = torch.randn(images.shape, generator=generator) * distortion.noise_std
    return (images * drawn.contrast + drawn.brightness + noise).clamp_(0.0, 1.0).contiguous()


def distort_digits(
    digits: torch.Tensor, *, copies: int = COPIES, seed: int = GENERATOR_SEED
) -> torch.Tensor:
    """Draws ``copies`` randomly distorted copies of each image (see the module docstring).

    Args:
        digits: float [N, 1, H, W] source images in [0, 1], background 0.
        copies: distorted copies per source image.
        seed: seed of the generator drawing the distortions.

    Returns:
        float32 [N * copies, 1, CANVAS_SIDE, CANVAS_SIDE] images in [0, 1], source-major (row
        ``i * copies + c`` is copy ``c`` of source ``i``).
    """
    generator = torch.Generator().manual_seed(seed)
    distortion = Distortion()
    drawn = draw_distortions(
        generator, digits.shape[0] * copies, distortion, canvas_side=CANVAS_SIDE
    )
    warped = warp(digits.float().repeat_interleave(copies, dim=0), drawn, canvas_side=CANVAS_SIDE)
    return photometric(warped, drawn, distortion, generator)


def group_split(
    source_labels: np.ndarray, *, copies: int, seed: int, dataset: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seeded, class-stratified 60/20/20 split of the source images, expanded to their
    copies (image ``i * copies + c`` goes where source ``i`` goes)."""
    offsets = np.arange(copies)
    return tuple(  # type: ignore[return-value]
        (part[:, None] * copies + offsets).reshape(-1)
        for part in stratified_split(source_labels, seed=seed, dataset=dataset)
    )


@DATASETS.register("digits-distorted")
def digits_distorted(request: DataRequest) -> DatasetSplits:
    """The 1,797 bundled digits, each drawn 4 times at 16x16 with random affine distortions,
    contrast, brightness and noise (fixed seed); split 60/20/20 by source image and seed."""
    from sklearn.datasets import load_digits  # here: scikit-learn is slow to import

    bunch = load_digits()
    sources = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = distort_digits(sources)
    source_labels, class_names = reindex_labels(bunch.target)
    labels = np.repeat(source_labels, COPIES)
    return in_memory_splits(
        "digits-distorted",
        images,
        # Class-disjoint splits keep whole classes, so the copies of a source stay together too.
        request.partition(
            labels,
            dataset="digits-distorted",
            closed_set=lambda: group_split(
                source_labels, copies=COPIES, seed=request.seed, dataset="digits-distorted"
            ),
        ),
        class_names=class_names,
        request=request,
    )


__all__ = [
    "COPIES",
    "GENERATOR_SEED",
    "Distortion",
    "digits_distorted",
    "distort_digits",
    "draw_distortions",
    "group_split",
    "photometric",
    "warp",
]
