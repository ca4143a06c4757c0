"""The field's losses (pytorch-metric-learning): our wiring gives the library's own loss value and
gradients, class-balanced batches, learned centres as representatives, bit-exact resume."""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from torch import nn

from repmet.catalogue import LOSSES
from repmet.clusters import ClusterIndex, LossTable
from repmet.config import TrainingConfig
from repmet.errors import ConfigError
from repmet.losses import build_loss
from repmet.sampling import ClassBalancedBatchSampler
from repmet.training import TrainingRun
from search_spaces import SEARCH_SPACES, SpaceContext

FIELD = [name for name in LOSSES.in_order() if LOSSES.get(name).family == "field"]
LEARNED = ("proxy-anchor", "soft-triple", "arcface")
C, K, E = 4, 2, 8

Reference = Callable[[TrainingConfig], tuple[nn.Module, nn.Module | None]]
#: Each loss written directly with the library, as its documentation and the catalogue entry say:
#: the library's loss and miner with the configuration's fields.
REFERENCES: dict[str, Reference] = {
    "contrastive": lambda c: (
        losses.ContrastiveLoss(pos_margin=c.pos_margin, neg_margin=c.alpha),
        None,
    ),
    "triplet": lambda c: (
        losses.TripletMarginLoss(margin=c.alpha),
        miners.TripletMarginMiner(margin=c.alpha, type_of_triplets="semihard"),
    ),
    "multi-similarity": lambda c: (
        losses.MultiSimilarityLoss(alpha=c.scale, beta=c.neg_scale, base=c.base),
        miners.MultiSimilarityMiner(epsilon=c.alpha),
    ),
    "proxy-anchor": lambda c: (
        losses.ProxyAnchorLoss(C, E, margin=c.alpha, alpha=c.scale),
        None,
    ),
    "soft-triple": lambda c: (
        losses.SoftTripleLoss(C, E, centers_per_class=K, la=c.scale, gamma=c.gamma, margin=c.alpha),
        None,
    ),
    "arcface": lambda c: (losses.ArcFaceLoss(C, E, margin=c.alpha, scale=c.scale), None),
}


def _ours(name: str, config: TrainingConfig) -> nn.Module:
    options = {field: getattr(config, field) for field in LOSSES.get(name).options}
    return build_loss(
        name, num_classes=C, k=K, embedding_dim=E, alpha=config.alpha, **options
    ).double()


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeddings = F.normalize(torch.randn(24, E, generator=generator, dtype=torch.float64), dim=1)
    return embeddings, torch.arange(C).repeat_interleave(6)


def test_every_field_loss_has_a_reference() -> None:
    assert FIELD and set(FIELD) == set(REFERENCES)


@pytest.mark.parametrize("name", FIELD)
def test_wiring_gives_the_library_loss_and_gradients(name: str) -> None:
    config = TrainingConfig(loss=name, k=K)
    ours = _ours(name, config)
    reference, miner = REFERENCES[name](config)
    reference = reference.double()
    # The learned proxies, centres and class weights start as ours (both are random draws).
    for mine, theirs in zip(ours.own_parameters(), reference.parameters(), strict=True):
        with torch.no_grad():
            theirs.copy_(mine)
    points, labels = _batch()
    x = points.clone().requires_grad_(True)
    y = points.clone().requires_grad_(True)

    output = ours(x, labels, labels)
    expected = reference(y, labels, miner(y, labels) if miner is not None else None)
    output.loss.backward()
    expected.backward()

    assert float(output.loss.detach()) > 0  # the batch has pairs, triplets or margins to work on
    torch.testing.assert_close(output.loss, expected, rtol=0, atol=0)
    assert x.grad is not None and y.grad is not None and x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)
    for mine, theirs in zip(ours.own_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=0, atol=0)
    assert ours.network_parameters() == []
    assert len(ours.own_parameters()) == (1 if name in LEARNED else 0)
    assert output.per_example.shape == (24,) and bool((output.per_example == output.loss).all())


@pytest.mark.parametrize("name", LEARNED)
def test_learned_centres_are_the_library_class_layout(name: str) -> None:
    """The nearest learned centre (unit sphere, squared distance) is the class of highest cosine
    similarity to a class's proxy or best centre, as the library computes them."""
    ours = _ours(name, TrainingConfig(loss=name, k=K))
    centres, classes = ours.learned_centres()
    per_class = K if name == "soft-triple" else 1
    assert classes.tolist() == [c for c in range(C) for _ in range(per_class)]
    assert torch.allclose(centres.norm(dim=1), torch.ones(C * per_class, dtype=centres.dtype))
    points, _ = _batch(1)
    nearest = classes[torch.cdist(points, centres).argmin(dim=1)]
    parameter = ours.own_parameters()[0]
    weights = parameter if name == "proxy-anchor" else parameter.t()
    cosine = F.normalize(points, dim=1) @ F.normalize(weights.detach(), dim=1).t()
    assert torch.equal(nearest, cosine.reshape(-1, C, per_class).amax(dim=2).argmax(dim=1))


def _class_index() -> ClusterIndex:
    # 3 classes x k = 2 clusters; class 2 has 2 examples, fewer than D = 3.
    sizes = torch.tensor([4, 3, 2, 5, 1, 1])
    assignments = torch.arange(6).repeat_interleave(sizes)
    shuffled = assignments[torch.randperm(assignments.numel())]
    return ClusterIndex(torch.zeros(6, 2), shuffled, num_classes=3, k=2)


def test_class_balanced_batches_hold_d_examples_of_m_classes() -> None:
    index = _class_index()
    classes_of = index.assignments // index.k
    table = LossTable(index.assignments.numel())
    seen = set()
    for seed in range(20):
        sampler = ClassBalancedBatchSampler(m=2, d=3, generator=torch.Generator().manual_seed(seed))
        batch = sampler.sample(index, table)
        again = ClassBalancedBatchSampler(m=2, d=3, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(again.sample(index, table).indices, batch.indices)
        blocks = classes_of[batch.indices].reshape(2, 3)
        assert bool((blocks == blocks[:, :1]).all()) and blocks[0, 0] != blocks[1, 0]
        assert torch.equal(batch.cluster_ids, index.assignments[batch.indices])
        for block, rows in zip(blocks[:, 0].tolist(), batch.indices.reshape(2, 3), strict=True):
            if block != 2:  # classes of at least D examples: without replacement
                assert rows.unique().numel() == 3
        seen.update(blocks[:, 0].tolist())
    assert seen == {0, 1, 2}


def test_class_balanced_batches_need_m_classes(digits) -> None:
    with pytest.raises(ConfigError, match="m = 11 exceeds the 10 training classes"):
        TrainingRun(TrainingConfig(loss="triplet", m=11, d=4), splits=digits)


@pytest.mark.parametrize("name", FIELD)
def test_state_round_trip_continues_bit_for_bit(name: str, digits, tmp_path) -> None:
    config = TrainingConfig(loss=name, iterations=12, m=4, d=4, k=2, seed=3)
    uninterrupted = TrainingRun(config, splits=digits)
    expected = [uninterrupted.train(1).loss for _ in range(8)]

    first = TrainingRun(config, splits=digits)
    before = [first.train(1).loss for _ in range(4)]
    path = first.save(tmp_path / "trial.pt")
    first.train(2)  # moves on past the save point; must not leak into the copy

    resumed = TrainingRun.load(path, splits=digits)
    after = [resumed.train(1).loss for _ in range(4)]
    assert before + after == expected
    for mine, theirs in (
        (resumed.model, uninterrupted.model),
        (resumed.loss_fn, uninterrupted.loss_fn),
    ):
        for key, tensor in theirs.state_dict().items():
            assert torch.equal(tensor, mine.state_dict()[key]), key
    assert (resumed.rep_optimizer is None) == (name not in LEARNED)


@pytest.mark.parametrize("name", ["triplet", "soft-triple"])
def test_measurement_has_centre_errors_exactly_for_learned_centres(name: str, digits) -> None:
    run = TrainingRun(TrainingConfig(loss=name, m=4, d=4, k=2), splits=digits)
    run.train(5)
    assert run.measure("val").centre_metrics is None  # only when asked for
    measurement = run.measure("val", centres=True)
    errors = {"error_simple", "error_magnet", "error_repmet", "error_unsupervised"}
    if name in LEARNED:
        assert measurement.centre_metrics is not None
        assert set(measurement.centre_metrics["val"]) == errors
        # the unsupervised error does not use centroids
        unsupervised = measurement.centre_metrics["val"]["error_unsupervised"]
        assert unsupervised == measurement.metrics["val"]["error_unsupervised"]
    else:
        assert measurement.centre_metrics is None


def test_search_draws_at_most_one_block_per_class() -> None:
    """Class-balanced batches hold M different classes: the search never suggests more."""
    context = SpaceContext(num_classes=3, smallest_class=40)
    objective = SEARCH_SPACES.get("field").objective("triplet", context)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(100):
        trial = study.ask()
        objective(trial)
        seen.add(trial.params["m"])
        assert trial.params["m"] * trial.params["d"] <= context.batch_budget
        study.tell(trial, 0.0)
    assert seen == {2, 3}
