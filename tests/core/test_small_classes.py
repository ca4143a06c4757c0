"""Classes smaller than K or D (Stanford Online Products has classes of 2 images): K clusters per
class is refused before training with one line naming the class and its size; D examples per
cluster are drawn with replacement from a smaller cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fake_photo_sets import fake_sop

from repmet.clusters import ClusterIndex, LossTable
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from repmet.protocols import CLASS_DISJOINT
from repmet.sampling import ClusterBatchSampler


def test_k_above_a_class_size_is_refused_naming_the_class_and_its_size() -> None:
    config = TrainingConfig(k=3, m=2)
    with pytest.raises(ConfigError) as caught:
        config.validate_against([5, 2, 4], ["cat", "dog", "eel"])
    message = str(caught.value)
    assert "\n" not in message
    assert "class 1 (dog) has 2 examples" in message and "use k <= 2" in message
    config.replace(k=2).validate_against([5, 2, 4], ["cat", "dog", "eel"])  # K = 2 fits


def test_a_run_on_sop_sized_classes_is_refused_before_training(tmp_path: Path) -> None:
    from repmet.training import TrainingRun

    # Training classes of 2 and 3 images, as Stanford Online Products has.
    fake_sop(tmp_path, train={n: 2 + n % 2 for n in range(1, 9)}, test={9: 2, 10: 2})
    config = TrainingConfig(
        dataset="sop", data_root=str(tmp_path), image_size=8, protocol=CLASS_DISJOINT, m=2, k=3
    )
    with pytest.raises(
        ConfigError,
        # Fold 0 validates on products 1 and 2; training holds 3..8, and product 4 has 2 images.
        match=r"k = 3 exceeds the smallest training class \(class 1 \(4\) has 2 examples\); "
        r"use k <= 2",
    ):
        TrainingRun(config)


def test_d_above_a_cluster_size_draws_with_replacement_within_the_cluster() -> None:
    # Two classes of 2 and 3 examples, one cluster each; D = 4 exceeds both.
    labels = torch.tensor([0, 0, 1, 1, 1])
    index = ClusterIndex(torch.tensor([[0.0], [1.0]]), labels, num_classes=2, k=1)
    sampler = ClusterBatchSampler(m=2, d=4, generator=torch.Generator().manual_seed(0))
    for _ in range(20):
        batch = sampler.sample(index, LossTable(5))
        assert batch.indices.shape == (8,)
        blocks = batch.indices.view(2, 4)
        for block, cluster in zip(blocks, batch.cluster_ids.view(2, 4)[:, 0], strict=True):
            assert (labels[block] == int(cluster)).all()  # every row from its own cluster
