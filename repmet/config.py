"""The configuration of one training run: one loss, one set of hyperparameters, one data set.

:class:`TrainingConfig` is a frozen, keyword-only dataclass. Its field names are the keys of a Ray
Tune trial config and, in kebab case, the flags of ``python -m repmet.train``. Construction
validates every field on its own; :meth:`TrainingConfig.validate_against` checks the combinations
that depend on the data (K against the smallest class, M against the clusters available) before any
training starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from repmet.catalogue import LOSSES, LossEntry
from repmet.errors import ConfigError
from repmet.metrics import METRICS, metric, metrics_for
from repmet.protocols import CLASS_DISJOINT, CLOSED_SET, FOLDS, PROTOCOLS
from repmet.registry import Registry

DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")

#: The fields that decide which data set (and split) a trial loads.
DATA_FIELDS: tuple[str, ...] = (
    "dataset",
    "data_root",
    "download",
    "image_size",
    "split_seed",
    "pretrained",
    "augment",
    "protocol",
    "fold",
)

#: Fields whose default depends on the loss: a catalogue entry's ``defaults`` replace these
#: global ones, and a value given explicitly replaces both.
LOSS_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "normalize_embeddings": False,
        "alpha": 1.0,
        "sigma": 0.5,
        "normalize_representatives": False,
        "refresh_every": 100,
        "lr": 1e-3,
        "rep_lr": 1e-3,
        "weight_decay": 0.0,
        "m": 12,
        "d": 4,
        "pos_margin": 0.0,
        "scale": 1.0,
        "neg_scale": 50.0,
        "base": 0.5,
        "gamma": 0.1,
    }
)

#: Upper bound on M*D: a batch larger than this is almost certainly a typo on the command line.
MAX_BATCH_SIZE = 4096
#: The selection metric of each protocol unless told otherwise: the seed's simple error for the
#: closed-set table, MAP@R on unseen classes ("A Metric Learning Reality Check", ECCV 2020).
DEFAULT_SELECT: Mapping[str, str] = MappingProxyType(
    {CLOSED_SET: "error_simple", CLASS_DISJOINT: "map_at_r"}
)

#: A batch holds its seed cluster and at least one impostor cluster (Magnet eq. 4 sums over them).
MIN_CLUSTERS_PER_BATCH = 2

#: The largest seed: numpy's and Optuna's samplers take seeds in 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
#: The largest value of any other integer field (sizes and counts end up in C ints).
MAX_INT = 2**31 - 1


def largest_k(smallest_class: int) -> int:
    """The most clusters per class the data can hold: every class needs K examples to form K."""
    return smallest_class


def largest_m(num_classes: int, k: int) -> int:
    """The most clusters one batch can draw: its seed cluster plus all (C - 1) * K clusters of the
    other classes, J - K + 1 (spec, "Constraints")."""
    return num_classes * k - k + 1


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Everything that defines one training run; defaults are the 2018 code's seed values where they
    exist (M = 12, D = 4, K = 3, alpha = 1, sigma = 0.5) and CPU-friendly choices elsewhere."""

    # What to train on.
    loss: str = "repmet-v2"
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None
    split_seed: int = 0
    augment: bool = False
    protocol: str = CLOSED_SET
    fold: int = 0

    # The embedding network.
    model: str = "small-cnn"
    pretrained: bool = False
    weights: str | None = None
    freeze_backbone: bool = False
    embedding_dim: int = 64
    normalize_embeddings: bool | None = None  # None: the loss's default (LOSS_DEFAULTS)

    # The loss and the cluster-neighbourhood sampler.
    alpha: float | None = None
    sigma: float | None = None
    m: int | None = None
    d: int | None = None
    k: int = 3
    l_nearest: int = 128
    normalize_representatives: bool | None = None
    refresh_every: int | None = None
    # The field's losses (repmet.losses.field): their hyperparameters besides the margin alpha.
    pos_margin: float | None = None
    scale: float | None = None
    neg_scale: float | None = None
    base: float | None = None
    gamma: float | None = None

    # Optimisation.
    lr: float | None = None
    rep_lr: float | None = None
    weight_decay: float | None = None
    iterations: int = 500
    eval_every: int = 100
    kmeans_every: int = 1
    eval_batch_size: int = 512
    select: str | None = None

    # Few-shot episodes on unseen classes (the class-disjoint protocol).
    few_shot_ways: int = 5
    few_shot_queries: int = 15
    few_shot_episodes: int = 1000
    few_shot_val_episodes: int = 200

    # Execution.
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    num_threads: int | None = None

    def __post_init__(self) -> None:
        _require_choice("loss", self.loss, LOSSES.in_order())
        self._resolve_loss_defaults()
        _require_choice("device", self.device, DEVICES)
        _require_choice("protocol", self.protocol, PROTOCOLS)
        _require_positive_int("fold", self.fold, minimum=0, maximum=FOLDS - 1)
        self._resolve_select()
        _require_positive_int(
            "few_shot_ways", self.few_shot_ways, minimum=2, why="an episode tells classes apart"
        )
        for name in ("few_shot_queries", "few_shot_episodes", "few_shot_val_episodes"):
            _require_positive_int(name, getattr(self, name))
        _require_positive_int("embedding_dim", self.embedding_dim)
        _require_positive_int(
            "m", self.m, minimum=MIN_CLUSTERS_PER_BATCH, why="a batch needs an impostor cluster"
        )
        _require_positive_int("d", self.d)
        _require_positive_int("k", self.k)
        _require_positive_int("l_nearest", self.l_nearest)
        _require_positive_int("iterations", self.iterations)
        _require_positive_int("eval_every", self.eval_every)
        _require_positive_int("kmeans_every", self.kmeans_every)
        _require_positive_int("eval_batch_size", self.eval_batch_size)
        _require_positive_int("refresh_every", self.refresh_every, minimum=0, why="0 means never")
        _require_positive_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        _require_positive_int("split_seed", self.split_seed, minimum=0, maximum=MAX_SEED)
        if self.image_size is not None:
            _require_positive_int("image_size", self.image_size)
        if self.num_threads is not None:
            _require_positive_int("num_threads", self.num_threads)
        _require_finite("alpha", self.alpha, minimum=0.0, inclusive=True)
        _require_finite("sigma", self.sigma, minimum=0.0, inclusive=False)
        _require_finite("lr", self.lr, minimum=0.0, inclusive=False)
        _require_finite("rep_lr", self.rep_lr, minimum=0.0, inclusive=False)
        _require_finite("weight_decay", self.weight_decay, minimum=0.0, inclusive=True)
        _require_finite("pos_margin", self.pos_margin, minimum=0.0, inclusive=True)
        _require_finite("scale", self.scale, minimum=0.0, inclusive=False)
        _require_finite("neg_scale", self.neg_scale, minimum=0.0, inclusive=False)
        _require_finite("base", self.base, minimum=0.0, inclusive=True)
        _require_finite("gamma", self.gamma, minimum=0.0, inclusive=False)
        if self.m * self.d > MAX_BATCH_SIZE:
            raise ConfigError(
                f"m * d = {self.m} * {self.d} = {self.m * self.d} exceeds the batch limit "
                f"{MAX_BATCH_SIZE}"
            )
        if self.pretrained and self.model == "small-cnn":
            raise ConfigError("pretrained=True needs an ImageNet backbone (resnet18 or resnet50)")

    def _resolve_select(self) -> None:
        """The selection metric: as given, else the protocol's default (the simple error of a
        closed-set run; MAP@R under the class-disjoint protocol, the Reality Check's choice). A
        metric that the validation split does not have is refused."""
        if self.select is None:
            object.__setattr__(self, "select", DEFAULT_SELECT[self.protocol])
        _require_choice("select", self.select, METRICS.in_order())
        seen = self.protocol == CLOSED_SET
        if not metric(self.select).applies_to(seen=seen):
            split = "training" if seen else "unseen"
            raise ConfigError(
                f"select = {self.select!r} is not measured on the validation split of a "
                f"{self.protocol} run (its classes are {split} classes); choose one of: "
                + ", ".join(m.name for m in metrics_for(seen=seen))
            )

    def _resolve_loss_defaults(self) -> None:
        """Fills every field left at None with the loss's default, else the global one: the
        stored configuration always says what was trained."""
        entry = self.loss_entry
        unknown = sorted(set(entry.defaults) - set(LOSS_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"loss {self.loss!r} has defaults for fields without a per-loss default: {unknown}"
            )
        for name, fallback in LOSS_DEFAULTS.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, entry.defaults.get(name, fallback))

    @property
    def loss_entry(self) -> LossEntry:
        """The catalogue entry of the loss."""
        return LOSSES.get(self.loss)

    @property
    def batch_size(self) -> int:
        """N = M * D rows per batch."""
        return self.m * self.d

    def validate_against(
        self, class_counts: Sequence[int], class_names: Sequence[str] | None = None
    ) -> None:
        """Checks the data-dependent limits of the spec (K <= smallest class, M <= J - K + 1).

        A class smaller than K is refused rather than given fewer clusters: the cluster index,
        the representatives and every loss use the class-major layout (cluster j of class
        j // K), which needs K clusters in every class. A cluster smaller than D needs no check:
        the sampler draws its D rows with replacement.

        Args:
            class_counts: number of training examples of each class, indexed by class.
            class_names: the classes' names, for the message (default: their indices).

        Raises:
            ConfigError: naming the field, its value and the limit (and the class, for K).
        """
        num_classes = len(class_counts)
        if num_classes < 2:
            raise ConfigError(
                f"the training split has {num_classes} class; metric learning needs at least 2"
            )
        smallest = min(class_counts)
        if self.k > largest_k(smallest):
            cls = list(class_counts).index(smallest)
            name = f"class {cls}" if class_names is None else f"class {cls} ({class_names[cls]})"
            examples = "example" if smallest == 1 else "examples"
            raise ConfigError(
                f"k = {self.k} exceeds the smallest training class ({name} has {smallest} "
                f"{examples}); use k <= {largest_k(smallest)}"
            )
        if self.loss_entry.batches == "class-balanced" and self.m > num_classes:
            raise ConfigError(
                f"m = {self.m} exceeds the {num_classes} training classes: a class-balanced batch "
                f"holds d examples of each of m different classes; use m <= {num_classes}"
            )
        limit = largest_m(num_classes, self.k)
        if self.m > limit:
            raise ConfigError(
                f"m = {self.m} exceeds the clusters available for one batch: with {num_classes} "
                f"classes and k = {self.k} at most J - k + 1 = {limit} clusters can be drawn"
            )

    def data_key(self) -> tuple[Any, ...]:
        """The values of the fields that decide which data set is loaded: two configurations
        with equal keys can share one loaded copy."""
        return tuple(getattr(self, name) for name in DATA_FIELDS)

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain, JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """Builds a config from a mapping such as a Ray Tune trial config.

        Unknown keys raise :class:`ConfigError` rather than being ignored, so that a typo in a
        search space cannot silently fall back to a default.
        """
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown configuration fields: {', '.join(unknown)}")
        return cls(**{key: _plain(value) for key, value in values.items()})


def _plain(value: Any) -> Any:
    """numpy scalars (as Optuna and Ray hand them out) become Python numbers."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def _require_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} = {value!r} is not one of: {', '.join(choices)}")


def _require_positive_int(
    name: str, value: object, *, minimum: int = 1, maximum: int = MAX_INT, why: str = ""
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} = {value!r} must be an integer")
    if value < minimum:
        reason = f" ({why})" if why else ""
        raise ConfigError(f"{name} = {value} must be >= {minimum}{reason}")
    if value > maximum:
        raise ConfigError(f"{name} = {value} must be <= {maximum}")


def _require_finite(name: str, value: object, *, minimum: float, inclusive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} = {value!r} must be a finite number")
    if value < minimum or (value == minimum and not inclusive):
        relation = ">=" if inclusive else ">"
        raise ConfigError(f"{name} = {value} must be {relation} {minimum:g}")


#: One line per field, shown by ``--help`` of the command-line tools.
FIELD_HELP: dict[str, str] = {
    "loss": "loss to train (a name of the loss catalogue, repmet.catalogue)",
    "dataset": "data set name (digits, digits-distorted, glyphs, mnist, fashion-mnist, "
    "flowers102, oxford-pet, stanford-dogs, cub200, cars196, sop, folder, arrays)",
    "data_root": "where the data set lives (default: $REPMET_DATA_ROOT or ./data)",
    "download": "let torchvision download a missing data set",
    "image_size": "side of the square input images (default: native size, 224 for photo sets)",
    "split_seed": "seed of the train/validation/test split (kept fixed across trials)",
    "protocol": "closed-set (every class in every split) or class-disjoint (train, validation "
    "and test classes disjoint: the official class split, else the first half of the sorted "
    "classes for train+val, the rest for test)",
    "fold": f"class-disjoint only: which quarter (0..{FOLDS - 1}) of the train+val classes "
    "validates",
    "augment": "random training augmentation (shifts of in-memory images; random resized crops "
    "and flips of photos)",
    "model": "embedding network: small-cnn, resnet18, resnet50",
    "pretrained": "start the backbone from ImageNet weights",
    "weights": "file with backbone weights (a torchvision state_dict)",
    "freeze_backbone": "train only the embedding layer",
    "embedding_dim": "embedding size E",
    "normalize_embeddings": "L2-normalise embeddings (default: the loss's)",
    "alpha": "margin alpha of the loss (ArcFace: in degrees; multi-similarity: its miner's "
    "epsilon)",
    "sigma": "sigma of the RepMet-style and cluster-margin losses",
    "m": "M: clusters per batch (class-balanced batches: classes)",
    "d": "D: examples per cluster (class-balanced batches: per class)",
    "k": "K: clusters (representatives) per class",
    "l_nearest": "L: nearest centroids kept by the Magnet eq. 6 classifier",
    "normalize_representatives": "renormalise representatives to unit length after each step",
    "pos_margin": "positive margin of the contrastive loss",
    "scale": "scale of the field's losses: ProxyAnchor's alpha, SoftTriple's lambda, ArcFace's "
    "s, multi-similarity's alpha",
    "neg_scale": "multi-similarity's beta (scale of the negative pairs)",
    "base": "multi-similarity's lambda (base similarity)",
    "gamma": "SoftTriple's gamma (temperature of the softmax over a class's centres)",
    "refresh_every": "rebuild the cluster index every this many iterations (0 = never)",
    "lr": "Adam learning rate of the network",
    "rep_lr": "Adam learning rate of the loss's own learned parameters: representatives, "
    "proxies, centres, class weights",
    "weight_decay": "weight decay of the network",
    "iterations": "training iterations",
    "eval_every": "evaluate on the validation split every this many iterations",
    "kmeans_every": "measure the k-means-based validation metrics (unsupervised error, NMI, "
    "AMI) at every this many validations, and at the last (the selection metric: always)",
    "eval_batch_size": "batch size of evaluation and index refresh forward passes",
    "few_shot_ways": "N: classes per few-shot episode (class-disjoint protocol)",
    "few_shot_queries": "Q: query examples per class of a few-shot episode",
    "few_shot_episodes": "few-shot episodes of the test split (each shot count)",
    "few_shot_val_episodes": "few-shot episodes of the validation split, at every validation",
    "select": "validation metric that selects the step standing for the run (default: "
    "error_simple; map_at_r under the class-disjoint protocol): "
    # the built-in metrics: importing plugins here would import them while this module loads
    + ", ".join(Registry.in_order(METRICS))
    + " (errors: lower is better; the others: higher)",
    "seed": "seed of initialisation and batch sampling",
    "device": "cpu, cuda or auto",
    "amp": "bfloat16 mixed precision on GPU",
    "num_threads": "torch CPU threads (default: torch's choice)",
}
