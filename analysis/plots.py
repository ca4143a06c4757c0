"""The report's figures (PNG, matplotlib's Agg backend): the loss comparison, validation curves of
every trial and 2-D maps of the best models' test embeddings (the views of the Optuna searches are
in :mod:`analysis.search_plots`).

Every figure is drawn to be read at its real size on the report page: at most :data:`MAX_WIDTH`
inches at :data:`DPI` (the page's column is wider), one title per panel and none over the figure
(the page gives each figure its heading and caption), values in percent with ``%`` on the ticks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import patheffects as effects  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter  # noqa: E402

from analysis.scores import Selection  # noqa: E402
from analysis.tables import loss_label  # noqa: E402
from repmet.formatting import format_percent, format_value  # noqa: E402
from repmet.metrics import VALIDATION_PREFIX, is_error, label_of, lower_is_better  # noqa: E402
from repmet.study_folder.trials import LossFolder  # noqa: E402

DPI = 110
#: The widest figure in inches: MAX_WIDTH * DPI pixels fit the report page's column at real size.
MAX_WIDTH = 10.2
#: matplotlib settings of every figure (Optuna's views switch styles; this one wins inside).
STYLE = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "axes.grid": False,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
}
#: Error values (percent) spanning more than this ratio get a symmetric-log axis, so that the 1%
#: region of a good loss stays readable beside the 80% of a diverged trial.
LOG_SPAN = 15.0
REFERENCE_COLOUR = "0.45"
LOSS_COLOUR = "tab:blue"
BEST_COLOUR = "tab:red"


#: Tick labels of an axis in percent: 0%, 2.5%, 10%.
PERCENT = FuncFormatter(lambda value, _: f"{format_value(float(value), digits=6)}%")


@dataclass(frozen=True)
class Picture:
    """A written PNG (its file name inside the report folder), its title, the report section it
    belongs to (:data:`SECTIONS`) and a caption saying how to read it."""

    title: str
    file: str
    section: str = "figures"
    caption: str = ""


#: The report's figure sections in page order: (key, heading).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("curves", "Validation curves"),
    ("history", "Search history"),
    ("importances", "Parameter importances"),
    ("slices", "Slice plots"),
    ("parallel", "Parallel coordinates"),
    ("embeddings", "Embedding maps"),
)


@dataclass
class Plots:
    """What the figure functions wrote, and what they skipped and why."""

    pictures: list[Picture]
    notes: list[str]


@contextmanager
def figure_style() -> Iterator[None]:
    """The report's matplotlib settings, restored afterwards."""
    with plt.rc_context(STYLE):
        yield


def save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    plt.close(figure)


def panel_grid(
    count: int, *, columns: int = 3, row_height: float, sharey: bool = False
) -> tuple[Figure, np.ndarray]:
    """A figure of ``count`` panels, at most ``columns`` to a row, each ``MAX_WIDTH / columns``
    inches wide and ``row_height`` high; the axes as a 2-d array (call under
    :func:`figure_style`)."""
    used = max(1, min(count, columns))
    rows = math.ceil(count / used)
    return plt.subplots(
        rows,
        used,
        figsize=(MAX_WIDTH * used / columns, row_height * rows),
        squeeze=False,
        sharey=sharey,
        layout="constrained",
    )


def panel_title(label: str, detail: str) -> str:
    """``label (detail)``, on two lines when one would crowd the panel next to it."""
    return f"{label} ({detail})" if len(label) + len(detail) <= 30 else f"{label}\n({detail})"


def metric_name(select: str) -> str:
    """``validation simple error`` for ``error_simple``, ``validation MAP@R`` for ``map_at_r``."""
    return f"validation {label_of(select)}"


def percent_axis(axis: Axes, values: Sequence[float], *, which: str = "y", errors: bool) -> None:
    """Percent ticks on an axis of values in percent; errors spanning more than
    :data:`LOG_SPAN` get a symmetric-log scale (linear below 1%) with ticks 0, 1, 2, 5, 10, ..."""
    finite = [v for v in values if math.isfinite(v)]
    setter = axis.set_yscale if which == "y" else axis.set_xscale
    ticks_axis = axis.yaxis if which == "y" else axis.xaxis
    positive = [v for v in finite if v > 0]
    if errors and positive and max(positive) / max(min(positive), 0.5) > LOG_SPAN:
        setter("symlog", linthresh=1.0, linscale=0.6)
        top = max(positive)
        candidates = [0, 1, 2, 5, 10, 20, 50, 100]
        ticks = [t for t in candidates if t <= top * 1.05] or [0, 1]
        if ticks[-1] < top:
            ticks.append(next((t for t in candidates if t >= top), 100))
        ticks_axis.set_major_locator(FixedLocator(ticks))
        ticks_axis.set_minor_locator(FixedLocator([]))
        limits = (-0.05, ticks[-1] * 1.08)
        (axis.set_ylim if which == "y" else axis.set_xlim)(*limits)
    ticks_axis.set_major_formatter(PERCENT)


# ------------------------------------------------------------------------------ loss comparison


@dataclass(frozen=True)
class LossScore:
    """One loss in the comparison chart: the test value (percent) of the checkpoint the study
    selected, and the test values of its re-trained runs with their confidence interval."""

    label: str
    value: float
    runs: tuple[float, ...] = ()
    low: float | None = None
    high: float | None = None
    reference: bool = False

    @property
    def centre(self) -> float:
        """What the chart ranks by: the runs' mean when there are runs, else the value."""
        return float(np.mean(self.runs)) if self.runs else self.value


def plot_loss_comparison(
    scores: Sequence[LossScore],
    *,
    select: str,
    baselines: Mapping[str, float],
    path: Path,
) -> None:
    """The losses ranked by their test value of the study's selection metric, best at the top: one
    point per loss (the mean of its re-trained runs with the 95% confidence interval and each run,
    or the selected checkpoint's value when there are no runs), the reference loss in grey, the
    baselines (label -> percent) as vertical lines."""
    lower = lower_is_better(select)
    ranked = sorted(scores, key=lambda s: s.centre if lower else -s.centre)
    repeated = any(s.runs for s in ranked)
    height = 1.3 + 0.42 * len(ranked)
    with figure_style():
        figure, axis = plt.subplots(figsize=(7.6, height), layout="constrained")
        for row, score in enumerate(ranked):
            y = len(ranked) - 1 - row
            colour = REFERENCE_COLOUR if score.reference else LOSS_COLOUR
            if row % 2 == 0:
                axis.axhspan(y - 0.5, y + 0.5, color="0.95", zorder=0)
            if score.runs:
                if score.low is not None and score.high is not None:
                    axis.plot([score.low, score.high], [y, y], color=colour, lw=2.2, zorder=2)
                axis.scatter(
                    score.runs,
                    [y - 0.22] * len(score.runs),
                    s=14,
                    color=colour,
                    alpha=0.7,
                    zorder=3,
                    linewidths=0,
                )
                axis.scatter(
                    [score.value],
                    [y],
                    marker="D",
                    s=34,
                    facecolors="white",
                    edgecolors=colour,
                    linewidths=1.3,
                    zorder=4,
                )
            axis.scatter(
                [score.centre],
                [y],
                marker="s" if score.reference else "o",
                s=60,
                color=colour,
                zorder=5,
            )
            right = max([score.centre, score.value, *score.runs, score.high or 0.0])
            spread = np.std(score.runs, ddof=1) if len(score.runs) > 1 else None
            text = format_percent(score.centre, spread, unit="%")
            axis.annotate(
                text,
                (right, y),
                xytext=(7, 0),
                textcoords="offset points",
                va="center",
                fontsize=8.5,
                color="0.15",
                zorder=6,
            )
        labels = [
            f"{s.label} (reference)" if s.reference and "baseline" not in s.label else s.label
            for s in ranked
        ]
        axis.set_yticks(range(len(ranked))[::-1], labels)
        for tick, score in zip(axis.get_yticklabels(), ranked, strict=True):
            if score.reference:
                tick.set_color("0.3")
                tick.set_style("italic")
        styles = (("--", "tab:red"), (":", "0.2"), ("-.", "tab:purple"))
        for (label, value), (style, colour) in zip(baselines.items(), styles, strict=False):
            axis.axvline(value, linestyle=style, color=colour, lw=1.3, label=label, zorder=1)
        everything = [s.centre for s in ranked] + [s.value for s in ranked]
        everything += [v for s in ranked for v in s.runs] + list(baselines.values())
        everything += [v for s in ranked for v in (s.low, s.high) if v is not None]
        top = max(everything) if everything else 1.0
        if lower:
            axis.set_xlim(0, max(top * 1.18, 1.0))
        else:
            bottom = min(everything) if everything else 0.0
            pad = max((top - bottom) * 0.12, 0.5)
            axis.set_xlim(max(0.0, bottom - pad), min(100.0, top + pad))
        axis.set_ylim(-0.6, len(ranked) - 0.4)
        axis.xaxis.set_major_formatter(PERCENT)
        axis.grid(axis="x", alpha=0.35)
        axis.set_axisbelow(True)
        better = "lower is better" if lower else "higher is better"
        axis.set_xlabel(f"test {label_of(select)} ({better})")
        handles = _comparison_legend(repeated, ranked)
        baseline_handles, _ = axis.get_legend_handles_labels()
        figure.legend(
            handles=handles + baseline_handles,
            loc="outside lower center",
            ncol=min(3, len(handles) + len(baseline_handles)),
            frameon=False,
        )
        save(figure, path)


def _comparison_legend(repeated: bool, ranked: Sequence[LossScore]) -> list:
    if not repeated:
        return [
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                color=LOSS_COLOUR,
                label="the study's selected checkpoint",
            ),
        ]
    n = max(len(s.runs) for s in ranked)
    return [
        Line2D(
            [],
            [],
            marker="o",
            ls="-",
            lw=2.2,
            color=LOSS_COLOUR,
            label=f"mean of {n} re-trained runs, 95% CI",
        ),
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            ms=4,
            alpha=0.7,
            color=LOSS_COLOUR,
            label="each re-trained run",
        ),
        Line2D(
            [],
            [],
            marker="D",
            ls="",
            mfc="white",
            color=LOSS_COLOUR,
            label="the study's selected checkpoint",
        ),
    ]


# ---------------------------------------------------------------------------- validation curves


def plot_val_curves(
    losses: Mapping[str, LossFolder],
    selections: Mapping[str, Selection],
    *,
    metric: str,
    path: Path,
) -> None:
    """The validation metric (percent) against iterations, every trial of every loss, one panel per
    loss, the selected trial drawn bold."""
    select = metric.removeprefix(VALIDATION_PREFIX)
    errors = is_error(select)
    values = [
        100.0 * v for record in losses.values() for t in record.trials for v in t.curve(metric)[1]
    ]
    with figure_style():
        figure, axes = panel_grid(len(losses), row_height=2.9, sharey=True)
        for axis, (loss, record) in zip(axes.flat, losses.items(), strict=False):
            best = selections.get(loss)
            for trial in record.trials:
                iterations, curve = trial.curve(metric)
                if not iterations:
                    continue
                chosen = best is not None and trial.name == best.trial.name
                axis.plot(
                    iterations,
                    [100.0 * v for v in curve],
                    color=BEST_COLOUR if chosen else "0.6",
                    linewidth=2.0 if chosen else 0.8,
                    marker="o" if len(iterations) < 3 else None,
                    markersize=2.5,
                    zorder=3 if chosen else 2,
                    label=f"selected: {trial.name}" if chosen else None,
                )
            axis.set_title(panel_title(loss_label(loss), f"{len(record.trials)} trials"))
            axis.set_xlabel("iteration")
            axis.grid(alpha=0.3)
            percent_axis(axis, values, errors=errors)
            if best is not None:
                axis.legend(fontsize=8, loc="best")
        for axis in axes[:, 0]:
            axis.set_ylabel(metric_name(select))
        for axis in list(axes.flat)[len(losses) :]:
            axis.set_visible(False)
        save(figure, path)


# ------------------------------------------------------------------------------- embedding maps


def project_2d(
    embeddings: torch.Tensor, extra: torch.Tensor, *, tsne: bool, seed: int
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """2-D coordinates of the embeddings and of extra points (centroids) in the same map, and the
    share of the embeddings' variance the map keeps (PCA only; None for t-SNE).

    PCA projects both onto the embeddings' top two principal axes. t-SNE
    has no out-of-sample projection, so it embeds both together.
    """
    points = torch.cat([embeddings, extra]).double()
    if tsne:
        from sklearn.manifold import TSNE  # imported here: slow to import and optional

        perplexity = float(min(30, max(2, len(points) // 4)))
        mapped = TSNE(n_components=2, perplexity=perplexity, random_state=seed).fit_transform(
            points.numpy()
        )
        kept = None
    else:
        centre = embeddings.double().mean(dim=0)
        centred = embeddings.double() - centre
        width = min(2, embeddings.shape[1])
        # The exact top axes (a small matrix: one test split), each signed so that its largest
        # coefficient is positive: the same map every time the report is made.
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        basis = vh[:width].T
        signs = torch.sign(basis.gather(0, basis.abs().argmax(dim=0, keepdim=True)))
        basis = basis * torch.where(signs == 0, 1.0, signs)
        mapped = ((points - centre) @ basis).numpy()
        total = float((centred**2).sum())
        kept = float(((centred @ basis) ** 2).sum()) / total if total > 0 else 1.0
        if width < 2:
            mapped = np.pad(mapped, ((0, 0), (0, 2 - width)))
    return mapped[: len(embeddings)], mapped[len(embeddings) :], kept


def nearest_class_share(
    embeddings: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, classes: torch.Tensor
) -> int:
    """How many centroids have an example of their own class as their nearest test embedding (in
    the full embedding space, which the 2-D map can only approximate)."""
    if len(embeddings) == 0 or len(centroids) == 0:
        return 0
    nearest = torch.cdist(centroids.double(), embeddings.double()).argmin(dim=1)
    return int((labels[nearest] == classes).sum())


def plot_embedding_map(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    centroids: torch.Tensor,
    centroid_classes: torch.Tensor,
    *,
    title: str,
    path: Path,
    tsne: bool = False,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    representatives: bool = True,
) -> None:
    """Test embeddings coloured by class, each class named at its centre; the centroids (learned
    representatives, or k-means centroids) as black-edged stars in their class colour, each joined
    to its class's centre by a thin line, so that a representative away from its class shows."""
    points, centres, kept = project_2d(embeddings, centroids, tsne=tsne, seed=seed)
    num_classes = int(max(labels.max(), centroid_classes.max())) + 1
    colours = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")

    def colour(c: int) -> tuple[float, ...]:
        return colours(int(c) % colours.N)

    label_array = labels.numpy()
    what = "representatives" if representatives else "k-means centroids"
    own = nearest_class_share(embeddings, labels, centroids, centroid_classes)
    with figure_style():
        figure, axis = plt.subplots(figsize=(5.0, 5.0), layout="constrained")
        axis.scatter(
            points[:, 0],
            points[:, 1],
            c=[colour(c) for c in label_array],
            s=9,
            alpha=0.55,
            linewidths=0,
            zorder=1,
        )
        middles = {
            c: np.median(points[label_array == c], axis=0)
            for c in range(num_classes)
            if (label_array == c).any()
        }
        for (x, y), c in zip(centres, centroid_classes.tolist(), strict=True):
            if c in middles:
                mx, my = middles[c]
                axis.plot([x, mx], [y, my], color=colour(c), lw=1.0, alpha=0.8, zorder=2)
        axis.scatter(
            centres[:, 0],
            centres[:, 1],
            c=[colour(c) for c in centroid_classes.tolist()],
            marker="*",
            s=200,
            edgecolors="black",
            linewidths=0.9,
            zorder=4,
        )
        outline = [effects.withStroke(linewidth=3, foreground="white")]
        for c, (mx, my) in middles.items():
            name = class_names[c] if class_names else str(c)
            axis.text(
                mx,
                my,
                name,
                color=colour(c),
                fontsize=10,
                fontweight="bold",
                ha="center",
                va="center",
                path_effects=outline,
                zorder=5,
            )
        figure.legend(
            handles=[
                Line2D(
                    [],
                    [],
                    marker="*",
                    ls="",
                    ms=13,
                    mfc="white",
                    mec="black",
                    label=f"{what}, in their class's colour",
                ),
                Line2D([], [], color="0.4", lw=1.0, label="to the centre of its class's points"),
            ],
            loc="outside lower center",
            ncol=1,
            frameon=False,
            fontsize=8.5,
        )
        method = "t-SNE" if tsne else "PCA"
        axis.set_title(
            f"{title}\n{own} of {len(centroids)} {what} nearest their own class "
            f"(in {embeddings.shape[1]}-d)",
            fontsize=9.5,
        )
        share = f" ({100 * kept:.0f}% of the variance in 2 axes)" if kept is not None else ""
        axis.set_xlabel(f"{method} 1{share}")
        axis.set_ylabel(f"{method} 2")
        axis.tick_params(labelsize=8)
        save(figure, path)
