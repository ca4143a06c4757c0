"""What the study report holds and how it is built: the selection of each loss's trial, its
measurement on the whole train and test splits, baselines, repeats, tables and figures
(``python analysis/report.py`` is the command that runs it)."""

from __future__ import annotations

import html
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import plots
from analysis.scores import (
    CheckpointLoader,
    Scores,
    Selection,
    mean_std_cells,
    percent_cells,
    raw_nearest_neighbour_errors,
    select_best,
)
from analysis.study_files import (
    StudyFolder,
    TrialStatus,
)
from analysis.tables import (
    ERROR_KINDS,
    METRIC_NAMES,
    MISSING,
    RETRIEVAL_COLUMNS,
    ResultsTable,
    Row,
    Stat,
    TextTable,
    loss_label,
    to_html,
    to_latex,
    to_markdown,
)
from analysis.verdict import CONFIDENCE, verdict
from repmet.catalogue import LOSSES
from repmet.config import SELECTABLE_METRICS, TrainingConfig

UNTRAINED_KEY = "untrained"
RAW_KEY = "raw-1nn"


@dataclass
class Report:
    """Everything the report writes, gathered before any file is written."""

    study: StudyFolder
    results: ResultsTable
    retrieval: ResultsTable
    repeats: Repeats | None
    hyperparameters: TextTable
    trials: TextTable
    pictures: list[plots.Picture] = field(default_factory=list)
    figure_notes: list[str] = field(default_factory=list)

    def tables(self) -> list[TextTable]:
        tables = [self.results.text(), self.retrieval.text()]
        if self.repeats is not None:
            tables += [
                self.repeats.verdict,
                self.repeats.errors.text(),
                self.repeats.retrieval.text(),
            ]
        return [*tables, self.hyperparameters, self.trials]

    def markdown(self) -> str:
        parts = [f"# Results of study {self.study.name}\n"]
        parts += [to_markdown(table) for table in self.tables()]
        if self.figure_notes:
            parts.append(
                "### Figures not drawn\n\n" + "\n".join(f"- {n}" for n in self.figure_notes)
            )
        return "\n".join(parts) + "\n"

    def latex(self) -> str:
        return "\n".join(to_latex(table) for table in self.tables())

    def html(self) -> str:
        title = html.escape(f"Results of study {self.study.name}")
        body = [f"<h1>{title}</h1>"]
        body += [to_html(table) for table in self.tables()]
        if self.pictures:
            body.append("<h2>Figures</h2>")
        for picture in self.pictures:
            alt = html.escape(picture.title)
            body.append(
                f'<figure><img src="{html.escape(picture.file)}" alt="{alt}">'
                f"<figcaption>{alt}</figcaption></figure>"
            )
        if self.figure_notes:
            items = "".join(f"<li>{html.escape(note)}</li>" for note in self.figure_notes)
            body.append(f"<h3>Figures not drawn</h3><ul>{items}</ul>")
        style = (
            "body{font-family:sans-serif;margin:2em;max-width:1200px}"
            "table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #bbb;padding:.25em .6em;text-align:center}"
            "caption{caption-side:top;text-align:left;padding:.3em 0}"
            "figure{display:inline-block;margin:1em}img{max-width:100%}"
            ".note{font-size:small;color:#444}"
        )
        return (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
        )

    def write(self, folder: Path, *, formats: str) -> list[Path]:
        """Writes the selected table files and the HTML page; returns the paths written."""
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        if formats in ("markdown", "all"):
            files["results.md"] = self.markdown()
        if formats in ("csv", "all"):
            files["results.csv"] = self.results.csv()
            files["retrieval.csv"] = self.retrieval.csv()
            if self.repeats is not None:
                files["results_repeats.csv"] = self.repeats.errors.csv()
                files["retrieval_repeats.csv"] = self.repeats.retrieval.csv()
        if formats in ("latex", "all"):
            files["results.tex"] = self.latex()
        files["report.html"] = self.html()
        written = []
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
            written.append(folder / name)
        return written


def progress_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_report(
    study: StudyFolder,
    *,
    loader: CheckpointLoader,
    folder: Path,
    repeats: int = 0,
    seed: int | None = None,
    draw: bool = True,
    tsne: bool = False,
    progress: Callable[[str], None] = progress_to_stderr,
) -> Report:
    """Selects, evaluates and draws everything the report shows (figures go to ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    selections: dict[str, Selection] = {}
    for loss, record in study.losses.items():
        selection = select_best(record, metric=study.metric, mode=study.mode)
        if selection is None:
            notes.append(f"{loss}: no trial has reported {study.metric} yet")
            continue
        selections[loss] = selection
        if selection.note:
            notes.append(selection.note)
    notes += [f"{loss}: not started yet" for loss in study.not_started]

    pictures: list[plots.Picture] = []
    figure_notes: list[str] = []
    rows: list[Row] = []
    retrieval_rows: list[Row] = []
    # Every selected checkpoint is read before any work starts, so that a damaged folder ends the
    # report with its one error line and nothing else.
    runs = {loss: loader.load(selection) for loss, selection in selections.items()}
    configs = {loss: run.config for loss, run in runs.items()}  # as stored in each checkpoint
    for loss, run in runs.items():
        selection = selections[loss]
        progress(
            f"evaluating {loss}: trial {selection.trial.name}, checkpoint at iteration "
            f"{selection.checkpoint_iteration}"
        )
        measurement = run.measure("train", "test")
        rows.append(Row(loss, loss_label(loss), percent_cells(measurement.errors, ERROR_KINDS)))
        retrieval = percent_cells(measurement.retrieval, tuple(RETRIEVAL_COLUMNS))
        retrieval_rows.append(Row(loss, loss_label(loss), retrieval))
        if draw:
            embeddings, labels = measurement.embedded["test"]
            file = f"embedding_{loss}.png"
            plots.plot_embedding_map(
                embeddings,
                labels,
                measurement.centroids,
                measurement.centroid_classes,
                title=loss_label(loss),
                path=folder / file,
                tsne=tsne,
                seed=run.config.seed,
                class_names=run.splits.class_names,
            )
            pictures.append(plots.Picture(title=f"{loss_label(loss)}: test embeddings", file=file))
    if configs:
        first = next(iter(configs))
        rows += baseline_rows(first, configs[first], loader=loader, progress=progress)
    for loss, config in configs.items():
        if loss in LOSSES:
            notes += LOSSES.get(loss).report_notes(config.to_dict())

    results = ResultsTable(
        title="Errors (%)",
        rows=tuple(rows),
        caption=results_caption(study, selections),
        notes=tuple(notes),
    )
    retrieval_table = ResultsTable(
        title="Retrieval and clustering (%)",
        rows=tuple(retrieval_rows),
        caption=(
            "Precision at 1, R-precision and MAP@R of each split retrieving from itself (Musgrave "
            "et al., ECCV 2020), and NMI and AMI of the k-means clustering behind the unsupervised "
            "error, in percent as Train (Test), from the same checkpoints; higher is better."
        ),
        columns=RETRIEVAL_COLUMNS,
    )
    repeated = None
    if repeats:
        repeated = repeat_tables(
            configs, loader=loader, repeats=repeats, seed=seed, select=study.select
        )

    if draw:
        progress("drawing figures")
        curves = "val_error_curves.png"
        plots.plot_val_curves(study.losses, selections, metric=study.metric, path=folder / curves)
        pictures.insert(0, plots.Picture(title="Validation error of every trial", file=curves))
        for loss in study.losses:
            views = plots.plot_optuna_views(study.optuna_path, loss, folder=folder)
            pictures += views.pictures
            figure_notes += views.notes

    return Report(
        study=study,
        results=results,
        retrieval=retrieval_table,
        repeats=repeated,
        hyperparameters=hyperparameter_table(study, selections, configs),
        trials=trial_count_table(study),
        pictures=pictures,
        figure_notes=figure_notes,
    )


def baseline_rows(
    loss: str,
    config: TrainingConfig,
    *,
    loader: CheckpointLoader,
    progress: Callable[[str], None],
) -> list[Row]:
    """The untrained network (the best configuration of the first loss, not trained) and
    1-nearest-neighbour on raw pixels (Simple column only)."""
    progress(f"evaluating baselines: untrained network ({loss} configuration), raw 1-NN")
    untrained = loader.build(config)
    rows = [
        Row(
            UNTRAINED_KEY,
            f"Untrained network ({loss_label(loss)} config)",
            percent_cells(untrained.errors("train", "test"), ERROR_KINDS),
        )
    ]
    train_error, test_error = raw_nearest_neighbour_errors(untrained.splits)
    rows.append(
        Row(
            RAW_KEY,
            "1-NN on raw pixels",
            {"simple": (Stat(100.0 * train_error), Stat(100.0 * test_error))},
        )
    )
    return rows


@dataclass(frozen=True)
class Repeats:
    """The best configurations trained again with new seeds: the verdict and the mean ± sd tables
    of the errors and of the retrieval metrics."""

    verdict: TextTable
    errors: ResultsTable
    retrieval: ResultsTable


def repeat_tables(
    configs: Mapping[str, TrainingConfig],
    *,
    loader: CheckpointLoader,
    repeats: int,
    seed: int | None,
    select: str,
) -> Repeats:
    """Each loss's best configuration trained ``repeats`` more times with seeds base+1..base+N."""
    runs: dict[str, list[Scores]] = {}
    bases = []
    for loss, config in configs.items():
        base = seed if seed is not None else config.seed
        bases.append(base)
        runs[loss] = loader.retrain(config, seeds=range(base + 1, base + repeats + 1))
    seeds = ", ".join(sorted({f"{b + 1}..{b + repeats}" for b in bases}))
    caption = (
        f"Each loss's best configuration trained from scratch N = {repeats} times with seeds "
        f"{seeds} for its configured iterations (same data split), measured at its best "
        "validation step on the whole train (test) splits, as in the study; mean ± sample "
        "standard deviation over the N runs."
    )
    errors = ResultsTable(
        title=f"Errors (%) of the best configurations re-trained, mean ± std over N = {repeats}",
        rows=tuple(
            Row(loss, loss_label(loss), mean_std_cells([r.errors for r in scores], ERROR_KINDS))
            for loss, scores in runs.items()
        ),
        caption=caption,
    )
    kinds = tuple(RETRIEVAL_COLUMNS)
    retrieval = ResultsTable(
        title=f"Retrieval and clustering (%) re-trained, mean ± std over N = {repeats}",
        rows=tuple(
            Row(loss, loss_label(loss), mean_std_cells([r.retrieval for r in scores], kinds))
            for loss, scores in runs.items()
        ),
        caption=caption,
        columns=RETRIEVAL_COLUMNS,
    )
    return Repeats(verdict=verdict_table(runs, select=select), errors=errors, retrieval=retrieval)


def test_value(scores: Scores, metric: str) -> float:
    """A selectable metric (``error_simple``, ``map_at_r``, ...) of a run on the test split."""
    if metric.startswith("error_"):
        return scores.errors["test"][metric.removeprefix("error_")]
    return scores.retrieval["test"][metric]


def verdict_table(runs: Mapping[str, Sequence[Scores]], *, select: str) -> TextTable:
    """The losses ranked by the study's selection metric on the test split, with mean ± sd and
    95% confidence intervals, and the losses each cannot be told apart from; MAP@R beside it."""
    metrics = [select] + (["map_at_r"] if select != "map_at_r" else [])
    verdicts = {
        metric: verdict(
            {
                loss: [100.0 * test_value(s, metric) for s in scores]
                for loss, scores in runs.items()
            },
            metric=metric,
            lower_is_better=SELECTABLE_METRICS[metric] == "min",
            bounds=(0.0, 100.0),
        )
        for metric in metrics
    }
    primary = verdicts[select]
    rows = []
    for rank, loss in enumerate(primary.ranking, start=1):
        cells = [str(rank), loss_label(loss)]
        for metric in metrics:
            spread = verdicts[metric].spreads[loss]
            cells += [
                f"{spread.mean:.2f} ± {spread.sd:.2f}",
                f"[{spread.low:.2f}, {spread.high:.2f}]",
            ]
        tied = primary.indistinguishable(loss)
        cells.append(", ".join(loss_label(other) for other in tied) if tied else "none")
        rows.append(tuple(cells))
    header = ["Rank", "Loss"]
    for metric in metrics:
        name = METRIC_NAMES.get(metric, metric)
        header += [f"{name} (%)", "95% CI"]
    header.append("Not significantly different from")
    n = next(iter(primary.spreads.values())).n if primary.spreads else 0
    return TextTable(
        title=f"Verdict on the test split, N = {n} runs per loss",
        header=tuple(header),
        rows=tuple(rows),
        caption=(
            f"Losses ranked by the mean test {METRIC_NAMES.get(select, select)} of their "
            "re-trained runs (the metric the study selected on), with mean ± sample standard "
            "deviation "
            f"and the {CONFIDENCE:.0%} Student-t confidence interval of the mean (clipped to "
            "[0, 100]). The last column "
            f"lists the losses whose difference from this one is not significant (Welch's t-test, "
            f"Holm-adjusted over all pairs, level {1 - CONFIDENCE:.2f}): their order is noise."
        ),
    )


def results_caption(study: StudyFolder, selections: Mapping[str, Selection]) -> str:
    dataset = study.fixed.get("dataset") or _first_param(selections, "dataset") or "?"
    progress = "; ".join(
        f"{loss_label(loss)} {record.finished} of {record.planned} trials finished"
        for loss, record in study.losses.items()
    )
    unfinished = any(record.finished < record.planned for record in study.losses.values())
    state = "Study still running" if unfinished or study.not_started else "Study complete"
    return (
        f"Errors in percent as Train (Test) on the whole splits of {dataset}, from the checkpoint "
        f"with the lowest validation error ({study.metric}) of each loss's best trial. "
        f"{state}: {progress}."
    )


def searched_fields(study: StudyFolder, selection: Selection) -> set[str]:
    """The fields the study searched for a loss: its catalogue entry's, or for a loss that is not
    catalogued here, the sampled ones (in the trial's config but not the study's fixed settings)."""
    if selection.loss in LOSSES:
        return set(LOSSES.get(selection.loss).searched)
    return set(selection.trial.params) - set(study.fixed) - {"loss"}


def hyperparameter_table(
    study: StudyFolder,
    selections: Mapping[str, Selection],
    configs: Mapping[str, TrainingConfig],
) -> TextTable:
    """The searched hyperparameters of each loss's selected trial, as stored in its checkpoint."""
    searched = {loss: searched_fields(study, selection) for loss, selection in selections.items()}
    names = [
        name
        for name in TrainingConfig.field_names()
        if any(name in fields for fields in searched.values())
    ]
    rows = []
    for loss, config in configs.items():
        selection = selections[loss]
        values = config.to_dict()
        rows.append(
            (
                loss_label(loss),
                selection.trial.name,
                str(selection.checkpoint_iteration),
                f"{100.0 * selection.best_value:.1f}",
                *(
                    _format_value(values[name]) if name in searched[loss] else MISSING
                    for name in names
                ),
            )
        )
    return TextTable(
        title="Selected hyperparameters",
        header=("Loss", "Trial", "Checkpoint iteration", "Val. error (%)", *names),
        rows=tuple(rows),
        caption=(
            "The searched hyperparameters of the trial in the results table, as stored in its "
            f"checkpoint ({MISSING}: not searched for that loss)."
        ),
    )


def trial_count_table(study: StudyFolder) -> TextTable:
    """Per loss: trials run, finished (of planned), completed, stopped early, failed."""
    rows = tuple(
        (
            loss_label(loss),
            str(len(record.trials)),
            f"{record.finished} of {record.planned}",
            str(record.count(TrialStatus.COMPLETED)),
            str(record.count(TrialStatus.STOPPED)),
            str(record.count(TrialStatus.FAILED)),
            str(record.count(TrialStatus.RUNNING)),
        )
        for loss, record in study.losses.items()
    )
    failures = [
        f"{loss_label(loss)} {trial.name}: {trial.failure or 'no reason recorded'}"
        for loss, record in study.losses.items()
        for trial in record.trials
        if trial.status is TrialStatus.FAILED
    ]
    return TextTable(
        title="Trials",
        header=("Loss", "Run", "Finished", "Completed", "Stopped early", "Failed", "Running"),
        rows=rows,
        caption=(
            "Stopped early: ended by the scheduler (ASHA) before the configured iterations; "
            "failed: failed for its own configuration (never selected), or stopped by an error; "
            "running: no final result yet (still running, or interrupted)."
            + (f" Failed trials: {'; '.join(failures)}." if failures else "")
        ),
    )


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _first_param(selections: Mapping[str, Selection], name: str) -> Any:
    return next((s.trial.params.get(name) for s in selections.values()), None)
