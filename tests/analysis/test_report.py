"""The study report on a tiny real study (2 losses x 2 trials on digits, made by ``study/run.py``
and stored in ``tests/data/study_tiny``: the ``study_dir`` and ``made`` fixtures of conftest.py)
and on corrupted copies of it, plus file-level checks of the selection rules."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from study_fixture import TINY_STUDY_LOSSES
from study_folders import write_manifest

from analysis import report as report_cli
from analysis.scores import select_best
from analysis.tables import loss_label, to_markdown
from repmet.config import TrainingConfig
from repmet.study_folder.layout import ITERATION, SELECTION_METRIC, TRIAL_FAILED, StudyFolderError
from repmet.study_folder.trials import find_latest_study, loss_trial_folders, read_study, read_trial
from repmet.training import TrainingRun, load_splits

LOSSES = TINY_STUDY_LOSSES
CELL = re.compile(r"^(\d+\.\d) \((\d+\.\d)\)$")
PLUS_MINUS_CELL = re.compile(r"^\d+\.\d ± \d+\.\d \(\d+\.\d ± \d+\.\d\)$")


def _copy(study_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "study"
    shutil.copytree(study_dir, copy, ignore=shutil.ignore_patterns("report"))
    return copy


def _markdown_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def _best_by_progress_csv(study_dir: Path, loss: str) -> tuple[str, int, float]:
    """Trial name, iteration and value of the lowest validation error, from progress.csv (not
    the result.json files the report reads)."""
    best = None
    for progress in sorted(t / "progress.csv" for t in loss_trial_folders(study_dir, loss)[1]):
        frame = pd.read_csv(progress)
        row = frame.loc[frame[SELECTION_METRIC].idxmin()]
        candidate = (float(row[SELECTION_METRIC]), progress.parent.name, int(row[ITERATION]))
        if best is None or candidate[0] < best[0]:
            best = candidate
    assert best is not None
    return best[1], best[2], best[0]


# ----------------------------------------------------------------------- the tiny real study


def test_table_has_every_loss_row_with_eight_numbers_in_percent(made) -> None:
    report, out = made
    rows = _markdown_rows(to_markdown(report.results.text()))
    assert to_markdown(report.results.text()) in (out / "results.md").read_text()
    for loss in LOSSES:
        cells = rows[loss_label(loss)]
        assert len(cells) == 4
        numbers = [float(x) for cell in cells for x in CELL.match(cell).groups()]
        assert len(numbers) == 8
        assert all(0.0 <= x <= 100.0 for x in numbers)
    untrained = next(cells for label, cells in rows.items() if label.startswith("Untrained"))
    assert all(CELL.match(cell) for cell in untrained)
    raw = rows["1-NN on raw pixels"]
    assert CELL.match(raw[0]) and raw[1:] == ["-", "-", "-"]
    assert "RepMet.v2: its loss never goes below alpha" in (out / "results.md").read_text()


def test_best_trial_and_checkpoint_are_the_lowest_validation_error(made, study_dir) -> None:
    report, _ = made
    table = _markdown_rows(to_markdown(report.hyperparameters))
    for loss in LOSSES:
        trial, iteration, value = _best_by_progress_csv(study_dir, loss)
        cells = table[loss_label(loss)]
        # Trial | Checkpoint iteration | Val. error (%) in the hyperparameter table
        assert cells[:3] == [trial, str(iteration), f"{100 * value:.1f}"]


@pytest.fixture(scope="module")
def fresh_test_metrics(study_dir: Path) -> dict[str, dict[str, float]]:
    """Per loss, the test metrics of a fresh evaluation of the checkpoint that ``progress.csv``
    says is its best (the one checkpoint saved at that iteration)."""
    measured = {}
    for loss in LOSSES:
        trial, iteration, _ = _best_by_progress_csv(study_dir, loss)
        folder = loss_trial_folders(study_dir, loss)[0] / trial
        checkpoints = sorted(folder.glob("checkpoint_*/trial.pt"))
        saved = [
            p for p in checkpoints if torch.load(p, weights_only=True)["iteration"] == iteration
        ]
        assert len(saved) == 1
        run = TrainingRun.load(saved[0], device="cpu")
        measured[loss] = run.measure("test").metrics["test"]
    return measured


def test_test_numbers_equal_a_fresh_evaluation_of_the_best_checkpoint(
    made, fresh_test_metrics
) -> None:
    _, out = made
    by_loss = {row["loss"]: row for row in csv.DictReader((out / "results.csv").open())}
    for loss in LOSSES:
        fresh = fresh_test_metrics[loss]
        for kind in ("error_simple", "error_magnet", "error_repmet", "error_unsupervised"):
            error = fresh[kind]
            assert float(by_loss[loss][f"{kind}_test"]) == pytest.approx(100 * error, abs=1e-3)


def test_raw_pixel_nearest_neighbour_matches_brute_force(made, study_dir) -> None:
    _, out = made
    row = next(r for r in csv.DictReader((out / "results.csv").open()) if r["loss"] == "raw-1nn")
    fixed = json.loads((study_dir / "study.json").read_text())["fixed"]
    splits = load_splits(TrainingConfig.from_dict(fixed))
    train = splits.train.evaluation_view()
    x = train.get_batch(torch.arange(len(train))).reshape(len(train), -1).double()
    y = train.labels
    distances = torch.cdist(x, x)
    distances.fill_diagonal_(float("inf"))
    loo_error = (y[distances.argmin(dim=1)] != y).double().mean().item()
    test = splits.test.evaluation_view()
    q = test.get_batch(torch.arange(len(test))).reshape(len(test), -1).double()
    test_error = (y[torch.cdist(q, x).argmin(dim=1)] != test.labels).double().mean().item()
    assert float(row["error_simple_train"]) == pytest.approx(100 * loo_error, abs=1e-3)
    assert float(row["error_simple_test"]) == pytest.approx(100 * test_error, abs=1e-3)
    assert row["error_magnet_train"] == row["error_unsupervised_test"] == ""


def test_trial_counts_and_caption(made) -> None:
    report, _ = made
    assert "Study complete" in report.results.caption
    for loss in LOSSES:
        assert f"{loss_label(loss)} 2 of 2 trials finished" in report.results.caption
    counts = {row[0]: row[1:] for row in report.trials.rows}
    for loss in LOSSES:
        run, finished, completed, stopped, failed, running = counts[loss_label(loss)]
        assert (run, finished, failed, running) == ("2", "2 of 2", "0", "0")
        assert int(completed) + int(stopped) == 2


def test_csv_and_latex_hold_every_row(made) -> None:
    _, out = made
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [row["loss"] for row in rows] == [*LOSSES, "untrained", "raw-1nn"]
    for row in rows[:3]:
        values = [float(v) for k, v in row.items() if k not in ("loss", "label")]
        assert len(values) == 8 and all(0 <= v <= 100 for v in values)
    latex = (out / "results.tex").read_text()
    assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") >= 1
    body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    labels = [line.split(" & ")[0] for line in body.strip().splitlines()]
    assert labels == [
        "Magnet Loss",
        "RepMet.v2",
        "Untrained network (Magnet Loss config)",
        "1-NN on raw pixels",
    ]
    # errors, retrieval, verdict, repeated errors, repeated retrieval, hyperparameters, trials
    assert latex.count(r"\begin{tabular}") == 7
    assert r"$\pm$" in latex


def test_html_page_links_every_png_and_they_exist(made) -> None:
    _, out = made
    page = (out / "report.html").read_text()
    linked = set(re.findall(r'<img src="([^"]+)"', page))
    expected = {"val_error_curves.png", "loss_comparison.png", "search_history.png"}
    expected |= {f"embedding_{loss}.png" for loss in LOSSES}
    expected |= {f"search_{loss}_{view}.png" for loss in LOSSES for view in ("slices", "parallel")}
    assert linked == expected  # no importances: 2 trials per loss are too few
    assert linked == {p.name for p in out.glob("*.png")}
    assert all((out / name).stat().st_size > 1000 for name in linked)
    assert "<table>" in page and "Magnet Loss" in page


def test_every_figure_fits_the_page_at_its_real_size(made) -> None:
    from PIL import Image

    from analysis.plots import DPI, MAX_WIDTH

    _, out = made
    for png in out.glob("*.png"):
        with Image.open(png) as image:
            width, height = image.size
        assert 300 <= width <= MAX_WIDTH * DPI + 40, (png.name, width)
        assert 200 <= height <= 1400, (png.name, height)
    page = (out / "report.html").read_text()
    for name, width, height in re.findall(
        r'<img src="([^"]+)" alt="[^"]*" width="(\d+)" '
        r'height="(\d+)"',
        page,
    ):
        with Image.open(out / name) as image:
            assert image.size == (int(width), int(height))


def test_contents_link_every_section_and_the_results_come_first(made) -> None:
    _, out = made
    page = (out / "report.html").read_text()
    contents = page.split('<nav class="contents">')[1].split("</nav>")[0]
    links = re.findall(r'href="#([^"]+)"', contents)
    ids = set(re.findall(r' id="([^"]+)"', page))
    assert links and set(links) <= ids
    sections = re.findall(r'<section (?:class="[^"]*" )?id="([^"]+)"', page)
    assert sections[:3] == ["warnings", "results", "repeats"]
    assert {"settings", "hyperparameters", "trials", "figures"} <= set(sections)
    assert set(sections) <= set(links)
    assert page.index('id="warnings"') < page.index('<nav class="contents">')
    assert page.index('id="errors"') < page.index('id="comparison"') < page.index('id="settings"')


def test_settings_say_how_the_study_was_run(made, study_dir) -> None:
    report, out = made
    settings = dict(report.settings.rows)
    manifest = json.loads((study_dir / "study.json").read_text())
    splits = load_splits(TrainingConfig.from_dict(manifest["fixed"]))
    assert settings["Data set"].startswith(
        f"digits: {len(splits.train):,} train / {len(splits.val):,} validation / "
        f"{len(splits.test):,} test examples, 10 classes, 1x8x8 inputs"
    )
    assert settings["Model"].startswith("small-cnn")
    assert settings["Training per trial"].startswith("20 iterations, validation every 10")
    assert settings["Trials per loss"] == "2"
    assert settings["Sampler"] == "Optuna TPE, seed 0"
    assert settings["Scheduler"].startswith("none")
    assert settings["Seeds"] == "trials 0, data split 0, sampler 0"
    hardware = settings["Hardware"]
    # the machine that ran the study (tests/study_fixture.py), not necessarily this one
    assert f"cpus {manifest['hardware']['cpus']}" in hardware and "torch" in hardware
    assert "trials on cpu" in hardware
    assert settings["Duration"].startswith("started ") and "later" in settings["Duration"]
    assert settings["Repeats"] == "2 re-trained runs per loss, seeds 1..2"
    assert "--smoke" in settings["Command"]
    markdown = (out / "results.md").read_text()
    assert "### Settings" in markdown and "| Trials per loss | 2 |" in markdown


def test_a_smoke_study_is_flagged_at_the_top(made) -> None:
    report, out = made
    assert report.warnings[0].startswith("Smoke-sized study (run with --smoke; 20 training")
    assert any(w.startswith("Few trials") for w in report.warnings)
    markdown = (out / "results.md").read_text()
    first = markdown.index("> **Warning.** Smoke-sized study")
    assert first < markdown.index("### Errors (%)")
    assert any("importances skipped" in note for note in report.figure_notes)


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_a_damaged_optuna_db_costs_only_its_views(damage, study_dir, tmp_path, capsys) -> None:
    study = _copy(study_dir, tmp_path)
    database = study / "optuna.db"
    data = database.read_bytes()
    if damage == "truncated":
        database.write_bytes(data[: len(data) // 2])
        reason = "database disk image is malformed"
    else:
        database.write_bytes(np.random.default_rng(0).bytes(len(data)))
        reason = "file is not a database"
    before = database.read_bytes()
    out = tmp_path / "report"
    argv = [str(study), "--format", "markdown", "--out", str(out), "--device", "cpu"]
    assert report_cli.main(argv) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if "optuna.db" in line]
    assert skipped == [
        "Optuna views (search history, importances, slices, parallel coordinates) skipped for "
        f"magnet, repmet-v2: optuna.db is unreadable ({reason})"
    ]
    markdown = (out / "results.md").read_text()
    assert skipped[0] in markdown and "| Magnet Loss |" in markdown
    assert not list(out.glob("search_*.png"))
    assert {"loss_comparison.png", "val_error_curves.png"} <= {p.name for p in out.glob("*.png")}
    assert database.read_bytes() == before  # opened read-only


def test_repeats_report_mean_and_std_over_new_seeds(made, study_dir) -> None:
    report, out = made
    assert report.repeats is not None and "N = 2" in report.repeats.errors.caption
    rows = _markdown_rows(to_markdown(report.repeats.errors.text()))
    assert all(PLUS_MINUS_CELL.match(cell) for loss in LOSSES for cell in rows[loss_label(loss)])
    # Independent re-computation of the magnet row: seeds 1 and 2 of its best configuration, each
    # measured on the test split at its best validation step.
    trial_name, _, _ = _best_by_progress_csv(study_dir, "magnet")
    trial = loss_trial_folders(study_dir, "magnet")[0] / trial_name
    params = json.loads((trial / "params.json").read_text())
    errors = []
    for seed in (1, 2):
        run = TrainingRun(TrainingConfig.from_dict({**params, "seed": seed}))
        best_error, best_state = float("inf"), None
        while run.iteration < run.config.iterations:
            run.train(min(run.config.eval_every, run.config.iterations - run.iteration))
            error = run.measure("val").metrics["val"]["error_simple"]
            if error < best_error:
                best_error, best_state = error, copy.deepcopy(run.measured_state())
        run.load_measured_state(best_state)
        errors.append(100 * run.measure("test").metrics["test"]["error_simple"])
    repeated = next(
        r for r in csv.DictReader((out / "results_repeats.csv").open()) if r["loss"] == "magnet"
    )
    assert float(repeated["error_simple_test"]) == pytest.approx(np.mean(errors), abs=1e-3)
    spread = float(repeated["error_simple_test_std"])
    assert spread == pytest.approx(np.std(errors, ddof=1), abs=1e-3)


def test_a_running_study_says_how_many_trials_finished(study_dir, tmp_path, capsys) -> None:
    study = _copy(study_dir, tmp_path)
    manifest = json.loads((study / "study.json").read_text())
    manifest["status"]["repmet-v2"] = "running"
    (study / "study.json").write_text(json.dumps(manifest))
    result = loss_trial_folders(study, "repmet-v2")[1][0] / "result.json"
    lines = result.read_text().splitlines(keepends=True)
    result.write_text("".join(lines[:-1]))  # its final (done) result not written yet
    out = tmp_path / "csv_only"
    argv = [str(study), "--no-plots", "--format", "csv", "--out", str(out), "--device", "cpu"]
    assert report_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "| Loss | Simple Error | Magnet Error | RepMet Error | Unsup. Error |" in captured.out
    assert "Study still running" in captured.out
    assert "RepMet.v2 1 of 2 trials finished" in captured.out
    assert "Magnet Loss 2 of 2 trials finished" in captured.out
    assert "evaluating magnet" in captured.err and "evaluating repmet-v2" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.csv", "retrieval.csv"]


# ----------------------------------------------------------------- corrupt or partial folders


def _fails_with(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert report_cli.main([*argv, "--no-plots", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("analysis/report.py: error: "), err
    return err[0]


def test_best_trial_without_checkpoints_is_named(study_dir, tmp_path, capsys) -> None:
    study = _copy(study_dir, tmp_path)
    for trial in loss_trial_folders(study, "magnet")[1]:
        for checkpoint in trial.glob("checkpoint_*"):
            shutil.rmtree(checkpoint)
    best, _, _ = _best_by_progress_csv(study, "magnet")
    message = _fails_with([str(study)], capsys)
    assert f"no checkpoint in trial {best}" in message


def test_garbage_result_json_is_named(study_dir, tmp_path, capsys) -> None:
    study = _copy(study_dir, tmp_path)
    result = loss_trial_folders(study, "repmet-v2")[1][0] / "result.json"
    result.write_text("garbage, not json\n")
    message = _fails_with([str(study)], capsys)
    assert "unreadable result.json" in message and result.parent.name in message


def test_missing_loss_folder_is_named(study_dir, tmp_path, capsys) -> None:
    study = _copy(study_dir, tmp_path)
    for trial in loss_trial_folders(study, "repmet-v2")[1]:
        shutil.rmtree(trial)
    assert "no trials for loss repmet-v2" in _fails_with([str(study)], capsys)


def test_corrupt_checkpoint_is_named(study_dir, tmp_path, capsys) -> None:
    study = _copy(study_dir, tmp_path)
    best, _, _ = _best_by_progress_csv(study, "magnet")
    for state in (loss_trial_folders(study, "magnet")[0] / best).glob("checkpoint_*/trial.pt"):
        state.write_bytes(b"not a torch file")
    message = _fails_with([str(study)], capsys)
    assert "unreadable checkpoint" in message and best in message


# ------------------------------------------------------------------ file-level selection rules


def _fake_trial(folder: Path, name: str, errors: list[float], saved: list[int]) -> None:
    """A trial folder whose result.json names the checkpoint of the steps in ``saved``."""
    trial = folder / name
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(
        json.dumps({"loss": "magnet", "iterations": 10 * len(errors)})
    )
    lines = []
    for step, error in enumerate(errors, start=1):
        row = {ITERATION: 10 * step, SELECTION_METRIC: error, "done": step == len(errors)}
        if step in saved:
            row["checkpoint_dir_name"] = f"checkpoint_{step:06d}"
            (trial / row["checkpoint_dir_name"]).mkdir()
            (trial / row["checkpoint_dir_name"] / "trial.pt").write_bytes(b"")
        lines.append(json.dumps(row))
    (trial / "result.json").write_text("\n".join(lines) + "\n")


def _fake_study(folder: Path) -> Path:
    write_manifest(folder, num_samples=2)
    return folder


def test_selection_falls_back_to_the_latest_checkpoint_and_says_so(tmp_path) -> None:
    study = _fake_study(tmp_path / "s")
    _fake_trial(study / "magnet", "a", [0.5, 0.4, 0.45], saved=[1, 3])
    _fake_trial(study / "magnet", "b", [0.3, 0.2, 0.25], saved=[1, 3])
    selection = select_best(read_study(study).losses["magnet"], metric=SELECTION_METRIC, mode="min")
    assert selection.trial.name == "b" and selection.best.iteration == 20
    assert selection.checkpoint_iteration == 30
    assert selection.checkpoint_dir.name == "checkpoint_000003"
    assert "iteration 20" in selection.note and "iteration 30" in selection.note


def test_selection_prefers_a_checkpointed_step_among_equal_errors(tmp_path) -> None:
    study = _fake_study(tmp_path / "s")
    _fake_trial(study / "magnet", "a", [0.2, 0.2, 0.3], saved=[2, 3])
    selection = select_best(read_study(study).losses["magnet"], metric=SELECTION_METRIC, mode="min")
    assert (selection.checkpoint_iteration, selection.note) == (20, None)


def test_trial_status_from_files(tmp_path) -> None:
    _fake_trial(tmp_path, "done", [0.5, 0.4], saved=[2])
    _fake_trial(tmp_path, "stopped", [0.5], saved=[1])
    trial = tmp_path / "stopped"
    (trial / "params.json").write_text(json.dumps({"iterations": 30}))
    _fake_trial(tmp_path, "failed", [0.5], saved=[])
    failed = tmp_path / "failed"
    (failed / "result.json").write_text(json.dumps({ITERATION: 10, "done": False}) + "\n")
    (failed / "error.txt").write_text("boom")
    statuses = {
        name: read_trial(tmp_path / name).status.value for name in ("done", "stopped", "failed")
    }
    assert statuses == {"done": "completed", "stopped": "stopped early", "failed": "failed"}


def test_warnings_name_unlearned_unfinished_and_failed_losses(tmp_path) -> None:
    from analysis.study_summary import Baseline, study_warnings

    study = _fake_study(tmp_path / "s")
    write_manifest(study, num_samples=3)
    _fake_trial(study / "magnet", "a", [0.5, 0.4], saved=[2])
    _fake_trial(study / "magnet", "b", [0.5], saved=[])
    failed = {ITERATION: 10, TRIAL_FAILED: "the loss diverged (NaN at iteration 7)", "done": True}
    (study / "magnet" / "b" / "result.json").write_text(json.dumps(failed) + "\n")
    warnings = study_warnings(
        read_study(study),
        select="error_simple",
        test_values={"magnet": 40.0},
        untrained=Baseline("untrained network", 30.0),
        repeats=0,
    )
    assert [w.split(":")[0] for w in warnings] == [
        "Trained worse than untrained",
        "Unfinished study",
        "Failed trials",
        "Few trials",
        "One training run per loss (no --repeats)",
    ]
    assert "Magnet Loss 40.0% is higher than the untrained network's (30.0%)" in warnings[0]
    assert "Magnet Loss 2 of 3" in warnings[1]
    assert "Magnet Loss 1 of 3 (b: the loss diverged (NaN at iteration 7))" in warnings[2]
    assert "Magnet Loss 1 (< 10)" in warnings[3]
    better = study_warnings(
        read_study(study),
        select="map_at_r",
        test_values={"magnet": 40.0},
        untrained=Baseline("untrained network", 30.0),
        repeats=3,
    )
    assert not any(w.startswith(("Trained worse", "One training run")) for w in better)


def test_latest_study_is_the_most_recently_modified(tmp_path) -> None:
    for age, name in ((200, "old"), (100, "new")):
        folder = _fake_study(tmp_path / name)
        stamp = 1_000_000 - age
        os.utime(folder / "study.json", (stamp, stamp))
        os.utime(folder, (stamp, stamp))
    (tmp_path / "not_a_study").mkdir()
    assert find_latest_study(tmp_path) == tmp_path / "new"
    with pytest.raises(StudyFolderError, match="no study folder"):
        find_latest_study(tmp_path / "not_a_study")


def test_one_selection_rule_from_search_to_report(made, study_dir) -> None:
    """Optuna's best value, Tune's best result and the report's validation error of the selected
    trial are one number: the best step of the selected trial."""
    import optuna

    from repmet.study_folder.layout import best_metric

    report, _ = made
    study = read_study(study_dir)
    shown = {row[0]: row[3] for row in report.hyperparameters.rows}  # label -> Val. error (%)
    for loss in LOSSES:
        selection = select_best(study.losses[loss], metric=study.metric, mode=study.mode)
        storage = f"sqlite:///{study_dir / 'optuna.db'}"
        best = optuna.load_study(study_name=loss, storage=storage).best_trial
        assert best.value == pytest.approx(selection.best_value, abs=1e-12)
        last = selection.trial.steps[-1].metrics
        assert last[best_metric("error_simple")] == pytest.approx(selection.best_value, abs=1e-12)
        assert shown[loss_label(loss)] == f"{100 * selection.best_value:.1f}"


def test_retrieval_table_equals_a_fresh_measurement_of_the_best_checkpoint(
    made, fresh_test_metrics
):
    report, out = made
    by_loss = {row["loss"]: row for row in csv.DictReader((out / "retrieval.csv").open())}
    for loss in LOSSES:
        fresh = fresh_test_metrics[loss]
        for name in ("p_at_1", "r_precision", "map_at_r", "nmi", "ami"):
            assert float(by_loss[loss][f"{name}_test"]) == pytest.approx(
                100 * fresh[name], abs=1e-3
            )
    header = report.retrieval.text().header
    assert header == ("Loss", "P@1", "R-Prec", "MAP@R", "NMI", "AMI")


def test_verdict_ranks_the_repeated_losses_with_intervals(made) -> None:
    report, _ = made
    verdict = report.repeats.verdict
    assert verdict.header[:4] == ("Rank", "Loss", "simple error (%)", "95% CI")
    assert [row[0] for row in verdict.rows] == ["1", "2"]
    assert {row[1] for row in verdict.rows} == {loss_label(loss) for loss in LOSSES}
    means = [float(row[2].split(" ± ")[0]) for row in verdict.rows]
    assert means == sorted(means)
    for row in verdict.rows:
        low, high = (float(x) for x in row[3].strip("[]").split(", "))
        assert low <= float(row[2].split(" ± ")[0]) <= high


def test_search_views_include_the_trials_stopped_early(tmp_path) -> None:
    """With ASHA most trials end PRUNED, at the objective they had reached: the history, slice
    and parallel-coordinate views must show them, the importances (fANOVA) only completed ones."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from analysis.search_plots import plot_search_views, read_searches

    path = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="repmet-v2", storage=f"sqlite:///{path}")
    space = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
    for state, lr, value in (
        (TrialState.COMPLETE, 1e-3, 0.02),
        (TrialState.PRUNED, 2e-3, 0.05),
        (TrialState.PRUNED, 5e-3, 0.08),
    ):
        trial = create_trial(state=state, value=value, params={"lr": lr}, distributions=space)
        study.add_trial(trial)
    searches, notes = read_searches(path, ["repmet-v2"])
    search = searches["repmet-v2"]
    assert notes == [] and len(search.completed) == 1 and len(search.scored) == 3
    figures = tmp_path / "figures"
    figures.mkdir()
    plots = plot_search_views(path, ["repmet-v2"], select="error_simple", folder=figures)
    drawn = {picture.file for picture in plots.pictures}
    assert {"search_repmet-v2_slices.png", "search_repmet-v2_parallel.png"} <= drawn
    assert "search_history.png" in drawn and "search_importances.png" not in drawn
