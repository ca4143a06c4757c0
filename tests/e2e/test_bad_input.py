"""Bad input across the three commands (``study/run.py``, ``analysis/report.py``,
``python -m repmet.train``): every case ends with a non-zero exit, exactly one line on stderr that
names the problem, no traceback, no hang, and nothing changed in the folder the command ran in
(every file and folder listed with a checksum before and after).

Each case runs as its own process in its own copy of a sandbox (bad data files, a file where a
folder is expected, a folder that is no study, studies that exist, a study in use, ...). The
processes run a few at a time; the test of each case checks its outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from study_folders import study_settings

from repmet.config import TrainingConfig
from repmet.study_folder import lock as study_lock
from repmet.study_folder.manifest import Manifest

REPOSITORY = Path(__file__).resolve().parents[2]
COMMANDS = {
    "study": ([sys.executable, str(REPOSITORY / "study" / "run.py")], "study/run.py"),
    "report": ([sys.executable, str(REPOSITORY / "analysis" / "report.py")], "analysis/report.py"),
    "train": ([sys.executable, "-m", "repmet.train"], "python -m repmet.train"),
}
TIMEOUT_S = 90.0
#: An unreachable cluster ends the run within about 30 s (the rest is starting the interpreter).
UNREACHABLE_S = 30.0
PARALLEL = 4


@dataclass(frozen=True)
class Case:
    """One bad input: the command, its arguments (``{sandbox}``, ``{unwritable}`` and ``{port}``
    are filled in), and a fragment the one error line must hold."""

    id: str
    command: str
    args: tuple[str, ...]
    expected: str
    within_s: float = TIMEOUT_S
    setup: Callable[[Path], contextlib.AbstractContextManager] | None = field(
        default=None, compare=False
    )


@contextlib.contextmanager
def study_held_by_this_process(sandbox: Path) -> Iterator[None]:
    """The sandbox's study ``st/locked`` locked by the test process, as by a running study."""
    held = study_lock.acquire(sandbox / "st" / "locked", command="python study/run.py (test)")
    try:
        yield
    finally:
        held.release()


_SILENT_PORT: list[int] = []


@contextlib.contextmanager
def silent_port(sandbox: Path) -> Iterator[None]:
    """A port that accepts connections but is no Ray cluster."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", _SILENT_PORT[0]))
        server.listen(16)
        yield


def study(id: str, *args: str, expected: str, **options) -> Case:
    return Case(id, "study", args, expected, **options)


def report(id: str, *args: str, expected: str, **options) -> Case:
    return Case(id, "report", args, expected, **options)


def train(id: str, *args: str, expected: str, **options) -> Case:
    return Case(id, "train", args, expected, **options)


BAD_DATA = {
    "empty": ("empty.npz", "is empty (0 bytes)"),
    "text": ("text.npz", "is not an .npz archive"),
    "object-labels": ("object-labels.npz", "holds pickled Python objects"),
    "nan-pixels": ("nan-pixels.npz", "NaN or infinite pixels"),
    "inf-pixels": ("inf-pixels.npz", "NaN or infinite pixels"),
}
SMOKE = ("--smoke", "--storage", "st")

CASES: list[Case] = [
    # ------------------------------------------------------------------ study/run.py: values
    study("space-unknown", "--space", "nope", *SMOKE, expected="unknown search space 'nope'"),
    study("losses-unknown", "--space", "magnet", "--losses", "nope", *SMOKE,
          expected="--losses 'nope' must name losses of the space"),
    study("losses-empty", "--losses", ",", *SMOKE, expected="must name losses of the space"),
    study("model-unknown", "--model", "nosuchnet", *SMOKE, expected="unknown model 'nosuchnet'"),
    study("num-samples-text", "--num-samples", "many", expected="invalid int value: 'many'"),
    study("num-samples-zero", "--num-samples", "0", *SMOKE,
          expected="--num-samples 0 must be between 1 and"),
    study("max-iterations-negative", "--max-iterations", "-5", *SMOKE,
          expected="--max-iterations -5 must be between 1 and"),
    study("eval-every-zero", "--eval-every", "0", *SMOKE, expected="--eval-every 0 must be"),
    study("cpus-nan", "--cpus-per-trial", "nan", *SMOKE,
          expected="--cpus-per-trial: must be a finite number, not 'nan'"),
    study("cpus-inf", "--cpus-per-trial", "inf", *SMOKE,
          expected="--cpus-per-trial: must be a finite number, not 'inf'"),
    study("cpus-zero", "--cpus-per-trial", "0", *SMOKE, expected="--cpus-per-trial 0 must be > 0"),
    study("gpus-nan", "--gpus-per-trial", "nan", *SMOKE,
          expected="--gpus-per-trial: must be a finite number, not 'nan'"),
    study("gpus-minus-inf", "--gpus-per-trial=-inf", *SMOKE,
          expected="--gpus-per-trial: must be a finite number, not '-inf'"),
    study("gpus-negative", "--gpus-per-trial", "-1", *SMOKE,
          expected="--gpus-per-trial -1 must be >= 0"),
    study("max-concurrent-zero", "--max-concurrent", "0", *SMOKE,
          expected="--max-concurrent 0 must be between 1 and"),
    study("max-failures-negative", "--max-failures", "-1", *SMOKE,
          expected="--max-failures -1 must be between 0 and"),
    study("scheduler-unknown", "--scheduler", "fifo", expected="invalid choice: 'fifo'"),
    study("sampler-unknown", "--sampler", "grid", expected="invalid choice: 'grid'"),
    study("select-unknown", "--select", "accuracy", expected="invalid choice: 'accuracy'"),
    study("seed-huge", "--seed", "100000000000000000000000", *SMOKE,
          expected="--seed 100000000000000000000000 must be between 0 and 4294967295"),
    study("seed-negative", "--seed", "-1", *SMOKE, expected="--seed -1 must be between 0 and"),
    study("unknown-flag", "--bogus", expected="unrecognized arguments: --bogus"),
    # ------------------------------------------------------- study/run.py: names and folders
    study("name-dot-overwrite", "--smoke", "--storage", "st", "--name", ".", "--overwrite",
          expected="--name '.' must be one plain folder name"),
    study("name-dotdot-overwrite", "--smoke", "--storage", "st/other", "--name", "..",
          "--overwrite", expected="--name '..' must be one plain folder name"),
    study("name-absolute-overwrite", "--smoke", "--name", "{sandbox}/st/other", "--overwrite",
          expected="must be one plain folder name"),
    study("name-with-separator", *SMOKE, "--name", "a/b",
          expected="--name 'a/b' must be one plain folder name"),
    study("name-empty", *SMOKE, "--name", "", expected="--name '' must be one plain folder name"),
    study("name-is-a-file-overwrite", *SMOKE, "--name", "plain-file", "--overwrite",
          expected="st/plain-file is a file, not a study folder"),
    study("overwrite-not-a-study", *SMOKE, "--name", "other", "--overwrite",
          expected="--overwrite refuses to delete"),
    study("storage-is-a-file", "--smoke", "--storage", "afile",
          expected="--storage afile is a file, not a folder"),
    study("storage-under-a-file", "--smoke", "--storage", "afile/sub",
          expected="afile is a file"),
    study("storage-unwritable", "--smoke", "--storage", "{unwritable}/st",
          expected="cannot write the study folder"),
    study("exists-without-resume-or-overwrite", "--space", "magnet", *SMOKE, "--name", "done",
          expected="already exists; pass --resume to continue it or --overwrite"),
    study("resume-and-overwrite", "--resume", "--overwrite", *SMOKE, "--name", "done",
          expected="--resume and --overwrite exclude each other"),
    study("resume-without-study", "--resume", "--storage", "st", "--name", "nothing",
          expected="cannot resume: there is no study at"),
    study("resume-other-dataset", "--resume", "--storage", "st", "--name", "done", "--dataset",
          "mnist", expected="--dataset mnist (stored: digits)"),
    study("resume-fewer-samples", "--resume", "--storage", "st", "--name", "done",
          "--num-samples", "1", expected="--num-samples 1 (stored: 3; a study can get more"),
    study("resume-other-space", "--resume", "--storage", "st", "--name", "done", "--space",
          "repmet", expected="--space repmet (stored: magnet)"),
    study("resume-other-iterations-from-smoke", "--resume", "--smoke", "--storage", "st",
          "--name", "done", "--num-samples", "3",
          expected="--max-iterations 20 (from --smoke) (stored: 30)"),
    study("resume-format-1", "--resume", "--storage", "st", "--name", "old",
          expected="it cannot be resumed"),
    study("resume-format-2", "--resume", "--storage", "st", "--name", "per-loss",
          expected="written in study format 2 by an earlier release (this one writes format 3); "
          "its report can still be made, but it cannot be resumed"),
    study("resume-damaged-manifest", "--resume", "--storage", "st", "--name", "broken",
          expected="unreadable study manifest"),
    study("study-in-use", "--resume", "--storage", "st", "--name", "locked",
          expected="st/locked is in use by another run (pid", setup=study_held_by_this_process),
    # --------------------------------------------------------------- study/run.py: clusters
    study("address-without-port", *SMOKE, "--address", "notahost",
          expected="--address 'notahost' must be auto, local, HOST:PORT or ray://HOST:PORT"),
    study("address-bad-port", *SMOKE, "--address", "somehost:99999",
          expected="--address 'somehost:99999' must be"),
    study("address-nothing-listening", *SMOKE, "--address", "127.0.0.1:1",
          expected="cannot reach the Ray cluster at 127.0.0.1:1", within_s=UNREACHABLE_S),
    study("address-unknown-host", *SMOKE, "--address", "notahost.invalid:6379",
          expected="cannot reach the Ray cluster at notahost.invalid:6379",
          within_s=UNREACHABLE_S),
    study("address-not-a-ray-cluster", "--space", "magnet", *SMOKE, "--address",
          "127.0.0.1:{port}", expected="cannot reach the Ray cluster at '127.0.0.1:{port}'",
          within_s=UNREACHABLE_S + 15, setup=silent_port),
    # Requests no node of the (local) cluster can meet, refused before a trial waits forever.
    study("gpus-beyond-the-cluster", *SMOKE, "--gpus-per-trial", "1",
          expected="--gpus-per-trial 1 cannot be met"),
    study("cpus-beyond-the-cluster", *SMOKE, "--cpus-per-trial", "64",
          expected="--cpus-per-trial 64 cannot be met"),
    # ----------------------------------------------------------------- study/run.py: data
    study("dataset-unknown", "--dataset", "nope", *SMOKE, expected="unknown data set 'nope'"),
    *(
        study(f"data-{name}", "--space", "magnet", *SMOKE, "--dataset", "arrays", "--data-root",
              BAD_DATA[name][0], expected=BAD_DATA[name][1])
        for name in ("empty", "text", "object-labels", "nan-pixels")
    ),
    # ------------------------------------------------------------------ analysis/report.py
    report("report-missing-folder", "nothere", expected="study folder nothere does not exist"),
    report("report-folder-is-a-file", "afile", expected="study folder afile is a file"),
    report("report-no-manifest", "st/other", expected="study.json"),
    report("report-damaged-manifest", "st/broken", expected="unreadable study.json"),
    report("report-storage-is-a-file", "--storage", "afile",
           expected="the storage folder afile is a file"),
    report("report-storage-without-studies", "--storage", "empty-folder",
           expected="no study folder (one holding study.json) under empty-folder"),
    report("report-out-is-a-file", "fake", "--out", "afile", expected="--out"),
    report("report-out-under-a-file", "fake", "--out", "afile/report",
           expected="afile is a file"),
    report("report-out-unwritable", "fake", "--out", "{unwritable}/report",
           expected="cannot write --out"),
    report("report-repeats-negative", "fake", "--repeats", "-1",
           expected="--repeats = -1 must be between 0 and"),
    report("report-repeats-text", "fake", "--repeats", "abc", expected="invalid int value: 'abc'"),
    report("report-seed-huge", "fake", "--repeats", "2", "--seed", "100000000000000000000000",
           expected="--seed = 100000000000000000000000 must be between 0 and 4294967293"),
    report("report-format-unknown", "fake", "--format", "pdf", expected="invalid choice: 'pdf'"),
    report("report-device-unknown", "fake", "--device", "tpu", expected="invalid choice: 'tpu'"),
    # ------------------------------------------------------------- python -m repmet.train
    train("train-lr-text", "--lr", "abc", expected="argument --lr: invalid float value: 'abc'"),
    train("train-lr-nan", "--lr", "nan", expected="lr = nan must be a finite number"),
    train("train-alpha-inf", "--alpha", "inf", expected="alpha = inf must be a finite number"),
    train("train-lr-negative", "--lr", "-1", expected="lr = -1.0 must be > 0"),
    train("train-loss-unknown", "--loss", "nope", expected="loss = 'nope' is not one of"),
    train("train-model-unknown", "--model", "nosuchnet", expected="unknown model 'nosuchnet'"),
    train("train-seed-huge", "--seed", "100000000000000000000000",
          expected="seed = 100000000000000000000000 must be <= 4294967295"),
    train("train-seed-negative", "--seed", "-1", expected="seed = -1 must be >= 0"),
    train("train-split-seed-huge", "--split-seed", "4294967296",
          expected="split_seed = 4294967296 must be <= 4294967295"),
    train("train-embedding-dim-huge", "--embedding-dim", "100000000000",
          expected="embedding_dim = 100000000000 must be <= 2147483647"),
    train("train-iterations-zero", "--iterations", "0", expected="iterations = 0 must be >= 1"),
    train("train-m-one", "--m", "1", expected="m = 1 must be >= 2"),
    train("train-device-unknown", "--device", "tpu", expected="device = 'tpu' is not one of"),
    train("train-select-unknown", "--select", "nope", expected="select = 'nope' is not one of"),
    train("train-protocol-unknown", "--protocol", "open-set",
          expected="protocol = 'open-set' is not one of: closed-set, class-disjoint"),
    train("train-fold-beyond", "--fold", "4", expected="fold = 4 must be <= 3"),
    train("train-save-into-a-folder", "--save", "st", expected="--save st is a folder"),
    train("train-save-under-a-file", "--save", "afile/state.pt",
          expected="the folder of --save {sandbox}/afile is a file, not a folder"),
    train("train-save-unwritable", "--save", "{unwritable}/state.pt",
          expected="cannot write the folder of --save"),
    train("train-unknown-flag", "--bogus", expected="unrecognized arguments: --bogus"),
    # The other bad data files go through the study above (each case that loads the data layer
    # costs seconds of imports: a missing file is left to test_data.py).
    *(
        train(f"train-data-{name}", "--dataset", "arrays", "--data-root", BAD_DATA[name][0],
              "--iterations", "1", expected=BAD_DATA[name][1])
        for name in ("inf-pixels",)
    ),
]  # fmt: skip


def make_template(root: Path) -> Path:
    """The sandbox every case gets a copy of."""
    root.mkdir()
    (root / "afile").write_text("a file, not a folder\n")
    (root / "empty-folder").mkdir()
    (root / "empty.npz").write_bytes(b"")
    (root / "text.npz").write_text("images and labels, honestly\n")
    rng = np.random.default_rng(0)
    images = rng.random((40, 8, 8)).astype(np.float32)
    labels = np.arange(40) % 2
    np.savez(root / "object-labels.npz", images=images, labels=np.array([{}] * 40, dtype=object))
    np.savez(root / "nan-pixels.npz", images=np.where(images > 0.5, np.nan, images), labels=labels)
    infinite = images.copy()
    infinite[3, 2, 2] = np.inf
    np.savez(root / "inf-pixels.npz", images=infinite, labels=labels)

    storage = root / "st"
    (storage / "other").mkdir(parents=True)  # a sibling folder that is no study
    (storage / "other" / "notes.txt").write_text("not a study, keep me\n")
    (storage / "plain-file").write_text("a file where a study folder would go\n")
    fixed = TrainingConfig(loss="magnet", iterations=30, eval_every=10).to_dict()
    fixed["data_root"] = str(root / "data")
    settings = study_settings(
        space="magnet", fixed=fixed, num_samples=3, baseline={"magnet": {"k": 3, "m": 12, "d": 4}}
    )
    for name in ("done", "locked"):
        Manifest.create(storage / name, settings, command="python study/run.py").write()
    old = storage / "old"
    old.mkdir()
    values = {**settings.to_dict(), "status": {"magnet": "finished"}, "command": ""}
    (old / "study.json").write_text(json.dumps(values))  # format 1: no version field
    unfinished = storage / "per-loss"  # format 2: one Tune experiment per loss, one unfinished
    unfinished.mkdir()
    values = {**values, "version": 2, "status": {"magnet": "interrupted"}}
    (unfinished / "study.json").write_text(json.dumps(values))
    (storage / "broken").mkdir()
    (storage / "broken" / "study.json").write_text("{not json")

    fake = root / "fake"  # enough of a study for the report to get to its options
    (fake / "magnet" / "trial_001_a").mkdir(parents=True)
    Manifest.create(fake, settings, command="python study/run.py").write()
    (fake / "magnet" / "trial_001_a" / "params.json").write_text(json.dumps({"loss": "magnet"}))
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: folders and links by kind, files by SHA-256."""
    listing = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            listing[name] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            listing[name] = "folder"
        else:
            listing[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return listing


def unwritable_folder(scratch: Path) -> tuple[str, Callable[[], None]]:
    """A folder in which nothing can be created: a read-only folder, or for root (whom permission
    bits do not stop) a read-only system folder."""
    if os.geteuid() != 0:
        folder = scratch / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return str(folder), lambda: folder.chmod(0o755)
    for candidate in ("/sys", "/proc"):
        try:
            Path(candidate, "repmet-write-check").mkdir()
        except OSError:
            return candidate, lambda: None
        os.rmdir(Path(candidate, "repmet-write-check"))
    pytest.skip("no folder here is read-only for root")


@dataclass
class Outcome:
    case: Case
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    changed: dict[str, tuple[str | None, str | None]]
    sandbox: Path


def run_case(case: Case, template: Path, work: Path, fill: dict[str, str]) -> Outcome:
    sandbox = work / case.id
    shutil.copytree(template, sandbox, symlinks=True)
    values = {**fill, "sandbox": str(sandbox)}
    args = [arg.format(**values) for arg in case.args]
    command, _ = COMMANDS[case.command]
    env = {**os.environ, "REPMET_DATA_ROOT": str(sandbox / "data")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH")) if p)
    env.pop("RAY_ADDRESS", None)
    setup = case.setup(sandbox) if case.setup else contextlib.nullcontext()
    with setup:
        before = snapshot(sandbox)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [*command, *args],
                cwd=sandbox,
                env=env,
                capture_output=True,
                text=True,
                timeout=case.within_s,
            )
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as expired:
            returncode = None
            stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else ""
            stderr = expired.stderr.decode() if isinstance(expired.stderr, bytes) else ""
        seconds = time.monotonic() - started
        after = snapshot(sandbox)
    changed = {
        name: (before.get(name), after.get(name))
        for name in set(before) | set(after)
        if before.get(name) != after.get(name)
    }
    return Outcome(case, returncode, stdout, stderr, seconds, changed, sandbox)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case run once, a few at a time."""
    root = tmp_path_factory.mktemp("bad-input")
    template = make_template(root / "template")
    unwritable, restore = unwritable_folder(root)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        _SILENT_PORT[:] = [probe.getsockname()[1]]
    fill = {"unwritable": unwritable, "port": str(_SILENT_PORT[0])}
    work = root / "runs"
    work.mkdir()
    # The slowest first, so that they overlap the many quick ones.
    ordered = sorted(CASES, key=lambda case: -case.within_s)
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            futures = {c.id: pool.submit(run_case, c, template, work, fill) for c in ordered}
            return {name: future.result() for name, future in futures.items()}
    finally:
        restore()


def test_the_table_is_large_and_covers_the_three_commands() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)
    assert {case.command for case in CASES} == set(COMMANDS)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_ends_in_one_line(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    _, prog = COMMANDS[case.command]
    shown = f"exit {outcome.returncode} after {outcome.seconds:.1f}s\n{outcome.stderr}"
    assert outcome.returncode is not None, f"no end within {case.within_s:.0f}s\n{shown}"
    assert outcome.returncode != 0, shown
    assert "Traceback" not in outcome.stderr + outcome.stdout, shown
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, shown
    values = {"sandbox": str(outcome.sandbox), "port": str(_SILENT_PORT[0])}
    assert lines[0].startswith(f"{prog}: error: "), shown
    assert case.expected.format(**values) in lines[0], shown
    assert outcome.changed == {}, f"{case.id} changed files: {outcome.changed}"
