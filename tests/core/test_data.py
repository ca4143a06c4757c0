"""Data sets: split sizes and disjointness, label re-indexing, normalisation, and each on-disk
layout, built as a tiny fake in tmp_path and read through the real loading code."""

from __future__ import annotations

import io
import struct
import urllib.error
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from fake_photo_sets import colour_of, fake_cars, fake_cub, fake_sop
from PIL import Image
from sklearn.datasets import load_digits
from torchvision.datasets import MNIST, Flowers102

from repmet.data import (
    DATASETS,
    FileDataset,
    InMemoryDataset,
    default_data_root,
    load_dataset,
)
from repmet.data.distorted import CANVAS_SIDE, COPIES, distort_digits, group_split
from repmet.data.problems import download_or_explain
from repmet.data.splits import stratified_split
from repmet.data.transforms import RandomShift
from repmet.errors import (
    ArgumentError,
    ConfigError,
    DataError,
    DataNotFoundError,
    RepmetError,
    UnknownNameError,
)

SIZE = 16  # image side used for the photo fakes: small enough to keep decoding instant
# One solid colour per fake class, far apart so that JPEG rounding cannot confuse them.
COLOURS = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]


def _write_image(path: Path, colour: tuple[int, int, int], *, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (SIZE + 8, SIZE + 4), colour)
    (image.convert("L") if grey else image).save(path)


def _expected_pixel(colour: tuple[int, int, int]) -> torch.Tensor:
    """The value of a solid-colour image after ToTensor and the default 0.5/0.5 normalisation."""
    return (torch.tensor(colour, dtype=torch.float32) / 255 - 0.5) / 0.5


def _assert_colours_match_labels(dataset: FileDataset, colour_of_class: list) -> None:
    """Each decoded image has its class's colour: paths and labels stayed aligned."""
    images = dataset.get_batch(torch.arange(len(dataset)))
    mean_colour = images.mean(dim=(2, 3))
    expected = torch.stack([_expected_pixel(colour_of_class[int(y)]) for y in dataset.labels])
    torch.testing.assert_close(mean_colour, expected, atol=0.06, rtol=0)


def _assert_one_line(error: BaseException, *fragments: str) -> None:
    """The error's message is a single line and names each of ``fragments``."""
    message = str(error)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --- splitting -------------------------------------------------------------------------------


def test_stratified_split_is_a_disjoint_seeded_60_20_20_partition_per_class() -> None:
    labels = np.repeat(np.arange(4), [20, 30, 40, 50])
    train, val, test = stratified_split(labels, seed=3, dataset="toy")
    everything = np.concatenate([train, val, test])
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint and complete
    for part, fraction in ((train, 0.6), (val, 0.2), (test, 0.2)):
        counts = np.bincount(labels[part], minlength=4)
        np.testing.assert_allclose(counts, fraction * np.array([20, 30, 40, 50]), atol=1)
    again = stratified_split(labels, seed=3, dataset="toy")
    other = stratified_split(labels, seed=4, dataset="toy")
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(train, other[0])


@pytest.mark.parametrize(
    ("labels", "smallest"),
    [
        (np.array([0] * 10 + [1]), "1 example)"),  # a class of one cannot be in two splits
        (np.repeat(np.arange(10), 3), "3 examples)"),  # 20% of 30 is fewer than 10 classes
    ],
)
def test_a_set_too_small_to_stratify_is_a_data_error_naming_it_and_its_smallest_class(
    labels: np.ndarray, smallest: str
) -> None:
    with pytest.raises(DataError) as caught:
        stratified_split(labels, seed=0, dataset="toy")
    _assert_one_line(caught.value, "data set 'toy' cannot be split by class", smallest)


# --- digits ----------------------------------------------------------------------------------


def test_digits_shapes_counts_and_class_names(digits) -> None:
    assert (digits.name, digits.num_classes, digits.image_shape) == ("digits", 10, (1, 8, 8))
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1077, 360, 360)
    assert digits.class_names == tuple(str(d) for d in range(10))
    for split in (digits.train, digits.val, digits.test):
        assert isinstance(split, InMemoryDataset) and not split.augmented
        assert split.labels.dtype == torch.long
        assert sorted(split.labels.unique().tolist()) == list(range(10))
    image, label = digits.train[5]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert label == int(digits.train.labels[5])


def test_digits_are_the_sklearn_images_standardised_with_train_statistics(digits) -> None:
    bunch = load_digits()
    labels = bunch.target
    train, val, test = stratified_split(labels, seed=0, dataset="digits")
    pixels = bunch.images.astype(np.float64) / 16.0
    mean, std = pixels[train].mean(), pixels[train].std(ddof=1)
    for split, index in ((digits.train, train), (digits.val, val), (digits.test, test)):
        expected = torch.from_numpy((pixels[index] - mean) / std).float().unsqueeze(1)
        torch.testing.assert_close(split.images, expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(split.labels, torch.from_numpy(labels[index]))


def test_digits_split_depends_on_the_seed_only() -> None:
    first, again, other = (load_dataset("digits", seed=s) for s in (1, 1, 2))
    assert torch.equal(first.train.images, again.train.images)
    assert torch.equal(first.test.labels, again.test.labels)
    assert not torch.equal(first.train.labels, other.train.labels)


def test_get_batch_is_indexing_of_the_split(digits) -> None:
    indices = torch.tensor([7, 0, 7, 100])
    assert torch.equal(digits.val.get_batch(indices), digits.val.images[indices])
    assert digits.val.evaluation_view() is digits.val


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (
            lambda: InMemoryDataset(
                torch.zeros(3, 1, 2, 2, dtype=torch.float64), torch.zeros(3).long()
            ),
            "images",
        ),
        (lambda: InMemoryDataset(torch.zeros(3, 2, 2), torch.zeros(3).long()), "images"),
        (lambda: InMemoryDataset(torch.zeros(3, 1, 2, 2), torch.zeros(2).long()), "labels"),
        (lambda: InMemoryDataset(torch.zeros(3, 1, 2, 2), torch.zeros(3)), "labels"),
        (
            lambda: FileDataset(
                [Path("a.png")], torch.zeros(2).long(), transform=lambda _: torch.zeros(3, 2, 2)
            ),
            "labels",
        ),
    ],
)
def test_splits_built_against_their_contract_are_argument_errors(
    build: Callable[[], object], field: str
) -> None:
    """Wrong tensors handed to a split are a bug in the caller, not something a user fixes."""
    with pytest.raises(ArgumentError, match=field):
        build()


def test_image_size_resizes_in_memory_sets() -> None:
    splits = load_dataset("digits", image_size=16)
    assert splits.image_shape == (1, 16, 16)
    assert splits.test.get_batch(torch.arange(3)).shape == (3, 1, 16, 16)
    # Standardisation happens after resizing, on the training split.
    assert abs(float(splits.train.images.mean())) < 1e-4
    assert float(splits.train.images.std()) == pytest.approx(1.0, abs=1e-3)


def test_augmented_digits_shift_train_images_only() -> None:
    splits = load_dataset("digits", augment=True)
    assert splits.train.augmented and not splits.val.augmented
    indices = torch.arange(64)
    plain = splits.train.evaluation_view()
    assert not plain.augmented
    assert torch.equal(plain.get_batch(indices), splits.train.images[indices])
    shifted = splits.train.get_batch(indices)
    assert shifted.shape == (64, 1, 8, 8)
    assert not torch.equal(shifted, plain.get_batch(indices))


def test_random_shift_returns_a_window_of_the_edge_padded_image() -> None:
    batch = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    shift = 2
    out = RandomShift(shift)(batch.repeat(8, 1, 1, 1))
    padded = torch.nn.functional.pad(batch, (shift,) * 4, mode="replicate")
    for n, image in enumerate(out):
        source = padded[n % 2]
        windows = [
            source[:, dy : dy + 5, dx : dx + 6]
            for dy in range(2 * shift + 1)
            for dx in range(2 * shift + 1)
        ]
        assert any(torch.equal(image, window) for window in windows)
    with pytest.raises(ArgumentError, match="max_shift"):
        RandomShift(0)


# --- digits-distorted ------------------------------------------------------------------------


def _digit_sources() -> tuple[torch.Tensor, np.ndarray]:
    bunch = load_digits()
    return torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1), bunch.target


def test_digits_distorted_shapes_counts_and_class_balance() -> None:
    splits = load_dataset("digits-distorted")
    assert (splits.name, splits.num_classes, splits.image_shape) == (
        "digits-distorted",
        10,
        (1, CANVAS_SIDE, CANVAS_SIDE),
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4308, 1440, 1440)
    assert splits.class_names == tuple(str(d) for d in range(10))
    _, targets = _digit_sources()
    class_sizes = np.bincount(targets, minlength=10) * COPIES
    for split, fraction in ((splits.train, 0.6), (splits.val, 0.2), (splits.test, 0.2)):
        assert isinstance(split, InMemoryDataset) and not split.augmented
        assert split.images.shape[1:] == (1, CANVAS_SIDE, CANVAS_SIDE)
        counts = torch.bincount(split.labels, minlength=10).numpy()
        # Stratified by source image: every class within one source (COPIES images) of its share.
        np.testing.assert_allclose(counts, fraction * class_sizes, atol=COPIES)
        assert (counts % COPIES == 0).all()


def test_digits_distorted_splits_by_source_image() -> None:
    _, targets = _digit_sources()
    for seed in (0, 3):
        parts = group_split(targets, copies=COPIES, seed=seed, dataset="digits-distorted")
        sources = [part // COPIES for part in parts]
        # All copies of a source stay together, and no source is in two splits.
        for source in sources:
            assert (np.bincount(source)[np.unique(source)] == COPIES).all()
        assert not set(sources[0]) & set(sources[1])
        assert not set(sources[0]) & set(sources[2])
        assert not set(sources[1]) & set(sources[2])
        everything = np.sort(np.concatenate(parts))
        assert np.array_equal(everything, np.arange(len(targets) * COPIES))
        # The sources are split exactly as the plain digits set splits them.
        plain_split = stratified_split(targets, seed=seed, dataset="digits")
        for part, plain in zip(sources, plain_split, strict=True):
            assert np.array_equal(np.unique(part), plain)


def test_digits_distorted_images_are_fixed_and_only_the_split_follows_the_seed() -> None:
    sources, targets = _digit_sources()
    raw = distort_digits(sources)
    assert torch.equal(raw, distort_digits(sources))  # same generator seed, same images
    for seed in (0, 1):
        splits = load_dataset("digits-distorted", seed=seed)
        train, val, test = group_split(targets, copies=COPIES, seed=seed, dataset="d")
        train_pixels = raw[torch.from_numpy(train)]
        mean, std = train_pixels.mean(), train_pixels.std()
        for split, index in ((splits.train, train), (splits.val, val), (splits.test, test)):
            expected = (raw[torch.from_numpy(index)] - mean) / std
            torch.testing.assert_close(split.images, expected, atol=1e-5, rtol=1e-5)
            assert torch.equal(split.labels, torch.from_numpy(targets[index // COPIES]))
    first, other = (load_dataset("digits-distorted", seed=s) for s in (0, 1))
    assert not torch.equal(first.test.labels, other.test.labels)


def test_distortions_differ_between_copies_and_stay_in_range() -> None:
    sources, _ = _digit_sources()
    images = distort_digits(sources)
    assert images.shape == (len(sources) * COPIES, 1, CANVAS_SIDE, CANVAS_SIDE)
    assert images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    copies = images.view(len(sources), COPIES, -1)
    # Every pair of copies of a source differs clearly (distinct warps and noise).
    gaps = (copies[:, :, None] - copies[:, None]).abs().mean(-1)
    off_diagonal = gaps[:, ~torch.eye(COPIES, dtype=torch.bool)]
    assert float(off_diagonal.min()) > 0.02
    # Another generator seed gives other images; copies=1 gives one image per source.
    assert not torch.equal(distort_digits(sources[:5], seed=1), distort_digits(sources[:5]))
    assert distort_digits(sources[:5], copies=1).shape == (5, 1, CANVAS_SIDE, CANVAS_SIDE)


# --- arrays (.npz) ---------------------------------------------------------------------------


def test_arrays_reindexes_odd_labels_and_keeps_image_label_pairs(tmp_path: Path) -> None:
    raw_labels = np.repeat([42, 3, 7], 10)
    # Every pixel of an image holds its raw label, so re-indexing can be checked per image.
    images = np.broadcast_to(raw_labels[:, None, None, None], (30, 5, 6, 3)).astype(np.uint8)
    path = tmp_path / "odd.npz"
    np.savez(path, images=images, labels=raw_labels)
    splits = load_dataset("arrays", root=path, seed=1)
    assert splits.num_classes == 3 and splits.class_names == ("3", "7", "42")
    assert splits.image_shape == (3, 5, 6)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    original = torch.tensor([3.0, 7.0, 42.0]) / 255
    train_pixels = original[splits.train.labels][:, None, None].expand(-1, 5, 6)
    mean, std = train_pixels.mean(), train_pixels.std()
    for split in (splits.train, splits.val, splits.test):
        per_class = torch.bincount(split.labels, minlength=3)
        assert per_class.tolist() == [len(split) // 3] * 3
        # Undo the training standardisation: the raw label must come back.
        restored = split.images[:, 0, 0, 0] * std + mean
        torch.testing.assert_close(restored, original[split.labels], atol=1e-5, rtol=0)


def test_arrays_accepts_grey_float_images(tmp_path: Path) -> None:
    path = tmp_path / "grey.npz"
    np.savez(path, images=np.random.rand(40, 4, 4).astype(np.float32), labels=np.arange(40) % 4)
    splits = load_dataset("arrays", root=path)
    assert splits.image_shape == (1, 4, 4) and splits.num_classes == 4


def test_arrays_accepts_string_labels(tmp_path: Path) -> None:
    path = tmp_path / "named.npz"
    names = np.array(["cat", "dog", "eel"])[np.arange(30) % 3]  # a numpy unicode array
    np.savez(path, images=np.zeros((30, 4, 4), dtype=np.uint8), labels=names)
    splits = load_dataset("arrays", root=path)
    assert splits.class_names == ("cat", "dog", "eel") and splits.num_classes == 3


def _good_arrays(count: int = 30) -> dict[str, np.ndarray]:
    """A valid ``arrays`` set of ``count`` 4x4 images in 3 classes, for the cases to spoil."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, 4, 4)).astype(np.uint8)
    return {"images": images, "labels": np.arange(count) % 3}


def _savez(**changes: np.ndarray | None) -> Callable[[Path], None]:
    """Writes the good arrays with some replaced (or, given None, left out)."""

    def write(path: Path) -> None:
        arrays = {**_good_arrays(), **changes}
        np.savez(path, **{key: value for key, value in arrays.items() if value is not None})

    return write


def _write_bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _npy_as_npz(path: Path) -> None:
    with path.open("wb") as file:
        np.save(file, _good_arrays()["images"])


def _truncated_npz(path: Path) -> None:
    _savez()(path)
    path.write_bytes(path.read_bytes()[:-40])


def _corrupt_member(path: Path) -> None:
    """Flips bytes inside the stored labels, so the archive opens but the member fails its CRC."""
    _savez()(path)
    content = bytearray(path.read_bytes())
    start = content.index(b"labels.npy") + 150
    content[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(content))


def _member_not_npy(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("images.npy", "w") as member:
            np.save(member, _good_arrays()["images"])
        archive.writestr("labels.npy", "cat\ndog\n")


def _nan_pixels(indices: list[int], value: float) -> Callable[[Path], None]:
    images = _good_arrays()["images"].astype(np.float64)
    images[indices, 1, 2] = value
    return _savez(images=images)


PATH = "{path}"  # stands for the .npz file in the expected message fragments below

# (case, how the file is written, expected error type, fragments its message must contain)
BAD_ARRAYS = [
    ("empty file", _write_bytes(b""), DataError, [PATH, "is empty (0 bytes)", "np.savez"]),
    ("text file", _write_bytes(b"images,labels\n1,2\n"), DataError, [PATH, "not an .npz"]),
    ("an .npy file", _npy_as_npz, DataError, [PATH, "not an .npz archive"]),
    ("truncated", _truncated_npz, DataError, [PATH, "not an .npz archive"]),
    ("corrupt member", _corrupt_member, DataError, [PATH, "array 'labels' of", "cannot be read"]),
    ("member not .npy", _member_not_npy, DataError, [PATH, "'labels'", "not a NumPy array"]),
    ("no labels", _savez(labels=None), DataError, [PATH, "no array 'labels'", "has: images"]),
    (
        "no arrays",
        _savez(images=None, labels=None, pixels=np.zeros(3)),
        DataError,
        [PATH, "no array 'images' or 'labels'", "has: pixels"],
    ),
    (
        "object labels",
        _savez(labels=np.array([1, "a", None] * 10, dtype=object)),
        DataError,
        [PATH, "'labels'", "pickled Python objects", "numbers or strings (np.str_)"],
    ),
    (
        "object images",
        _savez(images=np.array([None] * 30, dtype=object)),
        DataError,
        [PATH, "'images'", "pickled Python objects", "numbers"],
    ),
    (
        "complex labels",
        _savez(labels=np.arange(30) * 1j),
        DataError,
        [PATH, "'labels'", "dtype complex128", "np.str_"],
    ),
    (
        "bytes labels",
        _savez(labels=np.array([b"a", b"b", b"c"] * 10)),
        DataError,
        [PATH, "'labels'", "dtype |S1", "np.str_"],
    ),
    (
        "string images",
        _savez(images=np.full((30, 4, 4), "x")),
        DataError,
        [PATH, "'images'", "dtype <U1", "numbers"],
    ),
    (
        "flat images",
        _savez(images=np.zeros((30, 16))),
        DataError,
        [PATH, "'images'", "shape (30, 16)", "(N, H, W)"],
    ),
    (
        "empty image side",
        _savez(images=np.zeros((30, 0, 4))),
        DataError,
        [PATH, "'images'", "shape (30, 0, 4)", "non-empty"],
    ),
    (
        "column labels",
        _savez(labels=np.zeros((30, 1))),
        DataError,
        [PATH, "'labels'", "shape (30, 1)", "(N,)"],
    ),
    (
        "fewer labels",
        _savez(labels=np.arange(29) % 3),
        DataError,
        [PATH, "30 images but 29 labels"],
    ),
    (
        "no images",
        _savez(images=np.zeros((0, 4, 4)), labels=np.zeros(0)),
        DataError,
        [PATH, "holds no images"],
    ),
    (
        "NaN labels",
        _savez(labels=np.where(np.arange(30) < 2, np.nan, np.arange(30) % 3)),
        DataError,
        [PATH, "'labels'", "2 NaN values"],
    ),
    (
        "NaN pixels",
        _nan_pixels([3, 7], np.nan),
        DataError,
        ["data set 'arrays'", "2 of 30 images", "NaN or infinite", "index 3"],
    ),
    (
        "pixels beyond float32",
        _nan_pixels([5], 1e300),
        DataError,
        ["data set 'arrays'", "1 of 30 images", "NaN or infinite", "index 5"],
    ),
    (
        "one class",
        _savez(labels=np.full(30, 7)),
        DataError,
        ["data set 'arrays'", "has 1 class (7)", "at least 2"],
    ),
    (
        "a class of one",
        _savez(labels=np.r_[np.zeros(29), 1]),
        DataError,
        ["data set 'arrays' cannot be split by class", "smallest class has 1 example"],
    ),
]


@pytest.mark.parametrize(
    ("write", "error", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_ARRAYS],
)
def test_unusable_npz_files_fail_with_one_line_naming_the_problem(
    tmp_path: Path,
    write: Callable[[Path], None],
    error: type[Exception],
    fragments: list[str],
) -> None:
    path = tmp_path / "set.npz"
    write(path)
    with pytest.raises(RepmetError) as caught:
        load_dataset("arrays", root=path)
    assert type(caught.value) is error
    _assert_one_line(caught.value, *(f.replace(PATH, str(path)) for f in fragments))


# --- MNIST and Fashion-MNIST (idx files in torchvision's raw layout) ---------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    # idx header: two zero bytes, type 0x08 (unsigned byte), rank; then big-endian dimensions.
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(raw: Path, n_train: int, n_test: int) -> tuple[np.ndarray, ...]:
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = []
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 256, size=(count, 28, 28))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays += [images, labels]
    return tuple(arrays)


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_mnist_family_reads_idx_files_and_validates_on_the_last_twelfth(
    tmp_path: Path, name: str, folder: str
) -> None:
    train_images, train_labels, test_images, test_labels = _fake_mnist(
        tmp_path / folder / "raw", n_train=120, n_test=30
    )
    splits = load_dataset(name, root=tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (110, 10, 30)
    assert splits.image_shape == (1, 28, 28) and splits.num_classes == 10
    if name == "mnist":
        assert splits.class_names == tuple(MNIST.classes)
    pixels = train_images[:110] / 255.0
    mean, std = pixels.mean(), pixels.std(ddof=1)
    for split, images, labels in (
        (splits.train, train_images[:110], train_labels[:110]),
        (splits.val, train_images[110:], train_labels[110:]),
        (splits.test, test_images, test_labels),
    ):
        assert torch.equal(split.labels, torch.from_numpy(labels).long())
        expected = torch.from_numpy((images / 255.0 - mean) / std).float().unsqueeze(1)
        torch.testing.assert_close(split.images, expected, atol=1e-4, rtol=1e-4)


# --- photo sets ------------------------------------------------------------------------------


def _fake_flowers(base: Path) -> None:
    """18 images of raw classes 5, 17, 102 in turn; official split 9/3/6 by image number."""
    raw_labels = np.array([5, 17, 102] * 6)  # image i (1-based) has raw_labels[i - 1]
    colour_of_raw = {5: COLOURS[0], 17: COLOURS[1], 102: COLOURS[2]}
    for image_id, label in enumerate(raw_labels, start=1):
        _write_image(base / "jpg" / f"image_{image_id:05d}.jpg", colour_of_raw[label])
    scipy.io.savemat(base / "imagelabels.mat", {"labels": raw_labels[None, :]})
    ids = np.arange(1, 19)
    scipy.io.savemat(
        base / "setid.mat",
        {"trnid": ids[:9][None], "valid": ids[9:12][None], "tstid": ids[12:][None]},
    )


def test_flowers102_reads_the_official_layout_and_split(tmp_path: Path) -> None:
    _fake_flowers(tmp_path / "flowers-102")
    splits = load_dataset("flowers102", root=tmp_path, image_size=SIZE)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 6)
    assert splits.num_classes == 3 and splits.image_shape == (3, SIZE, SIZE)
    assert splits.class_names == tuple(Flowers102.classes[i] for i in (4, 16, 101))
    assert splits.train.labels.tolist() == [0, 1, 2] * 3
    assert isinstance(splits.test, FileDataset)
    assert splits.test.get_batch(torch.tensor([0, 1])).shape == (2, 3, SIZE, SIZE)
    for split in (splits.train, splits.val, splits.test):
        _assert_colours_match_labels(split, COLOURS)


def _fake_pets(base: Path) -> None:
    breeds = ["Abyssinian", "great_pyrenees", "Bengal"]
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    for class_id, breed in enumerate(breeds):
        for n in range(13):
            image_id = f"{breed}_{n}"
            _write_image(base / "images" / f"{image_id}.jpg", COLOURS[class_id])
            lines["trainval" if n < 10 else "test"].append(f"{image_id} {class_id + 1} 1 1")
    (base / "annotations").mkdir()
    for split, entries in lines.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(entries) + "\n")


def test_oxford_pet_uses_the_official_test_list_and_carves_validation(tmp_path: Path) -> None:
    _fake_pets(tmp_path / "oxford-iiit-pet")
    splits = load_dataset("oxford-pet", root=tmp_path, image_size=SIZE, seed=5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 9)
    assert splits.class_names == ("Abyssinian", "Bengal", "great pyrenees")
    assert torch.equal(torch.bincount(splits.val.labels), torch.tensor([2, 2, 2]))
    assert not set(splits.train.paths) & set(splits.val.paths)
    assert all("_1" in path.stem for path in splits.test.paths)  # test ids are 10, 11, 12
    colour_of_class = [COLOURS[0], COLOURS[2], COLOURS[1]]  # classes sorted by breed name
    for split in (splits.train, splits.val, splits.test):
        _assert_colours_match_labels(split, colour_of_class)
    other = load_dataset("oxford-pet", root=tmp_path, image_size=SIZE, seed=6)
    assert other.test.paths == splits.test.paths and other.val.paths != splits.val.paths


def _write_file_list(path: Path, files: list[str], labels: list[int]) -> None:
    scipy.io.savemat(
        path,
        {"file_list": np.array(files, dtype=object)[:, None], "labels": np.array(labels)[:, None]},
    )


def _fake_dogs(base: Path) -> None:
    """Three breeds of 7 images each, 5 in the train list and 2 in the test list."""
    folders = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02116738-African_hunting_dog"]
    train, test = [], []
    for class_id, folder in enumerate(folders):
        for n in range(7):
            relative = f"{folder}/{folder.split('-')[0]}_{n}.jpg"
            _write_image(base / "Images" / relative, COLOURS[class_id])
            (train if n < 5 else test).append((relative, class_id + 1))
    for name, entries in (("train_list.mat", train), ("test_list.mat", test)):
        _write_file_list(base / name, [f for f, _ in entries], [y for _, y in entries])


def test_stanford_dogs_reads_the_mat_lists(tmp_path: Path) -> None:
    _fake_dogs(tmp_path / "stanford-dogs")
    splits = load_dataset("stanford-dogs", root=tmp_path, image_size=SIZE)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 6)
    assert splits.class_names == ("Chihuahua", "Japanese spaniel", "African hunting dog")
    for split in (splits.train, splits.val, splits.test):
        _assert_colours_match_labels(split, COLOURS)


def _spoil(relative: str, content: bytes) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_bytes(content)


def _cut(relative: str, keep: int) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_bytes((root / relative).read_bytes()[:keep])


def _rewrite_idx(relative: str, array: np.ndarray) -> Callable[[Path], None]:
    return lambda root: _write_idx(root / relative, array)


def _drop_test_split(root: Path) -> None:
    path = root / "flowers-102" / "setid.mat"
    kept = {key: value for key, value in scipy.io.loadmat(path).items() if key != "tstid"}
    scipy.io.savemat(path, {k: v for k, v in kept.items() if not k.startswith("__")})


def _name_image_99(root: Path) -> None:
    ids = np.arange(1, 19)
    ids[-1] = 99
    scipy.io.savemat(
        root / "flowers-102" / "setid.mat",
        {"trnid": ids[:9][None], "valid": ids[9:12][None], "tstid": ids[12:][None]},
    )


MNIST_RAW = "MNIST/raw"
FAKES: dict[str, Callable[[Path], None]] = {
    "mnist": lambda root: _fake_mnist(root / MNIST_RAW, n_train=120, n_test=30),
    "flowers102": lambda root: _fake_flowers(root / "flowers-102"),
    "oxford-pet": lambda root: _fake_pets(root / "oxford-iiit-pet"),
    "stanford-dogs": lambda root: _fake_dogs(root / "stanford-dogs"),
}
IDX_UNREADABLE = ["the idx files of data set 'mnist' in {root}/MNIST/raw cannot be read", "delete"]

# (case, data set, how its fake is spoiled, fragments of the DataError; {root} is the data root)
BAD_OFFICIAL_FILES = [
    ("cut idx images", "mnist", _cut(f"{MNIST_RAW}/train-images-idx3-ubyte", 5000), IDX_UNREADABLE),
    (
        "empty idx labels",
        "mnist",
        _spoil(f"{MNIST_RAW}/t10k-labels-idx1-ubyte", b""),
        IDX_UNREADABLE,
    ),
    (
        "text idx images",
        "mnist",
        _spoil(f"{MNIST_RAW}/t10k-images-idx3-ubyte", b"<html>moved</html>"),
        IDX_UNREADABLE,
    ),
    (
        "fewer idx labels",
        "mnist",
        _rewrite_idx(f"{MNIST_RAW}/train-labels-idx1-ubyte", np.arange(119) % 10),
        ["the training idx files of data set 'mnist'", "120 images but 119 labels"],
    ),
    (
        "idx labels beyond the classes",
        "mnist",
        _rewrite_idx(f"{MNIST_RAW}/train-labels-idx1-ubyte", np.arange(120) % 27),
        ["data set 'mnist'", "label 26", "classes 0..9"],
    ),
    (
        "text .mat",
        "flowers102",
        _spoil("flowers-102/imagelabels.mat", b"404 Not Found"),
        ["MATLAB file {root}/flowers-102/imagelabels.mat cannot be read", "robots.ox.ac.uk"],
    ),
    (
        "cut .mat",
        "flowers102",
        _cut("flowers-102/setid.mat", 200),
        ["MATLAB file {root}/flowers-102/setid.mat cannot be read", "official file"],
    ),
    (
        ".mat without a field",
        "flowers102",
        _drop_test_split,
        ["MATLAB file {root}/flowers-102/setid.mat has no field 'tstid'"],
    ),
    (
        "split naming a missing image",
        "flowers102",
        _name_image_99,
        ["{root}/flowers-102/setid.mat names images outside 1..18", "imagelabels.mat"],
    ),
    (
        "empty .mat list",
        "stanford-dogs",
        _spoil("stanford-dogs/test_list.mat", b""),
        ["MATLAB file {root}/stanford-dogs/test_list.mat cannot be read", "stanford.edu"],
    ),
    (
        "binary text list",
        "oxford-pet",
        _spoil("oxford-iiit-pet/annotations/test.txt", bytes(range(128, 256))),
        ["list {root}/oxford-iiit-pet/annotations/test.txt cannot be read", "official file"],
    ),
]


@pytest.mark.parametrize(
    ("name", "spoil", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_OFFICIAL_FILES],
)
def test_unreadable_official_files_fail_with_one_line_naming_the_file(
    tmp_path: Path, name: str, spoil: Callable[[Path], None], fragments: list[str]
) -> None:
    FAKES[name](tmp_path)
    spoil(tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset(name, root=tmp_path, image_size=SIZE)
    _assert_one_line(caught.value, *(f.replace("{root}", str(tmp_path)) for f in fragments))


def test_folder_splits_an_image_folder_and_decodes_grey_images_as_rgb(tmp_path: Path) -> None:
    for class_id, name in enumerate(["cat", "dog", "eel"]):
        for n in range(10):
            _write_image(tmp_path / name / f"{n}.png", COLOURS[class_id], grey=name == "eel")
    splits = load_dataset("folder", root=tmp_path, image_size=SIZE, seed=2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert splits.class_names == ("cat", "dog", "eel") and splits.image_shape == (3, SIZE, SIZE)
    all_paths = splits.train.paths + splits.val.paths + splits.test.paths
    assert len(set(all_paths)) == 30
    grey = round(np.dot(COLOURS[2], [0.299, 0.587, 0.114]))  # PIL's RGB -> L conversion
    for split in (splits.train, splits.val, splits.test):
        _assert_colours_match_labels(split, [COLOURS[0], COLOURS[1], (grey,) * 3])


def test_photo_augmentation_applies_to_train_only(tmp_path: Path) -> None:
    for class_id, name in enumerate(["a", "b", "c"]):
        for n in range(5):
            _write_image(tmp_path / name / f"{n}.png", COLOURS[class_id])
    splits = load_dataset(
        "folder", root=tmp_path, image_size=SIZE, augment=True, pretrained_normalization=True
    )
    assert splits.train.augmented and not splits.test.augmented
    assert splits.train.get_batch(torch.arange(4)).shape == (4, 3, SIZE, SIZE)
    plain = splits.train.evaluation_view()
    assert not plain.augmented and plain.paths == splits.train.paths
    # ImageNet normalisation of the red channel of the first class's solid colour.
    red = (250 / 255 - 0.485) / 0.229
    first = plain.get_batch(torch.nonzero(plain.labels == 0)[:1, 0])
    assert float(first[0, 0].mean()) == pytest.approx(red, abs=0.06)


def test_a_photo_split_decodes_with_threads_to_the_same_batch_in_the_same_order(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for n in range(12):  # every file different, so that a reordering shows
            pixels = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{n}.png")
    splits = load_dataset("folder", root=tmp_path, image_size=SIZE, augment=True)
    plain = splits.train.evaluation_view()
    threaded = plain.for_run(torch.device("cpu"), threads=4)
    assert (threaded.decode_threads, threaded.pin_memory) == (4, False)
    indices = torch.randperm(len(plain), generator=torch.Generator().manual_seed(0))
    assert torch.equal(threaded.get_batch(indices), plain.get_batch(indices))
    # Augmented batches keep their fixed order of random draws: one file after the other.
    augmented = splits.train.for_run(torch.device("cpu"), threads=4)
    torch.manual_seed(3)
    first = augmented.get_batch(indices)
    torch.manual_seed(3)
    assert torch.equal(first, splits.train.get_batch(indices))
    assert plain.for_run(torch.device("cpu"), threads=1) is plain


def test_an_in_memory_split_moves_to_the_runs_device_once(digits) -> None:
    assert digits.train.for_run(torch.device("cpu"), threads=2) is digits.train
    moved = digits.train.for_run(torch.device("meta"))
    assert moved.images.device.type == "meta" and moved.labels.device.type == "cpu"
    assert moved.get_batch(torch.arange(5)).shape == (5, *digits.image_shape)
    assert moved.get_batch(torch.arange(5)).device.type == "meta"
    assert moved.for_run(torch.device("meta")) is moved


def _image_folder(root: Path, counts: dict[str, int]) -> None:
    """``counts[name]`` solid-colour PNGs in class folder ``name`` (an empty folder for 0)."""
    for class_id, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for n in range(count):
            _write_image(root / name / f"{n}.png", COLOURS[class_id % len(COLOURS)])


def test_folder_ignores_hidden_files_and_folders(tmp_path: Path) -> None:
    _image_folder(tmp_path, {"a": 5, "b": 5, "c": 5})
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    _write_image(tmp_path / ".ipynb_checkpoints" / "0.png", COLOURS[0])
    _write_image(tmp_path / "b" / ".cache" / "0.png", COLOURS[0])
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    splits = load_dataset("folder", root=tmp_path, image_size=SIZE)
    assert splits.class_names == ("a", "b", "c")
    for split in (splits.train, splits.val, splits.test):
        _assert_colours_match_labels(split, COLOURS)  # every file decodes: no junk was taken


def _images_in_root(root: Path) -> None:
    for n in range(6):
        _write_image(root / f"{n}.png", COLOURS[0])


def _text_only_class(root: Path) -> None:
    _image_folder(root, {"a": 5, "b": 0})
    (root / "b" / "readme.txt").write_text("no images here")


# (case, how the folder is filled, fragments of the DataError's message; {root} is the folder)
BAD_FOLDERS = [
    (
        "an empty class folder",
        lambda root: _image_folder(root, {"empty": 0}),
        ["image folder {root}", "class folders without images: empty", ".jpg", "add images"],
    ),
    (
        "images but no class folders",
        _images_in_root,
        ["image folder {root}", "no class sub-folders"],
    ),
    ("a class of text files only", _text_only_class, ["{root}", "without images: b"]),
    (
        "several empty classes",
        lambda root: _image_folder(root, {"a": 5, **{f"e{n}": 0 for n in range(7)}}),
        ["without images: e0, e1, e2, e3, e4, ..."],
    ),
    ("one class", lambda root: _image_folder(root, {"cat": 6}), ["'folder' has 1 class (cat)"]),
    (
        "a class of one image",
        lambda root: _image_folder(root, {"a": 8, "b": 1}),
        ["data set 'folder' cannot be split by class", "smallest class has 1 example"],
    ),
]


@pytest.mark.parametrize(
    ("fill", "fragments"), [pytest.param(*case[1:], id=case[0]) for case in BAD_FOLDERS]
)
def test_unusable_image_folders_fail_with_one_line_naming_the_problem(
    tmp_path: Path, fill: Callable[[Path], None], fragments: list[str]
) -> None:
    root = tmp_path / "images"
    root.mkdir()
    fill(root)
    with pytest.raises(DataError) as caught:
        load_dataset("folder", root=root)
    _assert_one_line(caught.value, *(f.replace("{root}", str(root)) for f in fragments))


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), COLOURS[0]).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.png", b"", "not in an image format PIL can read"),
        ("text.jpg", b"<html>404 Not Found</html>", "not in an image format PIL can read"),
        ("cut.png", _png_bytes()[:60], "cannot be read (image file is truncated"),
        ("cut.jpg", _jpeg_bytes()[:400], "cannot be read ("),
    ],
)
def test_an_undecodable_image_is_a_data_error_naming_the_file_when_decoded(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    _image_folder(tmp_path, {"a": 5, "b": 5, "c": 5})
    bad = tmp_path / "b" / name
    bad.write_bytes(content)
    splits = load_dataset("folder", root=tmp_path, image_size=SIZE)  # files are decoded lazily
    split = next(s for s in (splits.train, splits.val, splits.test) if bad in s.paths)
    with pytest.raises(DataError) as caught:
        split.get_batch(torch.arange(len(split)))
    _assert_one_line(caught.value, f"image file {bad} ", problem, "replace it")


# --- missing data, names, roots --------------------------------------------------------------

NAMED_SETS = ["mnist", "fashion-mnist", "flowers102", "oxford-pet", "stanford-dogs"]


@pytest.mark.parametrize("name", NAMED_SETS)
def test_a_missing_data_set_is_one_line_naming_the_path_and_the_remedy(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset(name, root=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    assert name in message and "allow downloading (download=True)" in message
    assert "--" not in message  # the data layer does not know the command line


@pytest.mark.parametrize(("name", "target"), [("folder", "nowhere"), ("arrays", "nowhere.npz")])
def test_missing_folder_or_array_file_names_the_path(
    tmp_path: Path, name: str, target: str
) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path / target)):
        load_dataset(name, root=tmp_path / target)


@pytest.mark.parametrize("name", ["folder", "arrays"])
def test_folder_and_arrays_need_an_explicit_root(name: str) -> None:
    with pytest.raises(ConfigError, match="needs data_root set to its") as caught:
        load_dataset(name)
    assert "--" not in str(caught.value)


def test_a_failed_download_is_one_line_with_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, **_: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("stanford-dogs", root=tmp_path, download=True)
    message = str(caught.value)
    assert "\n" not in message and "Name or service not known" in message
    assert "vision.stanford.edu" in message and str(tmp_path / "stanford-dogs") in message


def test_download_failures_without_a_message_still_say_what_happened(tmp_path: Path) -> None:
    def fail() -> None:
        raise TimeoutError()

    with pytest.raises(DataNotFoundError, match=r"\(TimeoutError\)"):
        download_or_explain("x", tmp_path, fail, source="https://example.org/x")


def test_unknown_data_set_lists_the_choices() -> None:
    with pytest.raises(UnknownNameError) as caught:
        load_dataset("cifar-1000")
    for name in DATASETS.names():
        assert name in str(caught.value)
    expected = set(NAMED_SETS) | {"digits", "digits-distorted", "glyphs", "folder", "arrays"}
    expected |= {"cub200", "cars196", "sop"}
    assert expected == set(DATASETS.names())


def test_image_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("digits", image_size=0)


def test_default_data_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPMET_DATA_ROOT", str(tmp_path / "sets"))
    assert default_data_root() == tmp_path / "sets"
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "sets" / "MNIST")):
        load_dataset("mnist")
    monkeypatch.delenv("REPMET_DATA_ROOT")
    monkeypatch.chdir(tmp_path)
    assert default_data_root() == tmp_path / "data"


# --- CUB-200-2011, Cars196, Stanford Online Products -----------------------------------------


def test_cub200_reads_its_lists_and_splits_closed_set_by_seed(tmp_path: Path) -> None:
    counts = {1: 10, 2: 10, 150: 10}
    fake_cub(tmp_path, counts)
    splits = load_dataset("cub200", root=tmp_path, image_size=SIZE, seed=4)
    assert splits.class_names == ("Bird 1", "Bird 2", "Bird 150")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    for split in (splits.train, splits.val, splits.test):
        assert torch.bincount(split.labels, minlength=3).min() > 0  # stratified: every class
        _assert_colours_match_labels(split, [colour_of(n) for n in counts])
    other = load_dataset("cub200", root=tmp_path, image_size=SIZE, seed=5)
    assert other.test.paths != splits.test.paths


def test_cars196_reads_the_kaggle_layout_and_pools_its_train_and_test_images(
    tmp_path: Path,
) -> None:
    counts = {5: 10, 98: 10, 99: 10}
    truth = fake_cars(tmp_path, counts)
    splits = load_dataset("cars196", root=tmp_path, image_size=SIZE)
    assert splits.class_names == ("Maker 5/Model", "Maker 98/Model", "Maker 99/Model")
    paths = splits.train.paths + splits.val.paths + splits.test.paths
    assert sorted(paths) == sorted(truth)  # both annotation files, each image once
    assert {"train", "test"} == {path.parent.parent.name for path in paths}
    for split in (splits.train, splits.val, splits.test):
        _assert_colours_match_labels(split, [colour_of(n) for n in counts])


def test_sop_reads_its_lists_and_has_no_closed_set_split(tmp_path: Path) -> None:
    fake_sop(tmp_path, train={n: 3 for n in range(1, 9)}, test={n: 2 for n in (11, 12)})
    splits = load_dataset("sop", root=tmp_path, image_size=SIZE, protocol="class-disjoint")
    assert splits.split_classes["test"] == ("11", "12")
    assert len(splits.train) + len(splits.val) == 24 and len(splits.test) == 4
    _assert_colours_match_labels(
        splits.test, [colour_of(int(n)) for n in splits.split_classes["test"]]
    )
    with pytest.raises(ConfigError) as caught:
        load_dataset("sop", root=tmp_path, image_size=SIZE)
    _assert_one_line(caught.value, "'sop' has no closed-set split", "'class-disjoint'")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cub200", ["CUB_200_2011", "images.txt", "allow downloading (download=True)"]),
        ("cars196", ["cars196", "anno_train.csv", "kaggle.com"]),
        ("sop", ["Stanford_Online_Products", "Ebay_train.txt", "cvgl.stanford.edu"]),
    ],
)
def test_a_missing_class_split_set_is_one_line_naming_the_path_and_the_remedy(
    tmp_path: Path, name: str, expected: list[str]
) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset(name, root=tmp_path, protocol="class-disjoint")
    _assert_one_line(caught.value, f"data set {name!r} not found in {tmp_path}", *expected)
    assert "--" not in str(caught.value)


@pytest.mark.parametrize("name", ["cars196", "sop"])
def test_sets_without_a_plain_download_url_are_not_downloaded(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_dataset(name, root=tmp_path, download=True, protocol="class-disjoint")
    _assert_one_line(caught.value, f"{name!r} cannot be downloaded automatically", str(tmp_path))


def _cub(root: Path) -> None:
    fake_cub(root, {1: 5, 2: 5, 3: 5})


def _cars(root: Path) -> None:
    fake_cars(root, {1: 6, 2: 6, 3: 6}, num_names=3)


def _sop(root: Path) -> None:
    fake_sop(root, train={1: 2, 2: 2, 3: 2, 4: 2}, test={5: 2})


def _append(relative: str, line: str) -> Callable[[Path], None]:
    def spoil(root: Path) -> None:
        with (root / relative).open("a") as file:
            file.write(line + "\n")

    return spoil


CUB = "CUB_200_2011"
SOP = "Stanford_Online_Products"
# (case, data set, its fake, how the fake is spoiled, fragments of the DataError; {root}: root)
BAD_CLASS_SPLIT_FILES = [
    (
        "a short line",
        "cub200",
        _cub,
        _append(f"{CUB}/images.txt", "16"),
        ["line 16 of {root}/CUB_200_2011/images.txt has 1 field ('16'), 2 expected"],
    ),
    (
        "a class that is no number",
        "cub200",
        _cub,
        _append(f"{CUB}/image_class_labels.txt", "16 sparrow"),
        ["line 16 of {root}/CUB_200_2011/image_class_labels.txt has 'sparrow'", "number"],
    ),
    (
        "an image without a class",
        "cub200",
        _cub,
        _append(f"{CUB}/images.txt", "16 001.Bird_1/extra.jpg"),
        ["image_class_labels.txt has no line for image 16 of", "images.txt (1 such image)"],
    ),
    (
        "binary list",
        "cub200",
        _cub,
        _spoil(f"{CUB}/images.txt", bytes(range(128, 256))),
        ["list {root}/CUB_200_2011/images.txt cannot be read", "official file"],
    ),
    (
        "a class beyond the names",
        "cars196",
        _cars,
        _append("cars196/anno_test.csv", "x.jpg,1,2,3,4,7"),
        ["anno_test.csv has class 7", "names.csv names 3 classes"],
    ),
    (
        "an empty annotation file",
        "cars196",
        _cars,
        _spoil("cars196/anno_train.csv", b""),
        ["list {root}/cars196/anno_train.csv names no images"],
    ),
    (
        "a class in both lists",
        "sop",
        _sop,
        _append(f"{SOP}/Ebay_test.txt", "99 2 1 thing_final/2_0.JPG"),
        ["Ebay_train.txt and", "Ebay_test.txt share 1 class (the first: 2)", "disjoint"],
    ),
]


@pytest.mark.parametrize(
    ("name", "fake", "spoil", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_CLASS_SPLIT_FILES],
)
def test_unusable_class_split_lists_fail_with_one_line_naming_the_file(
    tmp_path: Path,
    name: str,
    fake: Callable[[Path], None],
    spoil: Callable[[Path], None],
    fragments: list[str],
) -> None:
    fake(tmp_path)
    spoil(tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset(name, root=tmp_path, image_size=SIZE, protocol="class-disjoint")
    _assert_one_line(caught.value, *(f.replace("{root}", str(tmp_path)) for f in fragments))
