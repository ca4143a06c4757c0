"""The loss catalogue: every list of losses derives from it, and a new loss is one module plus one
entry (here a plugin), found by the single-trial command, the study and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repmet.catalogue import LOSSES, LossEntry
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from search_spaces import SEARCH_SPACES

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _plugin_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGINS), env.get("PYTHONPATH")) if p)
    env["REPMET_PLUGINS"] = "throwaway_loss"
    return env


def test_every_list_of_losses_is_the_catalogue() -> None:
    assert SEARCH_SPACES.get("all").losses == tuple(LOSSES.in_order())
    for name in LOSSES.in_order():
        assert TrainingConfig(loss=name).loss_entry is LOSSES.get(name)
    with pytest.raises(ConfigError, match="loss = 'nope' is not one of: magnet, repmet-v1"):
        TrainingConfig(loss="nope")


def test_entry_module_must_name_a_class() -> None:
    with pytest.raises(ConfigError, match="is not 'module:Class'"):
        LossEntry(name="x", label="X", module="x.y", summary="", clusters="k-means", searched=())


@pytest.mark.slow
def test_a_plugin_loss_trains_through_the_single_trial_command(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "repmet.train", "--loss", "throwaway", "--iterations", "20"]
    command += ["--eval-every", "10", "--num-threads", "1", "--m", "4", "--k", "2"]
    done = subprocess.run(
        command, env=_plugin_environment(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "throwaway on digits" in done.stdout
    assert "| test |" in done.stdout


@pytest.mark.slow
def test_a_plugin_loss_is_searched_by_a_study_and_reported(tmp_path: Path) -> None:
    env = _plugin_environment()
    study = [sys.executable, str(ROOT / "study" / "run.py"), "--space", "all"]
    study += ["--losses", "throwaway", "--smoke", "--storage", str(tmp_path), "--name", "plugin"]
    done = subprocess.run(study, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((tmp_path / "plugin" / "study.json").read_text())
    assert manifest["losses"] == ["throwaway"]
    assert set(manifest["baseline"]["throwaway"]) == {
        "k",
        "m",
        "d",
        "normalize_embeddings",
        "lr",
        "alpha",
    }
    for params in (tmp_path / "plugin" / "throwaway").glob("*/params.json"):
        config = json.loads(params.read_text())
        assert config["normalize_representatives"] == config["normalize_embeddings"]

    report = [sys.executable, str(ROOT / "analysis" / "report.py"), str(tmp_path / "plugin")]
    done = subprocess.run(
        [*report, "--no-plots", "--device", "cpu"], env=env, capture_output=True, text=True,
        timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| Throwaway (test plugin) |" in done.stdout
    assert "Throwaway (test plugin): a plugin loss with alpha = " in done.stdout
