"""Small data sets held in memory: digits, MNIST, Fashion-MNIST and any ``.npz`` of arrays."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repmet.data.datasets import DatasetSplits, InMemoryDataset, class_layout
from repmet.data.problems import (
    download_or_explain,
    download_remedy,
    missing_data,
    name_list,
    unreadable_data,
)
from repmet.data.registry import DATASETS, DataRequest, default_data_root
from repmet.data.splits import Partition, reindex_labels, stratified_split
from repmet.data.transforms import BatchTransform, RandomShift
from repmet.errors import ConfigError, DataError

# The official MNIST training set is 60,000 images; the last 5,000 (one twelfth) validate.
MNIST_VALIDATION_FRACTION = 5_000 / 60_000


def in_memory_splits(
    name: str,
    images: torch.Tensor,
    partition: Partition,
    *,
    class_names: tuple[str, ...],
    request: DataRequest,
) -> DatasetSplits:
    """Builds in-memory splits from float images [N, C, H, W] and the partition of the set
    (its classes ``class_names``) into splits.

    Images are resized to ``request.image_size`` (if given) and standardised per channel with the
    mean and standard deviation of the training split only, so no test statistics leak into
    training.

    Raises:
        DataError: images with NaN or infinite pixels, found here rather than as NaN embeddings
            deep inside training or k-means.
    """
    _require_finite(name, images)
    image_size = request.image_size
    if image_size is not None and images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", antialias=True
        )
    train_images = images[torch.from_numpy(partition.indices[0])]
    mean = train_images.mean(dim=(0, 2, 3), keepdim=True)
    std = train_images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    images = ((images - mean) / std).contiguous()
    channels, height, width = images.shape[1:]
    shift = RandomShift(max(1, round(0.1 * height))) if request.augment else None

    def split(part: int, augment_split: BatchTransform | None) -> InMemoryDataset:
        index = torch.from_numpy(partition.indices[part])
        labels = torch.from_numpy(partition.labels[part])
        return InMemoryDataset(images[index], labels, augment=augment_split)

    return DatasetSplits(
        name=name,
        train=split(0, shift),
        val=split(1, None),
        test=split(2, None),
        image_shape=(channels, height, width),
        **class_layout(partition, class_names),
    )


def _require_finite(name: str, images: torch.Tensor) -> None:
    finite = torch.isfinite(images).flatten(start_dim=1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        raise DataError(
            f"data set {name!r} has {bad.numel()} of {len(images)} images with NaN or infinite "
            f"pixels (the first at index {int(bad[0])}); fix or drop them"
        )


@DATASETS.register("digits")
def digits(request: DataRequest) -> DatasetSplits:
    """scikit-learn's bundled 1,797 8x8 grey digits (no files needed), split 60/20/20 by seed."""
    from sklearn.datasets import load_digits  # here: scikit-learn is slow to import

    bunch = load_digits()
    # Pixel values are 0..16.
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels, class_names = reindex_labels(bunch.target)
    return in_memory_splits(
        "digits",
        images,
        request.partition(
            labels,
            dataset="digits",
            closed_set=lambda: stratified_split(labels, seed=request.seed, dataset="digits"),
        ),
        class_names=class_names,
        request=request,
    )


def _register_mnist_family(name: str, class_name: str) -> None:
    """Registers an MNIST-format set read with torchvision's ``class_name`` from
    ``root/<class_name>/raw`` (torchvision is imported when the set is loaded, not before)."""

    def factory(request: DataRequest) -> DatasetSplits:
        """Official training set minus its last twelfth (validation), official test set."""
        from torchvision import datasets

        source = getattr(datasets, class_name)
        base = request.root or default_data_root()
        raw = base / source.__name__ / "raw"
        files = [Path(url).stem for url, _ in source.resources]  # the unpacked idx files
        if request.download:
            download_or_explain(
                name,
                raw,
                lambda: source(str(base), train=True, download=True),
                source=source.mirrors[0],
            )
        if not all((raw / file).is_file() for file in files):
            raise missing_data(
                name,
                path=raw,
                layout="the unpacked idx files " + ", ".join(files),
                remedy=download_remedy("them", source=source.mirrors[0]),
            )
        replace = "delete them, then " + download_remedy("them", source=source.mirrors[0])
        try:
            train_set = source(str(base), train=True)
            test_set = source(str(base), train=False)
        # torchvision's idx reader fails on corrupt files with whatever its parsing hits first.
        except (AssertionError, RuntimeError, ValueError, IndexError, OSError) as error:
            raise unreadable_data(
                raw, what=f"the idx files of data set {name!r} in", error=error, remedy=replace
            ) from None
        for part, split in ((train_set, "training"), (test_set, "test")):
            if len(part.data) != len(part.targets):
                raise DataError(
                    f"the {split} idx files of data set {name!r} in {raw} hold "
                    f"{len(part.data)} images but {len(part.targets)} labels; {replace}"
                )
        raw_labels = torch.cat([train_set.targets, test_set.targets]).numpy()
        if raw_labels.size and int(raw_labels.max()) >= len(train_set.classes):
            raise DataError(
                f"the idx files of data set {name!r} in {raw} hold label {int(raw_labels.max())}, "
                f"but the set has classes 0..{len(train_set.classes) - 1}; {replace}"
            )
        n_train = len(train_set.targets)
        n_val = round(n_train * MNIST_VALIDATION_FRACTION)
        images = torch.cat([train_set.data, test_set.data]).unsqueeze(1).float().div_(255.0)
        labels, class_names = reindex_labels(raw_labels, names=train_set.classes)
        splits = (
            np.arange(n_train - n_val),
            np.arange(n_train - n_val, n_train),
            np.arange(n_train, len(labels)),
        )
        return in_memory_splits(
            name,
            images,
            request.partition(labels, dataset=name, closed_set=lambda: splits),
            class_names=class_names,
            request=request,
        )

    DATASETS.add(name, factory)


_register_mnist_family("mnist", "MNIST")
_register_mnist_family("fashion-mnist", "FashionMNIST")


# How each array of an ``arrays`` .npz must be stored: numpy dtype kinds, and the advice when not.
NPZ_ARRAYS = {
    "images": ("biuf", "numbers (uint8 0..255 or float)"),
    "labels": ("biufU", "numbers or strings (np.str_)"),
}
NPZ_RECIPE = "np.savez(path, images=..., labels=...)"
NPZ_REMEDY = f"write it with {NPZ_RECIPE}"


def _read_npz_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of the archive, never unpickled: object arrays are refused with the advice of
    how to save them instead."""
    kinds, advice = NPZ_ARRAYS[key]
    try:
        array = archive[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        if "allow_pickle" in str(error):  # numpy's refusal to unpickle an object array
            raise DataError(
                f"array {key!r} in {path} holds pickled Python objects, which are never loaded; "
                f"save {key} as {advice}"
            ) from None
        raise unreadable_data(
            path, what=f"array {key!r} of", error=error, remedy=NPZ_REMEDY
        ) from None
    if not isinstance(array, np.ndarray):  # a member that is not an .npy file comes back as bytes
        raise DataError(f"{key!r} in {path} is not a NumPy array; {NPZ_REMEDY}")
    if array.dtype.kind not in kinds:
        raise DataError(f"array {key!r} in {path} has dtype {array.dtype}; save {key} as {advice}")
    return array


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``images`` and ``labels`` of an .npz archive, checked for everything that would
    otherwise fail later with a library's traceback: not an archive, a missing or unreadable
    array, pickled objects, wrong dtypes or shapes, lengths that differ, NaN labels."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); {NPZ_REMEDY}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz archive; {NPZ_REMEDY}")
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in NPZ_ARRAYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{path} has no array {' or '.join(map(repr, missing))} "
                f"(it has: {name_list(archive.files) or 'nothing'}); {NPZ_REMEDY}"
            )
        images = _read_npz_array(archive, "images", path)
        labels = _read_npz_array(archive, "labels", path)
    if images.ndim not in (3, 4) or 0 in images.shape[1:]:
        raise DataError(
            f"array 'images' in {path} has shape {images.shape}; it must be (N, H, W) or "
            "(N, H, W, C) with non-empty sides"
        )
    if labels.ndim != 1:
        raise DataError(
            f"array 'labels' in {path} has shape {labels.shape}; it must be (N,), one per image"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{path} holds {len(images)} images but {len(labels)} labels; it needs one per image"
        )
    if len(images) == 0:
        raise DataError(f"{path} holds no images")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise DataError(
            f"array 'labels' in {path} has {int(np.isnan(labels).sum())} NaN values; "
            "every image needs a label"
        )
    return images, labels


@DATASETS.register("arrays")
def arrays(request: DataRequest) -> DatasetSplits:
    """An ``.npz`` file (``root``) with ``images`` (N,H,W) or (N,H,W,C) of numbers, and ``labels``
    (N,) of numbers or strings; split 60/20/20 by seed. uint8 pixels are scaled to [0, 1].

    The file is read with ``allow_pickle=False``: an archive must never run code when loaded, so
    labels stored as Python objects are refused with the advice to save them as strings.
    """
    root = request.root
    if root is None:
        raise ConfigError("data set 'arrays' needs data_root set to its .npz file")
    if not root.is_file():
        raise missing_data(
            "arrays",
            path=root,
            layout="an .npz file with arrays 'images' (N,H,W[,C]) and 'labels' (N,)",
            remedy=f"set data_root to the file {NPZ_RECIPE} wrote",
        )
    raw_images, raw_labels = _read_npz(root)
    scale = 255.0 if raw_images.dtype == np.uint8 else 1.0
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, which in_memory_splits reports
        images = torch.from_numpy(raw_images.astype(np.float32) / scale)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    labels, class_names = reindex_labels(raw_labels)
    return in_memory_splits(
        "arrays",
        images.contiguous(),
        request.partition(
            labels,
            dataset="arrays",
            closed_set=lambda: stratified_split(labels, seed=request.seed, dataset="arrays"),
        ),
        class_names=class_names,
        request=request,
    )
