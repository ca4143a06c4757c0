"""``glyphs``: counts, determinism, distinct classes and the closed-set split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repmet.data import load_dataset
from repmet.data.glyphs import (
    CLASSES,
    EXAMPLES,
    SIDE,
    class_names,
    font_directory,
    fonts_with,
    glyph_images,
    render,
)


def test_glyphs_has_over_100_classes_of_30_small_images() -> None:
    images, labels = glyph_images()
    assert len(CLASSES) == 102 and len(set(CLASSES)) == 102 and EXAMPLES == 30
    assert images.shape == (102 * 30, 1, SIDE, SIDE) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert np.array_equal(labels, np.repeat(np.arange(102), 30))  # class-major
    names = class_names()
    assert len(set(names)) == 102 and names[0] == "Latin A" and names[-1] == "Hebrew ת"


def test_glyphs_are_the_same_on_every_build_and_every_example_differs() -> None:
    images, _ = glyph_images()
    assert glyph_images()[0] is images  # built once per process
    # Two uncached builds (of 2 examples per class, to stay fast) draw the same images.
    small, _ = glyph_images.__wrapped__(examples=2)
    assert torch.equal(glyph_images.__wrapped__(examples=2)[0], small)
    assert not torch.equal(glyph_images.__wrapped__(examples=2, seed=1)[0], small)
    per_class = images.view(102, 30, -1)
    gaps = (per_class[:, :, None] - per_class[:, None]).abs().mean(-1)
    off_diagonal = gaps[:, ~torch.eye(30, dtype=torch.bool)]
    assert float(off_diagonal.min()) > 0.02  # no two examples of a class alike


def test_every_class_is_drawn_in_every_font_that_has_its_character() -> None:
    directory = font_directory()
    counts = {char: len(fonts_with(char, directory)) for char in CLASSES}
    hebrew = {char for char in CLASSES if 0x5D0 <= ord(char) <= 0x5EA}
    assert len(hebrew) == 14
    assert all(counts[char] == (4 if char in hebrew else 16) for char in CLASSES)


def _clean(char: str, fonts: list) -> dict[str, torch.Tensor]:
    """The undistorted render of ``char`` in each font, at the set's size."""
    out = {}
    for font in fonts:
        ink = torch.from_numpy(render(char, font))[None, None]
        out[font.name] = F.interpolate(ink, size=SIDE, mode="area").flatten()
    return out


def _nearest_in_a_shared_font(a: dict, b: dict) -> float:
    return min(float((a[font] - b[font]).norm()) for font in a.keys() & b.keys())


#: Below this distance two clean renders of one font are the same drawing: homoglyphs such as
#: Latin A / Greek Alpha / Cyrillic A are drawn with the very same outline.
ALIKE = 0.5


def test_no_two_classes_are_drawn_alike_in_any_font() -> None:
    directory = font_directory()
    renders = {char: _clean(char, fonts_with(char, directory)) for char in CLASSES}
    # The check can fail: homoglyphs of the classes' characters are drawn alike.
    for homoglyph, char in (("\u0391", "A"), ("\u0410", "A"), ("\u041e", "O"), ("\u0395", "E")):
        found = _clean(homoglyph, fonts_with(homoglyph, directory))
        assert _nearest_in_a_shared_font(found, renders[char]) < ALIKE
    closest = min(
        (_nearest_in_a_shared_font(renders[a], renders[b]), a, b)
        for i, a in enumerate(CLASSES)
        for b in CLASSES[i + 1 :]
        if renders[a].keys() & renders[b].keys()
    )
    assert closest[0] > ALIKE, closest


@pytest.mark.parametrize("seed", [0, 3])
def test_glyphs_closed_set_is_stratified_by_seed(seed: int) -> None:
    splits = load_dataset("glyphs", seed=seed)
    assert splits.num_classes == 102 and splits.image_shape == (1, SIDE, SIDE)
    for split, per_class in ((splits.train, 18), (splits.val, 6), (splits.test, 6)):
        assert torch.bincount(split.labels, minlength=102).tolist() == [per_class] * 102
    other = load_dataset("glyphs", seed=seed + 1)
    assert not torch.equal(other.test.images, splits.test.images)
