"""A manifest for a study folder that a test writes by hand: every field today's format has, with
the values of a small closed-set study, so that the one manifest reader takes it as a study's;
and a trial folder with the results a test gives."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repmet.study_folder.layout import SELECTION_METRIC
from repmet.study_folder.manifest import Manifest, StudySettings


def study_settings(
    *,
    losses: tuple[str, ...] = ("magnet",),
    num_samples: int = 2,
    baseline: Mapping[str, Mapping[str, Any]] | None = None,
    **changes: Any,
) -> StudySettings:
    """The settings of a small closed-set study of ``losses``, with ``changes``. ``fixed`` is
    empty unless given: the trials' own ``params.json`` then say what they trained."""
    return StudySettings(
        **{
            "space": "all",
            "losses": losses,
            "fixed": {},
            "num_samples": num_samples,
            "metric": SELECTION_METRIC,
            "mode": "min",
            "seed": 0,
            "scheduler": "asha",
            "sampler": "tpe",
            "cpus_per_trial": 1.0,
            "gpus_per_trial": 0.0,
            "max_concurrent": None,
            "max_failures": 2,
            "batch_budget": 64,
            "baseline": baseline or {},
            "baseline_notes": {loss: () for loss in losses},
            **changes,
        }
    )


def write_manifest(folder: Path, **settings: Any) -> Manifest:
    """Writes ``folder/study.json`` (the folder is created) for :func:`study_settings` with
    ``settings``, and returns the manifest."""
    manifest = Manifest.create(folder, study_settings(**settings), command="")
    manifest.write()
    return manifest


def write_trial(folder: Path, rows: Sequence[Mapping[str, Any]], *, iterations: int = 30) -> Path:
    """A magnet trial folder of ``iterations`` iterations with ``rows`` as its ``result.json``."""
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"loss": "magnet", "iterations": iterations}))
    (folder / "result.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder
