"""What a search space is, and the shared define-by-run pieces the per-family modules compose.

A search space is data: which losses it covers, how many trials each loss gets (every loss of a
space gets the same budget, so the results table compares losses at equal search effort), the
fixed part of the trial config, and one small Optuna define-by-run function per loss. Each loss is
searched by its own Optuna study.

Feasibility is built into the sampling order rather than checked afterwards, so an infeasible point
never reaches a trial:

1. K (clusters or representatives per class) in [1, min(K_MAX, smallest training class)];
2. M (clusters per batch) in [2, min(M_MAX, J - K + 1, budget // D_MIN)] with J = C * K: a batch
   draws its seed cluster plus M - 1 clusters of other classes, and there are (C - 1) * K of those;
3. D (examples per cluster) in [D_MIN, min(D_MAX, budget // M)], so that M * D stays within the
   batch budget.

The baseline of every study is the 2018 code's seed configuration (M = 12, D = 4, K = 3, alpha = 1,
sigma = 0.5, the :class:`repmet.config.TrialConfig` defaults) with a 1024-d embedding for image
backbones; it is clipped into the feasible region, with a note, when the data cannot hold it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import optuna

from repmet.config import LOSS_NAMES, TrialConfig
from repmet.errors import ConfigError
from repmet.registry import Registry

#: Searched ranges. K and M are further capped by the data, D and M by the batch budget.
K_MAX = 6
M_MIN = 2  # the seed cluster needs at least one impostor cluster (Magnet eq. 4 sums over them)
M_MAX = 16
D_MIN = 2  # Magnet's batch variance (eq. 5) is zero for one-example clusters
D_MAX = 16
ALPHA_RANGE = (0.05, 5.0)
SIGMA_RANGE = (0.1, 2.0)
LR_RANGE = (1e-4, 1e-2)
REP_LR_RANGE = (1e-4, 1e-1)
REFRESH_CHOICES = (0, 25, 50, 100, 200)

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
        """The largest K the data can hold: every class needs K examples to form K clusters."""
        return min(K_MAX, self.smallest_class)

    def m_max(self, k: int) -> int:
        """The largest M for a given K: the seed cluster plus all (C - 1) * K impostor clusters."""
        return min(M_MAX, (self.num_classes - 1) * k + 1, self.batch_budget // D_MIN)

    def d_max(self, m: int) -> int:
        """The largest D for a given M within the batch budget."""
        return min(D_MAX, self.batch_budget // m)

    @property
    def embedding_choices(self) -> tuple[int, ...]:
        return SMALL_CNN_EMBEDDINGS if self.model == "small-cnn" else BACKBONE_EMBEDDINGS


class DefineFn(Protocol):
    """An Optuna define-by-run function: suggests values on ``trial`` and returns constants."""

    def __call__(self, trial: optuna.Trial, *, context: SpaceContext) -> dict[str, Any] | None: ...


# Shared building blocks. Each suggests the parameters of one concern, in feasibility order.


def suggest_clusters(trial: optuna.Trial, context: SpaceContext) -> None:
    """K, then M within the clusters available, then D within the batch budget (see module)."""
    k = trial.suggest_int("k", 1, context.k_max)
    m = trial.suggest_int("m", M_MIN, context.m_max(k))
    trial.suggest_int("d", D_MIN, context.d_max(m))


def suggest_network(trial: optuna.Trial, context: SpaceContext) -> None:
    """Embedding size, network learning rate and how often the cluster index is rebuilt."""
    trial.suggest_categorical("embedding_dim", context.embedding_choices)
    trial.suggest_float("lr", *LR_RANGE, log=True)
    trial.suggest_categorical("refresh_every", REFRESH_CHOICES)


def suggest_margin(trial: optuna.Trial) -> None:
    """The margin alpha (Magnet eq. 4, RepMet eq. 5, the cluster-margin ball radius)."""
    trial.suggest_float("alpha", *ALPHA_RANGE, log=True)


def suggest_representatives(trial: optuna.Trial) -> None:
    """sigma of p_nj = exp(-d_nj / (2 sigma^2)) (RepMet eq. 3) and the representatives' own lr."""
    trial.suggest_float("sigma", *SIGMA_RANGE, log=True)
    trial.suggest_float("rep_lr", *REP_LR_RANGE, log=True)


def define_representative_loss(
    trial: optuna.Trial, *, context: SpaceContext
) -> dict[str, Any] | None:
    """A loss with learned representatives and a margin (repmet-v1/v3/cvpr, cluster-margin)."""
    suggest_clusters(trial, context)
    suggest_network(trial, context)
    suggest_representatives(trial)
    suggest_margin(trial)
    return None


@dataclass(frozen=True, kw_only=True)
class LossObjective:
    """A loss's define-by-run function bound to its data context, as Optuna calls it.

    The loss name is returned as a constant, so the sampled point is a complete trial config once
    merged with the fixed settings. A plain picklable object (not a closure) because Tune saves
    the searcher, and with it this function, with the standard pickle module.
    """

    loss: str
    define: DefineFn
    context: SpaceContext

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        constants = self.define(trial, context=self.context) or {}
        return {**constants, "loss": self.loss}


@dataclass(frozen=True)
class Baseline:
    """The first point of a study: the searched parameters of the 2018 seed configuration."""

    point: dict[str, Any]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """A named search space: per-loss define-by-run functions, a trial budget and fixed settings.

    Args:
        name: registry name (``--space``).
        description: one line for the ``--space`` help of ``study/run.py``.
        definitions: loss name -> define-by-run function of that loss's hyperparameters.
        num_samples: default number of trials per loss.
        fixed: trial settings that are not searched (command-line options override them).
    """

    name: str
    description: str
    definitions: Mapping[str, DefineFn]
    num_samples: int
    fixed: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_FIXED)

    def __post_init__(self) -> None:
        if not self.definitions:
            raise ConfigError(f"search space {self.name!r} has no losses")
        unknown = sorted(set(self.definitions) - set(LOSS_NAMES))
        if unknown:
            raise ConfigError(f"search space {self.name!r} names unknown losses: {unknown}")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples = {self.num_samples} of {self.name!r} must be >= 1")

    @property
    def losses(self) -> tuple[str, ...]:
        return tuple(self.definitions)

    def _definition(self, loss: str) -> DefineFn:
        if loss not in self.definitions:
            raise ConfigError(
                f"loss {loss!r} is not in search space {self.name!r}; "
                f"choose from: {', '.join(self.losses)}"
            )
        return self.definitions[loss]

    def objective(self, loss: str, context: SpaceContext) -> LossObjective:
        """The define-by-run function Optuna (or Ray's OptunaSearch) calls per ``loss`` trial."""
        return LossObjective(loss=loss, define=self._definition(loss), context=context)

    def baseline(self, loss: str, context: SpaceContext) -> Baseline:
        """The 2018 seed configuration restricted to what ``loss`` searches, clipped to feasibility.

        Running the define-by-run function on an :class:`optuna.trial.FixedTrial` records exactly
        which parameters the loss searches, so the point can be enqueued as a study's first trial.
        """
        candidate, notes = _seed_configuration(context)
        trial = optuna.trial.FixedTrial(candidate)
        self._definition(loss)(trial, context=context)
        return Baseline(point=dict(trial.params), notes=tuple(notes))


def _seed_configuration(context: SpaceContext) -> tuple[dict[str, Any], list[str]]:
    """The 2018 seed values of every searchable parameter, clipped to ``context`` with notes."""
    defaults = TrialConfig()
    seed: dict[str, Any] = {
        name: getattr(defaults, name)
        for name in ("alpha", "sigma", "lr", "rep_lr", "refresh_every", "embedding_dim")
    }
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
        context.m_max(seed["k"]),
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
