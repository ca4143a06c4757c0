"""What a search space is, and the one define-by-run function that every loss's search derives from.

A search space is data: which losses it covers, how many trials each loss gets (every loss of a
space gets the same budget, so the results table compares losses at equal search effort) and the
fixed part of the trial config. What is searched for a loss, and in which ranges where they differ
from :data:`DEFAULT_RANGES`, comes from the loss's catalogue entry (:mod:`repmet.catalogue`); each
loss is searched by its own Optuna study.

Feasibility is built into the sampling order rather than checked afterwards, so an infeasible point
never reaches a trial (the limits are :func:`repmet.config.largest_k` and
:func:`repmet.config.largest_m`):

1. K (clusters or representatives per class) in [1, min(K_MAX, largest K of the data)];
2. M (clusters per batch) in [2, min(M_MAX, J - K + 1, budget // D_MIN)] with J = C * K (for
   class-balanced batches, M classes, also at most C);
3. D (examples per cluster) in [D_MIN, min(D_MAX, budget // M)], so that M * D stays within the
   batch budget.

The baseline of every study is the loss's default configuration (the 2018 code's seed values
M = 12, D = 4, K = 3 where the loss has no other default) with a 1024-d embedding for image
backbones; it is clipped into the feasible region, with a note, when the data cannot hold it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import optuna

from repmet.catalogue import LOSSES, Batches, LossEntry
from repmet.config import MIN_CLUSTERS_PER_BATCH, TrainingConfig, largest_k, largest_m
from repmet.errors import ConfigError
from repmet.registry import Registry

#: Cluster ranges. K and M are further capped by the data, D and M by the batch budget.
K_MAX = 6
M_MIN = MIN_CLUSTERS_PER_BATCH
M_MAX = 16
D_MIN = 2  # Magnet's batch variance (eq. 5) is zero for one-example clusters
D_MAX = 16

#: Embedding sizes: the small CNN on tiny images needs few dimensions, ImageNet backbones many.
SMALL_CNN_EMBEDDINGS = (16, 32, 64, 128)
BACKBONE_EMBEDDINGS = (128, 256, 512, 1024, 2048)
BACKBONE_BASELINE_EMBEDDING = 1024

#: M * D on a CPU: the 2018 baseline (12 * 4 = 48) fits with room for larger clusters.
CPU_BATCH_BUDGET = 64
#: M * D on a GPU, where a bigger batch costs little extra time.
GPU_BATCH_BUDGET = 256

#: Trial settings every space fixes unless the command line overrides them: the bundled digits
#: with the small CNN trains a trial in seconds on a CPU core.
DEFAULT_FIXED: Mapping[str, Any] = MappingProxyType(
    {"dataset": "digits", "model": "small-cnn", "iterations": 500, "eval_every": 50}
)


@dataclass(frozen=True, kw_only=True)
class SpaceContext:
    """What the define-by-run functions need to know about the data and the hardware.

    Args:
        num_classes: C, the number of training classes.
        smallest_class: examples in the smallest training class (caps K).
        model: the embedding network, which decides the embedding sizes searched.
        batch_budget: the largest M * D a trial may use.
    """

    num_classes: int
    smallest_class: int
    model: str = "small-cnn"
    batch_budget: int = CPU_BATCH_BUDGET

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(
                f"num_classes = {self.num_classes} is too small; metric learning needs >= 2 classes"
            )
        if self.smallest_class < 1:
            raise ConfigError(f"smallest_class = {self.smallest_class} must be >= 1")
        if self.batch_budget < M_MIN * D_MIN:
            raise ConfigError(
                f"batch_budget = {self.batch_budget} must be >= {M_MIN * D_MIN} "
                f"(M >= {M_MIN} clusters of D >= {D_MIN} examples)"
            )

    @classmethod
    def from_labels(
        cls, labels: Sequence[int] | np.ndarray, *, model: str, batch_budget: int
    ) -> SpaceContext:
        """The context of a training split, given its labels (any integer array-like)."""
        _, counts = np.unique(np.asarray(labels), return_counts=True)
        return cls(
            num_classes=len(counts),
            smallest_class=int(counts.min()) if len(counts) else 0,
            model=model,
            batch_budget=batch_budget,
        )

    @property
    def k_max(self) -> int:
        """The largest K searched: every class needs K examples to form K clusters."""
        return min(K_MAX, largest_k(self.smallest_class))

    def m_max(self, k: int, *, batches: Batches = "neighbourhood") -> int:
        """The largest M searched for a given K: the seed cluster plus all impostor clusters;
        for class-balanced batches (M different classes), also the number of classes."""
        limit = min(M_MAX, largest_m(self.num_classes, k), self.batch_budget // D_MIN)
        return min(limit, self.num_classes) if batches == "class-balanced" else limit

    def d_max(self, m: int) -> int:
        """The largest D for a given M within the batch budget."""
        return min(D_MAX, self.batch_budget // m)

    @property
    def embedding_choices(self) -> tuple[int, ...]:
        return SMALL_CNN_EMBEDDINGS if self.model == "small-cnn" else BACKBONE_EMBEDDINGS


@dataclass(frozen=True)
class FloatRange:
    """A float searched between ``low`` and ``high`` (on a log scale when ``log``)."""

    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class Choice:
    """A value searched among ``values``."""

    values: tuple[Any, ...]


#: Search ranges of the plain hyperparameters; a catalogue entry's ``ranges`` replaces them for
#: its loss (``(low, high)`` for a :class:`FloatRange`, the values for a :class:`Choice`).
DEFAULT_RANGES: Mapping[str, FloatRange | Choice] = MappingProxyType(
    {
        "normalize_embeddings": Choice((True, False)),
        "lr": FloatRange(1e-4, 1e-2),
        "refresh_every": Choice((0, 25, 50, 100, 200)),
        "sigma": FloatRange(0.1, 2.0),
        "rep_lr": FloatRange(1e-4, 1e-1),
        "alpha": FloatRange(0.05, 5.0),
        "weight_decay": FloatRange(1e-6, 1e-2),
        # The field's losses (each entry names its source): contrastive's positive margin,
        # powerful-benchmarker's [0, 1]; the scales around the papers' and the Reality Check's
        # values (ProxyAnchor 32, SoftTriple 20 and 78, ArcFace 64, multi-similarity beta 50);
        # SoftTriple's gamma from the paper's 0.1 to the Reality Check's 59; multi-similarity's
        # base on the cosine scale.
        "pos_margin": FloatRange(0.0, 1.0, log=False),
        "scale": FloatRange(1.0, 100.0),
        "neg_scale": FloatRange(1.0, 100.0),
        "base": FloatRange(0.0, 1.0, log=False),
        "gamma": FloatRange(0.01, 100.0),
    }
)
#: The order of suggestions (K before M before D: see the module). Every searchable field is here.
PARAMETER_ORDER: tuple[str, ...] = ("k", "m", "d", "embedding_dim", *DEFAULT_RANGES)


def suggest_clusters(
    trial: optuna.Trial, context: SpaceContext, *, batches: Batches = "neighbourhood"
) -> None:
    """K, then M within the clusters (or classes) available, then D within the batch budget
    (see module)."""
    k = trial.suggest_int("k", 1, context.k_max)
    m = trial.suggest_int("m", M_MIN, context.m_max(k, batches=batches))
    trial.suggest_int("d", D_MIN, context.d_max(m))


def loss_range(entry: LossEntry, name: str) -> FloatRange | Choice:
    """The search range of ``name`` for a loss: its entry's, else :data:`DEFAULT_RANGES`'."""
    default = DEFAULT_RANGES[name]
    if name not in entry.ranges:
        return default
    if isinstance(default, FloatRange):
        low, high = entry.ranges[name]
        return FloatRange(float(low), float(high), default.log)
    return Choice(tuple(entry.ranges[name]))


def suggest(trial: optuna.Trial, name: str, searched: FloatRange | Choice) -> None:
    if isinstance(searched, FloatRange):
        trial.suggest_float(name, searched.low, searched.high, log=searched.log)
    else:
        trial.suggest_categorical(name, searched.values)


def define_loss(trial: optuna.Trial, *, entry: LossEntry, context: SpaceContext) -> dict[str, Any]:
    """Suggests the fields ``entry.searched`` in :data:`PARAMETER_ORDER`; returns the fields that
    follow from them: learned representatives live on the unit sphere exactly when the embeddings
    do (the representative losses compare the two by squared distance)."""
    searched = set(entry.searched)
    if {"k", "m", "d"} & searched:
        suggest_clusters(trial, context, batches=entry.batches)
    if "embedding_dim" in searched:
        trial.suggest_categorical("embedding_dim", context.embedding_choices)
    for name in DEFAULT_RANGES:
        if name in searched:
            suggest(trial, name, loss_range(entry, name))
    if entry.learns_representatives and "normalize_embeddings" in trial.params:
        return {"normalize_representatives": trial.params["normalize_embeddings"]}
    return {}


def check_searched(entry: LossEntry) -> None:
    """A loss searches only fields this module knows how to search, and K, M, D together."""
    unknown = sorted(set(entry.searched) - set(PARAMETER_ORDER))
    if unknown:
        raise ConfigError(f"loss {entry.name!r} searches fields without a search range: {unknown}")
    clusters = {"k", "m", "d"} & set(entry.searched)
    if clusters and clusters != {"k", "m", "d"}:
        raise ConfigError(f"loss {entry.name!r} must search k, m and d together (feasibility)")


@dataclass(frozen=True, kw_only=True)
class LossObjective:
    """A loss's define-by-run function bound to its data context, as Optuna calls it.

    The loss name is returned as a constant, so the sampled point is a complete trial config once
    merged with the fixed settings. A plain picklable object (not a closure) because Tune saves
    the searcher, and with it this function, with the standard pickle module.
    """

    loss: str
    context: SpaceContext

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        following = define_loss(trial, entry=LOSSES.get(self.loss), context=self.context)
        return {**following, "loss": self.loss}


@dataclass(frozen=True)
class Baseline:
    """The first point of a study: the searched parameters of the 2018 seed configuration."""

    point: dict[str, Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """A named search space: the losses it searches, a trial budget and fixed settings.

    Args:
        name: registry name (``--space``).
        description: one line for the ``--space`` help of ``study/run.py``.
        covers: the catalogued losses searched, in order; None: every catalogued loss.
        num_samples: default number of trials per loss.
        fixed: trial settings that are not searched (command-line options override them).
    """

    name: str
    description: str
    covers: tuple[str, ...] | None
    num_samples: int
    fixed: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_FIXED)

    def __post_init__(self) -> None:
        if self.covers is not None and not self.covers:
            raise ConfigError(f"search space {self.name!r} has no losses")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples = {self.num_samples} of {self.name!r} must be >= 1")

    @property
    def losses(self) -> tuple[str, ...]:
        """The losses searched, checked against the catalogue (which plugins may extend)."""
        names = tuple(LOSSES.in_order()) if self.covers is None else self.covers
        unknown = [name for name in names if name not in LOSSES]
        if unknown:
            raise ConfigError(f"search space {self.name!r} names unknown losses: {unknown}")
        for name in names:
            check_searched(LOSSES.get(name))
        return names

    def _entry(self, loss: str) -> LossEntry:
        losses = self.losses
        if loss not in losses:
            raise ConfigError(
                f"loss {loss!r} is not in search space {self.name!r}; "
                f"choose from: {', '.join(losses)}"
            )
        return LOSSES.get(loss)

    def objective(self, loss: str, context: SpaceContext) -> LossObjective:
        """The define-by-run function Optuna (or Ray's OptunaSearch) calls per ``loss`` trial."""
        self._entry(loss)
        return LossObjective(loss=loss, context=context)

    def baseline(self, loss: str, context: SpaceContext) -> Baseline:
        """The loss's default configuration restricted to what it searches, clipped to
        feasibility.

        Running the define-by-run function on an :class:`optuna.trial.FixedTrial` records exactly
        which parameters the loss searches, so the point can be enqueued as a study's first trial.
        """
        entry = self._entry(loss)
        candidate, notes = _seed_configuration(loss, context)
        trial = optuna.trial.FixedTrial(candidate)
        define_loss(trial, entry=entry, context=context)
        return Baseline(point=dict(trial.params), notes=tuple(notes))


def _seed_configuration(loss: str, context: SpaceContext) -> tuple[dict[str, Any], list[str]]:
    """The loss's defaults of every searchable parameter, clipped to ``context`` with notes."""
    defaults = TrainingConfig(loss=loss)
    batches = defaults.loss_entry.batches
    seed: dict[str, Any] = {name: getattr(defaults, name) for name in PARAMETER_ORDER}
    if context.model != "small-cnn":
        seed["embedding_dim"] = BACKBONE_BASELINE_EMBEDDING
    notes: list[str] = []

    def clip(name: str, wanted: int, limit: int, why: str) -> int:
        if wanted <= limit:
            return wanted
        notes.append(f"baseline {name} = {wanted} clipped to {limit}: {why}")
        return limit

    seed["k"] = clip(
        "k", defaults.k, context.k_max, f"the smallest class has {context.smallest_class} examples"
    )
    seed["m"] = clip(
        "m",
        defaults.m,
        context.m_max(seed["k"], batches=batches),
        f"{context.num_classes} classes with k = {seed['k']} and a batch budget of "
        f"{context.batch_budget}",
    )
    seed["d"] = clip(
        "d",
        defaults.d,
        context.d_max(seed["m"]),
        f"m * d must stay within the batch budget of {context.batch_budget}",
    )
    return seed, notes


#: All search spaces by name (``--space``).
SEARCH_SPACES: Registry[SearchSpace] = Registry("search space")
