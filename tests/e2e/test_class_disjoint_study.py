"""A class-disjoint study on real Ray (in this process, on the shared Ray), resumed under the other
protocol, and its report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from analysis import report as report_cli
from repmet.protocols import CLASS_DISJOINT
from repmet.study_folder.trials import loss_trial_folders
from study.run import main as study_main


def test_a_class_disjoint_study_selects_by_few_shot_accuracy_and_reports_unseen_classes(
    ray_local, tmp_path: Path, capsys
) -> None:
    flags = ["--space", "repmet", "--losses", "repmet-v2", "--smoke", "--dataset", "glyphs"]
    flags += ["--protocol", "class-disjoint", "--few-shot-val-episodes", "20"]
    flags += ["--select", "fewshot_5shot_simple", "--storage", str(tmp_path), "--name", "u"]
    assert study_main(flags) == 0, capsys.readouterr()
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

    capsys.readouterr()
    assert study_main([*flags, "--resume", "--protocol", "closed-set"]) == 2
    assert "--protocol closed-set (stored: class-disjoint)" in capsys.readouterr().err

    assert report_cli.main([str(folder), "--device", "cpu"]) == 0
    shown = capsys.readouterr().out
    assert "### Unseen classes (%)" in shown
    assert "| Raw pixels |" in shown and "| 5-shot simple |" in shown
    assert "class-disjoint protocol, fold 0: 39 / 12 / 51 classes" in shown
    page = (folder / "report" / "report.html").read_text()
    assert 'id="unseen"' in page and "embedding_repmet-v2.png" in page
    assert (folder / "report" / "embedding_repmet-v2.png").stat().st_size > 0
