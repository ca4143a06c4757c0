"""One trial end to end: data, network, loss, optimisers, cluster index and sampler, built from a
:class:`~repmet.config.TrialConfig`, trained in chunks of iterations and evaluated on whole splits.

The same object serves the plain command line (``python -m repmet.train``), the Ray Tune trainable
and the report, which is why its state covers everything needed to continue bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repmet.clusters import CLUSTER_SOURCES, ClusterIndex, LossTable
from repmet.config import TrialConfig
from repmet.data import DatasetSplits, LabeledDataset, load_dataset
from repmet.errors import ArgumentError, CheckpointError, ConfigError, TrainingDiverged
from repmet.evaluation import compute_embeddings, evaluate
from repmet.losses import build_loss
from repmet.models import build_model
from repmet.sampling import ClusterBatchSampler

SPLITS: tuple[str, ...] = ("train", "val", "test")
STATE_FORMAT = 1


@dataclass(frozen=True)
class TrainStats:
    """What :meth:`Trial.train` measured over its iterations."""

    iterations: int
    loss: float
    batch_accuracy: float
    seconds: float
    batch_size: int

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(self.iterations, 1)

    @property
    def examples_per_second(self) -> float:
        return self.iterations * self.batch_size / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Evaluation:
    """What :meth:`Trial.evaluation` computed.

    Attributes:
        errors: ``{split: {"simple": e, "magnet": e, "repmet": e, "unsupervised": e}}``.
        embedded: ``{split: (embeddings, labels)}`` of every evaluated split.
        centroids: ``[J, E]`` centroids the errors were measured against.
        centroid_classes: ``[J]`` class of each centroid.
    """

    errors: dict[str, dict[str, float]]
    embedded: dict[str, tuple[torch.Tensor, torch.Tensor]]
    centroids: torch.Tensor
    centroid_classes: torch.Tensor


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a configuration error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' was requested but no CUDA GPU is available here")
    return torch.device(name)


def load_splits(config: TrialConfig) -> DatasetSplits:
    """Loads the data set a configuration names (train, validation and test splits)."""
    return load_dataset(
        config.dataset,
        root=config.data_root,
        download=config.download,
        seed=config.split_seed,
        image_size=config.image_size,
        pretrained_normalization=config.pretrained,
        augment=config.augment,
    )


class Trial:
    """A training run of one configuration.

    Args:
        config: the validated configuration.
        splits: the data set, when the caller already holds it (Ray workers share one copy across
            trials); loaded from ``config`` otherwise.
        state: a :meth:`state_dict` to continue from; the initial cluster index (an embedding pass
            over the training split and k-means) is then not built, since the state replaces it.
    """

    def __init__(
        self,
        config: TrialConfig,
        *,
        splits: DatasetSplits | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.splits = splits if splits is not None else load_splits(config)
        train_labels = self.splits.train.labels
        num_classes = self.splits.num_classes
        config.validate_against(torch.bincount(train_labels, minlength=num_classes).tolist())

        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        self.device = resolve_device(config.device)
        # Network and representative initialisation draw from the global generator; everything
        # afterwards (k-means, sampling) draws from the trial's own generator.
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)

        channels, height, _ = self.splits.image_shape
        self.model = build_model(
            config.model,
            embedding_dim=config.embedding_dim,
            in_channels=channels,
            image_size=height,
            pretrained=config.pretrained,
            weights=config.weights,
            freeze_backbone=config.freeze_backbone,
            normalize=config.normalize_embeddings,
        ).to(self.device)
        self.loss_fn = build_loss(
            config.loss,
            num_classes=num_classes,
            k=config.k,
            embedding_dim=config.embedding_dim,
            alpha=config.alpha,
            sigma=config.sigma,
        ).to(self.device)
        self.optimizer = torch.optim.Adam(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        self.entry = config.loss_entry
        self.clusters = CLUSTER_SOURCES[self.entry.clusters]
        self.rep_optimizer = (
            torch.optim.Adam([self.loss_fn.representatives], lr=config.rep_lr)
            if self.entry.learns_representatives
            else None
        )
        self.loss_table = LossTable(len(self.splits.train))
        self.sampler = ClusterBatchSampler(m=config.m, d=config.d, generator=self.generator)
        self.iteration = 0
        if state is None:
            self.index = self._build_index(initial=True)
        else:
            self.load_state_dict(state)

    # ------------------------------------------------------------------ training

    def train(self, iterations: int) -> TrainStats:
        """Runs ``iterations`` steps: sample a cluster-neighbourhood batch, forward, loss, backward,
        optimiser steps, loss-table update, and the scheduled index refresh."""
        if iterations < 1:
            raise ArgumentError(f"iterations = {iterations} must be >= 1")
        train_set = self.splits.train
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        accuracy_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.model.train()
        self.loss_fn.train()
        start = time.perf_counter()
        for _ in range(iterations):
            centres = self.clusters.centres(self.index, self.loss_fn)
            batch = self.sampler.sample(self.index, self.loss_table, centers=centres)
            images = train_set.get_batch(batch.indices).to(self.device, non_blocking=True)
            labels = train_set.labels[batch.indices].to(self.device, non_blocking=True)
            cluster_ids = batch.cluster_ids.to(self.device, non_blocking=True)
            with self._autocast():
                embeddings = self.model(images)
            output = self.loss_fn(embeddings.float(), labels, cluster_ids)
            if not torch.isfinite(output.loss):
                raise TrainingDiverged(
                    f"training diverged at iteration {self.iteration + 1}: the {self.config.loss} "
                    f"loss is {float(output.loss.detach())}; try a lower learning rate"
                )

            self.optimizer.zero_grad(set_to_none=True)
            if self.rep_optimizer is not None:
                self.rep_optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            self.optimizer.step()
            if self.rep_optimizer is not None:
                self.rep_optimizer.step()
                if self.config.normalize_representatives:
                    self.loss_fn.normalize_representatives_()

            self.loss_table.update(batch.indices, output.per_example.detach().cpu())
            loss_sum += output.loss.detach()
            accuracy_sum += output.batch_accuracy
            self.iteration += 1
            if self.config.refresh_every and self.iteration % self.config.refresh_every == 0:
                self.index = self._build_index(initial=False)
        seconds = time.perf_counter() - start
        return TrainStats(
            iterations=iterations,
            loss=float(loss_sum) / iterations,
            batch_accuracy=float(accuracy_sum) / iterations,
            seconds=seconds,
            batch_size=self.config.batch_size,
        )

    def _build_index(self, *, initial: bool) -> ClusterIndex:
        """Rebuilds the cluster index from fresh training embeddings (spec: "Refresh"), as the
        loss's cluster source says."""
        embeddings, labels = self.embed("train")
        return self.clusters.index(
            embeddings,
            labels,
            loss=self.loss_fn,
            num_classes=self.splits.num_classes,
            k=self.config.k,
            generator=self.generator,
            initial=initial,
        )

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.config.amp and self.device.type == "cuda":
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                yield
        else:
            yield

    # ---------------------------------------------------------------- evaluation

    def dataset(self, split: str) -> LabeledDataset:
        if split not in SPLITS:
            raise ArgumentError(f"split = {split!r} is not one of: {', '.join(SPLITS)}")
        return getattr(self.splits, split)

    def evaluation_dataset(self, split: str) -> LabeledDataset:
        """The split through its deterministic transform (no training augmentation)."""
        return self.dataset(split).evaluation_view()

    def embed(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (CPU, float32) and labels of a whole split, in eval mode without autograd
        and without augmentation."""
        with self._autocast():
            embeddings, labels = compute_embeddings(
                self.model,
                self.evaluation_dataset(split),
                batch_size=self.config.eval_batch_size,
                device=self.device,
            )
        return embeddings.float(), labels

    def centroids(
        self, train_embeddings: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The centroids used for evaluation (spec), as the loss's cluster source says: per-class
        k-means of the current training embeddings for magnet, the learned representatives
        otherwise.

        The k-means here draws from its own generator so that evaluating never changes the course
        of training.
        """
        if self.clusters.needs_training_embeddings and train_embeddings is None:
            train_embeddings, _ = self.embed("train")
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.iteration)
        return self.clusters.evaluation_centroids(
            train_embeddings,
            self.splits.train.labels,
            loss=self.loss_fn,
            num_classes=self.splits.num_classes,
            k=self.config.k,
            generator=generator,
        )

    def evaluate(self, *splits: str) -> dict[str, dict[str, float]]:
        """The simple, Magnet, RepMet and unsupervised errors (in [0, 1]) on each whole split.

        Returns:
            ``{split: {"simple": e, "magnet": e, "repmet": e, "unsupervised": e}}``.
        """
        return self.evaluation(*splits).errors

    def evaluation(self, *splits: str) -> Evaluation:
        """:meth:`evaluate`, keeping the embeddings and centroids it computed for callers that
        also draw them."""
        splits = splits or ("val",)
        embedded = {split: self.embed(split) for split in dict.fromkeys(splits)}
        train_embeddings = embedded["train"][0] if "train" in embedded else None
        centroids, classes = self.centroids(train_embeddings)
        errors = {
            split: evaluate(
                embeddings,
                labels,
                centroids,
                classes,
                variance=self.loss_fn.variance,
                L=self.config.l_nearest,
                seed=self.config.seed,
            )
            for split, (embeddings, labels) in embedded.items()
        }
        return Evaluation(
            errors=errors, embedded=embedded, centroids=centroids, centroid_classes=classes
        )

    # --------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit: weights, representatives, both optimisers,
        the cluster index, the loss table, the running variance, the iteration counter and every
        random generator state."""
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "index": self.index.state_dict(),
            "loss_table": self.loss_table.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.rep_optimizer is not None:
            state["rep_optimizer"] = self.rep_optimizer.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"unsupported trial state format {state.get('format')!r}")
        self.iteration = int(state["iteration"])
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.rep_optimizer is not None:
            self.rep_optimizer.load_state_dict(state["rep_optimizer"])
        self.index = ClusterIndex.from_state_dict(state["index"])
        self.loss_table.load_state_dict(state["loss_table"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the state atomically (a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
            torch.save(self.state_dict(), handle)
        os.replace(handle.name, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        splits: DatasetSplits | None = None,
        **overrides: Any,
    ) -> Trial:
        """Rebuilds a trial from :meth:`save`'s file; ``overrides`` change run-time fields such as
        ``data_root`` or ``device`` (not the hyperparameters)."""
        state = read_state(path)
        config = TrialConfig.from_dict({**state["config"], **overrides})
        return cls(config, splits=splits, state=state)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a saved trial state with ``weights_only=True`` (no arbitrary code is unpickled)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)
