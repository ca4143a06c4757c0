"""The report's figures (PNG, matplotlib's Agg backend): validation curves of every trial, Optuna's
views of each loss's search, and 2-D maps of the best models' test embeddings."""

from __future__ import annotations

import math
import sqlite3
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402  (Optuna's RDB storage)

from analysis.scores import Selection  # noqa: E402
from analysis.study_files import LossFolder  # noqa: E402
from analysis.tables import loss_label  # noqa: E402

DPI = 110


@dataclass(frozen=True)
class Picture:
    """A written PNG (its file name inside the report folder) with its title."""

    title: str
    file: str


@dataclass
class Plots:
    """What the figure functions wrote, and what they skipped and why."""

    pictures: list[Picture]
    notes: list[str]


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)


def _grid(count: int) -> tuple[int, int]:
    columns = min(count, 3)
    return math.ceil(count / columns), columns


def plot_val_curves(
    losses: Mapping[str, LossFolder],
    selections: Mapping[str, Selection],
    *,
    metric: str,
    path: Path,
) -> None:
    """Validation error (percent) against iterations, every trial of every loss, one panel per
    loss, the selected trial drawn bold."""
    rows, columns = _grid(len(losses))
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(4.5 * columns, 3.4 * rows),
        squeeze=False,
        sharey=True,
        layout="constrained",  # keeps panel titles clear of the x labels above them
    )
    for axis, (loss, record) in zip(axes.flat, losses.items(), strict=False):
        best = selections.get(loss)
        for trial in record.trials:
            iterations, values = trial.curve(metric)
            if not iterations:
                continue
            chosen = best is not None and trial.name == best.trial.name
            axis.plot(
                iterations,
                [100.0 * v for v in values],
                color="tab:red" if chosen else "0.6",
                linewidth=2.2 if chosen else 0.9,
                marker="o" if len(iterations) < 3 else None,
                markersize=3,
                zorder=3 if chosen else 2,
                label=f"best: {trial.name}" if chosen else None,
            )
        axis.set_title(f"{loss_label(loss)} ({len(record.trials)} trials)")
        axis.set_xlabel("iteration")
        axis.set_ylabel(f"{metric} (%)")
        axis.grid(alpha=0.3)
        if best is not None:
            axis.legend(fontsize="small")
    for axis in list(axes.flat)[len(losses) :]:
        axis.set_visible(False)
    _save(figure, path)


#: Optuna's matplotlib views: (file suffix, title, function, needs at least this many trials).
OPTUNA_VIEWS = (
    (
        "history",
        "optimisation history",
        optuna.visualization.matplotlib.plot_optimization_history,
        1,
    ),
    (
        "importances",
        "parameter importances",
        optuna.visualization.matplotlib.plot_param_importances,
        2,
    ),
    (
        "parallel",
        "parallel coordinates",
        optuna.visualization.matplotlib.plot_parallel_coordinate,
        1,
    ),
    ("slice", "slices", optuna.visualization.matplotlib.plot_slice, 1),
)


def plot_optuna_views(storage: Path, loss: str, *, folder: Path) -> Plots:
    """One PNG per Optuna view of the loss's study (``study_name`` = loss) in ``storage``."""
    plots = Plots(pictures=[], notes=[])
    if not storage.is_file():
        plots.notes.append(f"{loss}: no Optuna views, {storage.name} is missing")
        return plots
    if storage.stat().st_size == 0:  # Optuna would write a fresh schema into it
        plots.notes.append(f"{loss}: no Optuna views, {storage.name} is empty")
        return plots
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=loss, storage=f"sqlite:///{storage}")
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    except KeyError:
        plots.notes.append(f"{loss}: no Optuna views, {storage.name} holds no study named {loss}")
        return plots
    # A damaged database (truncated, overwritten) only costs the report these views.
    except (SQLAlchemyError, sqlite3.Error, optuna.exceptions.StorageInternalError) as error:
        reason = next((line for line in str(error).splitlines() if line.strip()), "")
        plots.notes.append(
            f"{loss}: no Optuna views, {storage.name} is unreadable "
            f"({type(error).__name__}: {reason.strip()})"
        )
        return plots
    completed = len(trials)
    for suffix, title, view, needed in OPTUNA_VIEWS:
        if completed < needed:
            plots.notes.append(
                f"{loss}: {title} skipped ({completed} completed Optuna trials, needs {needed})"
            )
            continue
        file = f"optuna_{loss}_{suffix}.png"
        # Optuna switches the global style; rc_context restores it for the other figures.
        with plt.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna flags these views as experimental
            try:
                axes = view(study)
            # A view that fails (e.g. importances of a parameter that never varied) should cost
            # the report that one picture, not the whole report.
            except Exception as error:  # noqa: BLE001
                plots.notes.append(f"{loss}: {title} skipped ({type(error).__name__}: {error})")
                plt.close("all")
                continue
            figure = np.asarray(axes).flat[0].figure
            figure.suptitle(f"{loss_label(loss)}: {title}")
            _save(figure, folder / file)
        plots.pictures.append(Picture(title=f"{loss_label(loss)}: {title}", file=file))
    return plots


def project_2d(
    embeddings: torch.Tensor, extra: torch.Tensor, *, tsne: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of the embeddings and of extra points (centroids) in the same map.

    PCA (``torch.pca_lowrank``) projects both onto the embeddings' top two principal axes. t-SNE
    has no out-of-sample projection, so it embeds both together.
    """
    points = torch.cat([embeddings, extra]).double()
    if tsne:
        from sklearn.manifold import TSNE  # imported here: slow to import and optional

        perplexity = float(min(30, max(2, len(points) // 4)))
        mapped = TSNE(n_components=2, perplexity=perplexity, random_state=seed).fit_transform(
            points.numpy()
        )
    else:
        centre = embeddings.double().mean(dim=0)
        width = min(2, embeddings.shape[1])
        _, _, basis = torch.pca_lowrank(embeddings.double() - centre, q=width, center=False)
        mapped = ((points - centre) @ basis).numpy()
        if width < 2:
            mapped = np.pad(mapped, ((0, 0), (0, 2 - width)))
    return mapped[: len(embeddings)], mapped[len(embeddings) :]


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
) -> None:
    """Test embeddings coloured by class, with the centroids (or representatives) as black-edged
    stars in their class colour."""
    points, centres = project_2d(embeddings, centroids, tsne=tsne, seed=seed)
    num_classes = int(max(labels.max(), centroid_classes.max())) + 1
    colours = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    figure, axis = plt.subplots(figsize=(6.4, 5.2))
    axis.scatter(
        points[:, 0],
        points[:, 1],
        c=[colours(int(c) % colours.N) for c in labels],
        s=8,
        alpha=0.6,
        linewidths=0,
    )
    axis.scatter(
        centres[:, 0],
        centres[:, 1],
        c=[colours(int(c) % colours.N) for c in centroid_classes],
        marker="*",
        s=180,
        edgecolors="black",
        linewidths=0.8,
        label="centroids / representatives",
    )
    if num_classes <= 20:
        for c in range(num_classes):
            name = class_names[c] if class_names else str(c)
            axis.scatter([], [], color=colours(c % colours.N), s=20, label=name)
    axis.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    method = "t-SNE" if tsne else "PCA"
    axis.set_title(f"{title} ({method} of test embeddings)")
    axis.set_xlabel(f"{method} 1")
    axis.set_ylabel(f"{method} 2")
    _save(figure, path)
