"""The loss catalogue: every list of losses derives from it, and a new loss is one module plus one
entry (the plugin loss that reaches the single-trial command, the study and the report is
``tests/e2e/test_plugins.py``)."""

from __future__ import annotations

import pytest

from repmet.catalogue import LOSSES, LossEntry
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from search_spaces import SEARCH_SPACES


def test_every_list_of_losses_is_the_catalogue() -> None:
    assert SEARCH_SPACES.get("all").losses == tuple(LOSSES.in_order())
    for name in LOSSES.in_order():
        assert TrainingConfig(loss=name).loss_entry is LOSSES.get(name)
    with pytest.raises(ConfigError, match="loss = 'nope' is not one of: magnet, repmet-v1"):
        TrainingConfig(loss="nope")


def test_entry_module_must_name_a_class() -> None:
    with pytest.raises(ConfigError, match="is not 'module:Class'"):
        LossEntry(name="x", label="X", module="x.y", summary="", clusters="k-means", searched=())
