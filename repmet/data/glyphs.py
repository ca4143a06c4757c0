"""``glyphs``: letters of five scripts rendered with the fonts matplotlib ships, each example in
its own font and random distortion. Many classes, built offline and deterministically in seconds
(in the spirit of Omniglot), so that the class-disjoint protocol and few-shot episodes can run on
a CPU.

How it is made:

1. Classes (:data:`SCRIPTS`): 102, one character each: 44 Latin (26 upper case, 18 lower case),
   9 digits, 22 Greek (10 upper, 12 lower case), 13 Cyrillic upper case and 14 Hebrew letters.
   A character that looks like another one of the list is left out: Greek and Cyrillic letters
   drawn like Latin or Greek ones (Greek Alpha, Cyrillic A, Cyrillic Ef / Greek Phi, ...),
   lower-case letters that are smaller copies of their upper-case letter (c, o, s, v, w, x, z,
   Greek theta, psi, phi, Cyrillic lower case), and look-alikes such as 0 / O, l / I, Greek
   gamma / y, Cyrillic Ze / 3, Cyrillic Soft sign / b, Hebrew resh / dalet and gimel / nun.
   ``tests/core/test_glyphs.py`` checks that no two classes draw alike in any font (as homoglyphs
   such as Latin A and Greek Alpha do).
2. Fonts (:data:`FONTS`): the 16 text faces of ``matplotlib/mpl-data/fonts/ttf`` (DejaVu Sans,
   Sans Mono and Serif and STIXGeneral, each regular, bold, italic and bold italic). A class is
   drawn in the fonts whose character map has its character (Hebrew: the 4 DejaVu Sans faces;
   every other class: all 16); example ``e`` of a class uses the ``e mod F``-th of them.
3. Each example is drawn with PIL at :data:`FONT_SIZE` px on a :data:`RENDER_SIDE` px canvas, its
   ink box centred (a glyph keeps its size relative to the others, not its baseline), then
   distorted at that resolution: strokes kept or thickened at random (:data:`STROKE_STEPS`; a
   step is one grey dilation with a 3x3 window), ink intensity
   multiplied by a smooth random field in :data:`INK_RANGE` (bilinear upsampling of 4x4 uniform
   noise), a random affine warp (rotation, scale, aspect, shear and shift, the ranges of
   :data:`DISTORTION`, as :mod:`repmet.data.distorted` draws them), area-downsampled to
   :data:`SIDE` px, then random contrast, brightness and Gaussian pixel noise.

All random draws come from one CPU ``torch.Generator`` seeded with :data:`GENERATOR_SEED`: the
images are the same on every machine and call; only the split follows the split seed. The images
are built once per process and kept (:func:`glyph_images`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from repmet.data.datasets import DatasetSplits
from repmet.data.distorted import Distortion, draw_distortions, photometric, warp
from repmet.data.in_memory import in_memory_splits
from repmet.data.registry import DATASETS, DataRequest
from repmet.data.splits import stratified_split
from repmet.errors import DataError

#: One class per character: script, then the characters kept (see the module docstring).
SCRIPTS: dict[str, str] = {
    "Latin": "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abdefghijkmnpqrtuy",
    "digit": "123456789",
    "Greek": "ΓΔΘΛΞΠΣΦΨΩ" + "αβδεζηλμξσςω",
    "Cyrillic": "БДЖИЦЧШЩЪЫЭЮЯ",
    "Hebrew": "אבדהטלמנעפצקשת",
}
#: The characters, in class order.
CLASSES: tuple[str, ...] = tuple(char for chars in SCRIPTS.values() for char in chars)
#: Examples of every class.
EXAMPLES = 30
#: The text faces of matplotlib's fonts, in the order examples cycle through them.
FONTS: tuple[str, ...] = tuple(
    f"{family}{style}.ttf"
    for family, styles in (
        ("DejaVuSans", ("", "-Bold", "-Oblique", "-BoldOblique")),
        ("DejaVuSansMono", ("", "-Bold", "-Oblique", "-BoldOblique")),
        ("DejaVuSerif", ("", "-Bold", "-Italic", "-BoldItalic")),
        ("STIXGeneral", ("", "Bol", "Italic", "BolIta")),
    )
    for style in styles
)
GENERATOR_SEED = 20_260_117
#: Side of the images, in pixels.
SIDE = 24
#: Side of the canvas the glyphs are drawn and distorted on before downsampling.
RENDER_SIDE = 48
FONT_SIZE = 36
#: Stroke-width changes in steps of one 3x3 dilation (positive) or erosion (negative). Erosion is
#: left out: it wipes the thin strokes of the light faces away at this size.
STROKE_STEPS = (0, 1)
INK_RANGE = (0.7, 1.0)
#: Side of the random field that modulates the ink.
INK_FIELD_SIDE = 4
DISTORTION = Distortion(
    fill=1.0,
    max_rotation_deg=15.0,
    scale_range=(0.8, 1.1),
    max_aspect=0.15,
    max_shear=0.25,
    max_shift_pixels=2.0,
    contrast_range=(0.6, 1.0),
    brightness_range=(0.0, 0.15),
    noise_std=0.08,
)


def font_directory() -> Path:
    """matplotlib's bundled TrueType fonts (matplotlib is imported here only)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def fonts_with(char: str, directory: Path) -> list[Path]:
    """The faces of :data:`FONTS` whose character map has ``char``."""
    return [path for path in _font_paths(directory) if ord(char) in _charmap(path)]


def _font_paths(directory: Path) -> list[Path]:
    paths = [directory / name for name in FONTS]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise DataError(
            f"data set 'glyphs' needs matplotlib's fonts, but {directory} lacks "
            f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}; reinstall matplotlib"
        )
    return paths


@functools.cache
def _charmap(path: Path) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(str(path)).get_charmap())


@functools.cache
def _face(font: Path) -> ImageFont.FreeTypeFont:
    """``font`` at :data:`FONT_SIZE`, loaded once."""
    return ImageFont.truetype(str(font), FONT_SIZE)


def render(char: str, font: Path) -> np.ndarray:
    """``char`` drawn in ``font``: float32 [RENDER_SIDE, RENDER_SIDE] ink in [0, 1], its ink box
    centred on the canvas."""
    face = _face(font)
    left, top, right, bottom = face.getbbox(char)
    image = Image.new("L", (RENDER_SIDE, RENDER_SIDE), 0)
    origin = ((RENDER_SIDE - left - right) / 2, (RENDER_SIDE - top - bottom) / 2)
    ImageDraw.Draw(image).text(origin, char, fill=255, font=face)
    return np.asarray(image, dtype=np.float32) / 255.0


def _dilate(ink: torch.Tensor) -> torch.Tensor:
    """3x3 grey dilation of [N, 1, S, S] images, as two 1-D maxima of shifted copies (the window
    is separable; torch's max_pool2d is several times slower here). Outside the canvas is 0."""
    padded = F.pad(ink, (0, 0, 1, 1))
    rows = torch.maximum(
        torch.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :]
    )
    padded = F.pad(rows, (1, 1))
    return torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])


def _stroke_variants(ink: torch.Tensor) -> torch.Tensor:
    """``[N, len(STROKE_STEPS), S, S]``: each image eroded or dilated by each step of
    :data:`STROKE_STEPS` (erosion is the dilation of the background)."""
    variants = {0: ink}
    for step in range(1, max(STROKE_STEPS) + 1):
        variants[step] = _dilate(variants[step - 1])
    for step in range(-1, min(STROKE_STEPS) - 1, -1):
        variants[step] = -_dilate(-variants[step + 1])
    return torch.cat([variants[step] for step in STROKE_STEPS], dim=1)


@functools.cache
def glyph_images(
    examples: int = EXAMPLES, seed: int = GENERATOR_SEED
) -> tuple[torch.Tensor, np.ndarray]:
    """Every class's ``examples`` images, class-major (image ``c * examples + e`` is example
    ``e`` of class ``c``), and their labels. Built once per process; callers must not modify
    the tensor.

    Returns:
        float32 [C * examples, 1, SIDE, SIDE] images in [0, 1], and int64 [C * examples] labels.
    """
    directory = font_directory()
    renders, source = [], []
    for char in CLASSES:
        fonts = fonts_with(char, directory)
        if not fonts:
            raise DataError(f"no font of {directory} draws {char!r}; reinstall matplotlib")
        # Example e of the class is drawn in its (e mod F)-th font.
        source += [len(renders) + e % len(fonts) for e in range(examples)]
        renders += [render(char, font) for font in fonts]
    # Stroke variants of each distinct render, then one of them per example.
    variants = _stroke_variants(torch.from_numpy(np.stack(renders)).unsqueeze(1))
    count = len(source)
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randint(len(STROKE_STEPS), (count,), generator=generator)
    ink = variants[torch.tensor(source), steps].unsqueeze(1)
    field = INK_RANGE[0] + (INK_RANGE[1] - INK_RANGE[0]) * torch.rand(
        count, 1, INK_FIELD_SIDE, INK_FIELD_SIDE, generator=generator
    )
    ink = ink * F.interpolate(field, size=RENDER_SIDE, mode="bilinear", align_corners=False)
    drawn = draw_distortions(generator, count, DISTORTION, canvas_side=SIDE)
    warped = warp(ink, drawn, canvas_side=RENDER_SIDE)
    small = F.interpolate(warped, size=SIDE, mode="area")
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), examples)
    return photometric(small, drawn, DISTORTION, generator), labels


def class_names() -> tuple[str, ...]:
    """``"<script> <character>"`` of every class, e.g. ``"Greek Δ"``."""
    return tuple(f"{script} {char}" for script, chars in SCRIPTS.items() for char in chars)


@DATASETS.register("glyphs")
def glyphs(request: DataRequest) -> DatasetSplits:
    """102 glyph classes of 30 examples each, 24x24 grey (see the module docstring); closed-set
    split 60/20/20 stratified by class with ``seed``."""
    images, labels = glyph_images()
    return in_memory_splits(
        "glyphs",
        images,
        request.partition(
            labels,
            dataset="glyphs",
            closed_set=lambda: stratified_split(labels, seed=request.seed, dataset="glyphs"),
        ),
        class_names=class_names(),
        request=request,
    )
