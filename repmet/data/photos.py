"""Photo data sets read lazily from disk: Oxford Flowers 102, Oxford-IIIT Pet, Stanford Dogs and
any ImageFolder-style directory.

Each set is read by a small reader of its official on-disk layout; torchvision (or the archive
URL) is used only to download, and imported only by the factories (it is slow to import, and the
in-memory sets never need it). torchvision's own ``Flowers102`` insists on the MD5 sums of the
label files, so reading the layout ourselves keeps hand-placed or re-packed copies usable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from repmet.data.datasets import DatasetSplits, FileDataset, class_layout
from repmet.data.problems import (
    download_or_explain,
    download_remedy,
    missing_data,
    name_list,
    unreadable_data,
)
from repmet.data.registry import DATASETS, DataRequest, default_data_root
from repmet.data.splits import (
    Partition,
    SplitIndices,
    carve_validation,
    reindex_labels,
    stratified_split,
)
from repmet.data.transforms import DEFAULT_PHOTO_SIZE, Transform, photo_transforms
from repmet.errors import ConfigError, DataError

FLOWERS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
PET_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
DOGS_URL = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
DOGS_ARCHIVES = ("images.tar", "lists.tar")


def file_splits(
    name: str,
    paths: Sequence[Path],
    partition: Partition,
    *,
    class_names: tuple[str, ...],
    request: DataRequest,
) -> DatasetSplits:
    """Builds lazily decoded RGB splits from image paths and the partition of the set (its
    classes ``class_names``) into splits."""
    size = request.image_size or DEFAULT_PHOTO_SIZE
    evaluation, training = photo_transforms(
        size, pretrained_normalization=request.pretrained_normalization, augment=request.augment
    )

    def split(part: int, augment_transform: Transform | None) -> FileDataset:
        return FileDataset(
            [paths[i] for i in partition.indices[part].tolist()],
            torch.from_numpy(partition.labels[part]),
            transform=evaluation,
            augment_transform=augment_transform,
        )

    return DatasetSplits(
        name=name,
        train=split(0, training),
        val=split(1, None),
        test=split(2, None),
        image_shape=(3, size, size),
        **class_layout(partition, class_names),
    )


def require_files(name: str, base: Path, required: list[Path], *, layout: str, remedy: str) -> None:
    """Stops with the one-line missing-data error unless every path of ``required`` exists."""
    if not all(path.exists() for path in required):
        raise missing_data(name, path=base, layout=layout, remedy=remedy)


def official_file_remedy(source: str) -> str:
    """The remedy for an official file that is there but unusable."""
    return f"replace it with the official file from {source}"


def _mat_vectors(path: Path, fields: Sequence[str], *, source: str) -> list[np.ndarray]:
    """The ``fields`` of a MATLAB file, each a vector (or cell array of strings) as a flat numpy
    array. A corrupt, truncated or v7.3 (HDF5) file, or a missing field, is a DataError naming
    the file."""
    from scipy.io import loadmat  # here: only Flowers and Dogs need it
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(path, squeeze_me=True)
    except (MatReadError, ValueError, TypeError, NotImplementedError, OSError) as error:
        raise unreadable_data(
            path, what="MATLAB file", error=error, remedy=official_file_remedy(source)
        ) from None
    missing = [field for field in fields if field not in content]
    if missing:
        raise DataError(
            f"MATLAB file {path} has no field {' or '.join(map(repr, missing))}; "
            + official_file_remedy(source)
        )
    return [np.atleast_1d(content[field]) for field in fields]


@DATASETS.register("flowers102")
def flowers102(request: DataRequest) -> DatasetSplits:
    """Oxford Flowers 102 with its official train/val/test split (``seed`` is unused)."""
    from torchvision.datasets import Flowers102

    data_root = request.root or default_data_root()
    base = data_root / "flowers-102"
    if request.download:
        download_or_explain(
            "flowers102",
            base,
            lambda: Flowers102(str(data_root), download=True),
            source=FLOWERS_URL,
        )
    require_files(
        "flowers102",
        base,
        [base / "jpg", base / "imagelabels.mat", base / "setid.mat"],
        layout="jpg/image_00001.jpg..., imagelabels.mat and setid.mat",
        remedy=download_remedy("the files", source=FLOWERS_URL),
    )
    # 1-based class per image, and the 1-based image numbers of each official split.
    (raw_labels,) = _mat_vectors(base / "imagelabels.mat", ["labels"], source=FLOWERS_URL)
    splits_ids = _mat_vectors(base / "setid.mat", ["trnid", "valid", "tstid"], source=FLOWERS_URL)
    ids = [part.astype(np.int64) for part in splits_ids]
    image_ids = np.concatenate(ids)
    if ((image_ids < 1) | (image_ids > len(raw_labels))).any():
        raise DataError(
            f"{base / 'setid.mat'} names images outside 1..{len(raw_labels)}, the images that "
            f"{base / 'imagelabels.mat'} labels; replace both with the official files from "
            + FLOWERS_URL
        )
    paths = [base / "jpg" / f"image_{i:05d}.jpg" for i in image_ids.tolist()]
    labels, class_names = reindex_labels(raw_labels[image_ids - 1] - 1, names=Flowers102.classes)
    train_end, val_end, test_end = np.cumsum([len(part) for part in ids]).tolist()
    splits = (np.arange(train_end), np.arange(train_end, val_end), np.arange(val_end, test_end))
    return file_splits(
        "flowers102",
        paths,
        request.partition(labels, dataset="flowers102", closed_set=lambda: splits),
        class_names=class_names,
        request=request,
    )


def _read_pet_list(path: Path) -> list[tuple[str, str]]:
    """(image id, breed) per line of an Oxford-IIIT Pet list: ``Abyssinian_100 1 1 1``."""
    try:
        text = path.read_text()
    except (UnicodeDecodeError, OSError) as error:
        raise unreadable_data(
            path, what="list", error=error, remedy=official_file_remedy(PET_URL)
        ) from None
    entries = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            image_id = line.split()[0]
            entries.append((image_id, image_id.rsplit("_", 1)[0]))
    return entries


@DATASETS.register("oxford-pet")
def oxford_pet(request: DataRequest) -> DatasetSplits:
    """Oxford-IIIT Pet breeds: official test set; validation carved from trainval by ``seed``."""
    from torchvision.datasets import OxfordIIITPet

    data_root = request.root or default_data_root()
    base = data_root / "oxford-iiit-pet"
    annotations = base / "annotations"
    if request.download:
        download_or_explain(
            "oxford-pet",
            base,
            lambda: OxfordIIITPet(str(data_root), download=True),
            source=PET_URL,
        )
    require_files(
        "oxford-pet",
        base,
        [base / "images", annotations / "trainval.txt", annotations / "test.txt"],
        layout="images/<Breed>_<n>.jpg, annotations/trainval.txt and annotations/test.txt",
        remedy=download_remedy("images.tar.gz and annotations.tar.gz", source=PET_URL),
    )
    trainval = _read_pet_list(annotations / "trainval.txt")
    test = _read_pet_list(annotations / "test.txt")
    entries = trainval + test
    paths = [base / "images" / f"{image_id}.jpg" for image_id, _ in entries]
    labels, class_names = reindex_labels([breed for _, breed in entries])

    def closed_set() -> SplitIndices:
        train, val = carve_validation(
            np.arange(len(trainval)), labels, seed=request.seed, dataset="oxford-pet"
        )
        return train, val, np.arange(len(trainval), len(entries))

    return file_splits(
        "oxford-pet",
        paths,
        request.partition(labels, dataset="oxford-pet", closed_set=closed_set),
        class_names=tuple(name.replace("_", " ") for name in class_names),
        request=request,
    )


def _download_dogs(base: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    for archive in DOGS_ARCHIVES:
        download_and_extract_archive(DOGS_URL + archive, download_root=str(base))


@DATASETS.register("stanford-dogs")
def stanford_dogs(request: DataRequest) -> DatasetSplits:
    """Stanford Dogs in its official layout under ``root/stanford-dogs``: official test list;
    validation carved from the train list by ``seed``."""
    base = (request.root or default_data_root()) / "stanford-dogs"
    if request.download:
        download_or_explain("stanford-dogs", base, lambda: _download_dogs(base), source=DOGS_URL)
    lists = [base / "train_list.mat", base / "test_list.mat"]
    require_files(
        "stanford-dogs",
        base,
        [base / "Images", *lists],
        layout="Images/<wnid>-<breed>/*.jpg, train_list.mat and test_list.mat",
        remedy=download_remedy(" and ".join(DOGS_ARCHIVES), source=DOGS_URL),
    )
    files = [
        [str(file) for file in _mat_vectors(path, ["file_list"], source=DOGS_URL)[0]]
        for path in lists
    ]
    relative = files[0] + files[1]
    paths = [base / "Images" / file for file in relative]
    # The class is the image's folder, "<wnid>-<breed>"; its name is the breed.
    labels, folders = reindex_labels([file.split("/")[0] for file in relative])

    def closed_set() -> SplitIndices:
        train, val = carve_validation(
            np.arange(len(files[0])), labels, seed=request.seed, dataset="stanford-dogs"
        )
        return train, val, np.arange(len(files[0]), len(relative))

    return file_splits(
        "stanford-dogs",
        paths,
        request.partition(labels, dataset="stanford-dogs", closed_set=closed_set),
        class_names=tuple(folder.split("-", 1)[-1].replace("_", " ") for folder in folders),
        request=request,
    )


FOLDER_LAYOUT = "one sub-folder of images per class, <class>/<image>.jpg|png|..."


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (by extension, as ImageFolder does, at any depth), sorted.

    Hidden entries are skipped: a macOS ``._photo.jpg`` resource fork or a ``.ipynb_checkpoints``
    folder is not an image, and would otherwise fail to decode in the middle of training.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    found = []
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [
            Path(directory) / name
            for name in files
            if not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)
        ]
    return sorted(found)


@DATASETS.register("folder")
def folder(request: DataRequest) -> DatasetSplits:
    """Any ImageFolder-style directory ``root/<class>/<image>``, split 60/20/20 by ``seed``;
    hidden sub-folders and files are ignored."""
    root = request.root
    if root is None:
        raise ConfigError("data set 'folder' needs data_root set to its image folder")
    if not root.is_dir():
        raise missing_data(
            "folder", path=root, layout=FOLDER_LAYOUT, remedy="set data_root to such a folder"
        )
    classes = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders; it needs {FOLDER_LAYOUT}")
    files = {name: _image_files(root / name) for name in classes}
    empty = [name for name in classes if not files[name]]
    if empty:
        from torchvision.datasets.folder import IMG_EXTENSIONS

        raise DataError(
            f"image folder {root} has class folders without images: {name_list(empty)} "
            f"(image files end in {', '.join(IMG_EXTENSIONS)}); add images or remove the folders"
        )
    paths = [path for name in classes for path in files[name]]
    labels, class_names = reindex_labels([name for name in classes for _ in files[name]])
    return file_splits(
        "folder",
        paths,
        request.partition(
            labels,
            dataset="folder",
            closed_set=lambda: stratified_split(labels, seed=request.seed, dataset="folder"),
        ),
        class_names=class_names,
        request=request,
    )
