"""The study's options table (``repmet.study_options``) drives ``study/run.py``'s parser, its range
checks, the settings of a new study, the comparison of ``--resume`` with the manifest, and
``StudySettings``' own checks. No Ray, no data set: the functions are called directly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from study_folders import study_settings

from repmet.config import MAX_INT, TrainingConfig
from repmet.errors import ConfigError
from repmet.study_folder.manifest import StudySettings
from repmet.study_options import (
    COUNT,
    SAMPLERS,
    SCHEDULERS,
    STUDY_OPTIONS,
    StudyOption,
)
from search_spaces import SEARCH_SPACES
from study import run


def stored_settings(**changes) -> StudySettings:
    fixed = TrainingConfig(loss="magnet", iterations=30, eval_every=10).to_dict()
    fixed["data_root"] = "/data/root"
    values = dict(
        space="magnet",
        losses=("magnet", "softmax"),
        fixed=fixed,
        num_samples=3,
        baseline={"magnet": {"k": 3}, "softmax": {}},
    )
    return study_settings(**{**values, **changes})


def resume(*argv: str, stored: StudySettings | None = None) -> StudySettings:
    given = ["--resume", *argv]
    args = run.build_parser().parse_args(given)
    return run.resume_settings(args, run.explicit_options(given), stored or stored_settings())


def test_every_option_is_a_flag_with_its_default_and_destination() -> None:
    args = vars(run.build_parser().parse_args([]))
    assert list(args) == [option.dest for option in STUDY_OPTIONS]
    for option in STUDY_OPTIONS:
        expected = False if option.switch and not option.stored else option.default
        assert args[option.dest] == expected, option.flag


def test_help_states_the_defaults() -> None:
    text = " ".join(run.build_parser().format_help().split())
    assert "CPUs reserved per trial (default: 1.0)" in text
    assert "(default: asha)" in text and "(default: tpe)" in text
    assert "(default: results)" in text
    assert "data set (default: digits)" in text
    assert "trials per loss (default: 16)" in text
    assert "training iterations of a full trial (default: 500)" in text
    assert "--fold FOLD" in text and "(default: 0)" in text
    assert not any(f"{{{key}}}" in text for key in ("default", "choices", "spaces"))


def test_explicit_options_are_the_given_ones_only() -> None:
    assert run.explicit_options([]) == set()
    assert run.explicit_options(["--seed", "0", "--augment", "--smoke"]) == {
        "seed",
        "augment",
        "smoke",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-samples", "0"], f"--num-samples 0 must be between 1 and {MAX_INT}"),
        (["--kmeans-every", "0"], "--kmeans-every 0 must be between 1 and"),
        (["--cpus-per-trial", "-2"], "--cpus-per-trial -2 must be > 0 and at most 1e+06"),
        (["--gpus-per-trial", "2e6"], "--gpus-per-trial 2e+06 must be >= 0 and at most 1e+06"),
        (["--seed", "-1"], "--seed -1 must be between 0 and 4294967295"),
    ],
)
def test_range_checks_come_from_the_table(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        run.check_arguments(run.build_parser().parse_args(argv))
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_samples": 0}, f"--num-samples 0 must be between 1 and {MAX_INT}"),
        ({"max_concurrent": 0}, "--max-concurrent 0 must be between 1 and"),
        ({"max_failures": -1}, "--max-failures -1 must be between 0 and"),
        ({"cpus_per_trial": 0.0}, "--cpus-per-trial 0 must be > 0"),
        ({"gpus_per_trial": -0.5}, "--gpus-per-trial -0.5 must be >= 0"),
        ({"scheduler": "hyperband"}, "--scheduler 'hyperband' is not one of: asha, none"),
        ({"sampler": "grid"}, "--sampler 'grid' is not one of: tpe, random"),
    ],
)
def test_study_settings_check_the_same_ranges(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        stored_settings(**changes)


def test_scheduler_and_sampler_names_are_the_tables_choices() -> None:
    options = {option.dest: option for option in STUDY_OPTIONS}
    assert options["scheduler"].allowed() == SCHEDULERS == ("asha", "none")
    assert options["sampler"].allowed() == SAMPLERS == ("tpe", "random")


def test_resume_with_the_stored_values_changes_nothing() -> None:
    stored = stored_settings()
    same = resume(
        "--space", "magnet", "--losses", "softmax, magnet", "--dataset", "digits",
        "--data-root", "/data/root", "--max-iterations", "30", "--eval-every", "10",
        "--kmeans-every", "1", "--protocol", "closed-set", "--fold", "0", "--cpus-per-trial",
        "1", "--seed", "0", "--scheduler", "asha", "--select", "error_simple", "--num-samples",
        "3", stored=stored,
    )  # fmt: skip
    assert same == stored


@pytest.mark.parametrize(
    ("argv", "conflict"),
    [
        (["--space", "repmet"], "--space repmet (stored: magnet)"),
        (["--losses", "magnet"], "--losses magnet (stored: magnet,softmax)"),
        (["--dataset", "mnist"], "--dataset mnist (stored: digits)"),
        (["--data-root", "/elsewhere"], "--data-root /elsewhere (stored: /data/root)"),
        (["--fold", "2"], "--fold 2 (stored: 0)"),
        (["--augment"], "--augment True (stored: False)"),
        (["--gpus-per-trial", "0.5"], "--gpus-per-trial 0.5 (stored: 0)"),
        (["--max-concurrent", "4"], "--max-concurrent 4 (stored: None)"),
        (["--sampler", "random"], "--sampler random (stored: tpe)"),
        (["--select", "map_at_r"], "--select map_at_r (stored: error_simple)"),
        (["--seed", "5"], "--seed 5 (stored: 0)"),
        (["--smoke", "--num-samples", "3"], "--max-iterations 20 (from --smoke) (stored: 30)"),
        (
            ["--num-samples", "2"],
            "--num-samples 2 (stored: 3; a study can get more trials, not fewer)",
        ),
    ],
)
def test_resume_names_each_option_that_differs(argv: list[str], conflict: str) -> None:
    with pytest.raises(ConfigError) as raised:
        resume(*argv)
    message = str(raised.value)
    assert message.startswith("--resume continues a study with its stored settings")
    assert message.endswith(f"differs from them: {conflict}")


def test_resume_reports_every_difference_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        resume("--dataset", "mnist", "--seed", "5")
    assert str(raised.value).endswith("--dataset mnist (stored: digits); --seed 5 (stored: 0)")


def test_resume_with_more_trials_raises_the_budget_only() -> None:
    stored = stored_settings()
    assert resume("--num-samples", "7", stored=stored) == dataclasses.replace(stored, num_samples=7)
    # An explicit value beats --smoke's (2 trials, 20 iterations, every 10).
    with pytest.raises(ConfigError, match="--max-iterations 20 \\(from --smoke\\)"):
        resume("--smoke", "--num-samples", "7")
    assert (
        resume("--smoke", "--max-iterations", "30", "--num-samples", "3", stored=stored) == stored
    )
    with pytest.raises(ConfigError, match="--num-samples 2 \\(from --smoke\\) \\(stored: 3;"):
        resume("--smoke", "--max-iterations", "30", stored=stored)


def test_a_new_study_takes_the_space_then_smoke_then_the_command_line() -> None:
    space = SEARCH_SPACES.get("magnet")
    args = run.build_parser().parse_args(["--space", "magnet", "--smoke", "--eval-every", "5"])
    fixed = run.fixed_config(args, space)
    assert fixed["iterations"] == 20 and fixed["eval_every"] == 5
    assert fixed["dataset"] == space.fixed["dataset"] and fixed["select"] == "error_simple"
    assert "augment" not in fixed and Path(fixed["data_root"]).is_absolute()
    args = run.build_parser().parse_args(["--amp", "--protocol", "class-disjoint", "--fold", "1"])
    fixed = run.fixed_config(args, space)
    assert fixed["amp"] is True and fixed["iterations"] == space.fixed["iterations"]
    assert (fixed["protocol"], fixed["fold"], fixed["select"]) == ("class-disjoint", 1, "map_at_r")


def test_a_new_option_is_one_entry_of_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """A throwaway option feeding a TrainingConfig field reaches the parser, the range checks,
    the fixed settings of a new study and the resume comparison, with no other change."""
    extra = StudyOption(
        flag="--embedding-dim", help="embedding size", type=int, bounds=COUNT,
        fixed="embedding_dim",
    )  # fmt: skip
    monkeypatch.setattr(run, "STUDY_OPTIONS", (*STUDY_OPTIONS, extra))
    args = run.build_parser().parse_args(["--embedding-dim", "16"])
    assert run.fixed_config(args, SEARCH_SPACES.get("magnet"))["embedding_dim"] == 16
    with pytest.raises(ConfigError, match="--embedding-dim 0 must be between 1 and"):
        run.check_arguments(run.build_parser().parse_args(["--embedding-dim", "0"]))
    with pytest.raises(ConfigError, match=r"--embedding-dim 16 \(stored: 64\)$"):
        resume("--embedding-dim", "16")
    assert resume("--embedding-dim", "64") == stored_settings()
