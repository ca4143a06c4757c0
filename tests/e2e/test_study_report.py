"""The chain from a study to its report, live: the tiny study of ``tests/study_fixture.py`` run on
real Ray and reported, the stored copy the report tests read checked against it, and the report
command as a process of its own."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from processes import REPOSITORY
from study_fixture import STORED_STUDY, TINY_STUDY_LOSSES, run_tiny_study, stored_files

from analysis import report as report_cli
from analysis.tables import loss_label


@pytest.fixture(scope="module")
def live_study(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_tiny_study(tmp_path_factory.mktemp("studies"))


def _layout(folder: Path) -> set[str]:
    """The stored files of a study, its trials named without Tune's random trial id."""
    return {re.sub(r"(trial_\d+)_[0-9a-f]+", r"\1", str(p)) for p in stored_files(folder)}


def test_the_stored_study_has_the_files_and_format_a_study_writes_today(live_study) -> None:
    rerun = "the stored study is out of date: rerun `PYTHONPATH=. python tests/study_fixture.py`"
    assert _layout(live_study) == _layout(STORED_STUDY), rerun
    live, stored = (json.loads((f / "study.json").read_text()) for f in (live_study, STORED_STUDY))
    assert (live["version"], sorted(live)) == (stored["version"], sorted(stored)), rerun
    assert (live["fixed"], live["baseline"]) == (stored["fixed"], stored["baseline"]), rerun


def test_a_study_is_reported(live_study, tmp_path) -> None:
    out = tmp_path / "report"
    args = report_cli.parse_args([str(live_study), "--device", "cpu", "--out", str(out)])
    report = report_cli.run(args)
    rows = {row.key: row for row in report.results.rows}
    assert set(TINY_STUDY_LOSSES) <= set(rows)
    for loss in TINY_STUDY_LOSSES:
        for stat in (*rows[loss].values["error_simple"], *rows[loss].values["error_unsupervised"]):
            assert 0.0 <= stat.mean <= 100.0
    assert "Study complete" in report.results.caption
    page = (out / "report.html").read_text()
    assert all(loss_label(loss) in page for loss in TINY_STUDY_LOSSES)
    assert (out / "results.md").is_file() and list(out.glob("embedding_*.png"))


def test_missing_manifest_is_one_line_from_the_command_line(study_dir, tmp_path) -> None:
    study = tmp_path / "study"
    shutil.copytree(study_dir, study)
    (study / "study.json").unlink()
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "analysis" / "report.py"), str(study), "--no-plots"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("analysis/report.py: error: ")
    assert "study.json" in lines[0]
