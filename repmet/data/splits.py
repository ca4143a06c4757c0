"""Label re-indexing and the seeded, stratified splits of sets that lack an official one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from repmet.data.problems import error_reason
from repmet.errors import DataError

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
