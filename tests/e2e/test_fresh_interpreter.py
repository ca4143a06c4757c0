"""What a fresh interpreter loads and does: the import boundaries between the layers (each in a
process of its own, since this one has imported everything), and the same seeded episodes in
another process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import torch
from processes import REPOSITORY, subprocess_env

from repmet.episodes import Episodes, draw_episodes

# What the core library must not pull in: Ray and Optuna (the study's engines) and the packages
# behind the command lines (study/run.py, python -m repmet.train, analysis/report.py).
FORBIDDEN = ("ray", "optuna", "study", "trainables", "search_spaces", "analysis", "repmet.train")


def _is_within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def test_the_data_layer_imports_neither_ray_nor_command_line_code() -> None:
    """A fresh interpreter that imports repmet.data loads none of the forbidden packages, and no
    module of repmet/data imports argparse itself (third-party packages load argparse anyway, so
    only the data layer's own imports can be checked for it)."""
    probe = "import sys, repmet.data; print(sorted(sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    completed = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    loaded = [m for m in ast.literal_eval(completed.stdout) if _is_within(m, FORBIDDEN)]
    assert loaded == []
    for path in sorted((REPOSITORY / "repmet" / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            else:
                continue
            assert not [m for m in imported if _is_within(m, (*FORBIDDEN, "argparse"))], path.name


def test_the_same_seed_gives_the_same_episodes_in_another_process(tmp_path) -> None:
    labels = torch.arange(30).repeat_interleave(7)
    path = tmp_path / "episodes.pt"
    program = (
        "import torch; from repmet.episodes import draw_episodes; torch.manual_seed(123); "
        "draw_episodes(torch.arange(30).repeat_interleave(7), ways=5, shots=1, queries=3, "
        f"count=50, seed=9).save({str(path)!r})"
    )
    subprocess.run(
        [sys.executable, "-c", program], cwd=REPOSITORY, env=subprocess_env(), check=True
    )
    state = torch.get_rng_state()
    ours = draw_episodes(labels, ways=5, shots=1, queries=3, count=50, seed=9)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is left alone
    assert Episodes.load(path) == ours
    assert draw_episodes(labels, ways=5, shots=1, queries=3, count=50, seed=10) != ours


def test_the_data_imports_no_renderer() -> None:
    code = (
        "import sys, analysis.report_data, analysis.report_builder; "
        "print(sorted(m for m in ('analysis.page', 'analysis.render', 'jinja2') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_the_contract_loads_neither_ray_nor_torch() -> None:
    """The catalogue and every module of the study-folder package, which the study, the trainable
    and the report all read, load no engine and no command-line package."""
    package = ("layout", "manifest", "trials", "searched", "trials_csv", "lock")
    loaded = _modules_loaded_by(
        "import repmet.catalogue, " + ", ".join(f"repmet.study_folder.{m}" for m in package)
    )
    assert "repmet" in loaded
    assert not {"ray", "torch", "optuna", "analysis", "study", "search_spaces"} & loaded


def test_the_analysis_does_not_load_ray() -> None:
    loaded = _modules_loaded_by("import analysis.report, analysis.scores")
    assert "ray" not in loaded


def test_a_small_cnn_run_on_in_memory_data_does_not_import_torchvision() -> None:
    # torchvision takes longer to import than the rest of a trial's worker; only photo sets and
    # ResNets need it.
    statement = (
        "from repmet.config import TrainingConfig; from repmet.training import TrainingRun; "
        "TrainingRun(TrainingConfig(iterations=1)).train(1)"
    )
    assert "torchvision" not in _modules_loaded_by(statement)
