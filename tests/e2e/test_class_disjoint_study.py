"""A class-disjoint study on real Ray, resumed under the other protocol, and its report, each
command a process of its own."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from processes import REPOSITORY, run_study, subprocess_env

from repmet.protocols import CLASS_DISJOINT
from repmet.study_folder.trials import loss_trial_folders


def test_a_class_disjoint_study_selects_by_few_shot_accuracy_and_reports_unseen_classes(
    tmp_path: Path,
) -> None:
    flags = ["--space", "repmet", "--losses", "repmet-v2", "--smoke", "--dataset", "glyphs"]
    flags += ["--protocol", "class-disjoint", "--few-shot-val-episodes", "20"]
    flags += ["--select", "fewshot_5shot_simple", "--storage", str(tmp_path), "--name", "u"]
    done = run_study(*flags)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "u"
    manifest = json.loads((folder / "study.json").read_text())
    assert manifest["fixed"]["protocol"] == CLASS_DISJOINT
    assert manifest["metric"] == "val/fewshot_5shot_simple"
    assert sorted(p.name for p in (folder / "episodes").iterdir()) == [
        "test_1shot.pt", "test_5shot.pt", "val_1shot.pt", "val_5shot.pt",
    ]  # fmt: skip
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert rows and "val/fewshot_5shot_simple" in rows[0] and "val/error_simple" not in rows[0]
    assert all(0.0 < float(row["val/fewshot_5shot_simple"]) <= 1.0 for row in rows)
    steps = [
        json.loads(line)
        for trial in loss_trial_folders(folder, "repmet-v2")[1]
        for line in (trial / "result.json").read_text().splitlines()
    ]
    assert steps and all("val/best/fewshot_5shot_simple" in step for step in steps)

    other = run_study(*flags, "--resume", "--protocol", "closed-set")
    assert other.returncode == 2
    assert "--protocol closed-set (stored: class-disjoint)" in other.stderr

    report = [sys.executable, str(REPOSITORY / "analysis" / "report.py"), str(folder)]
    shown = subprocess.run(
        [*report, "--device", "cpu"], env=subprocess_env(), capture_output=True,
        text=True, timeout=600, cwd=REPOSITORY,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "### Unseen classes (%)" in shown.stdout
    assert "| Raw pixels |" in shown.stdout and "| 5-shot simple |" in shown.stdout
    assert "class-disjoint protocol, fold 0: 39 / 12 / 51 classes" in shown.stdout
    page = (folder / "report" / "report.html").read_text()
    assert 'id="unseen"' in page and "embedding_repmet-v2.png" in page
    assert (folder / "report" / "embedding_repmet-v2.png").stat().st_size > 0
