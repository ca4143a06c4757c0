"""Label re-indexing, the seeded, stratified splits of sets that lack an official one, and the
class-disjoint split of any set (spec, "Unseen classes")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from repmet.data.problems import error_reason
from repmet.errors import ArgumentError, DataError
from repmet.protocols import CLASS_DISJOINT, CLOSED_SET, FOLDS

#: The three splits, in the order every split triple is given.
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")

# Fractions of a data set that has no official split: 60/20/20 train/val/test.
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


def reindex_labels(
    raw_labels: Sequence | np.ndarray, names: Mapping | Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Maps arbitrary label values to ``0..C-1`` in sorted order of the values.

    Returns the int64 labels and the class names, ``names[value]`` when given else ``str(value)``.
    """
    values, labels = np.unique(np.asarray(raw_labels), return_inverse=True)
    class_names = tuple(str(names[v] if names is not None else v) for v in values.tolist())
    return labels.astype(np.int64).reshape(-1), class_names


def _stratified_cut(
    indices: np.ndarray, labels: np.ndarray, *, fraction: float, seed: int, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.model_selection import train_test_split  # here: scikit-learn is slow to import

        kept, cut = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=labels[indices]
        )
    except ValueError as error:  # too few examples of some class, or too many classes
        _, counts = np.unique(labels[indices], return_counts=True)
        smallest = int(counts.min()) if counts.size else 0
        raise DataError(
            f"data set {dataset!r} cannot be split by class: {error_reason(error)} "
            f"(its smallest class has {smallest} example{'' if smallest == 1 else 's'})"
        ) from None
    return np.sort(kept), np.sort(cut)


def stratified_split(
    labels: np.ndarray, *, seed: int, dataset: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded, stratified 60/20/20 train/val/test indices of a set without an official split."""
    rest, test = _stratified_cut(
        np.arange(len(labels)), labels, fraction=TEST_FRACTION, seed=seed, dataset=dataset
    )
    train, val = _stratified_cut(
        rest, labels, fraction=VAL_FRACTION / (1 - TEST_FRACTION), seed=seed, dataset=dataset
    )
    return train, val, test


def carve_validation(
    train_indices: np.ndarray, labels: np.ndarray, *, seed: int, dataset: str
) -> tuple[np.ndarray, np.ndarray]:
    """Splits an official training set into train and a seeded, stratified validation part."""
    return _stratified_cut(train_indices, labels, fraction=VAL_FRACTION, seed=seed, dataset=dataset)


SplitIndices = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Partition:
    """Which examples each split holds and the labels it serves them with.

    Attributes:
        protocol: ``closed-set`` or ``class-disjoint`` (:mod:`repmet.protocols`).
        indices: example indices of train, val and test (into the set's label array).
        labels: per split, its examples' labels: the set's labels under ``closed-set``; under
            ``class-disjoint`` re-indexed within the split, ``0..C_split-1``.
        classes: per split, the set's class of each of the split's labels (``classes[s][j]``
            is the class label ``j`` of split ``s`` stands for).
    """

    protocol: str
    indices: SplitIndices
    labels: SplitIndices
    classes: SplitIndices


def class_disjoint_classes(
    num_classes: int, *, fold: int, dataset: str, trainval: np.ndarray | None = None
) -> SplitIndices:
    """The classes (``0..C-1``, sorted) of train, validation and test under ``class-disjoint``.

    ``trainval`` gives the classes of an official class split for training and validation;
    otherwise the first ``floor(C / 2)`` classes are (the Reality Check's rule) and the rest are
    the test classes. Validation holds the ``fold``-th contiguous quarter of the ``n`` train+val
    classes, positions ``floor(fold * n / 4)`` up to ``floor((fold + 1) * n / 4)``: the four folds
    partition the train+val classes, each validating on a different quarter. Training holds the
    other three quarters.

    Raises:
        DataError: too few classes for a validation class in every fold, two training classes
            and a test class.
    """
    if not 0 <= fold < FOLDS:
        raise ArgumentError(f"fold = {fold} is not in 0..{FOLDS - 1}")
    everything = np.arange(num_classes)
    if trainval is None:
        trainval = everything[: num_classes // 2]
    trainval = np.unique(trainval)
    test = np.setdiff1d(everything, trainval)
    count = len(trainval)
    start, end = fold * count // FOLDS, (fold + 1) * count // FOLDS
    val = trainval[start:end]
    train = np.concatenate([trainval[:start], trainval[end:]])
    if min(len(val), len(test)) < 1 or len(train) < 2:
        raise DataError(
            f"data set {dataset!r} has too few classes for the class-disjoint protocol: "
            f"{count} train+val classes and {len(test)} test classes leave fold {fold} "
            f"{len(train)} training, {len(val)} validation and {len(test)} test classes "
            f"(it needs at least 2, 1 and 1; at least {FOLDS} train+val classes)"
        )
    return train, val, test


def partition(
    labels: np.ndarray,
    *,
    protocol: str,
    fold: int,
    dataset: str,
    closed_set: Callable[[], SplitIndices],
    trainval_classes: np.ndarray | None = None,
) -> Partition:
    """The split of a set whose examples have ``labels`` (``0..C-1``) under ``protocol``.

    Args:
        closed_set: the set's closed-set split (official or stratified by seed); called only
            under ``closed-set``, since a set of tiny classes may have none.
        trainval_classes: the train+val classes of an official class split, if the set has one.
        fold: the class-disjoint validation fold, ``0..3``.
    """
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1 if labels.size else 0
    if protocol == CLOSED_SET:
        indices = closed_set()
        every_class = np.arange(num_classes)
        return Partition(
            protocol=protocol,
            indices=indices,
            labels=tuple(labels[part] for part in indices),  # type: ignore[arg-type]
            classes=(every_class, every_class, every_class),
        )
    if protocol != CLASS_DISJOINT:
        raise ArgumentError(f"protocol = {protocol!r} is not {CLOSED_SET} or {CLASS_DISJOINT}")
    classes = class_disjoint_classes(
        num_classes, fold=fold, dataset=dataset, trainval=trainval_classes
    )
    indices = tuple(np.flatnonzero(np.isin(labels, part)) for part in classes)
    return Partition(
        protocol=protocol,
        indices=indices,  # type: ignore[arg-type]
        # classes are sorted, so a class's position among them is its label within the split
        labels=tuple(  # type: ignore[arg-type]
            np.searchsorted(part, labels[where]).astype(np.int64)
            for part, where in zip(classes, indices, strict=True)
        ),
        classes=classes,
    )
