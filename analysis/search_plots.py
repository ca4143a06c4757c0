"""Views of the Optuna searches (``optuna.db``): the search history and parameter importances of
every loss, and a slice plot and parallel coordinates per loss, drawn with matplotlib in the
report's style (values in percent, the study's metric in the labels, readable at real size).

The database only feeds these figures. It is opened read-only and read once; a file that is
missing, damaged or from an incompatible Optuna costs the report these views, with one line saying
which and why, never its tables. The figures are drawn from the trials read, not from the file.

Why not Optuna's own plots (``optuna.visualization.matplotlib``, as of Optuna 5.0): they draw
only COMPLETE trials. Passing the PRUNED ones as COMPLETE copies at the value they reached would put
them in, but they could then no longer be told apart (and with ASHA most trials are pruned): the
history's rings for trials stopped early, its crosses for failed trials and the slices' ring on
the best trial would be lost. Each plot also makes a figure of its own for one study, so the losses
cannot share one figure and one objective axis, and it draws the raw objective at Optuna's size and
with its labels, not percent (symmetric-log when errors span decades) at the page's real size;
those plots are still marked experimental. What Optuna computes is used as it is: the trials from
its storage and the importances from its fANOVA evaluator
(:func:`optuna.importance.get_param_importances`); only the drawing is ours.
"""

from __future__ import annotations

import math
import sqlite3
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
from matplotlib import pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from analysis.plots import (
    BEST_COLOUR,
    LOG_SPAN,
    MAX_WIDTH,
    PERCENT,
    Picture,
    Plots,
    figure_style,
    metric_name,
    panel_grid,
    panel_title,
    percent_axis,
    save,
)
from analysis.tables import loss_label
from repmet.formatting import format_value
from repmet.metrics import is_error, lower_is_better

#: Parameter importances from fewer completed trials than this are noise: the view is skipped.
MIN_IMPORTANCE_TRIALS = 10
#: What reading a damaged or foreign SQLite file through Optuna can raise: SQLite's and
#: SQLAlchemy's errors (wrapped by Optuna as StorageInternalError), Optuna's schema-version check
#: (RuntimeError), and decoding garbage that SQLite returned without complaint (ValueError,
#: KeyError, TypeError).
UNREADABLE = (
    optuna.exceptions.OptunaError,
    sqlalchemy.exc.SQLAlchemyError,
    sqlite3.Error,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    OSError,
)
VIEWS = "search history, importances, slices, parallel coordinates"


@dataclass(frozen=True)
class Search:
    """The Optuna trials of one loss."""

    loss: str
    trials: tuple[FrozenTrial, ...]

    @property
    def completed(self) -> list[FrozenTrial]:
        """Trials that ran all their iterations."""
        return [t for t in self.trials if t.state is TrialState.COMPLETE and t.value is not None]

    @property
    def scored(self) -> list[FrozenTrial]:
        """Completed trials and those the scheduler stopped early (PRUNED), whose value is the
        objective they had reached: with ASHA most trials of a study are of the second kind."""
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        return [t for t in self.trials if t.state in states and t.value is not None]

    @property
    def failed(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state is TrialState.FAIL]


def _reason(error: BaseException) -> str:
    """The innermost cause of an error, in one short line (SQLAlchemy and Optuna wrap SQLite's
    "file is not a database" in longer, less telling messages)."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "orig", None) or error.__cause__ or error.__context__
        if not isinstance(inner, BaseException):
            break
        error = inner
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def read_searches(storage: Path, losses: Sequence[str]) -> tuple[dict[str, Search], list[str]]:
    """The Optuna trials of each loss in ``storage`` (read-only), and one note per reason a loss's
    views cannot be drawn."""
    if not storage.is_file():
        return {}, [f"Optuna views ({VIEWS}) skipped: {storage.name} is missing"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///file:{storage.resolve()}?mode=ro&uri=true"
    searches: dict[str, Search] = {}
    failures: dict[str, list[str]] = {}
    database = None
    try:
        database = optuna.storages.RDBStorage(url, skip_table_creation=True)
        names = set(optuna.study.get_all_study_names(storage=database))
        for loss in losses:
            if loss not in names:
                failures.setdefault(f"{storage.name} has no study of that name", []).append(loss)
                continue
            try:
                study = optuna.load_study(study_name=loss, storage=database)
                searches[loss] = Search(loss, tuple(study.get_trials(deepcopy=False)))
            except UNREADABLE as error:
                failures.setdefault(f"{storage.name} is unreadable ({_reason(error)})", []).append(
                    loss
                )
    except UNREADABLE as error:
        failures[f"{storage.name} is unreadable ({_reason(error)})"] = [
            loss for loss in losses if loss not in searches
        ]
    finally:
        if database is not None:
            database.engine.dispose()
    notes = [
        f"Optuna views ({VIEWS}) skipped for {', '.join(skipped)}: {reason}"
        for reason, skipped in failures.items()
    ]
    return searches, notes


def plot_search_views(storage: Path, losses: Sequence[str], *, select: str, folder: Path) -> Plots:
    """Every view of the searches of ``losses``: the PNGs written and what was skipped and why."""
    searches, notes = read_searches(storage, losses)
    plots = Plots(pictures=[], notes=notes)
    if not searches:
        return plots
    objective = f"best {metric_name(select)}"
    history = [s for s in searches.values() if s.scored]
    if history:
        file = "search_history.png"
        plot_history(history, select=select, path=folder / file)
        plots.pictures.append(
            Picture(
                title="Search history",
                file=file,
                section="history",
                caption=f"Each trial's {objective} in the order Optuna proposed them (dots; rings: "
                "trials the scheduler stopped early, at the value they had reached), and the best "
                "so far (line); failed trials are crosses on the axis.",
            )
        )
    ranked, notes_importance = importances(searches, select=select)
    plots.notes += notes_importance
    if ranked:
        file = "search_importances.png"
        counts = {s.loss: len(s.completed) for s in searches.values()}
        plot_importances(ranked, counts, path=folder / file)
        plots.pictures.append(
            Picture(
                title="Parameter importances",
                file=file,
                section="importances",
                caption="The share of the variance of the objective that each searched parameter "
                f"explains (Optuna's fANOVA over the completed trials), for losses with at least "
                f"{MIN_IMPORTANCE_TRIALS} completed trials.",
            )
        )
    for search in searches.values():
        scored = search.scored
        label = loss_label(search.loss)
        if len(scored) < 2:
            plots.notes.append(
                f"{search.loss}: slices and parallel coordinates skipped ({len(scored)} "
                "Optuna trials with a value, needs 2)"
            )
            continue
        scales = parameter_scales(scored)
        if not scales:
            plots.notes.append(
                f"{search.loss}: slices and parallel coordinates skipped (no searched parameters)"
            )
            continue
        file = f"search_{search.loss}_slices.png"
        plot_slices(scored, scales, select=select, path=folder / file)
        plots.pictures.append(
            Picture(
                title=f"{label}: slice plot",
                file=file,
                section="slices",
                caption=f"The {objective} of each trial (trials stopped early at the value they "
                "had reached) against each parameter; colour is the trial number, the ringed point "
                "the best trial.",
            )
        )
        file = f"search_{search.loss}_parallel.png"
        plot_parallel(scored, scales, select=select, path=folder / file)
        plots.pictures.append(
            Picture(
                title=f"{label}: parallel coordinates",
                file=file,
                section="parallel",
                caption="One line per trial through its parameter values and, on the last axis, "
                f"its {objective} (trials stopped early at the value they had reached); darker "
                "lines are better trials, the red line the best.",
            )
        )
    return plots


# --------------------------------------------------------------------------------------- scales


@dataclass(frozen=True)
class Scale:
    """How one parameter is drawn: ``log``, ``linear`` or ``categorical`` (positions 0..n-1)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def native(self, value: Any) -> float:
        """The value on the slice plot's x axis (the choice's index for a categorical)."""
        if self.kind == "categorical":
            return float(self.choices.index(value)) if value in self.choices else math.nan
        return float(value)

    def unit(self, value: Any) -> float:
        """The value mapped to [0, 1] for parallel coordinates (NaN when absent)."""
        if value is None:
            return math.nan
        if self.kind == "categorical":
            count = len(self.choices)
            return 0.5 if count < 2 else self.native(value) / (count - 1)
        low, high, x = self.low, self.high, float(value)
        if self.kind == "log":
            low, high, x = math.log10(low), math.log10(high), math.log10(x)
        return 0.5 if high == low else (x - low) / (high - low)

    def limits(self) -> tuple[float, float]:
        """The slice plot's x range: the whole searched range, with a margin."""
        if self.kind == "categorical":
            return -0.5, len(self.choices) - 0.5
        if self.kind == "log":
            ratio = (self.high / self.low) ** 0.06 if self.high > self.low else 2.0
            return self.low / ratio, self.high * ratio
        margin = 0.06 * (self.high - self.low) or 0.5
        return self.low - margin, self.high + margin

    def ticks(self) -> list[tuple[float, str]]:
        """(native value, label) pairs, at most five."""
        if self.kind == "categorical":
            return [(float(i), format_value(c)) for i, c in enumerate(self.choices)]
        if self.kind == "log":
            return [(v, format_value(v)) for v in log_ticks(self.low, self.high)]
        values = MaxNLocator(nbins=4, integer=self.integer).tick_values(self.low, self.high)
        inside = [v for v in values if self.low - 1e-12 <= v <= self.high + 1e-12]
        if len(inside) < 2:
            inside = [self.low, self.high]
        return [(float(v), format_value(v)) for v in inside]


def log_ticks(low: float, high: float) -> list[float]:
    """Round values (1, 2, 5 x 10^k) between ``low`` and ``high``, at most four."""
    if low <= 0 or high <= low:
        return [low, high]
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for mantissas in ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,)):
        values = [
            m * 10.0**e
            for e in range(first, last + 1)
            for m in mantissas
            if low * (1 - 1e-9) <= m * 10.0**e <= high * (1 + 1e-9)
        ]
        if 2 <= len(values) <= 4:
            return values
        if len(values) > 4 and mantissas == (1.0,):
            step = math.ceil(len(values) / 4)
            return values[::step]
    return [low, high]


def parameter_scales(trials: Sequence[FrozenTrial]) -> list[Scale]:
    """One scale per parameter the trials sampled, over the union of their distributions (a
    define-by-run space narrows some ranges trial by trial)."""
    found: dict[str, list[BaseDistribution]] = {}
    values: dict[str, list[Any]] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            found.setdefault(name, []).append(distribution)
            values.setdefault(name, []).append(trial.params.get(name))
    scales = []
    for name in sorted(found):
        distributions = found[name]
        if any(isinstance(d, CategoricalDistribution) for d in distributions):
            choices: list[Any] = []
            for d in distributions:
                for choice in getattr(d, "choices", ()):
                    if choice not in choices:
                        choices.append(choice)
            scales.append(Scale(name, "categorical", choices=tuple(choices)))
            continue
        seen = [float(v) for v in values[name] if v is not None]
        low = min([float(d.low) for d in distributions] + seen)  # type: ignore[attr-defined]
        high = max([float(d.high) for d in distributions] + seen)  # type: ignore[attr-defined]
        log = any(getattr(d, "log", False) for d in distributions) and low > 0
        integer = all(isinstance(d, IntDistribution) for d in distributions)
        scales.append(Scale(name, "log" if log else "linear", low, high, integer))
    return scales


def _percent(trial: FrozenTrial) -> float:
    return 100.0 * float(trial.value)  # type: ignore[arg-type]


def _best(trials: Sequence[FrozenTrial], select: str) -> FrozenTrial:
    sign = 1.0 if lower_is_better(select) else -1.0
    return min(trials, key=lambda t: sign * _percent(t))


def _is_error(select: str) -> bool:
    return is_error(select)


# ---------------------------------------------------------------------------------------- views


def plot_history(searches: Sequence[Search], *, select: str, path: Path) -> None:
    """One panel per loss: each trial's objective by trial number (rings for trials stopped
    early), the best so far, the failed trials as crosses on the axis."""
    lower = lower_is_better(select)
    values = [_percent(t) for s in searches for t in s.scored]
    with figure_style():
        figure, axes = panel_grid(len(searches), row_height=2.7, sharey=True)
        for axis, search in zip(axes.flat, searches, strict=False):
            scored = sorted(search.scored, key=lambda t: t.number)
            numbers = [t.number for t in scored]
            scores = [_percent(t) for t in scored]
            for stopped, label in ((False, "trial"), (True, "stopped early")):
                mine = [t for t in scored if (t.state is TrialState.PRUNED) == stopped]
                if mine:
                    axis.scatter(
                        [t.number for t in mine],
                        [_percent(t) for t in mine],
                        s=16,
                        facecolors="none" if stopped else "tab:blue",
                        edgecolors="tab:blue",
                        zorder=3,
                        label=label,
                    )
            running = np.minimum.accumulate(scores) if lower else np.maximum.accumulate(scores)
            axis.step(
                numbers,
                running,
                where="post",
                color=BEST_COLOUR,
                lw=1.5,
                zorder=2,
                label="best so far",
            )
            failed = [t.number for t in search.failed]
            if failed:
                axis.scatter(
                    failed,
                    [0.0] * len(failed),
                    marker="x",
                    color="black",
                    s=24,
                    zorder=4,
                    label="failed",
                    clip_on=False,
                )
            detail = f"{len(scored)} trials" + (f", {len(failed)} failed" if failed else "")
            axis.set_title(panel_title(loss_label(search.loss), detail))
            axis.set_xlabel("Optuna trial number")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
            axis.grid(alpha=0.3)
            percent_axis(axis, values, errors=_is_error(select))
        handles, labels = axes.flat[0].get_legend_handles_labels()
        for axis in list(axes.flat)[1 : len(searches)]:
            for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        figure.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
        for axis in axes[:, 0]:
            axis.set_ylabel(f"best {metric_name(select)}")
        for axis in list(axes.flat)[len(searches) :]:
            axis.set_visible(False)
        save(figure, path)


def importances(
    searches: Mapping[str, Search], *, select: str
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """fANOVA importances (shares summing to 1) per loss with at least
    :data:`MIN_IMPORTANCE_TRIALS` completed trials, and notes for the others."""
    ranked: dict[str, dict[str, float]] = {}
    notes = []
    few = []
    for loss, search in searches.items():
        completed = search.completed
        if len(completed) < MIN_IMPORTANCE_TRIALS:
            few.append(f"{loss} ({len(completed)})")
            continue
        study = optuna.create_study(direction="minimize" if lower_is_better(select) else "maximize")
        study.add_trials(completed)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature notices
            try:
                values = optuna.importance.get_param_importances(study, evaluator=evaluator)
            except (ValueError, RuntimeError) as error:
                notes.append(f"{loss}: importances skipped ({_reason(error)})")
                continue
        if values:
            ranked[loss] = dict(values)
    if few:
        notes.append(
            f"Parameter importances skipped for {', '.join(few)}: fewer than "
            f"{MIN_IMPORTANCE_TRIALS} completed trials, too few for importances that mean anything"
        )
    return ranked, notes


def plot_importances(
    ranked: Mapping[str, Mapping[str, float]], counts: Mapping[str, int], *, path: Path
) -> None:
    """One panel per loss: horizontal bars of each parameter's importance in percent."""
    longest = max(len(names) for names in ranked.values())
    with figure_style():
        figure, axes = panel_grid(len(ranked), columns=2, row_height=0.9 + 0.26 * longest)
        for axis, (loss, values) in zip(axes.flat, ranked.items(), strict=False):
            names = list(values)[::-1]  # largest on top
            shares = [100.0 * values[n] for n in names]
            axis.barh(names, shares, color="tab:blue", height=0.65)
            for y, share in enumerate(shares):
                text = f"{share:.0f}%" if share >= 1 else "<1%"
                axis.text(share + 1, y, text, va="center", fontsize=8.5)
            axis.set_xlim(0, min(100.0, max(shares) * 1.2 + 5))
            axis.xaxis.set_major_formatter(PERCENT)
            axis.set_title(panel_title(loss_label(loss), f"{counts.get(loss, 0)} trials"))
            axis.set_xlabel("importance")
            axis.grid(axis="x", alpha=0.3)
            axis.set_axisbelow(True)
        for axis in list(axes.flat)[len(ranked) :]:
            axis.set_visible(False)
        save(figure, path)


def plot_slices(
    trials: Sequence[FrozenTrial], scales: Sequence[Scale], *, select: str, path: Path
) -> None:
    """One panel per parameter: each trial's objective against the parameter's value."""
    best = _best(trials, select)
    numbers = [t.number for t in trials]
    values = [_percent(t) for t in trials]
    with figure_style():
        figure, axes = panel_grid(len(scales), columns=4, row_height=2.35, sharey=True)
        points = None
        for axis, scale in zip(axes.flat, scales, strict=False):
            xs = [scale.native(t.params.get(scale.name)) for t in trials]
            points = axis.scatter(
                xs,
                values,
                c=numbers,
                cmap="viridis",
                s=18,
                zorder=3,
                vmin=min(numbers),
                vmax=max(numbers) + 1e-9,
            )
            axis.scatter(
                [scale.native(best.params.get(scale.name))],
                [_percent(best)],
                s=90,
                facecolors="none",
                edgecolors=BEST_COLOUR,
                linewidths=1.6,
                zorder=4,
            )
            if scale.kind == "log":
                axis.set_xscale("log")
            ticks = scale.ticks()
            axis.xaxis.set_major_locator(FixedLocator([v for v, _ in ticks]))
            axis.xaxis.set_minor_locator(FixedLocator([]))
            labels = {v: text for v, text in ticks}
            axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _, lab=labels: lab.get(v, "")))
            axis.set_xlim(*scale.limits())
            axis.set_xlabel(scale.name)
            axis.grid(alpha=0.3)
            percent_axis(axis, values, errors=_is_error(select))
        for axis in axes[:, 0]:
            axis.set_ylabel(f"best {metric_name(select)}", fontsize=9)
        for axis in list(axes.flat)[len(scales) :]:
            axis.set_visible(False)
        if points is not None:
            bar = figure.colorbar(points, ax=axes, shrink=0.8, aspect=30, pad=0.01)
            bar.set_label("trial number")
            bar.locator = MaxNLocator(integer=True)
            bar.update_ticks()
        save(figure, path)


def plot_parallel(
    trials: Sequence[FrozenTrial], scales: Sequence[Scale], *, select: str, path: Path
) -> None:
    """Parallel coordinates: one vertical axis per parameter and one for the objective, one line per
    trial, darker for better trials, the best in red; each axis labelled below and ticked with its
    own values."""
    lower = lower_is_better(select)
    scores = [_percent(t) for t in trials]
    name = f"best {metric_name(select)}".replace(" ", "\n", 2)
    objective = _objective_scale(scores, errors=_is_error(select), name=name)
    columns = len(scales) + 1
    width = min(MAX_WIDTH, 1.2 + 0.95 * columns)
    ordered = sorted(trials, key=lambda t: _percent(t) if lower else -_percent(t))  # best first
    best = ordered[0]
    colours = plt.get_cmap("Blues")
    with figure_style():
        figure, axis = plt.subplots(figsize=(width, 4.2), layout="constrained")
        for rank, trial in reversed(list(enumerate(ordered))):  # the best drawn last, on top
            ys = [scale.unit(trial.params.get(scale.name)) for scale in scales]
            ys.append(objective.unit(_percent(trial)))
            if trial is best:
                axis.plot(range(columns), ys, color=BEST_COLOUR, lw=2.4, zorder=4)
            else:
                shade = 0.9 - 0.55 * rank / max(len(ordered) - 1, 1)
                axis.plot(range(columns), ys, color=colours(shade), lw=1.1, alpha=0.85, zorder=2)
        box = {
            "boxstyle": "round,pad=0.12",
            "facecolor": "white",
            "edgecolor": "none",
            "alpha": 0.8,
        }
        for x, scale in enumerate([*scales, objective]):
            axis.plot([x, x], [0, 1], color="black", lw=1.0, zorder=3)
            for value, text in scale.ticks():
                y = scale.unit(value if scale.kind != "categorical" else scale.choices[int(value)])
                axis.plot([x - 0.03, x], [y, y], color="black", lw=1.0, zorder=3)
                axis.text(x + 0.04, y, text, fontsize=8, va="center", ha="left", bbox=box, zorder=5)
            name = scale.name
            if scale is not objective and len(name) > 9:
                name = name.replace("_", "\n")
            axis.text(
                x,
                -0.05,
                name,
                ha="center",
                va="top",
                fontsize=9,
                fontweight="bold" if scale is objective else "normal",
            )
        axis.set_xlim(-0.3, columns - 0.35)
        axis.set_ylim(-0.02, 1.02)
        axis.axis("off")
        save(figure, path)


@dataclass(frozen=True)
class _Objective(Scale):
    """The objective's axis of the parallel coordinates: percent, log-like when errors span
    widely."""

    symlog: bool = False

    def unit(self, value: Any) -> float:
        x = float(value)
        if self.symlog:
            low, high, x = (math.log10(1 + v) for v in (self.low, self.high, x))
        else:
            low, high = self.low, self.high
        return 0.5 if high == low else (x - low) / (high - low)

    def ticks(self) -> list[tuple[float, str]]:
        if self.symlog:
            candidates = [0, 1, 2, 5, 10, 20, 50, 100]
            values = [float(v) for v in candidates if self.low <= v <= self.high]
        else:
            values = [
                float(v)
                for v in MaxNLocator(nbins=4).tick_values(self.low, self.high)
                if self.low <= v <= self.high
            ]
        if len(values) < 2:
            values = [self.low, self.high]
        return [(v, f"{format_value(v)}%") for v in values]


def _objective_scale(scores: Sequence[float], *, errors: bool, name: str) -> _Objective:
    low, high = min(scores), max(scores)
    positive = [s for s in scores if s > 0]
    symlog = errors and bool(positive) and max(positive) / max(min(positive), 0.5) > LOG_SPAN
    if symlog:
        low = 0.0
    if high == low:
        high = low + 1.0
    return _Objective(name=name, kind="linear", low=low, high=high, symlog=symlog)
