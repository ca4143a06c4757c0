"""The metric-learning benchmarks with official class splits: CUB-200-2011, Cars196 and Stanford
Online Products, read from the layouts pytorch-metric-learning's data sets expect.

Each has an official class split, which the ``class-disjoint`` protocol uses (spec, "Unseen
classes"): CUB-200-2011 classes 1-100 train+val / 101-200 test, Cars196 classes 1-98 / 99-196,
Stanford Online Products the classes of ``Ebay_train.txt`` / ``Ebay_test.txt``. Under
``closed-set``, CUB-200-2011 and Cars196 are split 60/20/20 over all their images, stratified by
class with the request's seed; Stanford Online Products has no closed-set split (its classes of 2
to 12 images cannot be in train, validation and test at once) and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from repmet.data.datasets import DatasetSplits
from repmet.data.photos import file_splits, official_file_remedy, require_files
from repmet.data.problems import download_or_explain, download_remedy, unreadable_data
from repmet.data.registry import DATASETS, DataRequest, default_data_root
from repmet.data.splits import SplitIndices, reindex_labels, stratified_split
from repmet.errors import ConfigError, DataError
from repmet.protocols import CLASS_DISJOINT

CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CARS_URL = "https://www.kaggle.com/datasets/jutrera/stanford-car-dataset-by-classes-folder"
SOP_URL = "https://cvgl.stanford.edu/projects/lifted_struct/"
#: The last class number of each official train+val half (the test classes follow it).
CUB_TRAINVAL_LAST = 100
CARS_TRAINVAL_LAST = 98


def _read_rows(
    path: Path, *, columns: int, source: str, separator: str | None = None, header: bool = False
) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty line of a list file, each with at least
    ``columns`` fields; one-line errors for a file that cannot be read or a short line."""
    try:
        lines = path.read_text().splitlines()
    except (UnicodeDecodeError, OSError) as error:
        raise unreadable_data(
            path, what="list", error=error, remedy=official_file_remedy(source)
        ) from None
    rows = []
    for number, line in enumerate(lines[1:] if header else lines, start=2 if header else 1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(separator)]
        if len(fields) < columns:
            raise DataError(
                f"line {number} of {path} has {len(fields)} field{'' if len(fields) == 1 else 's'}"
                f" ({line.strip()[:60]!r}), {columns} expected; " + official_file_remedy(source)
            )
        rows.append((number, fields))
    if not rows:
        raise DataError(f"list {path} names no images; " + official_file_remedy(source))
    return rows


def _lines(path: Path, *, source: str) -> list[str]:
    """The lines of a text file, trailing blank lines dropped."""
    try:
        lines = path.read_text().splitlines()
    except (UnicodeDecodeError, OSError) as error:
        raise unreadable_data(
            path, what="list", error=error, remedy=official_file_remedy(source)
        ) from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"list {path} is empty; " + official_file_remedy(source))
    return lines


def _number(text: str, *, path: Path, line: int, source: str) -> int:
    """A positive integer field of a list file."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(
            f"line {line} of {path} has {text!r} where a positive number belongs; "
            + official_file_remedy(source)
        )
    return value


def _not_downloadable(name: str, base: Path, *, files: str, source: str) -> ConfigError:
    return ConfigError(
        f"data set {name!r} cannot be downloaded automatically (its archive is not at a plain "
        f"URL); download {files} from {source} and unpack it into {base}"
    )


def _trainval_classes(raw_labels: np.ndarray, last: int) -> np.ndarray:
    """The labels (``0..C-1``, as :func:`reindex_labels` gives them) of the raw class numbers up
    to ``last``: an official train+val half."""
    return np.flatnonzero(np.unique(raw_labels) <= last)


def _stratified(labels: np.ndarray, request: DataRequest, name: str) -> Callable[[], SplitIndices]:
    """The closed-set split of a set without an official one: 60/20/20, stratified by seed."""
    return lambda: stratified_split(labels, seed=request.seed, dataset=name)


@DATASETS.register("cub200")
def cub200(request: DataRequest) -> DatasetSplits:
    """CUB-200-2011 (``root/CUB_200_2011``): 200 bird species; class-disjoint on the official
    classes 1-100 / 101-200, closed-set stratified 60/20/20 by ``seed``."""
    data_root = request.root or default_data_root()
    base = data_root / "CUB_200_2011"
    if request.download:
        from torchvision.datasets.utils import download_and_extract_archive

        download_or_explain(
            "cub200",
            base,
            lambda: download_and_extract_archive(CUB_URL, download_root=str(data_root)),
            source=CUB_URL,
        )
    listing, labelling = base / "images.txt", base / "image_class_labels.txt"
    require_files(
        "cub200",
        base,
        [base / "images", listing, labelling],
        layout="images/<nnn.Class_name>/*.jpg, images.txt and image_class_labels.txt",
        remedy=download_remedy("CUB_200_2011.tgz", source=CUB_URL),
    )
    # images.txt: "<image id> <path under images/>"; image_class_labels.txt: "<image id> <class>".
    files = {
        _number(fields[0], path=listing, line=line, source=CUB_URL): fields[1]
        for line, fields in _read_rows(listing, columns=2, source=CUB_URL)
    }
    classes = {
        _number(fields[0], path=labelling, line=line, source=CUB_URL): _number(
            fields[1], path=labelling, line=line, source=CUB_URL
        )
        for line, fields in _read_rows(labelling, columns=2, source=CUB_URL)
    }
    unlabelled = sorted(set(files) - set(classes))
    if unlabelled or len(classes) != len(files):
        missing = unlabelled or sorted(set(classes) - set(files))
        where, other = (labelling, listing) if unlabelled else (listing, labelling)
        raise DataError(
            f"{where} has no line for image {missing[0]} of {other} ({len(missing)} such "
            f"image{'' if len(missing) == 1 else 's'}); " + official_file_remedy(CUB_URL)
        )
    ids = list(files)
    raw_labels = np.array([classes[i] for i in ids])
    # A class's name is its image folder's, "001.Black_footed_Albatross" -> "Black footed
    # Albatross".
    names = {classes[i]: files[i].split("/")[0].split(".", 1)[-1].replace("_", " ") for i in ids}
    labels, class_names = reindex_labels(raw_labels, names=names)
    return file_splits(
        "cub200",
        [base / "images" / files[i] for i in ids],
        request.partition(
            labels,
            dataset="cub200",
            closed_set=_stratified(labels, request, "cub200"),
            trainval_classes=_trainval_classes(raw_labels, CUB_TRAINVAL_LAST),
        ),
        class_names=class_names,
        request=request,
    )


@DATASETS.register("cars196")
def cars196(request: DataRequest) -> DatasetSplits:
    """Cars196 (``root/cars196``, the Kaggle "by classes folder" layout): 196 car models;
    class-disjoint on the official classes 1-98 / 99-196, closed-set stratified 60/20/20 by
    ``seed`` over the official train and test images together."""
    base = (request.root or default_data_root()) / "cars196"
    if request.download:
        raise _not_downloadable("cars196", base, files="the archive", source=CARS_URL)
    images = base / "car_data" / "car_data"
    annotations = {split: base / f"anno_{split}.csv" for split in ("train", "test")}
    require_files(
        "cars196",
        base,
        [base / "names.csv", *annotations.values(), images],
        layout="names.csv, anno_train.csv, anno_test.csv and "
        "car_data/car_data/{train,test}/<class name>/*.jpg",
        remedy=f"download the archive from {CARS_URL} and unpack it there",
    )
    # One model per line; a class number n of the annotations names line n.
    names = [name.strip() for name in _lines(base / "names.csv", source=CARS_URL)]
    paths, raw = [], []
    for split, path in annotations.items():
        # "<file>,<x1>,<y1>,<x2>,<y2>,<class>": the bounding box is not used.
        for line, fields in _read_rows(path, columns=2, separator=",", source=CARS_URL):
            number = _number(fields[-1], path=path, line=line, source=CARS_URL)
            if number > len(names):
                raise DataError(
                    f"line {line} of {path} has class {number}, but {base / 'names.csv'} names "
                    f"{len(names)} classes; " + official_file_remedy(CARS_URL)
                )
            folder = names[number - 1].replace("/", "-")  # as the archive names the folders
            paths.append(images / split / folder / fields[0])
            raw.append(number)
    raw_labels = np.array(raw)
    labels, class_names = reindex_labels(raw_labels, names={n + 1: v for n, v in enumerate(names)})
    return file_splits(
        "cars196",
        paths,
        request.partition(
            labels,
            dataset="cars196",
            closed_set=_stratified(labels, request, "cars196"),
            trainval_classes=_trainval_classes(raw_labels, CARS_TRAINVAL_LAST),
        ),
        class_names=class_names,
        request=request,
    )


def _no_closed_set() -> SplitIndices:
    raise ConfigError(
        "data set 'sop' has no closed-set split: its official split has disjoint classes, and "
        f"classes of 2 images cannot be in train, validation and test at once; use protocol "
        f"{CLASS_DISJOINT!r}"
    )


@DATASETS.register("sop")
def stanford_online_products(request: DataRequest) -> DatasetSplits:
    """Stanford Online Products (``root/Stanford_Online_Products``): 22,634 products of 2-12
    images each; class-disjoint only, on the classes of ``Ebay_train.txt`` / ``Ebay_test.txt``."""
    base = (request.root or default_data_root()) / "Stanford_Online_Products"
    if request.download:
        raise _not_downloadable("sop", base, files="Stanford_Online_Products.zip", source=SOP_URL)
    lists = [base / "Ebay_train.txt", base / "Ebay_test.txt"]
    require_files(
        "sop",
        base,
        lists,
        layout="Ebay_train.txt, Ebay_test.txt and <category>_final/*.JPG",
        remedy=f"download Stanford_Online_Products.zip from {SOP_URL} and unpack it there",
    )
    paths, raw, official_train = [], [], 0
    for path in lists:
        # A header line, then "<image id> <class id> <super-class id> <path>".
        for line, fields in _read_rows(path, columns=4, header=True, source=SOP_URL):
            raw.append(_number(fields[1], path=path, line=line, source=SOP_URL))
            paths.append(base / fields[3])
        official_train = official_train or len(raw)
    raw_labels = np.array(raw)
    shared = np.intersect1d(raw_labels[:official_train], raw_labels[official_train:])
    if shared.size:
        raise DataError(
            f"{lists[0]} and {lists[1]} share {shared.size} class"
            f"{'' if shared.size == 1 else 'es'} (the first: {int(shared[0])}); their classes must "
            "be disjoint; " + official_file_remedy(SOP_URL)
        )
    labels, class_names = reindex_labels(raw_labels)
    return file_splits(
        "sop",
        paths,
        request.partition(
            labels,
            dataset="sop",
            closed_set=_no_closed_set,
            trainval_classes=np.unique(labels[:official_train]),
        ),
        class_names=class_names,
        request=request,
    )
