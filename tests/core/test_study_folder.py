"""The study-folder package is the one contract of a study folder: it loads neither torch nor Ray,
reads every manifest format through one reader, decides how a trial ended by one rule (for the
report, ``trials.csv``, Optuna and the driver), says what was searched for a loss by one rule, and
names trial folders in one place; and the layers import only what they may (nothing in ``study/``
imports the report, the report imports neither the search spaces nor the driver)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from study_folders import write_manifest, write_trial

from repmet.catalogue import LOSSES, REFERENCE
from repmet.study_folder.layout import (
    DONE,
    EXPERIMENT_DIR,
    FORMAT_VERSION,
    ITERATION,
    MANIFEST_FILE,
    TRIAL_FAILED,
    StudyFolderError,
    experiment_trial_name,
    trial_loss,
    trial_number,
)
from repmet.study_folder.manifest import read_manifest
from repmet.study_folder.searched import searched_by_any, searched_parameters
from repmet.study_folder.trials import TrialStatus, read_study, read_trial, trial_outcome
from repmet.study_folder.trials_csv import write_trials_csv

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "study_v1"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("study", {"analysis"}),  # the driver writes trials.csv through the study-folder package
        ("analysis", {"study", "search_spaces", "trainables"}),
        ("repmet", {"study", "analysis", "search_spaces", "trainables", "ray"}),
    ],
)
def test_the_layers_import_only_what_they_may(package: str, forbidden: set[str]) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) >= 5  # the walk found the package
    offending = {
        str(path.relative_to(ROOT)): sorted(
            name for name in _imported_modules(path) if name.split(".")[0] in forbidden
        )
        for path in files
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_import_walk_sees_function_level_imports(tmp_path: Path) -> None:
    # The analysis is often imported inside functions: the walk must find those too.
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from analysis.scores import select_best\n    import json\n")
    assert _imported_modules(source) == {"analysis.scores", "json"}


# ------------------------------------------------------------------------------- manifest


def test_the_golden_format_1_manifest_reads_as_todays_model() -> None:
    manifest = read_manifest(GOLDEN)
    stored = json.loads((GOLDEN / MANIFEST_FILE).read_text())
    assert manifest.version == 1 and manifest.version < FORMAT_VERSION
    assert manifest.settings.losses == ("magnet", "repmet-v2")
    assert manifest.settings.metric == stored["metric"] == "val/error_simple"
    assert (manifest.settings.select, manifest.settings.mode) == ("error_simple", "min")
    assert manifest.settings.baseline == stored["baseline"]
    assert manifest.status == {"magnet": "finished", "repmet-v2": "finished"}
    assert (manifest.hardware, manifest.elapsed_s) == ({}, 0.0)  # not recorded in format 1
    # The report reads the same object the study resumes from.
    assert read_study(GOLDEN).manifest == manifest


def test_format_1_before_the_sampler_option_is_upgraded_to_tpe(tmp_path: Path) -> None:
    values = json.loads((GOLDEN / MANIFEST_FILE).read_text())
    del values["sampler"], values["version"]  # the first manifests had neither
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(values))
    manifest = read_manifest(tmp_path)
    assert (manifest.version, manifest.settings.sampler) == (1, "tpe")
    # A format 2 manifest must say its sampler: only format 1 is upgraded.
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({**values, "version": 2}))
    with pytest.raises(StudyFolderError, match="lacks the fields: sampler"):
        read_manifest(tmp_path)


def test_the_current_format_round_trips(tmp_path: Path) -> None:
    written = write_manifest(tmp_path, losses=("magnet", "softmax"), num_samples=3)
    read = read_manifest(tmp_path)
    assert read == written and read.version == FORMAT_VERSION


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "unreadable study.json (study manifest)"),
        ("[1, 2]", "is not a JSON object"),
        (json.dumps({"version": FORMAT_VERSION + 1}), "written by a later release"),
        (json.dumps({"version": "two"}), "is not a format number"),
        (json.dumps({"version": 2, "losses": ["magnet"]}), "lacks the fields: baseline"),
    ],
)
def test_a_bad_manifest_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / MANIFEST_FILE).write_text(text)
    with pytest.raises(StudyFolderError, match=re.escape(message)) as raised:
        read_manifest(tmp_path)
    assert "\n" not in str(raised.value) and MANIFEST_FILE in str(raised.value)


def test_a_damaged_field_is_named(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path)
    values = manifest.to_dict()
    values["status"] = None
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(values))
    with pytest.raises(StudyFolderError, match=r"is damaged \(AttributeError"):
        read_manifest(tmp_path)


# ------------------------------------------------------------------------- trial outcomes


@pytest.mark.parametrize(
    ("last", "status"),
    [
        ({ITERATION: 30, DONE: True}, TrialStatus.COMPLETED),
        ({ITERATION: 40, DONE: True}, TrialStatus.COMPLETED),
        ({ITERATION: 20, DONE: True}, TrialStatus.STOPPED),
        ({DONE: True}, TrialStatus.STOPPED),  # no iteration: not shown to have trained to the end
        ({ITERATION: 30, TRIAL_FAILED: "diverged", DONE: True}, TrialStatus.FAILED),
        ({ITERATION: 10, TRIAL_FAILED: "diverged"}, TrialStatus.FAILED),
    ],
)
def test_how_a_trial_ended(last: dict, status: TrialStatus) -> None:
    assert trial_outcome(last, iterations=30) is status


def test_a_trial_without_a_final_result_is_running_or_failed_by_its_error(tmp_path: Path) -> None:
    running = write_trial(tmp_path / "running", [{ITERATION: 10, DONE: False}])
    errored = write_trial(tmp_path / "errored", [{ITERATION: 10, DONE: False}])
    (errored / "error.txt").write_text("Traceback ...\nRuntimeError: boom\n")
    assert read_trial(running).status is TrialStatus.RUNNING
    trial = read_trial(errored)
    assert (trial.status, trial.failure) == (TrialStatus.FAILED, "RuntimeError: boom")


# ------------------------------------------------------------------------ what was searched


def test_what_was_searched_is_the_baseline_point_also_for_a_plugin_loss(tmp_path: Path) -> None:
    plugin = "not-registered-here"
    assert plugin not in LOSSES
    manifest = write_manifest(
        tmp_path,
        losses=("magnet", plugin, "softmax"),
        baseline={plugin: {"lr": 0.01, "k": 2}, "softmax": {"lr": 0.1}},
    )
    settings = manifest.settings
    assert searched_parameters(settings, plugin) == ("lr", "k")
    assert searched_parameters(settings, "softmax") == ("lr",)  # the record, not the catalogue
    assert searched_parameters(settings, "magnet") == LOSSES.get("magnet").searched
    assert searched_parameters(settings, "unknown") == ()
    assert searched_by_any(settings, [plugin, "softmax"]) == ["lr", "k"]

    # trials.csv fills a plugin loss's searched columns from the same rule.
    params = {"loss": plugin, "lr": 0.02, "k": 4, "iterations": 30, "alpha": 9.0}
    trial = tmp_path / EXPERIMENT_DIR / experiment_trial_name(plugin, 1, "abc")
    trial.mkdir(parents=True)
    (trial / "params.json").write_text(json.dumps(params))
    (trial / "result.json").write_text(json.dumps({ITERATION: 30, DONE: True}) + "\n")
    table = (write_trials_csv(tmp_path)).read_text().splitlines()
    header, row = table[0].split(","), table[1].split(",")
    assert header[:4] == ["loss", "trial", "lr", "k"] and "alpha" not in header
    assert row[:4] == [plugin, "1", "0.02", "4"]


# --------------------------------------------------------------------------- trial folders


def test_trial_folder_names_are_built_and_parsed_in_one_place() -> None:
    name = experiment_trial_name("repmet-v2", 7, "5e0a1_00006")
    assert name == "repmet-v2-trial_007_5e0a1_00006"
    assert (trial_number(name), trial_loss(name)) == (7, "repmet-v2")
    assert (trial_number("trial_007_5e0a1"), trial_loss("trial_007_5e0a1")) == (7, None)
    assert trial_number("abc") is None and trial_number("trial_x_abc") is None


def test_the_golden_trials_carry_their_numbers() -> None:
    study = read_study(GOLDEN)
    numbers = {loss: [t.number for t in f.trials] for loss, f in study.losses.items()}
    assert numbers == {"magnet": [1, 2], "repmet-v2": [1, 2]}


def test_the_reference_loss_is_catalogued_and_searched_by_every_family_space() -> None:
    from search_spaces import SEARCH_SPACES

    assert REFERENCE in LOSSES
    family = [s for s in SEARCH_SPACES.names() if s not in ("all", REFERENCE)]
    assert family and all(REFERENCE in SEARCH_SPACES.get(s).losses for s in family)
