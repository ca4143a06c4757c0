"""Search spaces: registry, feasibility of every sampled point, and the baseline as first trial."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from repmet.catalogue import LOSSES
from repmet.config import TrainingConfig
from repmet.data import load_dataset
from repmet.errors import ConfigError, UnknownNameError
from search_spaces import SEARCH_SPACES, SearchSpace, SpaceContext

optuna.logging.set_verbosity(optuna.logging.WARNING)

BATCH_BUDGET = 64
#: A fake training split: 3 classes, one of them with only 2 examples.
TINY_COUNTS = (5, 2, 7)
SAMPLES_PER_LOSS = 40

SPACE_LOSS_PAIRS = [
    (name, loss) for name in SEARCH_SPACES for loss in SEARCH_SPACES.get(name).losses
]


@pytest.fixture(scope="module")
def digits_counts() -> tuple[int, ...]:
    labels = load_dataset("digits").train.labels.numpy()
    return tuple(int(c) for c in np.bincount(labels))


def context_from_counts(counts: tuple[int, ...], *, model: str = "small-cnn") -> SpaceContext:
    labels = np.repeat(np.arange(len(counts)), counts)
    return SpaceContext.from_labels(labels, model=model, batch_budget=BATCH_BUDGET)


def assert_feasible(point: dict, counts: tuple[int, ...]) -> None:
    """Reference check written from the spec: K <= smallest class, 2 <= M <= J - K + 1, M*D within
    the budget; then the library's own TrainingConfig must accept the point for these counts."""
    c, k, m, d = len(counts), point["k"], point["m"], point["d"]
    assert 1 <= k <= min(counts), point
    assert 2 <= m <= c * k - k + 1, point
    assert d >= 1 and m * d <= BATCH_BUDGET, point
    TrainingConfig.from_dict(point).validate_against(counts)


def sample_points(space: SearchSpace, loss: str, context: SpaceContext, sampler) -> list[dict]:
    study = optuna.create_study(sampler=sampler)
    objective = space.objective(loss, context)
    rng = np.random.default_rng(0)
    points = []
    for _ in range(SAMPLES_PER_LOSS):
        trial = study.ask()
        constants = objective(trial)
        points.append({**trial.params, **constants})
        study.tell(trial, float(rng.random()))
    return points


def test_registry_names() -> None:
    names = ["all", "cluster-margin", "field", "magnet", "repmet", "softmax"]
    assert SEARCH_SPACES.names() == names
    with pytest.raises(UnknownNameError, match="magnet"):
        SEARCH_SPACES.get("nope")


def test_space_losses() -> None:
    assert set(SEARCH_SPACES.get("all").losses) == set(LOSSES.names())
    repmet_losses = ("repmet-v1", "repmet-v2", "repmet-v3", "repmet-cvpr", "softmax")
    assert SEARCH_SPACES.get("repmet").losses == repmet_losses
    margin = ("cluster-margin", "cluster-margin-v1", "softmax")
    assert SEARCH_SPACES.get("cluster-margin").losses == margin
    assert SEARCH_SPACES.get("magnet").losses == ("magnet", "softmax")
    assert SEARCH_SPACES.get("softmax").losses == ("softmax",)
    budgets = {SEARCH_SPACES.get(name).num_samples for name in SEARCH_SPACES}
    assert budgets == {16}


@pytest.mark.parametrize(("space_name", "loss"), SPACE_LOSS_PAIRS)
@pytest.mark.parametrize("data", ["digits", "tiny"])
def test_every_sampled_point_is_feasible(space_name, loss, data, digits_counts) -> None:
    counts = digits_counts if data == "digits" else TINY_COUNTS
    space = SEARCH_SPACES.get(space_name)
    context = context_from_counts(counts)
    for sampler in (optuna.samplers.TPESampler(seed=1), optuna.samplers.RandomSampler(seed=2)):
        for point in sample_points(space, loss, context, sampler):
            assert point["loss"] == loss
            assert_feasible(point, counts)


def test_random_sampling_reaches_the_feasible_boundary() -> None:
    """The bounds are tight, not just safe: K reaches the smallest class and M reaches J - K + 1."""
    space = SEARCH_SPACES.get("magnet")
    context = context_from_counts(TINY_COUNTS)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    objective = space.objective("magnet", context)
    seen: set[tuple[int, int]] = set()
    for _ in range(300):
        trial = study.ask()
        objective(trial)
        seen.add((trial.params["k"], trial.params["m"]))
        study.tell(trial, 0.0)
    # 3 classes: K = 1 allows M <= 3, K = 2 (the smallest class) allows M <= 5.
    assert seen == {(1, 2), (1, 3), (2, 2), (2, 3), (2, 4), (2, 5)}


def test_searched_parameters_per_loss() -> None:
    context = context_from_counts((50,) * 10)
    space = SEARCH_SPACES.get("all")
    common = {"k", "m", "d", "embedding_dim", "lr", "refresh_every"}
    representatives = {"sigma", "rep_lr"}
    field = {"k", "m", "d", "embedding_dim", "lr"}
    expected = {
        "magnet": common | {"normalize_embeddings", "alpha"},
        "repmet-v2": common | representatives,  # alpha cannot change a gradient there
        "softmax": {"k", "m", "d", "embedding_dim", "normalize_embeddings", "lr", "weight_decay"},
        # The field's losses: their own hyperparameters; the learned proxies, centres and class
        # weights have their own learning rate.
        "contrastive": field | {"alpha", "pos_margin"},
        "triplet": field | {"alpha"},
        "multi-similarity": field | {"alpha", "scale", "neg_scale", "base"},
        "proxy-anchor": field | {"rep_lr", "alpha", "scale"},
        "soft-triple": field | {"rep_lr", "alpha", "scale", "gamma"},
        "arcface": field | {"rep_lr", "alpha", "scale"},
    }
    for loss in space.losses:
        wanted = expected.get(loss, common | representatives | {"alpha"})
        assert set(space.baseline(loss, context).point) == wanted, loss


def test_baseline_is_each_losss_default_configuration_on_digits(digits_counts) -> None:
    """The first trial of every search is the loss's default configuration (the 2018 seed values
    K = 3, M = 12, D = 4 with the loss's own margin, sigma and normalisation)."""
    space = SEARCH_SPACES.get("all")
    for model, embedding in (("small-cnn", 64), ("resnet18", 1024)):
        context = context_from_counts(digits_counts, model=model)
        for loss in space.losses:
            baseline = space.baseline(loss, context)
            defaults = TrainingConfig(loss=loss).to_dict()
            assert baseline.notes == ()
            assert baseline.point["embedding_dim"] == embedding
            # the field's losses draw 8 classes x 6 examples: the same 48 rows from 10 classes
            seed = (3, 8, 6) if LOSSES.get(loss).family == "field" else (3, 12, 4)
            assert (baseline.point["k"], baseline.point["m"], baseline.point["d"]) == seed
            for name, value in baseline.point.items():
                if name != "embedding_dim":
                    assert value == defaults[name], (loss, name)


def test_baseline_is_clipped_to_a_tiny_data_set_with_notes() -> None:
    baseline = SEARCH_SPACES.get("repmet").baseline("repmet-v1", context_from_counts(TINY_COUNTS))
    # K = 3 does not fit a 2-example class; with K = 2 and 3 classes, M <= 2 * 2 + 1 = 5.
    assert (baseline.point["k"], baseline.point["m"], baseline.point["d"]) == (2, 5, 4)
    assert len(baseline.notes) == 2
    assert "k = 3 clipped to 2" in baseline.notes[0]
    assert "m = 12 clipped to 5" in baseline.notes[1]
    assert_feasible({**baseline.point, "loss": "repmet-v1"}, TINY_COUNTS)


def test_batch_budget_clips_d() -> None:
    context = SpaceContext(num_classes=10, smallest_class=50, batch_budget=24)
    baseline = SEARCH_SPACES.get("magnet").baseline("magnet", context)
    assert (baseline.point["m"], baseline.point["d"]) == (12, 2)
    assert baseline.notes and "d = 4 clipped to 2" in baseline.notes[0]


@pytest.mark.parametrize("space_name", ["magnet", "repmet", "cluster-margin"])
def test_baseline_is_the_first_trial_of_ray_optuna_search(space_name, digits_counts) -> None:
    space = SEARCH_SPACES.get(space_name)
    context = context_from_counts(digits_counts)
    for loss in space.losses:
        baseline = space.baseline(loss, context)
        searcher = OptunaSearch(
            space=space.objective(loss, context),
            metric="val/error_simple",
            mode="min",
            points_to_evaluate=[baseline.point],
            sampler=optuna.samplers.TPESampler(seed=0),
        )
        first = searcher.suggest("trial-1")
        following = {}
        searched_normalisation = "normalize_embeddings" in baseline.point
        if LOSSES.get(loss).learns_representatives and searched_normalisation:
            following = {"normalize_representatives": baseline.point["normalize_embeddings"]}
        assert first == {**baseline.point, **following, "loss": loss}
        second = searcher.suggest("trial-2")
        assert second != first
        assert_feasible(second, digits_counts)
        if following:
            assert second["normalize_representatives"] == second["normalize_embeddings"]


def test_context_validation() -> None:
    context = SpaceContext.from_labels([2, 2, 0, 1, 1, 1, 0], model="small-cnn", batch_budget=64)
    assert (context.num_classes, context.smallest_class) == (3, 2)
    with pytest.raises(ConfigError, match="num_classes = 1"):
        SpaceContext.from_labels([0, 0, 0], model="small-cnn", batch_budget=64)
    with pytest.raises(ConfigError, match="batch_budget = 3"):
        SpaceContext(num_classes=3, smallest_class=2, batch_budget=3)


def test_unknown_loss_in_space() -> None:
    context = context_from_counts(TINY_COUNTS)
    with pytest.raises(ConfigError, match="'magnet' is not in search space 'repmet'"):
        SEARCH_SPACES.get("repmet").objective("magnet", context)
