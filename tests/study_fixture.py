"""The tiny study of the report tests: two losses x two trials x 20 iterations on digits
(``--smoke``), made by ``study/run.py``.

The report tests read a copy of it stored in ``tests/data/study_tiny`` (``tests/conftest.py``'s
``study_dir``), so they need no Ray. ``tests/e2e/test_study.py`` reports a live study of the same
losses and checks that the stored copy still has the kinds of file and the manifest fields a study
writes today. Rewrite the stored copy after a change to the study folder, from the repository root:

    PYTHONPATH=. python tests/study_fixture.py

It keeps what the analysis and the tests read (the manifest, ``optuna.db``, ``trials.csv``, each
trial's ``params.json``, ``result.json``, ``progress.csv`` and checkpoints) and leaves out Tune's
own state, TensorBoard events and projector files, which nothing reads, to keep it small.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

#: The losses of the tiny study.
TINY_STUDY_LOSSES = ("magnet", "repmet-v2")
#: Where its stored copy lives.
STORED_STUDY = Path(__file__).resolve().parent / "data" / "study_tiny"
#: What a study writes that no reader needs: Tune's experiment and searcher state, its lock,
#: TensorBoard's event and projector files.
NOT_STORED = (
    "*experiment_state-*",
    "*search_gen_state-*",
    "*searcher-state-*",
    "*basic-variant-state-*",
    "tuner.pkl",
    "params.pkl",
    ".validate_storage_marker",
    "study.lock",
    "events.out.tfevents.*",
    "projector",
    "projector_config.pbtxt",
)


def run_tiny_study(storage: Path, name: str = STORED_STUDY.name) -> Path:
    """Runs the tiny study into ``storage/name`` in this process (Ray started there if it is not
    already) and returns its folder."""
    from study.run import main

    argv = ["--space", "all", "--losses", ",".join(TINY_STUDY_LOSSES), "--smoke"]
    argv += ["--storage", str(storage), "--name", name, "--scheduler", "none"]
    argv += ["--max-concurrent", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    if status != 0:
        raise RuntimeError(f"the tiny study failed with status {status}")
    return storage / name


def stored_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that a stored copy keeps, relative to it."""
    skipped = shutil.ignore_patterns(*NOT_STORED)
    kept = []
    for root, dirs, files in os.walk(folder):
        ignored = skipped(root, dirs + files)
        dirs[:] = [name for name in dirs if name not in ignored]
        kept += [Path(root, name).relative_to(folder) for name in files if name not in ignored]
    return sorted(kept)


def main() -> int:
    with tempfile.TemporaryDirectory() as storage:
        study = run_tiny_study(Path(storage))
        shutil.rmtree(STORED_STUDY, ignore_errors=True)
        shutil.copytree(study, STORED_STUDY, ignore=shutil.ignore_patterns(*NOT_STORED))
    size = sum(path.stat().st_size for path in STORED_STUDY.rglob("*") if path.is_file())
    print(f"{STORED_STUDY}: {len(stored_files(STORED_STUDY))} files, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
