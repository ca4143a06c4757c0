"""How the study report is built: the selection of each loss's trial, its measurement on the whole
train and test splits, baselines, repeats, tables and figures, gathered into the plain data of
:mod:`analysis.report_data` (``python analysis/report.py`` is the command that runs it, and
:mod:`analysis.render` writes the files)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from analysis import plots, search_plots
from analysis.report_data import Repeats, Report
from analysis.scores import (
    CheckpointLoader,
    Scores,
    Selection,
    mean_std_cells,
    percent_cells,
    raw_nearest_neighbour_errors,
    raw_pixel_unseen,
    select_best,
)
from analysis.study_summary import Baseline, settings_table, study_warnings
from analysis.tables import (
    MISSING,
    ResultsTable,
    Row,
    Stat,
    TextTable,
    by_family,
    columns_of,
    loss_family,
    loss_label,
)
from analysis.unseen import UnseenRow, unseen_table
from analysis.verdict import CONFIDENCE, Spread, verdict
from repmet.catalogue import LOSSES, REFERENCE
from repmet.config import TrainingConfig
from repmet.data import DatasetSplits
from repmet.formatting import format_percent, format_value
from repmet.metrics import label_of, lower_is_better
from repmet.protocols import CLOSED_SET
from repmet.study_folder.searched import searched_by_any, searched_parameters
from repmet.study_folder.trials import StudyFolder, TrialStatus
from repmet.training import Measurement, TrainingRun

UNTRAINED_KEY = "untrained"
RAW_KEY = "raw-1nn"


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
    unseen_rows: list[UnseenRow] = []
    centre_rows: list[Row] = []
    test_values: dict[str, float] = {}
    # Every selected checkpoint is read before any work starts, so that a damaged folder ends the
    # report with its one error line and nothing else.
    runs = {loss: loader.load(selections[loss]) for loss in by_family(list(selections))}
    configs = {loss: run.config for loss, run in runs.items()}  # as stored in each checkpoint
    splits: DatasetSplits | None = next(iter(runs.values())).splits if runs else None
    for loss, run in runs.items():
        selection = selections[loss]
        progress(
            f"evaluating {loss}: trial {selection.trial.name}, checkpoint at iteration "
            f"{selection.checkpoint_iteration}"
        )
        measurement = run.measure("train", "test", centres=True)
        family = loss_family(loss)
        errors = percent_cells(measurement.metrics, columns_of("error"))
        rows.append(Row(loss, loss_label(loss), errors, family))
        retrieval = percent_cells(measurement.metrics, columns_of("retrieval"))
        retrieval_rows.append(Row(loss, loss_label(loss), retrieval, family))
        if measurement.centre_metrics is not None:
            centres = percent_cells(measurement.centre_metrics, columns_of("error"))
            centre_rows.append(Row(loss, loss_label(loss), centres, family))
        unseen_rows.append(
            UnseenRow(loss, loss_label(loss), measurement.metrics, measurement.intervals["test"])
        )
        test_values[loss] = 100.0 * Scores(metrics=measurement.metrics).test_value(study.select)
        if draw:
            # The centroids belong to the training classes: under the class-disjoint protocol the
            # map shows them among the training embeddings (the test classes have none).
            shown = "test" if run.holds_training_classes("test") else "train"
            embeddings, labels = measurement.embedded[shown]
            file = f"embedding_{loss}.png"
            entry = LOSSES.get(loss) if loss in LOSSES else None
            plots.plot_embedding_map(
                embeddings,
                labels,
                measurement.centroids,
                measurement.centroid_classes,
                title=loss_label(loss),
                path=folder / file,
                tsne=tsne,
                seed=run.config.seed,
                class_names=run.splits.split_classes[shown],
                representatives=entry is None or entry.learns_representatives,
            )
            pictures.append(
                plots.Picture(
                    title=f"{loss_label(loss)}: {shown} embeddings",
                    file=file,
                    section="embeddings",
                    caption=embedding_caption(
                        tsne=tsne,
                        representatives=entry is None or entry.learns_representatives,
                        split=shown,
                    ),
                )
            )
    baselines: list[Baseline] = []
    if configs:
        first = next(iter(configs))
        baseline_table, baselines, untrained_measurement = baseline_rows(
            first, configs[first], loader=loader, progress=progress, select=study.select
        )
        rows += baseline_table
        unseen_rows.append(
            UnseenRow(
                UNTRAINED_KEY,
                baseline_table[0].label,
                untrained_measurement.metrics,
                untrained_measurement.intervals["test"],
            )
        )
        if splits is not None and splits.protocol != CLOSED_SET:
            unseen_rows.append(raw_pixel_unseen_row(runs[first], splits))
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
        columns=columns_of("retrieval"),
    )
    centre_table = None
    if centre_rows:
        centre_table = ResultsTable(
            title="Errors against the learned centres (%)",
            rows=tuple(centre_rows),
            caption=(
                "The losses with learned proxies or centres (ProxyAnchor's proxies, SoftTriple's "
                "centres, ArcFace's class weights, on the unit sphere) measured against them as "
                "representatives, with a variance fitted around them, in percent as Train (Test), "
                "from the same checkpoints; the errors table measures every loss against per-class "
                "k-means centroids."
            ),
        )
    repeated = None
    if repeats:
        repeated = repeat_tables(
            configs, loader=loader, repeats=repeats, seed=seed, select=study.select
        )

    if draw and test_values:
        progress("drawing figures")
        file = "loss_comparison.png"
        plots.plot_loss_comparison(
            comparison_scores(test_values, repeated, select=study.select),
            select=study.select,
            baselines={b.label: b.value for b in baselines},
            path=folder / file,
        )
        pictures.insert(0, comparison_picture(file, study.select, repeated, baselines))
    if draw:
        curves = "val_error_curves.png"
        plots.plot_val_curves(study.losses, selections, metric=study.metric, path=folder / curves)
        pictures.insert(
            0,
            plots.Picture(
                title=f"Validation curves: {plots.metric_name(study.select)} of every trial",
                file=curves,
                section="curves",
                caption="Every trial of each loss over its training iterations (trials stopped "
                "early end early); the trial the results table evaluates is drawn in red.",
            ),
        )
        views = search_plots.plot_search_views(
            study.optuna_path, list(study.losses), select=study.select, folder=folder
        )
        pictures += views.pictures
        figure_notes += views.notes
        for note in views.notes:
            progress(note)

    untrained = baselines[0] if baselines else None
    unseen = None
    if splits is not None and splits.protocol != CLOSED_SET and configs:
        config = next(iter(configs.values()))
        unseen = unseen_table(
            unseen_rows,
            ways=config.few_shot_ways,
            queries=config.few_shot_queries,
            episodes=config.few_shot_episodes,
        )
    return Report(
        unseen=unseen,
        study=study,
        results=results,
        retrieval=retrieval_table,
        repeats=repeated,
        hyperparameters=hyperparameter_table(study, selections, configs),
        trials=trial_count_table(study),
        settings=settings_table(
            study,
            config=next(iter(configs.values()), None),
            splits=splits,
            searched=sorted(searched_by_any(study.settings, list(selections))),
            repeats=repeats,
            repeat_seeds=repeated.seeds if repeated is not None else "",
        ),
        warnings=study_warnings(
            study,
            select=study.select,
            test_values=test_values,
            untrained=untrained,
            repeats=repeats,
        ),
        pictures=pictures,
        figure_notes=figure_notes,
        centres=centre_table,
    )


def embedding_caption(*, tsne: bool, representatives: bool, split: str = "test") -> str:
    stars = "learned representatives" if representatives else "per-class k-means centroids"
    unseen = (
        " (a class-disjoint study: the test classes have no centroids, so the map shows the "
        "training classes)"
        if split == "train"
        else ""
    )
    return (
        f"{split.capitalize()} embeddings{unseen} ({'t-SNE' if tsne else 'PCA'}), coloured and "
        "named by class; stars: "
        f"the {stars} the errors are measured against, in their class's colour and joined to the "
        "middle of its points. The title counts the stars nearest to their own class in the full "
        "embedding space, which the 2-D map only approximates."
    )


def comparison_scores(
    test_values: Mapping[str, float], repeated: Repeats | None, *, select: str
) -> list[plots.LossScore]:
    """The comparison chart's points: each loss's selected checkpoint on test and, with repeats,
    its re-trained runs and their 95% confidence interval (percent)."""
    scores = []
    for loss, value in test_values.items():
        runs: tuple[float, ...] = ()
        low = high = None
        if repeated is not None and loss in repeated.runs:
            runs = tuple(100.0 * s.test_value(select) for s in repeated.runs[loss])
            spread = Spread.of(runs, bounds=(0.0, 100.0))
            if len(runs) > 1:
                low, high = spread.low, spread.high
        scores.append(
            plots.LossScore(
                label=loss_label(loss),
                value=value,
                runs=runs,
                low=low,
                high=high,
                reference=loss == REFERENCE,
            )
        )
    return scores


def comparison_picture(
    file: str, select: str, repeated: Repeats | None, baselines: Sequence[Baseline]
) -> plots.Picture:
    name = label_of(select)
    if repeated is not None:
        how = (
            f"the mean of each loss's best configuration re-trained N = {repeated.n} times "
            "(its 95% Student-t confidence interval as the bar, each run as a small dot, the "
            "label mean ± sample standard deviation) and the checkpoint the study selected "
            "(diamond)"
        )
    else:
        how = "the checkpoint the study selected for each loss (one run: no spread is known)"
    lines = f"; vertical lines: {', '.join(b.label for b in baselines)}" if baselines else ""
    return plots.Picture(
        title=f"Loss comparison: test {name}",
        file=file,
        section="comparison",
        caption=f"Losses ranked by their test {name}, best at the top: {how}. The "
        f"{loss_label(REFERENCE)} reference is grey{lines}.",
    )


def baseline_rows(
    loss: str,
    config: TrainingConfig,
    *,
    loader: CheckpointLoader,
    progress: Callable[[str], None],
    select: str = "error_simple",
) -> tuple[list[Row], list[Baseline], Measurement]:
    """The untrained network (the best configuration of the first loss, not trained) and
    1-nearest-neighbour on raw pixels (Simple column only): their table rows, their test value
    of the selection metric (percent) where they have one, and the untrained network's
    measurement."""
    progress(f"evaluating baselines: untrained network ({loss} configuration), raw 1-NN")
    untrained = loader.build(config)
    measurement = untrained.measure("train", "test")
    rows = [
        Row(
            UNTRAINED_KEY,
            f"Untrained network ({loss_label(loss)} config)",
            percent_cells(measurement.metrics, columns_of("error")),
        )
    ]
    scores = Scores(metrics=measurement.metrics)
    baselines = [Baseline("untrained network", 100.0 * scores.test_value(select))]
    train_error, test_error = raw_nearest_neighbour_errors(untrained.splits)
    seen = untrained.splits.protocol == CLOSED_SET
    raw_test = Stat(100.0 * test_error) if seen else None
    rows.append(
        Row(
            RAW_KEY,
            "1-NN on raw pixels",
            # Under the class-disjoint protocol the test classes have no training examples to be
            # the nearest neighbour of: the unseen-class table measures raw pixels instead.
            {"error_simple": (Stat(100.0 * train_error), raw_test)},
        )
    )
    if select == "error_simple" and seen:
        baselines.append(Baseline("1-NN on raw pixels", 100.0 * test_error))
    return rows, baselines, measurement


def raw_pixel_unseen_row(run: TrainingRun, splits: DatasetSplits) -> UnseenRow:
    """Raw pixels on the unseen test classes: the few-shot simple rule (prototypes of raw
    pixels) on the run's episodes, and retrieval from raw pixels."""
    settings = run.few_shot_settings("test", variance=1.0)  # the simple rule ignores it
    values, intervals = raw_pixel_unseen(splits, settings, seed=run.config.seed)
    return UnseenRow(RAW_KEY, "Raw pixels", {"test": values}, intervals)


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
    errors, kinds = columns_of("error"), columns_of("retrieval")
    errors_table = ResultsTable(
        title=f"Errors (%) of the best configurations re-trained, mean ± std over N = {repeats}",
        rows=tuple(
            Row(
                loss,
                loss_label(loss),
                mean_std_cells([r.metrics for r in scores], errors),
                loss_family(loss),
            )
            for loss, scores in runs.items()
        ),
        caption=caption,
    )
    retrieval = ResultsTable(
        title=f"Retrieval and clustering (%) re-trained, mean ± std over N = {repeats}",
        rows=tuple(
            Row(
                loss,
                loss_label(loss),
                mean_std_cells([r.metrics for r in scores], kinds),
                loss_family(loss),
            )
            for loss, scores in runs.items()
        ),
        caption=caption,
        columns=kinds,
    )
    return Repeats(
        verdict=verdict_table(runs, select=select),
        errors=errors_table,
        retrieval=retrieval,
        runs=runs,
        seeds=seeds,
    )


def verdict_table(runs: Mapping[str, Sequence[Scores]], *, select: str) -> TextTable:
    """The losses ranked by the study's selection metric on the test split, with mean ± sd and
    95% confidence intervals, and the losses each cannot be told apart from; MAP@R beside it."""
    metrics = [select] + (["map_at_r"] if select != "map_at_r" else [])
    verdicts = {
        metric: verdict(
            {
                loss: [100.0 * s.test_value(metric) for s in scores]
                for loss, scores in runs.items()
            },
            metric=metric,
            lower_is_better=lower_is_better(metric),
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
        name = label_of(metric)
        header += [f"{name} (%)", "95% CI"]
    header.append("Not significantly different from")
    n = next(iter(primary.spreads.values())).n if primary.spreads else 0
    return TextTable(
        title=f"Verdict on the test split, N = {n} runs per loss",
        header=tuple(header),
        rows=tuple(rows),
        caption=(
            f"Losses ranked by the mean test {label_of(select)} of their "
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
        f"with the {'lowest' if study.mode == 'min' else 'highest'} {study.metric} of each loss's "
        "best trial. "
        f"{state}: {progress}."
    )


def hyperparameter_table(
    study: StudyFolder,
    selections: Mapping[str, Selection],
    configs: Mapping[str, TrainingConfig],
) -> TextTable:
    """The searched hyperparameters of each loss's selected trial, as stored in its checkpoint."""
    searched = {loss: set(searched_parameters(study.settings, loss)) for loss in selections}
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
                format_percent(100.0 * selection.best_value),
                *(
                    format_value(values[name]) if name in searched[loss] else MISSING
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


def _first_param(selections: Mapping[str, Selection], name: str) -> Any:
    return next((s.trial.params.get(name) for s in selections.values()), None)
