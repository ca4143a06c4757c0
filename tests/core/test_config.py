"""TrainingConfig validation: every bad value fails before training with a message naming the field,
the value and the limit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from repmet.config import FIELD_HELP, TrainingConfig
from repmet.errors import ConfigError


def test_defaults_are_the_2018_seed_values() -> None:
    config = TrainingConfig()
    assert (config.m, config.d, config.k, config.alpha, config.sigma) == (12, 4, 3, 1.0, 0.5)
    assert config.batch_size == 48


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"sigma": 0.0}, "sigma = 0.0 must be > 0"),
        ({"sigma": -1.0}, "sigma = -1.0 must be > 0"),
        ({"alpha": -0.5}, "alpha = -0.5 must be >= 0"),
        ({"alpha": float("nan")}, "alpha = nan must be a finite number"),
        ({"m": 1}, "m = 1 must be >= 2"),
        ({"d": 0}, "d = 0 must be >= 1"),
        ({"k": 0}, "k = 0 must be >= 1"),
        ({"k": 2.5}, "k = 2.5 must be an integer"),
        ({"embedding_dim": True}, "embedding_dim = True must be an integer"),
        ({"refresh_every": -1}, "refresh_every = -1 must be >= 0"),
        ({"lr": 0.0}, "lr = 0.0 must be > 0"),
        ({"loss": "n-pairs"}, "loss = 'n-pairs' is not one of"),
        ({"device": "tpu"}, "device = 'tpu' is not one of"),
        ({"m": 100, "d": 100}, "exceeds the batch limit"),
        ({"pretrained": True}, "pretrained=True needs an ImageNet backbone"),
    ],
)
def test_invalid_values_name_field_value_and_limit(changes: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        TrainingConfig(**changes)


def test_k_larger_than_smallest_class_is_rejected() -> None:
    config = TrainingConfig(k=5)
    with pytest.raises(ConfigError, match=r"k = 5 exceeds the smallest .* \(class 1 has 4"):
        config.validate_against([10, 4, 12])


def test_m_larger_than_available_clusters_is_rejected() -> None:
    # 3 classes x k=2 -> J = 6 clusters, at most J - k + 1 = 5 per batch
    config = TrainingConfig(k=2, m=6)
    with pytest.raises(ConfigError, match=r"m = 6 exceeds .* J - k \+ 1 = 5"):
        config.validate_against([10, 10, 10])
    TrainingConfig(k=2, m=5).validate_against([10, 10, 10])


def test_single_class_is_rejected() -> None:
    with pytest.raises(ConfigError, match="needs at least 2"):
        TrainingConfig(k=1, m=2).validate_against([50])


def test_from_dict_round_trip_and_numpy_scalars() -> None:
    config = TrainingConfig(loss="magnet", alpha=2.5, k=2)
    assert TrainingConfig.from_dict(config.to_dict()) == config
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    from_numpy = TrainingConfig.from_dict({"m": np.int64(8), "alpha": np.float64(0.25)})
    assert from_numpy.m == 8 and type(from_numpy.m) is int
    assert from_numpy.alpha == 0.25


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown configuration fields: alhpa"):
        TrainingConfig.from_dict({"alhpa": 1.0})


def test_every_field_has_help() -> None:
    assert set(FIELD_HELP) == set(TrainingConfig.field_names())
