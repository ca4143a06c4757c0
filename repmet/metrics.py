"""The metric catalogue: one entry per metric a run measures, from which every list, label,
direction, worst value and key of the suite derives.

An entry says what a metric is called (its name, caption label and table header), which way is
better, which table it belongs to, what it costs, the value a failed trial reports for it, how its
study keys are spelled (``val/<name>``, ``val/best/<name>``) and how it is computed: a function of
one embedded split (:class:`repmet.measures.SplitData`), which computes what several metrics share
(the supervised rules' distances, the k-nearest neighbours, the k-means clusters) once. This is
the design of pytorch-metric-learning's ``AccuracyCalculator``, whose metric lists all derive from
its ``calculate_*`` methods.

Adding a metric is one :class:`Metric` registered here, or from a module named in
``$REPMET_PLUGINS`` (see :mod:`repmet.catalogue`), plus the function that computes it; the
trainable's results, ``trials.csv``, TensorBoard, Optuna, ``--select`` and the report then show it
with no other change.

This module imports neither torch nor Ray: the study-folder contract and the analysis read it
without paying for either; only :attr:`Metric.compute` touches tensors, when a run calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from repmet.catalogue import Catalogue
from repmet.errors import ConfigError

if TYPE_CHECKING:
    from repmet.measures import SplitData

#: Which way a metric is better: ``min`` (errors) or ``max`` (precisions, mutual information).
Direction = Literal["min", "max"]
#: Which table of the report a metric belongs to: ``error`` (the results table: train (test)
#: errors of the four accuracies), ``retrieval`` (retrieval and clustering) or ``few-shot`` (the
#: unseen-class table of a class-disjoint study).
Table = Literal["error", "retrieval", "few-shot"]
#: Which splits a metric is measured on. ``seen``: splits of the training classes only (the
#: supervised rules measure against the training classes' centroids); ``unseen``: splits of
#: classes the network never saw only (few-shot episodes); ``any``: every split.
Applies = Literal["any", "seen", "unseen"]
#: What a metric costs to measure: ``cheap`` (distances, nearest neighbours) or ``k-means`` (a
#: k-means clustering of the split with restarts, the costly part of a measurement at scale).
Cost = Literal["cheap", "k-means"]

VALIDATION_PREFIX = "val/"
BEST_PREFIX = "val/best/"


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One metric of the suite.

    Attributes:
        name: the key everywhere: ``--select``, ``TrainingConfig.select``, the trainable's results
            (as ``val/<name>``), ``trials.csv`` columns, TensorBoard tags.
        label: how captions and axes call it ("simple error", "MAP@R").
        header: its column header in the report's tables.
        direction: which way is better.
        table: the report table it is a column of.
        cost: what measuring it costs (see :data:`Cost`).
        worst: the value a trial that failed for its own configuration reports: no real
            measurement is worse.
        applies: which splits it is measured on (see :data:`Applies`).
        compute: the metric's value on one embedded split.
        interval: the half-width of its 95% interval on one split, for a metric that is a mean
            over random draws (few-shot episodes); None otherwise.
        shots: S of a few-shot accuracy's episodes; None for another metric.
        summary: one line saying what it is, with its source.
    """

    name: str
    label: str
    header: str
    direction: Direction
    table: Table
    cost: Cost = "cheap"
    applies: Applies = "any"
    worst: float
    compute: Callable[[SplitData], float]
    interval: Callable[[SplitData], float] | None = None
    shots: int | None = None
    summary: str

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ConfigError(f"metric {self.name!r}: direction must be 'min' or 'max'")

    def applies_to(self, *, seen: bool) -> bool:
        """Whether it is measured on a split of the training classes (``seen``) or of unseen
        ones."""
        return self.applies == "any" or (self.applies == "seen") == seen

    @property
    def validation_key(self) -> str:
        """``val/<name>``: its value at one validation step."""
        return f"{VALIDATION_PREFIX}{self.name}"

    @property
    def best_key(self) -> str:
        """``val/best/<name>``: its best value over a trial's steps so far, the objective of the
        search, of early stopping and of Tune's best result when it is the selection metric."""
        return f"{BEST_PREFIX}{self.name}"

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "min"

    @property
    def sign(self) -> float:
        """+1 for ``min``, -1 for ``max``: ``sign * value`` is lower when better."""
        return 1.0 if self.lower_is_better else -1.0

    @property
    def optuna_direction(self) -> str:
        return "minimize" if self.lower_is_better else "maximize"

    def at_least_as_good(self, value: float, other: float) -> bool:
        """Whether ``value`` is as good as ``other`` or better."""
        return self.sign * value <= self.sign * other

    def best_of(self, values: Iterable[float]) -> float:
        return (min if self.lower_is_better else max)(values)


#: Every metric by name; :meth:`Catalogue.in_order` gives the table order.
METRICS: Catalogue[Metric] = Catalogue("metric")


def register_metric(metric: Metric) -> Metric:
    """Adds ``metric`` to :data:`METRICS` (a name can be registered once)."""
    METRICS.add(metric.name, metric)
    return metric


def metrics_for(*, seen: bool) -> list[Metric]:
    """Every metric measured on a split of the training classes (``seen``) or of unseen ones."""
    return [m for m in all_metrics() if m.applies_to(seen=seen)]


def metric(name: str) -> Metric:
    """The metric called ``name`` (:class:`~repmet.errors.UnknownNameError` listing the choices)."""
    return METRICS.get(name)


def all_metrics() -> list[Metric]:
    """Every metric in table order."""
    return [METRICS.get(name) for name in METRICS.in_order()]


def metrics_of(table: Table) -> list[Metric]:
    """The metrics of one report table, in column order."""
    return [m for m in all_metrics() if m.table == table]


def metric_of_key(key: str) -> Metric | None:
    """The metric a study key (``val/<name>`` or ``val/best/<name>``) names; None for another
    key (``train/loss``, ...)."""
    for prefix in (BEST_PREFIX, VALIDATION_PREFIX):
        if key.startswith(prefix) and key.removeprefix(prefix) in METRICS:
            return METRICS.get(key.removeprefix(prefix))
    return None


def label_of(name: str) -> str:
    """How captions call the metric ``name`` (the name itself when it is not registered here,
    e.g. a plugin's metric read without its plugin)."""
    return METRICS.get(name).label if name in METRICS else name


def lower_is_better(name: str) -> bool:
    """Whether lower values of ``name`` are better (errors; an unregistered name: as errors)."""
    return METRICS.get(name).lower_is_better if name in METRICS else True


def is_error(name: str) -> bool:
    """Whether ``name`` is one of the results table's errors (drawn on error axes)."""
    return name in METRICS and METRICS.get(name).table == "error"


def _supervised(rule: str) -> Callable[[SplitData], float]:
    return lambda split: split.supervised_errors[rule]


def _retrieval(name: str) -> Callable[[SplitData], float]:
    return lambda split: split.retrieval[name]


def _clustering(name: str) -> Callable[[SplitData], float]:
    return lambda split: split.clustering[name]


_SUPERVISED = (
    ("simple", "Simple", "nearest centroid's class (spec, accuracy 2)"),
    ("magnet", "Magnet", "soft vote of the L nearest centroids (Magnet paper, eq. 6)"),
    ("repmet", "RepMet", "unnormalised mixture score of all representatives (RepMet, eq. 6)"),
)
for _rule, _header, _what in _SUPERVISED:
    register_metric(
        Metric(
            name=f"error_{_rule}",
            label=f"{_header.lower()} error",
            header=f"{_header} Error",
            direction="min",
            table="error",
            applies="seen",
            worst=1.0,
            compute=_supervised(_rule),
            summary=f"1 - accuracy of the {_what}",
        )
    )
register_metric(
    Metric(
        name="error_unsupervised",
        label="unsup. error",
        header="Unsup. Error",
        direction="min",
        table="error",
        cost="k-means",
        worst=1.0,
        compute=lambda split: split.unsupervised_error,
        summary="1 - accuracy of k-means with C clusters mapped to classes one to one (spec, "
        "accuracy 5)",
    )
)
_RETRIEVAL = (
    ("p_at_1", "P@1", "precision at 1"),
    ("r_precision", "R-Prec", "R-precision"),
    ("map_at_r", "MAP@R", "mean average precision at R"),
)
for _name, _header, _what in _RETRIEVAL:
    register_metric(
        Metric(
            name=_name,
            label=_header,
            header=_header,
            direction="max",
            table="retrieval",
            worst=0.0,
            compute=_retrieval(_name),
            summary=f"{_what} of the split retrieving from itself (Musgrave et al., ECCV 2020)",
        )
    )
for _name, _header, _worst in (("nmi", "NMI", 0.0), ("ami", "AMI", -1.0)):
    register_metric(
        Metric(
            name=_name,
            label=_header,
            header=_header,
            direction="max",
            table="retrieval",
            cost="k-means",
            worst=_worst,
            compute=_clustering(_name),
            summary=f"{_header} of the unsupervised k-means clusters against the labels",
        )
    )

#: The few-shot settings with built-in metrics: N-way (``few_shot_ways``) 1-shot and 5-shot, as
#: RepMet's few-shot evaluation and the prototypical-network literature report them. Another
#: shot count is one more :func:`register_few_shot` call (in a plugin, say).
FEW_SHOT_SHOTS = (1, 5)
_RULES = (("simple", "simple"), ("magnet", "Magnet"), ("repmet", "RepMet"))


def few_shot_name(shots: int, rule: str) -> str:
    return f"fewshot_{shots}shot_{rule}"


def register_few_shot(shots: int) -> list[Metric]:
    """The few-shot accuracies of S-shot episodes under each rule (spec: "Unseen classes")."""
    return [
        register_metric(
            Metric(
                name=few_shot_name(shots, rule),
                label=f"{shots}-shot {label} accuracy",
                header=f"{shots}-shot {label}",
                direction="max",
                table="few-shot",
                applies="unseen",
                worst=0.0,
                compute=lambda split, s=shots, r=rule: split.few_shot(s)[r].mean,
                interval=lambda split, s=shots, r=rule: split.few_shot(s)[r].half_width,
                shots=shots,
                summary=f"mean accuracy of N-way {shots}-shot episodes on unseen classes, "
                f"queries classified by the {label} rule against representatives formed from "
                "the support only (RepMet, CVPR 2019, section 4.2)",
            )
        )
        for rule, label in _RULES
    ]


for _shots in FEW_SHOT_SHOTS:
    register_few_shot(_shots)
