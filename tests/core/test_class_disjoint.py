"""The class-disjoint protocol of the data layer (spec, "Unseen classes"): the class split rule,
the per-split labels, and that no example of a validation or test class reaches the training
split of any built-in set (in-memory sets checked image by image, photo sets file by file)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_photo_sets import (
    fake_cars,
    fake_cub,
    fake_dogs,
    fake_flowers,
    fake_folder,
    fake_pets,
    fake_sop,
)
from sklearn.datasets import load_digits
from torchvision.datasets import Flowers102

from repmet.data import DatasetSplits, FileDataset, load_dataset
from repmet.data.distorted import COPIES, distort_digits
from repmet.data.glyphs import class_names as glyph_class_names
from repmet.data.glyphs import glyph_images
from repmet.data.splits import class_disjoint_classes, partition, stratified_split
from repmet.errors import ConfigError, DataError
from repmet.protocols import CLASS_DISJOINT, CLOSED_SET, FOLDS

SPLITS = ("train", "val", "test")


# --- the class split rule --------------------------------------------------------------------


def test_the_sorted_rule_halves_the_classes_and_validates_on_each_quarter_in_turn() -> None:
    """100 classes: 0-49 train+val, 50-99 test; fold f validates on classes 12.5f.. of them."""
    validated = []
    for fold in range(FOLDS):
        train, val, test = class_disjoint_classes(100, fold=fold, dataset="toy")
        assert test.tolist() == list(range(50, 100))
        start, end = fold * 50 // 4, (fold + 1) * 50 // 4
        assert val.tolist() == list(range(start, end))  # contiguous, from f/4 of them
        assert sorted(train.tolist() + val.tolist()) == list(range(50))
        validated += val.tolist()
    assert sorted(validated) == list(range(50))  # the four folds validate on every class once


def test_an_odd_number_of_classes_puts_the_extra_class_in_test() -> None:
    train, val, test = class_disjoint_classes(11, fold=0, dataset="toy")
    assert (train.tolist(), val.tolist(), test.tolist()) == ([1, 2, 3, 4], [0], list(range(5, 11)))


def test_an_official_class_split_replaces_the_sorted_halves() -> None:
    official = np.array([0, 3, 4, 7, 8, 9, 11, 12])
    train, val, test = class_disjoint_classes(14, fold=3, dataset="toy", trainval=official)
    assert val.tolist() == [11, 12] and train.tolist() == [0, 3, 4, 7, 8, 9]
    assert test.tolist() == [1, 2, 5, 6, 10, 13]


@pytest.mark.parametrize(("classes", "fold"), [(6, 0), (3, 1), (2, 0)])
def test_too_few_classes_for_the_protocol_is_one_line(classes: int, fold: int) -> None:
    with pytest.raises(DataError) as caught:
        class_disjoint_classes(classes, fold=fold, dataset="toy")
    message = str(caught.value)
    assert "\n" not in message and "'toy' has too few classes for the class-disjoint" in message
    assert f"fold {fold}" in message


def test_partition_relabels_each_split_within_itself_in_the_original_order() -> None:
    labels = np.array([9, 0, 1, 5, 2, 3, 8, 4, 6, 7, 0, 9])
    split = partition(
        labels, protocol=CLASS_DISJOINT, fold=1, dataset="toy", closed_set=_never_called
    )
    assert [part.tolist() for part in split.classes] == [[0, 2, 3, 4], [1], [5, 6, 7, 8, 9]]
    assert split.indices[0].tolist() == [1, 4, 5, 7, 10]  # kept in the set's order
    assert split.labels[0].tolist() == [0, 1, 2, 3, 0]
    assert split.indices[2].tolist() == [0, 3, 6, 8, 9, 11]
    assert split.labels[2].tolist() == [4, 0, 3, 1, 2, 4]
    for part, labels_of_part, classes in zip(
        split.indices, split.labels, split.classes, strict=True
    ):
        assert np.array_equal(classes[labels_of_part], labels[part])


def _never_called() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raise AssertionError("the closed-set split must not be computed for class-disjoint")


def test_closed_set_is_the_closed_set_split_with_the_sets_own_labels() -> None:
    labels = np.repeat(np.arange(4), 10)
    split = partition(
        labels,
        protocol=CLOSED_SET,
        fold=2,  # ignored
        dataset="toy",
        closed_set=lambda: stratified_split(labels, seed=0, dataset="toy"),
    )
    expected = stratified_split(labels, seed=0, dataset="toy")
    for part, wanted, labels_of_part in zip(split.indices, expected, split.labels, strict=True):
        assert np.array_equal(part, wanted) and np.array_equal(labels_of_part, labels[wanted])
    assert all(classes.tolist() == [0, 1, 2, 3] for classes in split.classes)


def test_closed_set_is_the_default_and_gives_todays_splits(digits) -> None:
    assert digits.protocol == CLOSED_SET
    assert digits.split_classes == dict.fromkeys(SPLITS, digits.class_names)
    explicit = load_dataset("digits", protocol=CLOSED_SET, fold=3)
    for split in SPLITS:
        assert torch.equal(getattr(explicit, split).images, getattr(digits, split).images)
        assert torch.equal(getattr(explicit, split).labels, getattr(digits, split).labels)


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"protocol": "open-set"}, "protocol = 'open-set' is not one of: closed-set, class-"),
        ({"fold": 4}, "fold = 4 must be one of 0..3"),
        ({"fold": -1}, "fold = -1 must be one of 0..3"),
    ],
)
def test_a_bad_protocol_or_fold_is_a_config_error(arguments: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_dataset("digits", **arguments)


# --- no leakage, set by set ------------------------------------------------------------------


def _assert_disjoint_layout(
    splits: DatasetSplits, all_classes: tuple[str, ...], trainval: tuple[str, ...], fold: int
) -> None:
    """The splits hold disjoint classes that together are every class, as the rule says, and
    each split's labels are ``0..C_split-1`` with every label used."""
    assert splits.protocol == CLASS_DISJOINT
    held = {split: splits.split_classes[split] for split in SPLITS}
    assert not set(held["train"]) & set(held["val"])
    assert not set(held["train"]) & set(held["test"])
    assert not set(held["val"]) & set(held["test"])
    assert sorted(held["train"] + held["val"] + held["test"]) == sorted(all_classes)
    count = len(trainval)
    assert held["val"] == trainval[fold * count // FOLDS : (fold + 1) * count // FOLDS]
    assert set(held["train"]) | set(held["val"]) == set(trainval)
    assert splits.num_classes == len(held["train"]) and splits.class_names == held["train"]
    for split in SPLITS:
        labels = getattr(splits, split).labels
        assert labels.dtype == torch.long
        assert torch.bincount(labels).tolist() and int(labels.min()) == 0
        assert sorted(labels.unique().tolist()) == list(range(len(held[split])))


def _assert_in_memory_split_is(
    splits: DatasetSplits,
    raw: torch.Tensor,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    fold: int,
) -> None:
    """Each split holds exactly the raw images of its classes, in order, standardised with the
    training classes' statistics, and labels each with the class it is of. ``labels`` are the
    set's classes ``0..C-1`` of the raw images, whose names are ``class_names``."""
    _assert_disjoint_layout(splits, class_names, class_names[: len(class_names) // 2], fold)
    names = np.array(class_names)[labels]
    held = {split: np.isin(names, splits.split_classes[split]) for split in SPLITS}
    train_pixels = raw[torch.from_numpy(held["train"])]
    mean = train_pixels.mean(dim=(0, 2, 3), keepdim=True)
    std = train_pixels.std(dim=(0, 2, 3), keepdim=True)
    for split in SPLITS:
        part = getattr(splits, split)
        where = torch.from_numpy(held[split])
        torch.testing.assert_close(part.images, (raw[where] - mean) / std, atol=1e-4, rtol=1e-4)
        classes = np.array(splits.split_classes[split])
        assert (classes[part.labels.numpy()] == names[held[split]]).all()


DIGIT_NAMES = tuple(str(d) for d in range(10))


def _digits() -> tuple[torch.Tensor, np.ndarray]:
    bunch = load_digits()
    return torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1), bunch.target


@pytest.mark.parametrize("fold", [0, 3])
def test_digits_class_disjoint_holds_only_its_classes_images(fold: int) -> None:
    raw, labels = _digits()
    splits = load_dataset("digits", protocol=CLASS_DISJOINT, fold=fold)
    _assert_in_memory_split_is(splits, raw, labels, DIGIT_NAMES, fold)
    assert splits.split_classes["test"] == ("5", "6", "7", "8", "9")


def test_digits_distorted_class_disjoint_holds_only_its_classes_images() -> None:
    sources, labels = _digits()
    splits = load_dataset("digits-distorted", protocol=CLASS_DISJOINT, fold=1)
    raw = distort_digits(sources)
    _assert_in_memory_split_is(splits, raw, np.repeat(labels, COPIES), DIGIT_NAMES, 1)


def test_glyphs_class_disjoint_holds_only_its_classes_images() -> None:
    images, labels = glyph_images()
    splits = load_dataset("glyphs", protocol=CLASS_DISJOINT, fold=2)
    _assert_in_memory_split_is(splits, images, labels, glyph_class_names(), 2)


def test_arrays_class_disjoint_holds_only_its_classes_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(120, 5, 5)).astype(np.uint8)
    letters = tuple("abcdefghij")
    labels = rng.permutation(np.arange(120) % 10)
    np.savez(tmp_path / "set.npz", images=images, labels=np.array(letters)[labels])
    splits = load_dataset("arrays", root=tmp_path / "set.npz", protocol=CLASS_DISJOINT, fold=2)
    raw = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    _assert_in_memory_split_is(splits, raw, labels, letters, 2)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_mnist_family_class_disjoint_pools_the_official_splits(
    tmp_path: Path, name: str, folder: str
) -> None:
    raw_dir = tmp_path / folder / "raw"
    raw_dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images, labels = [], []
    for prefix, count in (("train", 60), ("t10k", 20)):
        labels.append(rng.permutation(np.arange(count) % 10))
        images.append(rng.integers(0, 256, size=(count, 28, 28)))
        _write_idx(raw_dir / f"{prefix}-images-idx3-ubyte", images[-1])
        _write_idx(raw_dir / f"{prefix}-labels-idx1-ubyte", labels[-1])
    splits = load_dataset(name, root=tmp_path, protocol=CLASS_DISJOINT)
    raw = torch.from_numpy(np.concatenate(images) / 255.0).float().unsqueeze(1)
    class_names = load_dataset(name, root=tmp_path).class_names
    _assert_in_memory_split_is(splits, raw, np.concatenate(labels), class_names, 0)


# Photo sets: (data set, writer of its fake, the fake's train+val classes)
PHOTO_FAKES: dict[str, tuple[Callable[[Path], dict[Path, str]], tuple[str, ...]]] = {
    "cub200": (
        lambda root: fake_cub(root, {n: 3 for n in (1, 2, 7, 50, 100, 101, 150, 200)}),
        ("Bird 1", "Bird 2", "Bird 7", "Bird 50", "Bird 100"),
    ),
    "cars196": (
        lambda root: fake_cars(root, {n: 4 for n in (3, 9, 40, 97, 98, 99, 196)}),
        tuple(f"Maker {n}/Model" for n in (3, 9, 40, 97, 98)),
    ),
    "sop": (
        lambda root: fake_sop(
            root, train={n: 2 + n % 3 for n in range(1, 9)}, test={n: 2 for n in range(9, 14)}
        ),
        tuple(str(n) for n in range(1, 9)),
    ),
    "folder": (
        lambda root: fake_folder(root / "images", {f"c{n}": 3 for n in range(9)}),
        tuple(f"c{n}" for n in range(4)),
    ),
    "flowers102": (lambda root: fake_flowers(root, 9), tuple(Flowers102.classes[:4])),
    "oxford-pet": (
        lambda root: fake_pets(root, 10),
        tuple(f"Breed {letter}" for letter in "abcde"),
    ),
    "stanford-dogs": (
        lambda root: fake_dogs(root, 8),
        tuple(f"Dog {n:02d}" for n in range(4)),
    ),
}


@pytest.mark.parametrize("fold", range(FOLDS))
@pytest.mark.parametrize("name", list(PHOTO_FAKES))
def test_photo_sets_class_disjoint_hold_only_their_classes_files(
    tmp_path: Path, name: str, fold: int
) -> None:
    write, trainval = PHOTO_FAKES[name]
    truth = write(tmp_path)
    root = tmp_path / "images" if name == "folder" else tmp_path
    splits = load_dataset(name, root=root, image_size=8, protocol=CLASS_DISJOINT, fold=fold)
    _assert_disjoint_layout(splits, tuple(sorted(set(truth.values()))), trainval, fold)
    seen = []
    for split in SPLITS:
        part = getattr(splits, split)
        assert isinstance(part, FileDataset)
        names = [splits.split_classes[split][int(y)] for y in part.labels]
        assert names == [truth[path] for path in part.paths]  # each file labelled as its class
        seen += part.paths
    assert sorted(seen) == sorted(truth)  # every file in exactly one split


# --- a run on the training classes only ------------------------------------------------------


def test_a_class_disjoint_run_knows_only_the_training_classes() -> None:
    """Its representatives, cluster index and batches cover the training classes only."""
    from repmet.config import TrainingConfig
    from repmet.training import TrainingRun

    # glyphs: digits' 10 classes leave one validation class, too few for few-shot episodes
    config = TrainingConfig(
        loss="repmet-v2", dataset="glyphs", protocol=CLASS_DISJOINT, fold=1, m=6, k=2
    )
    run = TrainingRun(config)
    train = run.splits.train
    classes = run.splits.split_classes["train"]
    val = run.splits.split_classes["val"]
    assert len(classes) + len(val) == 51 and not set(classes) & set(val)
    assert run.splits.num_classes == len(classes)
    assert run.loss_fn.representatives.shape[0] == len(classes) * 2
    assert run.index.num_classes == len(classes) and len(run.index.assignments) == len(train)
    drawn = []
    original = run.sampler.sample
    run.sampler.sample = lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1]
    run.train(3)
    for batch in drawn:
        assert int(batch.indices.max()) < len(train)
    names = np.array(classes)[train.labels.numpy()]
    assert set(names) == set(classes)


def test_the_flags_of_a_single_run_include_the_protocol_and_fold() -> None:
    from repmet.config import DATA_FIELDS, TrainingConfig
    from repmet.train import build_parser

    args = build_parser().parse_args(["--protocol", "class-disjoint", "--fold", "2"])
    config = TrainingConfig(**{k: v for k, v in vars(args).items() if k != "save"})
    assert (config.protocol, config.fold) == (CLASS_DISJOINT, 2)
    assert {"protocol", "fold"} <= set(DATA_FIELDS)
    assert TrainingConfig().protocol == CLOSED_SET
    assert config.data_key() != TrainingConfig().data_key()
    for bad, fragment in (({"protocol": "open"}, "protocol = 'open'"), ({"fold": 4}, "fold = 4")):
        with pytest.raises(ConfigError, match=fragment):
            TrainingConfig(**bad)
