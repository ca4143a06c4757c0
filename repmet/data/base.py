"""Labelled image data sets, their train/val/test splits, and the registry that names them.

Every data set is served as a :class:`DatasetSplits`: three disjoint :class:`LabeledDataset`
splits whose labels are re-indexed to ``0..C-1``. Small sets (digits, MNIST, arrays) live in memory
as one normalised float tensor, so a batch is a single indexing operation; photo sets are read
lazily from disk through PIL and torchvision transforms.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.model_selection import train_test_split
from torchvision import transforms

from repmet.errors import ConfigError, DataNotFoundError
from repmet.registry import Registry

DATA_ROOT_ENV = "REPMET_DATA_ROOT"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Resize the shorter side to size / 0.875 before the centre crop, the usual ImageNet evaluation.
EVAL_CROP_FRACTION = 0.875
DEFAULT_PHOTO_SIZE = 224
# Fractions of a data set that has no official split: 60/20/20 train/val/test.
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2

Transform = Callable[[Image.Image], torch.Tensor]
BatchTransform = Callable[[torch.Tensor], torch.Tensor]


class LabeledDataset(torch.utils.data.Dataset):
    """One split of a labelled image data set.

    Attributes:
        labels: LongTensor [N] of class indices ``0..C-1``, known without decoding any image.
        augmented: True when images pass through a random training transform. ``get_batch`` and
            ``__getitem__`` then return augmented images, so a sampler can train from them;
            :meth:`evaluation_view` serves the same examples through the deterministic transform.
    """

    labels: torch.Tensor
    augmented: bool = False

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.get_batch(torch.tensor([i]))[0], int(self.labels[i])

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Images ``indices`` as float32 [B, C, H, W], through this split's own transform."""
        raise NotImplementedError

    def evaluation_view(self) -> LabeledDataset:
        """The same examples through the deterministic evaluation transform (``self`` if that is
        already the case), e.g. to embed the training set when refreshing clusters."""
        raise NotImplementedError


def _check_labels(labels: torch.Tensor, count: int) -> None:
    if labels.dtype != torch.long or labels.dim() != 1 or labels.numel() != count:
        raise ConfigError(
            f"labels must be a LongTensor of shape [{count}], "
            f"got {labels.dtype} {list(labels.shape)}"
        )


class InMemoryDataset(LabeledDataset):
    """A split held as one normalised float32 tensor; a batch is ``images[indices]``.

    Args:
        images: float32 [N, C, H, W], already normalised.
        labels: LongTensor [N] of class indices.
        augment: optional random batch transform applied by ``get_batch`` (training only).
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, *, augment: BatchTransform | None = None
    ) -> None:
        if images.dtype != torch.float32 or images.dim() != 4:
            raise ConfigError(
                f"images must be float32 [N, C, H, W], got {images.dtype} {list(images.shape)}"
            )
        _check_labels(labels, images.shape[0])
        self.images = images
        self.labels = labels
        self.augment = augment
        self.augmented = augment is not None

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        batch = self.images[indices]
        return self.augment(batch) if self.augment is not None else batch

    def evaluation_view(self) -> InMemoryDataset:
        return InMemoryDataset(self.images, self.labels) if self.augmented else self


class FileDataset(LabeledDataset):
    """A split of image files decoded on demand with PIL (always as RGB).

    Args:
        paths: one image file per example.
        labels: LongTensor [N] of class indices.
        transform: deterministic evaluation transform, PIL image -> float32 [C, H, W].
        augment_transform: optional random training transform used instead of ``transform``.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: torch.Tensor,
        *,
        transform: Transform,
        augment_transform: Transform | None = None,
    ) -> None:
        _check_labels(labels, len(paths))
        self.paths = list(paths)
        self.labels = labels
        self.transform = transform
        self.augment_transform = augment_transform
        self.augmented = augment_transform is not None

    def _load(self, i: int) -> torch.Tensor:
        path = self.paths[i]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except FileNotFoundError:
            raise DataNotFoundError(f"image file {path} is missing from its data set") from None
        return (self.augment_transform or self.transform)(rgb)

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        # Decoding is per file; there is no batched JPEG path to vectorise over.
        return torch.stack([self._load(int(i)) for i in indices])

    def evaluation_view(self) -> FileDataset:
        if not self.augmented:
            return self
        return FileDataset(self.paths, self.labels, transform=self.transform)


@dataclass(frozen=True)
class DatasetSplits:
    """A data set's disjoint train/val/test splits with labels ``0..num_classes-1``.

    ``image_shape`` is (channels, height, width) as fed to the model.
    """

    name: str
    train: LabeledDataset
    val: LabeledDataset
    test: LabeledDataset
    num_classes: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class DataRequest:
    """What :func:`load_dataset` was asked for, as handed to a data set's factory.

    Attributes:
        root: the data root, the image folder (``folder``) or the ``.npz`` file (``arrays``);
            None: :func:`default_data_root`.
        download: whether missing files may be fetched; otherwise the network is never touched.
        seed: seed of the stratified split of a set without an official one.
        image_size: side of the square model input; None: the set's native size (in-memory
            sets) or :data:`DEFAULT_PHOTO_SIZE` (photo sets).
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
        kept, cut = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=labels[indices]
        )
    except ValueError as error:  # too few examples of some class to stratify
        raise ConfigError(f"data set {dataset!r} cannot be split by class: {error}") from None
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


class RandomShift:
    """Moves each image of a batch by its own random offset of up to ``max_shift`` pixels in each
    direction, filling with the edge values: light augmentation for small in-memory images."""

    def __init__(self, max_shift: int) -> None:
        if max_shift < 1:
            raise ConfigError(f"max_shift must be at least 1 pixel, got {max_shift}")
        self.max_shift = max_shift

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        size, channels, height, width = batch.shape
        shift = self.max_shift
        padded = F.pad(batch, (shift, shift, shift, shift), mode="replicate")
        offsets = torch.randint(0, 2 * shift + 1, (2, size))
        rows = offsets[0, :, None] + torch.arange(height)
        cols = offsets[1, :, None] + torch.arange(width)
        return padded[
            torch.arange(size)[:, None, None, None],
            torch.arange(channels)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]


def in_memory_splits(
    name: str,
    images: torch.Tensor,
    labels: np.ndarray,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    class_names: tuple[str, ...],
    request: DataRequest,
) -> DatasetSplits:
    """Builds in-memory splits from float images [N, C, H, W] and re-indexed labels.

    Images are resized to ``request.image_size`` (if given) and standardised per channel with the
    mean and standard deviation of the training split only, so no test statistics leak into
    training.
    """
    image_size = request.image_size
    if image_size is not None and images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", antialias=True
        )
    train_images = images[torch.from_numpy(splits[0])]
    mean = train_images.mean(dim=(0, 2, 3), keepdim=True)
    std = train_images.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    images = ((images - mean) / std).contiguous()
    label_tensor = torch.from_numpy(labels)
    channels, height, width = images.shape[1:]
    shift = RandomShift(max(1, round(0.1 * height))) if request.augment else None

    def split(indices: np.ndarray, augment_split: BatchTransform | None) -> InMemoryDataset:
        index = torch.from_numpy(indices)
        return InMemoryDataset(images[index], label_tensor[index], augment=augment_split)

    return DatasetSplits(
        name=name,
        train=split(splits[0], shift),
        val=split(splits[1], None),
        test=split(splits[2], None),
        num_classes=len(class_names),
        image_shape=(channels, height, width),
        class_names=class_names,
    )


def photo_transforms(
    image_size: int, *, pretrained_normalization: bool, augment: bool
) -> tuple[Transform, Transform | None]:
    """The evaluation transform (resize shorter side, centre crop) and, when ``augment``, the
    training transform (random resized crop, horizontal flip), both ending in normalisation."""
    if pretrained_normalization:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    to_tensor = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    evaluation = transforms.Compose(
        [
            transforms.Resize(round(image_size / EVAL_CROP_FRACTION)),
            transforms.CenterCrop(image_size),
            *to_tensor,
        ]
    )
    if not augment:
        return evaluation, None
    training = transforms.Compose(
        [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), *to_tensor]
    )
    return evaluation, training


def file_splits(
    name: str,
    paths: Sequence[Path],
    labels: np.ndarray,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    class_names: tuple[str, ...],
    request: DataRequest,
) -> DatasetSplits:
    """Builds lazily decoded RGB splits from image paths and re-indexed labels."""
    size = request.image_size or DEFAULT_PHOTO_SIZE
    evaluation, training = photo_transforms(
        size, pretrained_normalization=request.pretrained_normalization, augment=request.augment
    )
    label_tensor = torch.from_numpy(labels)

    def split(indices: np.ndarray, augment_transform: Transform | None) -> FileDataset:
        return FileDataset(
            [paths[i] for i in indices.tolist()],
            label_tensor[torch.from_numpy(indices)],
            transform=evaluation,
            augment_transform=augment_transform,
        )

    return DatasetSplits(
        name=name,
        train=split(splits[0], training),
        val=split(splits[1], None),
        test=split(splits[2], None),
        num_classes=len(class_names),
        image_shape=(3, size, size),
        class_names=class_names,
    )


def missing_data(name: str, *, path: Path, layout: str, remedy: str) -> DataNotFoundError:
    """The one-line error for a data set whose files are not where they were looked for."""
    return DataNotFoundError(f"data set {name!r} not found in {path} (expected {layout}); {remedy}")


def download_or_explain(name: str, path: Path, fetch: Callable[[], object], *, source: str) -> None:
    """Runs ``fetch``; any failure (offline, moved URL, bad archive) becomes one clear line."""
    try:
        fetch()
    except Exception as error:  # noqa: BLE001 - every download failure has the same remedy
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataNotFoundError(
            f"could not download data set {name!r} into {path} ({reason}); "
            f"fetch it by hand from {source} and unpack it there"
        ) from None
