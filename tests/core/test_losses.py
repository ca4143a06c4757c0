"""Losses: spec oracles, per-example references, gradients, robustness, module forms, registry."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from repmet.catalogue import LOSSES
from repmet.errors import ArgumentError, UnknownNameError
from repmet.losses import (
    LossInputError,
    LossOutput,
    MagnetLoss,
    RepresentativeLoss,
    build_loss,
    cluster_margin_loss,
    magnet_loss,
    repmet_cvpr_loss,
    repmet_v1_loss,
    repmet_v2_loss,
    repmet_v3_loss,
)
from repmet.losses.base import masked_logsumexp, safe_sqrt
from repmet.testing.reference_losses import (
    REPRESENTATIVE_REFERENCES,
    magnet_reference,
    repmet_cvpr_cross_entropy_reference,
    repmet_cvpr_hinge_reference,
)

REPRESENTATIVE_LOSSES: dict[str, Callable[..., LossOutput]] = {
    "repmet-v1": repmet_v1_loss,
    "repmet-v2": repmet_v2_loss,
    "repmet-v3": repmet_v3_loss,
    "repmet-cvpr": repmet_cvpr_loss,
    "cluster-margin": cluster_margin_loss,
    "cluster-margin-v1": functools.partial(cluster_margin_loss, squared=False),
}
DTYPES = [torch.float32, torch.float64]
ORACLE_TOL = 1e-5


def tensor(values: object, dtype: torch.dtype) -> Tensor:
    return torch.tensor(values, dtype=dtype)


# ---------------------------------------------------------------- oracles (spec O1-O5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_magnet_oracle_o1(dtype: torch.dtype) -> None:
    x = tensor(np.random.RandomState(42).random_sample([24, 8]), dtype)
    blocks = torch.arange(24) // 4
    distinct = torch.tensor(np.repeat([0, 1, 2, 3, 4, 5], 4))
    out = magnet_loss(x, distinct, blocks, alpha=1.0)
    assert out.variance.item() == pytest.approx(0.5497290, abs=ORACLE_TOL)
    assert out.loss.item() == pytest.approx(2.3396316, abs=ORACLE_TOL)
    assert magnet_loss(x, distinct, blocks, alpha=10.0).loss.item() == pytest.approx(
        11.3396316, abs=ORACLE_TOL
    )
    siblings = torch.tensor(np.repeat([0, 1, 1, 3, 4, 5], 4))
    assert magnet_loss(x, siblings, blocks, alpha=1.0).loss.item() == pytest.approx(
        2.2603454, abs=ORACLE_TOL
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_magnet_oracle_o2(dtype: torch.dtype) -> None:
    out = magnet_loss(
        tensor([[0.0], [1.0], [1.0], [2.0]], dtype),
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([0, 0, 1, 1]),
        alpha=1.0,
    )
    assert out.per_example.tolist() == pytest.approx([0.0, 1.0, 1.0, 0.0], abs=ORACLE_TOL)
    assert out.loss.item() == pytest.approx(0.5, abs=ORACLE_TOL)
    assert out.batch_accuracy is None


def o3_data(dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Spec O3: three examples, K = 2 representatives for each of 3 classes."""
    reps = tensor([(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1)], dtype)
    rep_classes = torch.tensor([0, 0, 1, 1, 2, 2])
    x = tensor([(0.1, 0), (0.9, 0.2), (0.2, 0.9)], dtype)
    return x, torch.tensor([0, 0, 1]), reps, rep_classes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "per_example", "mean"),
    [
        ("repmet-v1", [0.0, 0.2661266, 0.0], 0.0887089),
        ("repmet-v2", None, 1.2162582),
        ("repmet-v3", None, 0.0274086),
        ("cluster-margin", [0.02, 0.5, 0.68], 0.4),
        ("cluster-margin-v1", None, 0.5657951),
        # O5: hinge [0, 0.4, 0.2] + cross-entropy [0.1275854, 0.3306785, 0.1852822]
        ("repmet-cvpr", [0.1275854, 0.7306785, 0.3852822], 0.4145154),
    ],
)
def test_representative_oracles_o3_o5(
    dtype: torch.dtype, name: str, per_example: list[float] | None, mean: float
) -> None:
    out = REPRESENTATIVE_LOSSES[name](*o3_data(dtype), alpha=1.0, sigma=0.5)
    assert out.loss.dtype == dtype
    assert out.loss.item() == pytest.approx(mean, abs=ORACLE_TOL)
    if per_example is not None:
        assert out.per_example.tolist() == pytest.approx(per_example, abs=ORACLE_TOL)
    assert out.variance is None and out.batch_accuracy is None


def test_cvpr_reference_parts_match_oracle_o5() -> None:
    # The oracle splits the published loss in two; the reference must reproduce each part.
    x, y, reps, rep_classes = o3_data(torch.float64)
    hinge = repmet_cvpr_hinge_reference(x, y, reps, rep_classes, alpha=1.0)
    cross_entropy = repmet_cvpr_cross_entropy_reference(x, y, reps, rep_classes, sigma=0.5)
    assert hinge.tolist() == pytest.approx([0.0, 0.4, 0.2], abs=1e-7)
    assert cross_entropy.tolist() == pytest.approx([0.1275854, 0.3306785, 0.1852822], abs=1e-7)


# ---------------------------------------------------------------- random batches vs references


def random_representative_batch(
    seed: int, k: int, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """10 rows drawn from classes 0, 1 and 3 of 4 (class 2 has no batch rows); representatives'
    classes are shuffled so nothing relies on the class-major layout."""
    generator = torch.Generator().manual_seed(seed)
    num_classes, dim, rows = 4, 5, 10
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 3, 3, 3])[torch.randperm(rows, generator=generator)]
    rep_classes = (torch.arange(num_classes * k) // k)[
        torch.randperm(num_classes * k, generator=generator)
    ]
    embeddings = torch.randn(rows, dim, generator=generator, dtype=dtype)
    reps = torch.randn(num_classes * k, dim, generator=generator, dtype=dtype)
    # A representative of the absent class 2 inside the margin of a batch row: cluster-margin
    # must leave it out of the sum (S_j = 0) although the row intrudes into its ball.
    absent = int((rep_classes == 2).nonzero()[0])
    reps[absent] = embeddings[0] + 0.05 * torch.randn(dim, generator=generator, dtype=dtype)
    return embeddings, labels, reps, rep_classes


def loss_and_gradients(
    per_example: Callable[[Tensor, Tensor], Tensor], *leaves: Tensor
) -> tuple[Tensor, list[Tensor]]:
    leaves = tuple(leaf.detach().clone().requires_grad_(True) for leaf in leaves)
    values = per_example(*leaves)
    # A weighted sum so that every row's gradient is checked, not only the mean's.
    weights = torch.linspace(0.5, 1.5, len(values), dtype=values.dtype)
    grads = torch.autograd.grad((values * weights).sum(), leaves)
    return values.detach(), list(grads)


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE_LOSSES))
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_representative_losses_match_reference(name: str, k: int, seed: int) -> None:
    x, y, reps, rep_classes = random_representative_batch(seed, k)
    options = {"alpha": 0.7, "sigma": 0.8}
    actual, actual_grads = loss_and_gradients(
        lambda e, r: REPRESENTATIVE_LOSSES[name](e, y, r, rep_classes, **options).per_example,
        x,
        reps,
    )
    expected, expected_grads = loss_and_gradients(
        lambda e, r: REPRESENTATIVE_REFERENCES[name](e, y, r, rep_classes, **options), x, reps
    )
    assert actual.abs().sum() > 0, "a batch whose losses are all 0 checks nothing"
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10)
    for got, want in zip(actual_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def random_magnet_batch(seed: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, ...]:
    """6 clusters of 3 rows, classes repeating across clusters, ids neither contiguous nor
    sorted, rows shuffled."""
    generator = torch.Generator().manual_seed(seed)
    cluster_classes = torch.tensor([2, 0, 2, 1, 0, 3])
    ids = torch.randperm(100, generator=generator)[:6] * 7 - 50
    order = torch.randperm(18, generator=generator)
    cluster_ids = ids.repeat_interleave(3)[order]
    labels = cluster_classes.repeat_interleave(3)[order]
    centres = 1.5 * torch.randn(6, 4, generator=generator, dtype=dtype)
    embeddings = centres.repeat_interleave(3, dim=0)[order] + torch.randn(
        18, 4, generator=generator, dtype=dtype
    )
    return embeddings, labels, cluster_ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_magnet_matches_reference(seed: int) -> None:
    x, y, ids = random_magnet_batch(seed)
    actual, (actual_grad,) = loss_and_gradients(
        lambda e: magnet_loss(e, y, ids, alpha=0.5).per_example, x
    )
    expected, (expected_grad,) = loss_and_gradients(
        lambda e: magnet_reference(e, y, ids, alpha=0.5), x
    )
    assert actual.abs().sum() > 0
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=1e-8, atol=1e-10)
    members = [x[ids == i] for i in ids.unique()]
    variance = sum(((m - m.mean(0)) ** 2).sum() for m in members) / (len(x) - 1)
    assert magnet_loss(x, y, ids, alpha=0.5).variance.item() == pytest.approx(variance.item())


def test_magnet_gradient_flows_through_the_batch_variance() -> None:
    x, y, ids = random_magnet_batch(0)
    _, (full,) = loss_and_gradients(lambda e: magnet_loss(e, y, ids, alpha=0.5).per_example, x)
    _, (detached,) = loss_and_gradients(
        lambda e: magnet_reference(e, y, ids, alpha=0.5, detach_variance=True), x
    )
    assert (full - detached).abs().max() > 1e-3
    out = magnet_loss(x.requires_grad_(True), y, ids, alpha=0.5)
    (variance_grad,) = torch.autograd.grad(out.variance, x)
    assert variance_grad.abs().sum() > 0


def test_repmet_v2_is_never_below_alpha() -> None:
    x, y, reps, rep_classes = random_representative_batch(3, k=3)
    out = repmet_v2_loss(x, y, reps, rep_classes, alpha=0.3, sigma=2.0)
    assert bool((out.per_example >= 0.3).all())


# ---------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE_LOSSES))
def test_representative_gradcheck(name: str) -> None:
    x, y, reps, rep_classes = random_representative_batch(5, k=2)
    x, reps = x[:6].requires_grad_(True), reps.requires_grad_(True)
    y = y[:6]

    def per_example(e: Tensor, r: Tensor) -> Tensor:
        return REPRESENTATIVE_LOSSES[name](e, y, r, rep_classes, alpha=1.5, sigma=0.9).per_example

    assert per_example(x, reps).abs().sum() > 0
    assert torch.autograd.gradcheck(per_example, (x, reps))


def test_magnet_gradcheck() -> None:
    x, y, ids = random_magnet_batch(4)
    x = x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: magnet_loss(e, y, ids, alpha=2.0).per_example, (x,))
    assert torch.autograd.gradcheck(lambda e: magnet_loss(e, y, ids, alpha=2.0).variance, (x,))


# ---------------------------------------------------------------- robustness


def test_masked_logsumexp_of_an_empty_slice_is_minus_inf_with_zero_gradient() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    values.requires_grad_(True)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    result = masked_logsumexp(values, mask, dim=1)
    assert result[0].item() == pytest.approx(np.log(np.exp(1.0) + np.exp(3.0)))
    assert result[1].item() == -np.inf
    (grad,) = torch.autograd.grad(result[0], values, retain_graph=True)
    softmax = np.exp([1.0, 3.0]) / np.exp([1.0, 3.0]).sum()
    assert grad.flatten().tolist() == pytest.approx([softmax[0], 0.0, softmax[1], 0.0, 0.0, 0.0])
    # The empty slice alone: its gradient must be 0, not NaN.
    (grad,) = torch.autograd.grad(result.clamp_min(0.0).sum(), values)
    assert bool(torch.isfinite(grad).all())
    assert grad[1].tolist() == [0.0, 0.0, 0.0]


def test_safe_sqrt_has_zero_gradient_at_zero() -> None:
    values = torch.tensor([0.0, 4.0, 1e-30], dtype=torch.float64, requires_grad=True)
    roots = safe_sqrt(values)
    assert roots.tolist() == pytest.approx([0.0, 2.0, 1e-15])
    (grad,) = torch.autograd.grad(roots.sum(), values)
    assert grad.tolist() == pytest.approx([0.0, 0.25, 0.5e15])


def all_losses_float32(x: Tensor, reps: Tensor) -> dict[str, Tensor]:
    """Every loss on 6 rows of classes [0, 0, 1, 1, 2, 2] (Magnet: one cluster per pair)."""
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    rep_classes = torch.tensor([0, 0, 1, 1, 2, 2])
    losses = {
        name: fn(x, y, reps, rep_classes, alpha=1.0, sigma=0.5).loss
        for name, fn in REPRESENTATIVE_LOSSES.items()
    }
    losses["magnet"] = magnet_loss(x, y, torch.tensor([4, 4, 9, 9, 1, 1]), alpha=1.0).loss
    return losses


@pytest.mark.parametrize(
    "layout",
    ["far-apart", "coincident", "coincident-far-from-origin"],
)
def test_losses_finite_for_extreme_geometry_in_float32(layout: str) -> None:
    generator = torch.Generator().manual_seed(0)
    if layout == "far-apart":
        x = 1e3 * torch.randn(6, 8, generator=generator)
        reps = 1e3 * torch.randn(6, 8, generator=generator)
    else:
        offset = 1e3 if layout == "coincident-far-from-origin" else 0.0
        x = torch.full((6, 8), offset)
        reps = torch.full((6, 8), offset)
    x.requires_grad_(True)
    reps.requires_grad_(True)
    for name, loss in all_losses_float32(x, reps).items():
        x.grad = reps.grad = None
        loss.backward()
        assert torch.isfinite(loss), name
        assert bool(torch.isfinite(x.grad).all()), name
        if name != "magnet":  # Magnet's centres are batch means, not the representatives
            assert bool(torch.isfinite(reps.grad).all()), name


@pytest.mark.parametrize("offset", [1e3, -3e3])
def test_losses_are_translation_invariant_in_float32(offset: float) -> None:
    # Distances do not change when everything moves; the float32 values must not either, even
    # far from the origin where |x|^2 dwarfs the distances (cancellation in |a|^2+|b|^2-2ab).
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 16, generator=generator)
    reps = torch.randn(6, 16, generator=generator)
    near = all_losses_float32(x, reps)
    far = all_losses_float32(x + offset, reps + offset)
    for name in near:
        assert far[name].item() == pytest.approx(near[name].item(), rel=1e-4, abs=1e-5), name


def test_coincident_points_give_the_limit_values() -> None:
    x = torch.zeros(6, 3, requires_grad=True)
    losses = all_losses_float32(x, torch.zeros(6, 3))
    # All distances 0: p_nj = 1 for every representative (2 own, 4 others).
    assert losses["repmet-v1"].item() == pytest.approx(1.0 + np.log(4.0))
    assert losses["repmet-v2"].item() == pytest.approx(1.0 + np.log(3.0))
    assert losses["repmet-v3"].item() == pytest.approx(1.0 + np.log(2.0))
    assert losses["repmet-cvpr"].item() == pytest.approx(1.0 + np.log(3.0))
    # Every other-class ball has radius 0 + alpha: 4 intrusions of depth 1, x2, over 6 reps.
    assert losses["cluster-margin"].item() == pytest.approx(4 / 3)
    assert losses["cluster-margin-v1"].item() == pytest.approx(4 / 3)
    # sigma^2 = 0: the own term vanishes and the two impostor clusters each contribute exp(0).
    assert losses["magnet"].item() == pytest.approx(1.0 + np.log(2.0))


def test_magnet_undefined_batches_raise() -> None:
    x = torch.randn(4, 2)
    with pytest.raises(LossInputError, match="at least two classes"):
        magnet_loss(x, torch.tensor([1, 1, 1, 1]), torch.tensor([0, 0, 1, 1]), alpha=1.0)
    with pytest.raises(LossInputError, match="single class"):
        magnet_loss(x, torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1]), alpha=1.0)
    with pytest.raises(LossInputError, match="at least 2 batch rows"):
        magnet_loss(x[:1], torch.tensor([0]), torch.tensor([0]), alpha=1.0)
    with pytest.raises(LossInputError, match="cluster_ids"):
        magnet_loss(x, torch.tensor([0, 0, 1, 1]), torch.tensor([0.0, 0, 1, 1]), alpha=1.0)
    with pytest.raises(ArgumentError, match="alpha must be at least 0, got -1.0"):
        magnet_loss(x, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1]), alpha=-1.0)


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE_LOSSES))
def test_representative_undefined_inputs_raise(name: str) -> None:
    x, y, reps, rep_classes = o3_data(torch.float64)
    loss = functools.partial(REPRESENTATIVE_LOSSES[name], alpha=1.0, sigma=0.5)
    with pytest.raises(LossInputError, match=r"batch labels \[7\] have no representative"):
        loss(x, torch.tensor([0, 7, 1]), reps, rep_classes)
    with pytest.raises(LossInputError, match="at least two classes"):
        loss(x, torch.tensor([0, 0, 0]), reps, torch.zeros(6, dtype=torch.long))
    with pytest.raises(LossInputError, match=r"representatives must be a \[J, 2\] matrix"):
        loss(x, y, reps[:, :1], rep_classes)
    with pytest.raises(LossInputError, match="labels must be an integer vector of length 3"):
        loss(x, y[:2], reps, rep_classes)
    with pytest.raises(
        ArgumentError, match="sigma must be a finite number greater than 0, got 0.0"
    ):
        REPRESENTATIVE_LOSSES[name](x, y, reps, rep_classes, alpha=1.0, sigma=0.0)


# ---------------------------------------------------------------- module forms and registry

#: The field's losses (pytorch-metric-learning; tests/core/test_field_losses.py).
FIELD_NAMES = [
    "contrastive",
    "triplet",
    "multi-similarity",
    "proxy-anchor",
    "soft-triple",
    "arcface",
]
ALL_NAMES = sorted(
    [
        "magnet",
        "repmet-v1",
        "repmet-v2",
        "repmet-v3",
        "repmet-cvpr",
        "cluster-margin",
        "cluster-margin-v1",
        "softmax",
        *FIELD_NAMES,
    ]
)


def test_catalogue_names_and_modules_fit_their_entries() -> None:
    assert LOSSES.names() == ALL_NAMES
    for name in ALL_NAMES:
        module = build_loss(name, num_classes=3, k=2, embedding_dim=4, alpha=1.0)
        not_representatives = ("magnet", "softmax", *FIELD_NAMES)
        assert LOSSES.get(name).learns_representatives == (name not in not_representatives)
        assert isinstance(module, RepresentativeLoss) == LOSSES.get(name).learns_representatives


def test_softmax_is_cross_entropy_of_a_linear_classifier_on_the_embedding() -> None:
    gen = torch.Generator().manual_seed(3)
    embeddings = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (12,), generator=gen)
    loss = build_loss("softmax", num_classes=3, k=2, embedding_dim=4, alpha=1.0).double()
    weight, bias = loss.classifier.weight, loss.classifier.bias
    out = loss(embeddings, labels, torch.zeros(12, dtype=torch.long))
    logits = embeddings @ weight.T + bias
    log_softmax = logits - logits.exp().sum(dim=1, keepdim=True).log()
    reference = -log_softmax[torch.arange(12), labels]
    torch.testing.assert_close(out.per_example, reference)
    assert float(out.batch_accuracy) == float((logits.argmax(dim=1) == labels).float().mean())
    # The classifier trains with the network; no variance of its own, so evaluation fits one.
    assert {id(p) for p in loss.network_parameters()} == {id(weight), id(bias)}
    assert loss.variance is None
    for name in ("magnet", "repmet-v1"):
        other = build_loss(name, num_classes=3, k=2, embedding_dim=4, alpha=1.0)
        assert other.network_parameters() == [] and other.variance is not None


def test_unknown_loss_name_lists_choices() -> None:
    expected = "unknown loss 'repmet-v4'; choose one of: arcface, cluster"
    with pytest.raises(UnknownNameError, match=expected):
        build_loss("repmet-v4", num_classes=3, k=2, embedding_dim=4, alpha=1.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_classes", 1, "num_classes must be at least 2, got 1"),
        ("k", 0, "k must be at least 1, got 0"),
        ("embedding_dim", 0, "embedding_dim must be at least 1, got 0"),
        ("alpha", -0.5, "alpha must be at least 0, got -0.5"),
        ("alpha", float("nan"), "alpha must be at least 0, got nan"),
        ("sigma", 0.0, "sigma must be a finite number greater than 0, got 0.0"),
        ("sigma", -1.0, "sigma must be a finite number greater than 0, got -1.0"),
        ("sigma", float("inf"), "sigma must be a finite number greater than 0, got inf"),
        ("alpha", float("inf"), "alpha must be finite, got inf"),
        ("k", 2.5, "k must be an integer of at least 1, got 2.5"),
        ("num_classes", True, "num_classes must be an integer of at least 2, got True"),
    ],
)
@pytest.mark.parametrize("name", ["magnet", "repmet-v1"])
def test_build_loss_validation_messages(name: str, field: str, value: float, message: str) -> None:
    fields = {"num_classes": 3, "k": 2, "embedding_dim": 4, "alpha": 1.0, "sigma": 0.5}
    fields[field] = value
    with pytest.raises(ArgumentError, match=message):
        build_loss(name, **fields)


def test_smallest_valid_fields_are_allowed() -> None:
    module = build_loss("repmet-v3", num_classes=np.int64(2), k=1, embedding_dim=1, alpha=0.0)
    assert module.alpha == 0.0
    assert module.representatives.shape == (2, 1)


def numpy_nearest_accuracy(x: Tensor, y: Tensor, centres: Tensor, classes: Tensor) -> float:
    distances = ((x.numpy()[:, None, :] - centres.numpy()[None, :, :]) ** 2).sum(-1)
    return float((classes.numpy()[distances.argmin(1)] == y.numpy()).mean())


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE_LOSSES))
def test_representative_modules_equal_plain_functions(name: str) -> None:
    module = build_loss(name, num_classes=4, k=3, embedding_dim=5, alpha=0.7, sigma=0.8)
    expected_classes = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    assert torch.equal(module.representative_classes, expected_classes)
    x, y, reps, _ = random_representative_batch(7, k=3)
    module.double().init_representatives(reps)
    assert torch.equal(module.representatives.detach(), reps)
    out = module(x, y, torch.zeros_like(y))
    plain = REPRESENTATIVE_LOSSES[name](x, y, reps, expected_classes, alpha=0.7, sigma=0.8)
    torch.testing.assert_close(out.per_example, plain.per_example)
    torch.testing.assert_close(out.loss, plain.loss)
    assert out.variance is None
    assert module.variance == pytest.approx(0.64)
    assert out.batch_accuracy.item() == pytest.approx(
        numpy_nearest_accuracy(x, y, reps, expected_classes)
    )
    out.loss.backward()
    assert module.representatives.grad is not None
    assert module.representatives.grad.abs().sum() > 0


def test_init_and_normalize_representatives() -> None:
    module = build_loss("repmet-v1", num_classes=3, k=2, embedding_dim=4, alpha=1.0)
    assert module.representatives.shape == (6, 4)
    with pytest.raises(LossInputError, match=r"centroids must have shape \[6, 4\]"):
        module.init_representatives(torch.ones(5, 4))
    module.init_representatives(torch.arange(24.0).reshape(6, 4))
    module.normalize_representatives_()
    norms = module.representatives.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(6))
    torch.testing.assert_close(
        module.representatives.detach()[1], torch.tensor([4.0, 5, 6, 7]) / np.sqrt(126.0)
    )


def test_magnet_module_equals_plain_function_and_tracks_running_variance() -> None:
    module = build_loss("magnet", num_classes=4, k=2, embedding_dim=4, alpha=0.5, sigma=0.3)
    assert isinstance(module, MagnetLoss)
    assert module.variance == pytest.approx(0.09)
    assert module.running_variance.dtype == torch.float64
    batch_variances = []
    for seed in range(3):
        x, y, ids = random_magnet_batch(seed, dtype=torch.float32)
        out = module(x, y, ids)
        plain = magnet_loss(x, y, ids, alpha=0.5)
        torch.testing.assert_close(out.per_example, plain.per_example)
        torch.testing.assert_close(out.variance, plain.variance)
        batch_variances.append(plain.variance.item())
        means = torch.stack([x[ids == i].mean(0) for i in ids.unique()])
        mean_classes = torch.stack([y[ids == i][0] for i in ids.unique()])
        assert out.batch_accuracy.item() == pytest.approx(
            numpy_nearest_accuracy(x, y, means, mean_classes)
        )
    assert int(module.num_batches_tracked) == 3
    assert module.variance == pytest.approx(np.mean(batch_variances), rel=1e-6)
    assert module.state_dict()["running_variance"].item() == pytest.approx(module.variance)
    module.eval()
    module(*random_magnet_batch(9, dtype=torch.float32))
    assert int(module.num_batches_tracked) == 3
    assert module.variance == pytest.approx(np.mean(batch_variances), rel=1e-6)
