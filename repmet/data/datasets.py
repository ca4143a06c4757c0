"""Labelled image splits and the three-split bundle every data set is served as.

Small sets live in memory as one normalised float tensor (:class:`InMemoryDataset`), so a batch is a
single indexing operation; photo sets are decoded lazily from disk (:class:`FileDataset`).

:meth:`LabeledDataset.for_run` gives a split as a run reads it. On a GPU, an in-memory split moves
its tensor to the GPU once, so a batch never crosses the bus, and a photo split decodes into pinned
memory, so the copy to the GPU does not wait for the host; a photo split decodes the files of a
batch with as many threads as the run has CPU threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from repmet.data.problems import unreadable_data
from repmet.data.splits import SPLIT_NAMES, Partition
from repmet.data.transforms import BatchTransform, Transform
from repmet.errors import ArgumentError, DataError, DataNotFoundError
from repmet.protocols import CLOSED_SET, PROTOCOLS

IMAGE_REMEDY = "replace it with a readable image or remove it"


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

    def for_run(self, device: torch.device, *, threads: int = 1) -> LabeledDataset:
        """The split as a run on ``device`` with ``threads`` CPU threads reads it (``self`` when
        nothing changes); labels stay on the CPU, where the samplers index them."""
        raise NotImplementedError


def _check_labels(labels: torch.Tensor, count: int) -> None:
    if labels.dtype != torch.long or labels.dim() != 1 or labels.numel() != count:
        raise ArgumentError(
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
            raise ArgumentError(
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

    def for_run(self, device: torch.device, *, threads: int = 1) -> InMemoryDataset:
        if self.images.device == torch.device(device):
            return self
        return InMemoryDataset(self.images.to(device), self.labels, augment=self.augment)


class FileDataset(LabeledDataset):
    """A split of image files decoded on demand with PIL (always as RGB).

    A file that is missing or cannot be decoded stops with a one-line error naming it when it is
    first decoded; checking every file up front would read a whole photo set before training.

    Args:
        paths: one image file per example.
        labels: LongTensor [N] of class indices.
        transform: deterministic evaluation transform, PIL image -> float32 [C, H, W].
        augment_transform: optional random training transform used instead of ``transform``.
        decode_threads: threads that decode the files of one batch side by side (PIL releases
            the GIL while it decodes and resizes). Augmented batches are decoded one file after
            the other, since their random transforms must draw in a fixed order.
        pin_memory: return batches in page-locked memory, for asynchronous copies to a GPU.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: torch.Tensor,
        *,
        transform: Transform,
        augment_transform: Transform | None = None,
        decode_threads: int = 1,
        pin_memory: bool = False,
    ) -> None:
        _check_labels(labels, len(paths))
        if decode_threads < 1:
            raise ArgumentError(f"decode_threads must be at least 1, got {decode_threads}")
        self.paths = list(paths)
        self.labels = labels
        self.transform = transform
        self.augment_transform = augment_transform
        self.augmented = augment_transform is not None
        self.decode_threads = decode_threads
        self.pin_memory = pin_memory

    def _load(self, i: int) -> torch.Tensor:
        path = self.paths[i]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except FileNotFoundError:
            raise DataNotFoundError(f"image file {path} is missing from its data set") from None
        except UnidentifiedImageError:  # its own message repeats the path and says no more
            raise DataError(
                f"image file {path} is not in an image format PIL can read; {IMAGE_REMEDY}"
            ) from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise unreadable_data(
                path, what="image file", error=error, remedy=IMAGE_REMEDY
            ) from None
        return (self.augment_transform or self.transform)(rgb)

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        # Decoding is per file; there is no batched JPEG path to vectorise over.
        positions = [int(i) for i in indices]
        if self.decode_threads > 1 and not self.augmented and len(positions) > 1:
            with ThreadPoolExecutor(min(self.decode_threads, len(positions))) as pool:
                images = list(pool.map(self._load, positions))
        else:
            images = [self._load(i) for i in positions]
        batch = torch.stack(images)
        return batch.pin_memory() if self.pin_memory else batch

    def evaluation_view(self) -> FileDataset:
        if not self.augmented:
            return self
        return self._copy(augment_transform=None)

    def for_run(self, device: torch.device, *, threads: int = 1) -> FileDataset:
        cuda = torch.device(device).type == "cuda"
        if (cuda, threads) == (self.pin_memory, self.decode_threads):
            return self
        return self._copy(pin_memory=cuda, decode_threads=threads)

    def _copy(self, **changes: Any) -> FileDataset:
        arguments = {
            "transform": self.transform,
            "augment_transform": self.augment_transform,
            "decode_threads": self.decode_threads,
            "pin_memory": self.pin_memory,
        }
        return FileDataset(self.paths, self.labels, **{**arguments, **changes})


@dataclass(frozen=True)
class DatasetSplits:
    """A data set's disjoint train/val/test splits.

    ``image_shape`` is (channels, height, width) as fed to the model.

    Under ``closed-set`` (the default) every split's labels are ``0..num_classes-1`` and name the
    same classes. Under ``class-disjoint`` the splits hold disjoint classes: the train labels are
    ``0..num_classes-1`` (``num_classes`` counts the training classes only, so representatives,
    the cluster index and the sampler exist for them only), and the val and test labels are each
    re-indexed within their own split, ``0..C_val-1`` and ``0..C_test-1``.

    Attributes:
        class_names: the names of the training labels ``0..num_classes-1``.
        split_classes: per split (``train``, ``val``, ``test``), the name of the class each of
            its labels stands for: ``split_classes["val"][j]`` is the class of validation label
            ``j``. Under ``closed-set`` all three are ``class_names``. Left out, it is filled
            from ``class_names`` (or the label numbers).

    Raises:
        DataError: fewer than two training classes, which leaves metric learning nothing to
            separate.
    """

    name: str
    train: LabeledDataset
    val: LabeledDataset
    test: LabeledDataset
    num_classes: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None = None
    protocol: str = CLOSED_SET
    split_classes: Mapping[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ArgumentError(f"protocol = {self.protocol!r} is not one of {PROTOCOLS}")
        if self.split_classes is None:
            if self.protocol != CLOSED_SET:
                raise ArgumentError(f"a {self.protocol} DatasetSplits needs split_classes")
            names = self.class_names or tuple(str(c) for c in range(self.num_classes))
            object.__setattr__(self, "split_classes", dict.fromkeys(SPLIT_NAMES, names))
        if self.num_classes < 2:
            classes = "class" if self.num_classes == 1 else "classes"
            found = f" ({', '.join(self.class_names)})" if self.class_names else ""
            training = "training " if self.protocol != CLOSED_SET else ""
            raise DataError(
                f"data set {self.name!r} has {self.num_classes} {training}{classes}{found}; "
                "metric learning needs at least 2"
            )


def class_layout(partition: Partition, class_names: Sequence[str]) -> dict[str, Any]:
    """The :class:`DatasetSplits` fields that say which classes the splits of ``partition`` hold,
    given the names of the set's classes ``0..C-1``."""
    split_classes = {
        split: tuple(class_names[c] for c in classes.tolist())
        for split, classes in zip(SPLIT_NAMES, partition.classes, strict=True)
    }
    return {
        "protocol": partition.protocol,
        "num_classes": len(split_classes["train"]),
        "class_names": split_classes["train"],
        "split_classes": split_classes,
    }
