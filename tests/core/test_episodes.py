"""Few-shot episodes: oracle O8, known answers, an independent reference, the fixed episode list."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from repmet.episodes import (
    Episodes,
    draw_episodes,
    episode_accuracies,
    episode_representatives,
    query_log_scores,
)
from repmet.errors import ConfigError, DataError, DataNotFoundError
from repmet.evaluation import METHODS, class_scores
from repmet.kmeans import kmeans

# O8 (spec, "Unseen classes"): one 2-way 2-shot episode; rows 0-3 support, rows 4-6 queries.
O8_POINTS = [(0, 0), (0.4, 0), (1, 1), (1.2, 0.6), (0.5, 0.3), (0.9, 0.7), (0.7, 0.2)]
O8_QUERY_CLASSES = [0, 1, 1]
# The three queries do not fit one [E, N, Q] list (one query of class 0, two of class 1); the
# list names the first of each, and the oracle scores all three against its representatives.
O8_EPISODE = Episodes(
    support=torch.tensor([[[0, 1], [2, 3]]]),
    query=torch.tensor([[[4], [5]]]),
    classes=torch.tensor([[0, 1]]),
)


def _o8_scores(modes: int) -> dict[str, torch.Tensor]:
    points = torch.tensor(O8_POINTS, dtype=torch.float64)
    representatives = episode_representatives(points, O8_EPISODE, modes=modes, seed=0)
    scores = query_log_scores(representatives, points[None, 4:], variance=0.5, l_nearest=3)
    return {method: log_scores[0] for method, log_scores in scores.items()}


def _accuracy(log_scores: torch.Tensor) -> float:
    return float((log_scores.argmax(dim=1) == torch.tensor(O8_QUERY_CLASSES)).double().mean())


def test_oracle_o8_one_mode_is_the_support_mean() -> None:
    representatives = episode_representatives(
        torch.tensor(O8_POINTS, dtype=torch.float64), O8_EPISODE, modes=1, seed=0
    )
    torch.testing.assert_close(
        representatives[0, :, 0], torch.tensor([[0.2, 0.0], [1.1, 0.8]], dtype=torch.float64)
    )
    scores = _o8_scores(modes=1)
    distances = torch.tensor([[0.18, 0.61], [0.98, 0.05], [0.29, 0.52]], dtype=torch.float64)
    torch.testing.assert_close(-scores["simple"], distances, atol=1e-12, rtol=0)
    for method in METHODS:  # one mode per class: the three rules agree
        assert scores[method].argmax(dim=1).tolist() == [0, 1, 0], method
        assert _accuracy(scores[method]) == pytest.approx(2 / 3)


def test_oracle_o8_two_modes_are_the_support_points() -> None:
    scores = _o8_scores(modes=2)
    repmet = torch.tensor(
        [[1.616608, 1.037012], [0.749646, 1.809675], [1.466700, 1.145559]], dtype=torch.float64
    )
    magnet = torch.tensor(
        [[0.742754, 0.257246], [0.208639, 0.791361], [0.688478, 0.311522]], dtype=torch.float64
    )
    torch.testing.assert_close(scores["repmet"].exp(), repmet, atol=1e-6, rtol=0)
    torch.testing.assert_close(scores["magnet"].exp(), magnet, atol=1e-6, rtol=0)
    for method in METHODS:
        assert scores[method].argmax(dim=1).tolist() == [0, 1, 0], method
        assert _accuracy(scores[method]) == pytest.approx(2 / 3)


def test_as_many_modes_as_shots_is_what_kmeans_returns() -> None:
    """m = S takes the support itself: per-class k-means with k = S puts a mode on each point."""
    points = torch.tensor(O8_POINTS, dtype=torch.float64)
    modes = kmeans(
        points[:4], 2, groups=torch.tensor([0, 0, 1, 1]), generator=torch.Generator().manual_seed(3)
    ).centroids.reshape(2, 2, 2)
    ours = episode_representatives(points, O8_EPISODE, modes=5, seed=0)[0]
    for mine, theirs in zip(ours, modes, strict=True):
        torch.testing.assert_close(
            sorted(mine.tolist()), sorted(theirs.tolist()), atol=1e-12, rtol=0
        )


def test_kmeans_modes_find_the_blobs_of_each_support() -> None:
    """2 modes of a 6-shot support made of two tight blobs per class are the blob means."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 2, 8, generator=generator, dtype=torch.float64) * 10  # [N, blob, D]
    points = centres.repeat_interleave(3, dim=1)
    points = points + 1e-3 * torch.randn(points.shape, generator=generator, dtype=torch.float64)
    embeddings = points.reshape(24, 8)
    episodes = Episodes(
        support=torch.arange(24).reshape(1, 4, 6)[:, :, torch.randperm(6, generator=generator)],
        query=torch.arange(4).reshape(1, 4, 1) * 6,
        classes=torch.arange(4).reshape(1, 4),
    )
    modes = episode_representatives(embeddings, episodes, modes=2, seed=1)[0]  # [N, 2, D]
    blob_means = points.reshape(4, 2, 3, 8).mean(dim=2)
    for found, expected in zip(modes, blob_means, strict=True):
        order = found[:, 0].argsort()
        torch.testing.assert_close(
            found[order], expected[expected[:, 0].argsort()], atol=1e-3, rtol=0
        )


def _class_codes(classes: int, per_class: int, offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(classes).repeat(per_class)
    return torch.nn.functional.one_hot(labels, classes).float() + offset, labels


@pytest.mark.parametrize(("shots", "modes"), [(1, 3), (5, 1), (5, 3), (5, 5)])
def test_class_codes_give_accuracy_one(shots: int, modes: int) -> None:
    """Embeddings that are exact one-hot class codes, far from the origin: every rule is right."""
    embeddings, labels = _class_codes(12, 25, offset=1000.0)
    episodes = draw_episodes(labels, ways=5, shots=shots, queries=15, count=200, seed=0)
    accuracies = episode_accuracies(
        embeddings, episodes, modes=modes, variance=0.5, l_nearest=2, seed=0
    )
    assert set(accuracies) == set(METHODS)
    for method, accuracy in accuracies.items():
        assert accuracy.mean == 1.0, method
        assert accuracy.half_width == 0.0
        assert accuracy.per_episode.tolist() == [1.0] * 200


@pytest.mark.parametrize(("shots", "modes"), [(1, 1), (5, 3)])
def test_random_embeddings_give_chance(shots: int, modes: int) -> None:
    """Embeddings independent of the labels: each rule is right for 1 query in N on average;
    the tolerance is 5 standard errors of the mean over the episodes."""
    count, ways = 1000, 5
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(40).repeat_interleave(30)
    embeddings = torch.randn(labels.numel(), 16, generator=generator)
    episodes = draw_episodes(labels, ways=ways, shots=shots, queries=15, count=count, seed=2)
    accuracies = episode_accuracies(
        embeddings, episodes, modes=modes, variance=1.0, l_nearest=128, seed=0
    )
    for method, accuracy in accuracies.items():
        sd = float(accuracy.per_episode.std())
        assert 0 < sd < 0.5
        assert accuracy.half_width == pytest.approx(1.96 * sd / math.sqrt(count), rel=1e-12)
        assert abs(accuracy.mean - 1 / ways) < 5 * sd / math.sqrt(count), method
        assert accuracy.mean == pytest.approx(float(accuracy.per_episode.mean()))


def _reference_accuracies(
    x: np.ndarray, episodes: Episodes, modes: str, variance: float, L: int
) -> dict[str, list[float]]:
    """Independent float64 reference with explicit loops over episodes and queries, for
    one mode (the support mean) or one mode per support point."""
    result: dict[str, list[float]] = {method: [] for method in METHODS}
    for support, query in zip(episodes.support.numpy(), episodes.query.numpy(), strict=True):
        if modes == "mean":
            centres = x[support].mean(axis=1)
            centre_classes = np.arange(len(support))
        else:
            centres = x[support].reshape(-1, x.shape[1])
            centre_classes = np.repeat(np.arange(len(support)), support.shape[1])
        correct = dict.fromkeys(METHODS, 0)
        for true_class, rows in enumerate(query):
            for row in rows:
                d = ((centres - x[row]) ** 2).sum(axis=1)
                kernel = np.exp(-d / (2 * variance))
                kept = np.argsort(d, kind="stable")[:L]
                magnet = np.zeros(len(support))
                np.add.at(magnet, centre_classes[kept], kernel[kept] / kernel[kept].sum())
                repmet = np.zeros(len(support))
                np.add.at(repmet, centre_classes, kernel)
                predictions = {
                    "simple": centre_classes[d.argmin()],
                    "magnet": magnet.argmax(),
                    "repmet": repmet.argmax(),
                }
                for method, predicted in predictions.items():
                    correct[method] += int(predicted == true_class)
        for method in METHODS:
            result[method].append(correct[method] / query.size)
    return result


@pytest.mark.parametrize(("shots", "modes", "reference_modes"), [(3, 1, "mean"), (3, 3, "points")])
def test_accuracies_match_an_independent_reference(
    shots: int, modes: int, reference_modes: str
) -> None:
    generator = torch.Generator().manual_seed(4)
    labels = torch.arange(20).repeat_interleave(12)
    means = 1.5 * torch.randn(20, 6, generator=generator, dtype=torch.float64)
    embeddings = means[labels] + torch.randn(240, 6, generator=generator, dtype=torch.float64)
    episodes = draw_episodes(labels, ways=4, shots=shots, queries=5, count=60, seed=5)
    ours = episode_accuracies(embeddings, episodes, modes=modes, variance=0.7, l_nearest=3, seed=0)
    reference = _reference_accuracies(embeddings.numpy(), episodes, reference_modes, 0.7, 3)
    for method in METHODS:
        assert ours[method].per_episode.tolist() == pytest.approx(reference[method], abs=1e-12)
    # The data are neither trivial nor hopeless, and the rules do not all agree.
    assert 0.4 < ours["simple"].mean < 0.95
    if modes > 1:
        assert ours["simple"].per_episode.tolist() != ours["repmet"].per_episode.tolist()


def test_batched_scores_are_the_evaluation_rules_episode_by_episode() -> None:
    generator = torch.Generator().manual_seed(6)
    representatives = torch.randn(7, 4, 3, 5, generator=generator) + 50.0  # [B, N, m, D]
    queries = torch.randn(7, 9, 5, generator=generator) + 50.0
    batched = query_log_scores(representatives, queries, variance=0.8, l_nearest=5)
    classes = torch.arange(4).repeat_interleave(3)
    for episode in range(7):
        centres = representatives[episode].reshape(12, 5)
        for method in METHODS:
            one = class_scores(queries[episode], centres, classes, method=method, variance=0.8, L=5)
            expected = one if method == "simple" else one.log()
            torch.testing.assert_close(batched[method][episode], expected, atol=1e-4, rtol=1e-5)


def test_episodes_are_well_formed_and_skip_small_classes() -> None:
    # Labels with gaps and an odd order; classes 7 and 30 have fewer than S + Q = 6 examples.
    sizes = {3: 6, 7: 5, 11: 9, 30: 2, 42: 40, 50: 6, 64: 12}
    labels = torch.tensor([c for c, n in sizes.items() for _ in range(n)])
    labels = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]
    episodes = draw_episodes(labels, ways=3, shots=2, queries=4, count=2000, seed=0)
    assert (episodes.count, episodes.ways, episodes.shots, episodes.queries) == (2000, 3, 2, 4)
    episodes.check_labels(labels)  # every example holds its episode class
    drawn = torch.unique(episodes.classes).tolist()
    assert drawn == [3, 11, 42, 50, 64]  # every eligible class, never a small one
    assert (episodes.classes.sort(dim=1).values.diff(dim=1) > 0).all()  # N distinct classes
    examples = torch.cat([episodes.support, episodes.query], dim=2).sort(dim=2).values
    assert (examples.diff(dim=2) > 0).all()  # S + Q distinct examples per class
    # Uniform over the eligible classes: 6,000 draws of 5 classes, within 5 standard deviations.
    counts = torch.bincount(episodes.classes.flatten())[drawn].double()
    expected, p = 6000 / 5, 3 / 5
    assert ((counts - expected).abs() < 5 * math.sqrt(2000 * p * (1 - p))).all(), counts
    # Within class 3 (6 examples, all in every episode of it) each is a support example 1/3 of
    # the time.
    of_three = torch.nonzero(labels == 3).squeeze(1)
    support = episodes.support[episodes.classes == 3].flatten()
    share = (support[:, None] == of_three).double().mean(dim=0) * 2
    assert ((share - 1 / 3).abs() < 0.06).all(), share




def test_save_and_load(tmp_path) -> None:
    labels = torch.arange(10).repeat(8)
    episodes = draw_episodes(labels, ways=4, shots=2, queries=3, count=25, seed=0)
    episodes.save(tmp_path / "episodes.pt")
    loaded = Episodes.load(tmp_path / "episodes.pt")
    assert loaded == episodes and loaded is not episodes
    assert list(tmp_path.iterdir()) == [tmp_path / "episodes.pt"]  # no temporary file left
    assert loaded != draw_episodes(labels, ways=4, shots=2, queries=3, count=24, seed=0)
    with pytest.raises(DataNotFoundError, match="no episode file"):
        Episodes.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not an episode file"):
        Episodes.load(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a tensor file")
    with pytest.raises(DataError, match="not a readable episode file"):
        Episodes.load(tmp_path / "text.pt")
    with pytest.raises(DataError, match="another split"):
        loaded.check_labels(labels.roll(1))
    with pytest.raises(DataError, match="another split"):
        loaded.check_labels(labels[:40])


def test_too_few_classes_is_one_clear_error() -> None:
    labels = torch.tensor([0] * 20 + [1] * 20 + [2] * 19 + [3] * 5)
    with pytest.raises(ConfigError) as raised:
        draw_episodes(labels, ways=3, shots=5, queries=15, count=10, seed=0)
    message = str(raised.value)
    assert "\n" not in message
    assert "3 classes with at least 20 examples" in message and "has 2 such of 4" in message
    assert draw_episodes(labels, ways=3, shots=4, queries=15, count=10, seed=0).count == 10
    for bad in ({"ways": 1}, {"shots": 0}, {"queries": 0}, {"count": 0}):
        arguments = {"ways": 2, "shots": 1, "queries": 1, "count": 1, **bad}
        with pytest.raises(ConfigError, match=f"few-shot {next(iter(bad))} = "):
            draw_episodes(labels, seed=0, **arguments)


def test_blocks_bound_memory_without_changing_the_numbers(monkeypatch) -> None:
    generator = torch.Generator().manual_seed(7)
    labels = torch.arange(15).repeat_interleave(10)
    embeddings = torch.randn(150, 8, generator=generator) + labels[:, None] * 0.3
    episodes = draw_episodes(labels, ways=5, shots=3, queries=4, count=50, seed=0)
    arguments = {"modes": 2, "variance": 0.5, "l_nearest": 4, "seed": 0}
    whole = episode_accuracies(embeddings, episodes, **arguments)
    # An episode takes N * Q * max(D, N * m) = 5 * 4 * 10 elements: blocks of 3 episodes.
    monkeypatch.setattr("repmet.geometry.DISTANCE_BLOCK_ELEMENTS", 3 * 5 * 4 * 10)
    blocked = episode_accuracies(embeddings, episodes, **arguments)
    for method in METHODS:
        assert torch.equal(blocked[method].per_episode, whole[method].per_episode)
    assert 0.2 < whole["simple"].mean < 1.0
