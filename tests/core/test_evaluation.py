"""Evaluation: oracle O6/O7, independent references, known-answer data, chunking, embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from repmet import evaluation, geometry
from repmet.errors import ArgumentError
from repmet.evaluation import (
    METHODS,
    assignment_accuracy,
    class_scores,
    compute_embeddings,
    error_rates,
    predict,
    unsupervised_accuracy,
)

O3_REPRESENTATIVES = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1)]
O6_QUERIES = [(0.6, 0.1), (1.6, 0.7)]
CLASSES_K2 = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_oracle_o6(dtype: torch.dtype) -> None:
    centroids = torch.tensor(O3_REPRESENTATIVES, dtype=dtype)
    queries = torch.tensor(O6_QUERIES, dtype=dtype)
    for method in METHODS:
        assert predict(
            queries, centroids, CLASSES_K2, method=method, variance=0.5, L=2
        ).tolist() == [0, 2]
    repmet_scores = class_scores(queries, centroids, CLASSES_K2, method="repmet", variance=0.5)
    expected = torch.tensor(
        [[1.534399, 0.689450, 0.202119], [0.474774, 0.708279, 1.300847]], dtype=dtype
    )
    torch.testing.assert_close(repmet_scores, expected, atol=1e-5, rtol=0)
    magnet = class_scores(queries, centroids, CLASSES_K2, method="magnet", variance=0.5, L=2)
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.450166, 0.549834]], dtype=dtype)
    torch.testing.assert_close(magnet, expected, atol=1e-5, rtol=0)


def _numpy_scores(x: np.ndarray, c: np.ndarray, classes: np.ndarray, variance: float, L: int):
    """Independent float64 reference of Magnet eq. 6 and RepMet eq. 6 with explicit loops."""
    num_classes = classes.max() + 1
    magnet = np.zeros((len(x), num_classes))
    repmet = np.zeros((len(x), num_classes))
    for n, query in enumerate(x):
        d = ((c - query) ** 2).sum(1)
        kernel = np.exp(-d / (2 * variance))
        kept = np.argsort(d)[:L]
        for j in range(len(c)):
            repmet[n, classes[j]] += kernel[j]
        for j in kept:
            magnet[n, classes[j]] += kernel[j] / kernel[kept].sum()
    return magnet, repmet


def test_scores_match_an_independent_reference() -> None:
    rng = np.random.RandomState(0)
    x, c = rng.randn(40, 5), rng.randn(12, 5)
    classes = np.arange(12) // 3
    magnet_ref, repmet_ref = _numpy_scores(x, c, classes, variance=1.3, L=5)
    args = (torch.from_numpy(x), torch.from_numpy(c), torch.from_numpy(classes))
    magnet = class_scores(*args, method="magnet", variance=1.3, L=5)
    repmet = class_scores(*args, method="repmet", variance=1.3)
    np.testing.assert_allclose(magnet.numpy(), magnet_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(repmet.numpy(), repmet_ref, rtol=1e-10, atol=1e-12)
    # Any other centroid order (the scatter path instead of the class-major reshape) agrees.
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = (args[0], args[1][order], args[2][order])
    for method, reference in (("magnet", magnet_ref), ("repmet", repmet_ref)):
        scores = class_scores(*shuffled, method=method, variance=1.3, L=5)
        np.testing.assert_allclose(scores.numpy(), reference, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        class_scores(*shuffled, method="simple"), class_scores(*args, method="simple")
    )
    nearest = ((x[:, None] - c[None]) ** 2).sum(-1).argmin(1)
    assert predict(*args, method="simple").tolist() == classes[nearest].tolist()
    assert predict(*args, method="repmet", variance=1.3).tolist() == repmet_ref.argmax(1).tolist()


def test_far_away_queries_are_scored_in_the_log_domain() -> None:
    # exp(-d / (2 sigma2)) underflows to 0 for every centroid here; only log-sum-exp ranks them.
    centroids = torch.tensor([[0.0], [1.0], [50.0], [51.0]])
    queries = torch.tensor([[400.0], [-400.0]])
    classes = torch.tensor([0, 0, 1, 1])
    for method in METHODS:
        assert predict(queries, centroids, classes, method=method, variance=0.5).tolist() == [1, 0]


def test_with_one_centroid_per_class_all_rules_agree() -> None:
    gen = torch.Generator().manual_seed(1)
    queries = torch.randn(300, 4, generator=gen)
    centroids = torch.randn(7, 4, generator=gen) * 0.5  # overlapping: predictions vary
    classes = torch.randperm(7, generator=gen)
    predictions = [
        predict(queries, centroids, classes, method=m, variance=0.3, L=3) for m in METHODS
    ]
    assert predictions[0].unique().numel() > 3
    assert torch.equal(predictions[0], predictions[1])
    assert torch.equal(predictions[0], predictions[2])


def _gaussian_split(seed: int):
    """5 classes, each a tight blob of 2 sub-clusters; the centroids are the sub-cluster means."""
    gen = torch.Generator().manual_seed(seed)
    class_centers = torch.randn(5, 8, generator=gen) * 30
    offsets = torch.randn(10, 8, generator=gen)
    sub_centers = class_centers.repeat_interleave(2, 0) + offsets
    sub = torch.arange(10).repeat_interleave(40)
    embeddings = sub_centers[sub] + 0.05 * torch.randn(400, 8, generator=gen)
    return embeddings, sub // 2, sub_centers, torch.arange(10) // 2


def test_evaluate_on_known_gaussian_clusters_is_error_free() -> None:
    embeddings, labels, centroids, centroid_classes = _gaussian_split(2)
    errors = error_rates(embeddings, labels, centroids, centroid_classes, variance=0.5, L=4)
    assert errors == {"simple": 0.0, "magnet": 0.0, "repmet": 0.0, "unsupervised": 0.0}
    # Swapping the classes of two centroid pairs makes exactly those two classes wrong.
    swapped = centroid_classes.clone()
    swapped[[0, 1, 2, 3]] = swapped[[2, 3, 0, 1]]
    errors = error_rates(embeddings, labels, centroids, swapped, variance=0.5, L=4)
    for method in METHODS:
        assert errors[method] == pytest.approx(0.4)


def test_chunked_evaluation_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(3)
    embeddings = torch.randn(101, 6, generator=gen)
    labels = torch.randint(0, 4, (101,), generator=gen)
    centroids = torch.randn(12, 6, generator=gen)
    classes = torch.arange(12) // 3
    whole = error_rates(embeddings, labels, centroids, classes, variance=0.7, L=5)
    assert whole == error_rates(
        embeddings, labels, centroids, classes, variance=0.7, L=5, chunk_size=4
    )
    for method in METHODS:
        reference = class_scores(embeddings, centroids, classes, method=method, variance=0.7, L=5)
        chunked = class_scores(
            embeddings, centroids, classes, method=method, variance=0.7, L=5, chunk_size=7
        )
        torch.testing.assert_close(chunked, reference)
    monkeypatch.setattr(geometry, "DISTANCE_BLOCK_ELEMENTS", 30)  # 2 queries per block
    assert whole == error_rates(embeddings, labels, centroids, classes, variance=0.7, L=5)


@pytest.mark.parametrize("shuffled", [False, True])
def test_predictions_from_the_top_l_equal_the_argmax_of_all_class_scores(shuffled: bool) -> None:
    # 200 classes x 3 centroids and L = 4: the RepMet rule scores the kept classes from all their
    # centroids and, where a class with no kept centroid could still win (a wide kernel), rescores
    # the query over all 600; a shuffled layout goes through the per-class scatter instead.
    gen = torch.Generator().manual_seed(4)
    centroids = torch.randn(600, 8, generator=gen)
    classes = torch.arange(600) // 3
    if shuffled:
        classes = classes[torch.randperm(600, generator=gen)]
    embeddings = centroids[torch.randint(0, 600, (500,), generator=gen)]
    embeddings = embeddings + 0.8 * torch.randn(500, 8, generator=gen)
    for variance in (0.05, 0.5, 5.0):
        for method in METHODS:
            scores = class_scores(
                embeddings, centroids, classes, method=method, variance=variance, L=4
            )
            expected = scores.argmax(dim=1)
            if method == "repmet":  # unnormalised kernel sums underflow: compare in the log domain
                expected = evaluation._per_chunk(
                    embeddings, centroids, classes, methods=(method,), variance=variance, L=4,
                    chunk_size=None, predictions=False,
                )[method].argmax(dim=1)  # fmt: skip
            got = predict(embeddings, centroids, classes, method=method, variance=variance, L=4)
            assert torch.equal(got, expected), (method, variance)


def test_assignment_accuracy_uses_the_best_one_to_one_mapping() -> None:
    # Oracle O7: cluster A holds labels [0, 0, 0, 1, 1], cluster B holds [0, 0].
    clusters = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    labels = torch.tensor([0, 0, 0, 1, 1, 0, 0])
    assert assignment_accuracy(clusters, labels) == pytest.approx(4 / 7)
    labels = torch.tensor([3, 3, 1, 1, 1, 7, 7, 7, 7])
    assert assignment_accuracy(torch.tensor([2, 2, 0, 0, 0, 5, 5, 5, 5]), labels) == 1.0
    # More clusters than classes: the extra cluster matches nothing.
    assert assignment_accuracy(
        torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 0, 0, 0, 1, 1])
    ) == pytest.approx(4 / 6)


def test_assignment_accuracy_equals_the_dense_assignment_problem() -> None:
    # The sparse matching (non-empty cells plus a dummy label per cluster) against scipy's
    # dense solver on the whole table, with more clusters than labels, fewer and as many.
    from scipy.optimize import linear_sum_assignment

    gen = torch.Generator().manual_seed(7)
    for _ in range(60):
        size = int(torch.randint(1, 60, (1,), generator=gen))
        clusters = torch.randint(0, int(torch.randint(1, 8, (1,), generator=gen)), (size,))
        labels = torch.randint(0, int(torch.randint(1, 8, (1,), generator=gen)), (size,))
        _, rows = torch.unique(clusters, return_inverse=True)
        _, columns = torch.unique(labels, return_inverse=True)
        table = np.zeros((int(rows.max()) + 1, int(columns.max()) + 1))
        np.add.at(table, (rows.numpy(), columns.numpy()), 1)
        best = table[linear_sum_assignment(table, maximize=True)].sum()
        assert assignment_accuracy(clusters, labels) == pytest.approx(best / size, abs=1e-12)


def test_unsupervised_accuracy_recovers_permuted_blobs() -> None:
    embeddings, labels, *_ = _gaussian_split(4)
    permuted = torch.tensor([3, 0, 4, 1, 2])[labels]
    assert unsupervised_accuracy(embeddings, permuted, seed=1) == 1.0
    half = embeddings.clone()
    half[labels == 1] = embeddings[labels == 0][: int((labels == 1).sum())]  # classes 0, 1 merged
    assert unsupervised_accuracy(half, labels, seed=1) <= 0.9


def test_unsupervised_accuracy_clusters_with_restarts(monkeypatch) -> None:
    from repmet.kmeans import KMeansResult

    points = torch.tensor([[0.0], [0.2], [5.0], [5.2]])
    labels = torch.tensor([0, 0, 1, 1])
    calls = []

    def fake_kmeans(*args, **kwargs) -> KMeansResult:
        calls.append(kwargs["restarts"])
        return KMeansResult(torch.tensor([[0.1], [5.1]]), torch.tensor([0, 0, 0, 1]), None)

    monkeypatch.setattr(evaluation, "kmeans", fake_kmeans)
    assert evaluation.unsupervised_accuracy(points, labels, restarts=3) == 0.75
    assert calls == [3]


def test_unsupervised_restarts_are_scaled_down_only_above_the_work_limit(monkeypatch) -> None:
    limit = evaluation.UNSUPERVISED_WORK
    restarts = evaluation.UNSUPERVISED_RESTARTS
    # Digits' test split and a CUB-sized one keep every restart; SOP's keeps one.
    assert evaluation.unsupervised_restarts(360, 10, restarts) == restarts
    assert evaluation.unsupervised_restarts(5_924, 100, restarts) == restarts
    assert evaluation.unsupervised_restarts(limit // 100, 10, restarts) == restarts
    assert evaluation.unsupervised_restarts(limit // 100 + 1, 10, restarts) == restarts - 1
    assert evaluation.unsupervised_restarts(8_000, 1_496, restarts) == 4
    assert evaluation.unsupervised_restarts(60_502, 11_316, restarts) == 1
    assert evaluation.unsupervised_restarts(limit, 2, 3) == 1
    # unsupervised_clusters runs what the rule keeps.
    points = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) % 4
    monkeypatch.setattr(evaluation, "UNSUPERVISED_WORK", 40 * 4 * 3)
    kept = evaluation.unsupervised_clusters(points, labels, seed=2, restarts=10)
    reference = evaluation.kmeans(points, 4, generator=torch.Generator().manual_seed(2), restarts=3)
    assert torch.equal(kept, reference.assignments)
    # ... which here is not what all 10 would have given.
    every = evaluation.kmeans(points, 4, generator=torch.Generator().manual_seed(2), restarts=10)
    assert not torch.equal(kept, every.assignments)


def test_invalid_arguments_raise_argument_errors() -> None:
    centroids = torch.tensor(O3_REPRESENTATIVES, dtype=torch.float32)
    queries = torch.tensor(O6_QUERIES)
    with pytest.raises(ArgumentError, match="choose one of: simple, magnet, repmet"):
        predict(queries, centroids, CLASSES_K2, method="nearest")
    with pytest.raises(ArgumentError, match="variance = 0"):
        predict(queries, centroids, CLASSES_K2, method="repmet", variance=0)
    with pytest.raises(ArgumentError, match="same E"):
        predict(queries[:, :1], centroids, CLASSES_K2, method="simple")


class _Images:
    def __init__(self) -> None:
        self.images = torch.randn(13, 1, 4, 4, generator=torch.Generator().manual_seed(5))
        self.labels = torch.arange(13) % 3
        self.batches: list[int] = []

    def get_batch(self, indices: torch.Tensor) -> torch.Tensor:
        self.batches.append(indices.numel())
        return self.images[indices]


@pytest.mark.parametrize("training", [True, False])
def test_compute_embeddings_matches_a_direct_forward_in_eval_mode(training: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)
    )
    model.train()
    model(torch.randn(32, 1, 4, 4))  # move the BatchNorm running statistics away from defaults
    model.train(training)
    data = _Images()
    embeddings, labels = compute_embeddings(model, data, batch_size=5)
    assert data.batches == [5, 5, 3]
    assert model.training is training
    assert embeddings.dtype == torch.float32 and not embeddings.requires_grad
    assert torch.equal(labels, data.labels)
    model.eval()
    with torch.no_grad():
        expected = model(data.images)
    torch.testing.assert_close(embeddings, expected)


def test_far_from_the_origin_predicts_like_near_it() -> None:
    # Centroids at offset 1,000 with spread 0.5: the uncentred float32 expansion mislabelled 138 of
    # these 500 queries; centred, the predictions equal those of the same points near the origin.
    gen = torch.Generator().manual_seed(0)
    centroids = torch.randn(20, 8, generator=gen) * 0.5
    classes = torch.arange(20) // 2
    queries = centroids[torch.randint(0, 20, (500,), generator=gen)]
    queries = queries + 0.2 * torch.randn(500, 8, generator=gen)
    for method in METHODS:
        near = predict(queries, centroids, classes, method=method, variance=0.1, L=5)
        far = predict(
            queries + 1000.0, centroids + 1000.0, classes, method=method, variance=0.1, L=5
        )
        assert torch.equal(far, near), method
