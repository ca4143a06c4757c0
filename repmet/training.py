"""One training run: data, network, loss, optimisers, cluster index and sampler, wired from a
:class:`~repmet.config.TrainingConfig`, trained in chunks of iterations and measured on whole
splits. :mod:`repmet.schedule` decides when to train and when to measure.

The same object serves the plain command line (``python -m repmet.train``), the Ray Tune trainable
and the report, which is why its state covers everything needed to continue bit for bit on CPU.
A run never changes the process's random state or thread count: it draws from its own generators,
and the entry points set the threads (:func:`use_threads`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repmet.clusters import (
    CLUSTER_SOURCES,
    ClusterIndex,
    EvaluationCentroids,
    LossTable,
    learned_centre_reference,
)
from repmet.config import TrainingConfig
from repmet.data import DatasetSplits, LabeledDataset, load_dataset
from repmet.errors import ArgumentError, CheckpointError, ConfigError, TrainingDiverged
from repmet.evaluation import compute_embeddings
from repmet.losses import build_loss
from repmet.measures import FewShotSettings, Reference, SplitData
from repmet.metrics import Metric, all_metrics, metric, metrics_of
from repmet.models import build_model
from repmet.protocols import CLOSED_SET
from repmet.sampling import BATCH_SAMPLERS

SPLITS: tuple[str, ...] = ("train", "val", "test")
#: The layout of a saved run state. Format 1 left ``normalize_embeddings`` at None for "the
#: network's default" (ResNets normalised, the small CNN did not); format 2 stores what was used.
STATE_FORMAT = 2


@dataclass(frozen=True)
class TrainStats:
    """What :meth:`TrainingRun.train` measured over its iterations."""

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
class BestStep:
    """The validation step of a run with the best value of its selection metric so far (see
    :mod:`repmet.schedule`)."""

    iteration: int
    value: float


@dataclass(frozen=True)
class Measurement:
    """What :meth:`TrainingRun.measure` computed.

    Attributes:
        metrics: ``{split: {name: value}}``, by the names of :mod:`repmet.metrics`, in catalogue
            order: the metrics that apply to the split (supervised errors on splits of the
            training classes, few-shot accuracies on splits of unseen classes).
        intervals: ``{split: {name: half-width}}`` of the 95% interval of the metrics that have
            one (few-shot accuracies).
        embedded: ``{split: (embeddings, labels)}`` of every evaluated split.
        centroids: ``[J, E]`` centroids the errors were measured against.
        centroid_classes: ``[J]`` class of each centroid.
        centre_metrics: ``{split: {name: value}}`` of the results table's errors against the
            loss's learned centres (proxies, SoftTriple centres, ArcFace class weights) used as
            representatives, with a variance fitted around them, on the splits of the training
            classes; None unless asked for and the loss has such centres.
    """

    metrics: dict[str, dict[str, float]]
    intervals: dict[str, dict[str, float]]
    embedded: dict[str, tuple[torch.Tensor, torch.Tensor]]
    centroids: torch.Tensor
    centroid_classes: torch.Tensor
    centre_metrics: dict[str, dict[str, float]] | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a configuration error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' was requested but no CUDA GPU is available here")
    return torch.device(name)


def use_threads(config: TrainingConfig) -> None:
    """Sets torch's CPU thread count to the configuration's (entry points call this: a thread
    count is a property of the process, not of one run)."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)


#: The data sets loaded by :func:`load_splits` with ``cached=True``: one at a time, since a Ray
#: worker runs the trials of one study and the report evaluates the losses of one study.
_loaded: dict[tuple[Any, ...], DatasetSplits] = {}


def load_splits(config: TrainingConfig, *, cached: bool = False) -> DatasetSplits:
    """Loads the data set a configuration names (train, validation and test splits); with
    ``cached``, the copy loaded last when the data fields are the same."""
    key = config.data_key()
    if cached and key in _loaded:
        return _loaded[key]
    splits = load_dataset(
        config.dataset,
        root=config.data_root,
        download=config.download,
        seed=config.split_seed,
        image_size=config.image_size,
        pretrained_normalization=config.pretrained,
        augment=config.augment,
        protocol=config.protocol,
        fold=config.fold,
    )
    if cached:
        _loaded.clear()
        _loaded[key] = splits
    return splits


class TrainingRun:
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
        config: TrainingConfig,
        *,
        splits: DatasetSplits | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.splits = splits if splits is not None else load_splits(config)
        train_labels = self.splits.train.labels
        num_classes = self.splits.num_classes
        config.validate_against(
            torch.bincount(train_labels, minlength=num_classes).tolist(), self.splits.class_names
        )
        self._check_episodes()

        self.device = resolve_device(config.device)
        self._datasets: dict[str, LabeledDataset] = {}
        # k-means and sampling draw from the run's generator. Initialisation and augmentation
        # draw from torch's global generator (nn.init and torchvision know no other), so the run
        # keeps a private copy of the global state and swaps it in while it uses it.
        self.generator = torch.Generator().manual_seed(config.seed)
        with self._own_global_random_state(seed=config.seed):
            self.model, self.loss_fn = self._build_networks()
        self.optimizer = torch.optim.Adam(
            [p for p in self.model.parameters() if p.requires_grad]
            + self.loss_fn.network_parameters(),
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        self.entry = config.loss_entry
        self.clusters = CLUSTER_SOURCES[self.entry.clusters]
        own = self.loss_fn.own_parameters()
        self.rep_optimizer = torch.optim.Adam(own, lr=config.rep_lr) if own else None
        self.loss_table = LossTable(len(self.splits.train))
        self.sampler = BATCH_SAMPLERS[self.entry.batches](
            m=config.m, d=config.d, generator=self.generator
        )
        self.iteration = 0
        self.best: BestStep | None = None
        if state is None:
            self.index = self._build_index(initial=True)
        else:
            self.load_state_dict(state)

    def _build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        config = self.config
        channels, height, _ = self.splits.image_shape
        model = build_model(
            config.model,
            embedding_dim=config.embedding_dim,
            in_channels=channels,
            image_size=height,
            pretrained=config.pretrained,
            weights=config.weights,
            freeze_backbone=config.freeze_backbone,
            normalize=config.normalize_embeddings,
        ).to(self.device)
        loss = build_loss(
            config.loss,
            num_classes=self.splits.num_classes,
            k=config.k,
            embedding_dim=config.embedding_dim,
            alpha=config.alpha,
            sigma=config.sigma,
            **{name: getattr(config, name) for name in config.loss_entry.options},
        ).to(self.device)
        return model, loss

    @contextlib.contextmanager
    def _own_global_random_state(self, *, seed: int | None = None) -> Iterator[None]:
        """Runs the block on the run's copy of torch's global random state (seeded afresh when
        ``seed`` is given) and keeps what the block left; the process's state is restored."""
        cuda = self.device.type == "cuda"
        devices = [self.device.index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(self._global_state)
                if cuda:
                    torch.cuda.set_rng_state(self._global_cuda_state, self.device)
            yield
            self._global_state = torch.get_rng_state()
            self._global_cuda_state = torch.cuda.get_rng_state(self.device) if cuda else None

    # ------------------------------------------------------------------ training

    def train(self, iterations: int) -> TrainStats:
        """Runs ``iterations`` steps: sample a cluster-neighbourhood batch, forward, loss, backward,
        optimiser steps, loss-table update, and the scheduled index refresh."""
        if iterations < 1:
            raise ArgumentError(f"iterations = {iterations} must be >= 1")
        with self._own_global_random_state():
            return self._train(iterations)

    def _train(self, iterations: int) -> TrainStats:
        train_set = self.dataset("train")
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
                if self.config.normalize_representatives and self.entry.learns_representatives:
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
        """A split as this run reads it (:meth:`LabeledDataset.for_run`: on a GPU, in-memory data
        lives there and photo batches are pinned)."""
        if split not in SPLITS:
            raise ArgumentError(f"split = {split!r} is not one of: {', '.join(SPLITS)}")
        if split not in self._datasets:
            self._datasets[split] = getattr(self.splits, split).for_run(
                self.device, threads=torch.get_num_threads()
            )
        return self._datasets[split]

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

    def centroids(self, train_embeddings: torch.Tensor | None = None) -> EvaluationCentroids:
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

    def measure(
        self, *splits: str, metrics: Sequence[Metric] | None = None, centres: bool = False
    ) -> Measurement:
        """Embeds each whole split (validation by default) and measures it by ``metrics`` (every
        metric of :mod:`repmet.metrics` by default), keeping the embeddings and centroids for
        callers that also draw them; with ``centres``, also measures the supervised errors
        against the loss's learned centres, for a loss that has some (proxies, SoftTriple
        centres, ArcFace class weights)."""
        splits = splits or ("val",)
        metrics = all_metrics() if metrics is None else metrics
        embedded = {split: self.embed(split) for split in dict.fromkeys(splits)}
        train_embeddings = embedded["train"][0] if "train" in embedded else None
        learned = self.loss_fn.learned_centres() if centres else None
        if learned is not None and train_embeddings is None:
            train_embeddings, _ = self.embed("train")
        centroids = self.centroids(train_embeddings)
        variance = self.loss_fn.variance
        if variance is None:
            variance = centroids.fitted_variance
        reference = Reference(
            centroids=centroids.centroids,
            classes=centroids.classes,
            variance=variance,
            l_nearest=self.config.l_nearest,
        )
        centre_reference = None
        if learned is not None:
            assert train_embeddings is not None  # embedded above
            fitted = learned_centre_reference(
                train_embeddings, self.splits.train.labels, *(t.float().cpu() for t in learned)
            )
            assert fitted.fitted_variance is not None
            centre_reference = Reference(
                centroids=fitted.centroids,
                classes=fitted.classes,
                variance=fitted.fitted_variance,
                l_nearest=self.config.l_nearest,
            )
        values, intervals, centre_values = {}, {}, {}
        for split, (embeddings, labels) in embedded.items():
            seen = self.holds_training_classes(split)
            data = SplitData(
                embeddings,
                labels,
                reference=reference if seen else None,
                seed=self.config.seed,
                few_shot=None if seen else self.few_shot_settings(split, variance=variance),
            )
            measured = [m for m in metrics if m.applies_to(seen=seen)]
            values[split] = data.measure(measured)
            intervals[split] = data.intervals(measured)
            if centre_reference is not None and seen:
                against_centres = SplitData(
                    embeddings, labels, reference=centre_reference, seed=self.config.seed
                )
                supervised = [m for m in measured if m.applies == "seen"]
                centre_values[split] = {
                    **against_centres.measure(supervised),
                    # k-means of the split, the same whatever the centres
                    **{m.name: values[split][m.name] for m in measured if m.table == "error"
                       and m.applies != "seen"},
                }  # fmt: skip
        return Measurement(
            metrics=values,
            intervals=intervals,
            embedded=embedded,
            centroids=centroids.centroids,
            centroid_classes=centroids.classes,
            centre_metrics=centre_values if centre_reference is not None else None,
        )

    def _check_episodes(self) -> None:
        """Under the class-disjoint protocol, refuses before any training a validation or test
        split that cannot hold the few-shot episodes of every shot count."""
        config = self.config
        shots = max((m.shots for m in metrics_of("few-shot") if m.shots is not None), default=0)
        if self.splits.protocol == CLOSED_SET or shots == 0:
            return
        needed = shots + config.few_shot_queries
        for split in ("val", "test"):
            sizes = torch.bincount(getattr(self.splits, split).labels)
            enough = int((sizes >= needed).sum())
            if enough < config.few_shot_ways:
                raise ConfigError(
                    f"the {split} split has {enough} classes with at least {needed} examples, "
                    f"but {config.few_shot_ways}-way {shots}-shot episodes of "
                    f"{config.few_shot_queries} queries need {config.few_shot_ways}; lower "
                    "few_shot_ways or few_shot_queries, or use a set with more classes"
                )

    def holds_training_classes(self, split: str) -> bool:
        """Whether ``split`` holds the training classes (every split of a closed-set run; the
        train split only under the class-disjoint protocol)."""
        return split == "train" or self.splits.protocol == CLOSED_SET

    def few_shot_settings(self, split: str, *, variance: float) -> FewShotSettings:
        """How the few-shot episodes of an unseen-class split are drawn and scored
        (:meth:`FewShotSettings.of`)."""
        return FewShotSettings.of(self.config, split, variance=variance)

    def record_validation(self, value: float) -> BestStep:
        """Notes the selection metric measured at the current iteration; returns the best step so
        far (the latest of equal values, as a study keeps the latest of equal checkpoints)."""
        if self.best is None or metric(self.config.select).at_least_as_good(value, self.best.value):
            self.best = BestStep(iteration=self.iteration, value=value)
        return self.best

    # --------------------------------------------------------------------- state

    def measured_state(self) -> dict[str, Any]:
        """What a measurement reads: the iteration, the network and the loss's state (its
        representatives or running variance). Not enough to train on; see :meth:`state_dict`."""
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
        }

    def load_measured_state(self, state: dict[str, Any]) -> None:
        """Puts back a :meth:`measured_state`, to measure the run as it was then."""
        self.iteration = int(state["iteration"])
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])

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
            "torch_rng": self._global_state,
            "best": dataclasses.asdict(self.best) if self.best is not None else None,
        }
        if self.rep_optimizer is not None:
            state["rep_optimizer"] = self.rep_optimizer.state_dict()
        if self._global_cuda_state is not None:
            state["cuda_rng"] = self._global_cuda_state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CheckpointError(
                f"run state format {state.get('format')!r}; read saved states with read_state"
            )
        self.iteration = int(state["iteration"])
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.rep_optimizer is not None:
            self.rep_optimizer.load_state_dict(state["rep_optimizer"])
        self.index = ClusterIndex.from_state_dict(state["index"])
        self.loss_table.load_state_dict(state["loss_table"])
        self.generator.set_state(state["generator"])
        self._global_state = state["torch_rng"]
        best = state.get("best")  # format 1 did not record it
        self.best = (
            BestStep(iteration=int(best["iteration"]), value=float(best["value"])) if best else None
        )
        if self.device.type == "cuda" and "cuda_rng" in state:
            cuda_state = state["cuda_rng"]
            # Format 1 stored the states of every visible GPU.
            if isinstance(cuda_state, list):
                cuda_state = cuda_state[self.device.index or 0]
            self._global_cuda_state = cuda_state

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the state atomically (a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        os.close(descriptor)
        temporary = Path(name)
        try:
            with temporary.open("wb") as handle:
                torch.save(self.state_dict(), handle)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        splits: DatasetSplits | None = None,
        **overrides: Any,
    ) -> TrainingRun:
        """Rebuilds a run from :meth:`save`'s file; ``overrides`` change run-time fields such as
        ``data_root`` or ``device`` (not the hyperparameters)."""
        state = read_state(path)
        config = TrainingConfig.from_dict({**state["config"], **overrides})
        return cls(config, splits=splits, state=state)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads a saved run state with ``weights_only=True`` (no arbitrary code is unpickled),
    upgraded to the current format.

    Raises:
        CheckpointError: a missing, truncated or foreign file, or a format this version does not
            know.
    """
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
        # torch.load reports a truncated or foreign file as one of these
        raise CheckpointError(f"cannot read the run state {path}: {error}") from None
    if not isinstance(state, dict) or state.get("format") not in (1, STATE_FORMAT):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a run state of a known format (found {found!r})")
    if state["format"] == 1:
        config = dict(state["config"])
        if config.get("normalize_embeddings") is None:
            config["normalize_embeddings"] = config.get("model", "small-cnn") != "small-cnn"
        state = {**state, "config": config, "format": STATE_FORMAT}
    return state
