"""Retrieval and clustering metrics against pytorch-metric-learning's AccuracyCalculator (an
independent implementation of Musgrave et al., 2020) and against hand-counted cases."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from repmet.retrieval import clustering_metrics, retrieval_metrics

PML_NAMES = {
    "p_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "map_at_r": "mean_average_precision_at_r",
    "nmi": "NMI",
    "ami": "AMI",
}


def _pml(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),
        device=torch.device("cpu"),
    )
    return calculator.get_accuracy(embeddings, labels, embeddings, labels, ref_includes_query=True)


@pytest.mark.parametrize(("seed", "classes", "spread"), [(0, 7, 0.7), (1, 3, 2.0), (2, 12, 0.3)])
def test_retrieval_matches_pytorch_metric_learning(seed: int, classes: int, spread: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (240,), generator=gen)
    embeddings = torch.randn(240, 8, generator=gen) + spread * labels[:, None].float()
    ours = retrieval_metrics(embeddings, labels)
    reference = _pml(embeddings, labels)
    for name in ("p_at_1", "r_precision", "map_at_r"):
        assert ours[name] == pytest.approx(reference[PML_NAMES[name]], abs=1e-9), name
    assert retrieval_metrics(embeddings, labels, chunk_size=7) == pytest.approx(ours, abs=1e-12)


def test_retrieval_counts_by_hand() -> None:
    # 1-D points; class 0 at 0, 1, 10 and class 1 at 2, 11. Neighbours of 0 are 1 (hit), 2 (miss):
    # R = 2 for class 0, R = 1 for class 1.
    points = torch.tensor([[0.0], [1.0], [10.0], [2.0], [11.0]])
    labels = torch.tensor([0, 0, 0, 1, 1])
    metrics = retrieval_metrics(points, labels)
    # P@1 per query: 0->1 hit, 1->0 hit, 10->11 miss, 2->1 miss, 11->10 miss.
    assert metrics["p_at_1"] == pytest.approx(2 / 5)
    # R-precision: 0 -> {1, 2}: 1/2; 1 -> {0, 2}: 1/2; 10 -> {11, 2}: 0; 2 -> {1}: 0; 11 -> {10}: 0.
    assert metrics["r_precision"] == pytest.approx((0.5 + 0.5) / 5)
    # MAP@R: 0 -> (1/1 * 1) / 2; 1 -> (1/1) / 2; the rest 0.
    assert metrics["map_at_r"] == pytest.approx((0.5 + 0.5) / 5)


def test_singleton_classes_are_not_counted() -> None:
    points = torch.tensor([[0.0], [0.1], [5.0]])
    metrics = retrieval_metrics(points, torch.tensor([0, 0, 1]))
    assert metrics["p_at_1"] == 1.0 and metrics["map_at_r"] == 1.0
    alone = retrieval_metrics(points, torch.tensor([0, 1, 2]))
    assert all(value != value for value in alone.values())  # NaN: nothing to retrieve


def test_clustering_metrics_of_a_perfect_and_a_random_clustering() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2] * 20)
    assert clustering_metrics(labels + 5, labels) == pytest.approx({"nmi": 1.0, "ami": 1.0})
    shuffled = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]
    assert clustering_metrics(shuffled, labels)["ami"] == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("seed", range(6))
def test_clustering_metrics_match_scikit_learn(seed: int) -> None:
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    gen = torch.Generator().manual_seed(seed)
    size = int(torch.randint(20, 400, (1,), generator=gen))
    labels = torch.randint(0, 2 + seed, (size,), generator=gen)
    noise = torch.randint(0, 5, (size,), generator=gen)
    clusters = torch.where(torch.rand(size, generator=gen) < 0.3, noise, labels + 7)
    ours = clustering_metrics(clusters, labels)
    assert ours["nmi"] == pytest.approx(
        normalized_mutual_info_score(labels.numpy(), clusters.numpy()), abs=1e-12
    )
    assert ours["ami"] == pytest.approx(
        adjusted_mutual_info_score(labels.numpy(), clusters.numpy()), abs=1e-12
    )


def test_a_single_group_shares_no_information() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    assert clustering_metrics(torch.zeros(4, dtype=torch.long), labels) == {"nmi": 0.0, "ami": 0.0}
    same = torch.zeros(4, dtype=torch.long)
    assert clustering_metrics(same, same) == {"nmi": 1.0, "ami": 1.0}


def test_clustering_metrics_of_many_small_classes_match_scikit_learn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SOP's shape in small: about 5 examples per class, as many clusters as classes. The
    # expected mutual information goes through pairs of distinct sizes, here in blocks of 7
    # terms, and must give scikit-learn's sum over every (class, cluster) pair.
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    from repmet import retrieval

    gen = torch.Generator().manual_seed(11)
    labels = torch.randint(0, 400, (2_000,), generator=gen)
    clusters = torch.where(
        torch.rand(2_000, generator=gen) < 0.4,
        torch.randint(0, 400, (2_000,), generator=gen),
        labels,
    )
    whole = clustering_metrics(clusters, labels)
    assert whole["nmi"] == pytest.approx(
        normalized_mutual_info_score(labels.numpy(), clusters.numpy()), abs=1e-12
    )
    # scikit-learn adds 160,000 pairs' terms one by one; the rounding of the two sums differs
    # by about 1e-16 of E[MI], which AMI's small denominator turns into about 2e-12.
    assert whole["ami"] == pytest.approx(
        adjusted_mutual_info_score(labels.numpy(), clusters.numpy()), abs=1e-11
    )
    monkeypatch.setattr(retrieval, "EXPECTED_MI_BLOCK_TERMS", 7)
    assert clustering_metrics(clusters, labels) == pytest.approx(whole, abs=1e-12)


def test_tied_neighbours_are_taken_in_index_order() -> None:
    # Duplicates tie at the cut between the R nearest and the rest: the top-k selection must keep
    # the tied neighbour that a stable sort of the whole row keeps (the lower index).
    from repmet.geometry import smallest_in_order

    distances = torch.tensor([[3.0, 1.0, 1.0, 0.5, 1.0, 7.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    for count in range(1, 7):
        expected = torch.sort(distances, dim=1, stable=True).indices[:, :count]
        assert torch.equal(smallest_in_order(distances, count), expected), count
    points = torch.tensor([[0.0], [1.0], [1.0], [1.0], [-3.0]])  # mean 0: exact distances
    labels = torch.tensor([0, 0, 1, 0, 1])
    # Query 0 (R = 2): 1, 2, 3 tie at distance 1 and come in index order: a hit, a miss.
    # Query 1 (R = 2): 2 and 3 at 0, a miss then a hit. Query 3 (R = 2): 1 then 2, hit, miss.
    # Query 2 (R = 1): 1 at 0, a miss. Query 4 (R = 1): 0 at 9, a miss.
    metrics = retrieval_metrics(points, labels)
    assert metrics["p_at_1"] == pytest.approx(2 / 5)
    assert metrics["r_precision"] == pytest.approx((0.5 + 0.5 + 0.5) / 5)
    assert metrics["map_at_r"] == pytest.approx((0.5 + 0.25 + 0.5) / 5)
