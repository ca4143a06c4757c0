"""Data sets by name: the registry, what a factory is asked for, and :func:`load_dataset`.

Every data set is served as a :class:`~repmet.data.datasets.DatasetSplits`: three disjoint splits
whose labels are re-indexed to ``0..C-1``. Factories register themselves in :data:`DATASETS` when
their module is imported (``repmet.data`` imports them all).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from repmet.data.datasets import DatasetSplits
from repmet.data.splits import Partition, SplitIndices, partition
from repmet.errors import ConfigError
from repmet.protocols import CLOSED_SET, FOLDS, PROTOCOLS
from repmet.registry import Registry

DATA_ROOT_ENV = "REPMET_DATA_ROOT"


@dataclass(frozen=True, kw_only=True)
class DataRequest:
    """What :func:`load_dataset` was asked for, as handed to a data set's factory.

    Attributes:
        root: the data root, the image folder (``folder``) or the ``.npz`` file (``arrays``);
            None: :func:`default_data_root`.
        download: whether missing files may be fetched; otherwise the network is never touched.
        seed: seed of the stratified split of a set without an official one.
        image_size: side of the square model input; None: the set's native size (in-memory
            sets) or :data:`~repmet.data.transforms.DEFAULT_PHOTO_SIZE` (photo sets).
        pretrained_normalization: normalise photo sets with the ImageNet mean/std rather than
            0.5/0.5 (in-memory sets are standardised with their training split's statistics).
        augment: apply the random training transform to the train split.
        protocol: ``closed-set`` or ``class-disjoint`` (:mod:`repmet.protocols`).
        fold: the validation fold of ``class-disjoint``, ``0..3``.
    """

    root: Path | None = None
    download: bool = False
    seed: int = 0
    image_size: int | None = None
    pretrained_normalization: bool = False
    augment: bool = False
    protocol: str = CLOSED_SET
    fold: int = 0

    def partition(
        self,
        labels: np.ndarray,
        *,
        dataset: str,
        closed_set: Callable[[], SplitIndices],
        trainval_classes: np.ndarray | None = None,
    ) -> Partition:
        """The split this request asks for of a set whose examples have ``labels`` (``0..C-1``):
        ``closed_set()`` under ``closed-set``, else the class-disjoint split, on the official
        ``trainval_classes`` when the set has them
        (:func:`~repmet.data.splits.partition`)."""
        return partition(
            labels,
            protocol=self.protocol,
            fold=self.fold,
            dataset=dataset,
            closed_set=closed_set,
            trainval_classes=trainval_classes,
        )


class DatasetFactory(Protocol):
    """What :data:`DATASETS` holds: builds a data set's splits for one :class:`DataRequest`."""

    def __call__(self, request: DataRequest) -> DatasetSplits: ...


DATASETS: Registry[DatasetFactory] = Registry("data set")


def default_data_root() -> Path:
    """``$REPMET_DATA_ROOT`` if set, else ``./data`` under the current directory."""
    configured = os.environ.get(DATA_ROOT_ENV)
    return Path(configured) if configured else Path.cwd() / "data"


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    pretrained_normalization: bool = False,
    augment: bool = False,
    protocol: str = CLOSED_SET,
    fold: int = 0,
) -> DatasetSplits:
    """Loads the named data set's splits.

    Args:
        name: a registered data set (``DATASETS.names()``).
        root: the data root holding the named sets (default :func:`default_data_root`); for
            ``folder`` the image folder itself, for ``arrays`` the ``.npz`` file.
        download: fetch missing files; without it the network is never touched.
        seed: seeds the stratified split of sets that have no official one.
        image_size: side of the square images fed to the model (default: native size for the
            small sets, 224 for photo sets).
        pretrained_normalization: ImageNet mean/std for photo sets (for a pretrained backbone)
            instead of 0.5/0.5. The in-memory sets are always standardised per channel with
            their training split's statistics.
        augment: random training transform on the train split (random shifts for in-memory
            sets, random resized crop and flip for photo sets).
        protocol: ``closed-set`` (every class in every split; the examples are split) or
            ``class-disjoint`` (train, validation and test classes disjoint: the official class
            split where a set has one, else the first half of the sorted classes for train and
            validation and the second half for test; see
            :func:`~repmet.data.splits.class_disjoint_classes`).
        fold: which quarter of the train+val classes validates under ``class-disjoint``
            (``0..3``); ignored under ``closed-set``.

    Raises:
        UnknownNameError: ``name`` is not registered.
        DataNotFoundError: the files are missing (or could not be downloaded).
        DataError: the files are there but unusable (unreadable, malformed, non-finite pixels,
            fewer than 2 classes, a class too small to split).
        ConfigError: an invalid argument.
    """
    factory = DATASETS.get(name)
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be a positive number of pixels, got {image_size}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol = {protocol!r} is not one of: {', '.join(PROTOCOLS)}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < FOLDS:
        raise ConfigError(f"fold = {fold!r} must be one of 0..{FOLDS - 1}")
    return factory(
        DataRequest(
            root=Path(root) if root is not None else None,
            download=download,
            seed=seed,
            image_size=image_size,
            pretrained_normalization=pretrained_normalization,
            augment=augment,
            protocol=protocol,
            fold=fold,
        )
    )
