"""Data sets by name: the registry, what a factory is asked for, and :func:`load_dataset`.

Every data set is served as a :class:`~repmet.data.datasets.DatasetSplits`: three disjoint splits
whose labels are re-indexed to ``0..C-1``. Factories register themselves in :data:`DATASETS` when
their module is imported (``repmet.data`` imports them all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from repmet.data.datasets import DatasetSplits
from repmet.errors import ConfigError
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
    """

    root: Path | None = None
    download: bool = False
    seed: int = 0
    image_size: int | None = None
    pretrained_normalization: bool = False
    augment: bool = False


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
    return factory(
        DataRequest(
            root=Path(root) if root is not None else None,
            download=download,
            seed=seed,
            image_size=image_size,
            pretrained_normalization=pretrained_normalization,
            augment=augment,
        )
    )
