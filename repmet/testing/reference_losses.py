"""Straightforward per-example reference implementations of the losses.

Written as the spec's formulas read, one example and one centre at a time, with plain sums of
exponentials (no log-sum-exp, no masks, no matrices): an independent check of the vectorised
losses in ``repmet.losses``. They are differentiable (torch scalars), so gradients can be compared
too, and ``benchmarks/bench_losses.py`` times them as the loop baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def squared_distance(a: Tensor, b: Tensor) -> Tensor:
    return ((a - b) ** 2).sum()


def magnet_reference(
    embeddings: Tensor,
    labels: Tensor,
    cluster_ids: Tensor,
    *,
    alpha: float,
    detach_variance: bool = False,
) -> Tensor:
    """Per-example Magnet loss; ``detach_variance`` stops the gradient through sigma^2."""
    rows = range(len(embeddings))
    ids = [int(i) for i in cluster_ids]
    ys = [int(y) for y in labels]
    clusters = sorted(set(ids))
    means = {}
    cluster_class = {}
    for m in clusters:
        members = [n for n in rows if ids[n] == m]
        means[m] = sum(embeddings[n] for n in members) / len(members)
        cluster_class[m] = ys[members[0]]
    variance = sum(squared_distance(embeddings[n], means[ids[n]]) for n in rows) / (len(rows) - 1)
    if detach_variance:
        variance = variance.detach()
    losses = []
    for n in rows:
        own = squared_distance(embeddings[n], means[ids[n]]) / (2 * variance)
        impostors = sum(
            torch.exp(-squared_distance(embeddings[n], means[m]) / (2 * variance))
            for m in clusters
            if cluster_class[m] != ys[n]
        )
        losses.append(torch.relu(own + alpha + torch.log(impostors)))
    return torch.stack(losses)


def _distance_table(embeddings: Tensor, representatives: Tensor, squared: bool) -> list[list]:
    table = []
    for x in embeddings:
        row = []
        for r in representatives:
            distance = squared_distance(x, r)
            row.append(distance if squared else torch.sqrt(distance))
        table.append(row)
    return table


def repmet_v1_reference(
    embeddings: Tensor,
    labels: Tensor,
    reps: Tensor,
    rep_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
) -> Tensor:
    classes = [int(c) for c in rep_classes]
    table = _distance_table(embeddings, reps, squared=True)
    losses = []
    for n, y in enumerate(int(y) for y in labels):
        nearest_own = min(d for d, c in zip(table[n], classes, strict=True) if c == y)
        others = sum(
            torch.exp(-d / (2 * sigma**2)) for d, c in zip(table[n], classes, strict=True) if c != y
        )
        losses.append(torch.relu(nearest_own / (2 * sigma**2) + torch.log(others) + alpha))
    return torch.stack(losses)


def _mixture_ratio_reference(
    embeddings: Tensor,
    labels: Tensor,
    reps: Tensor,
    rep_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
    denominator_includes_own: bool,
) -> Tensor:
    classes = [int(c) for c in rep_classes]
    table = _distance_table(embeddings, reps, squared=True)
    losses = []
    for n, y in enumerate(int(y) for y in labels):
        densities = [torch.exp(-d / (2 * sigma**2)) for d in table[n]]
        own = sum(p for p, c in zip(densities, classes, strict=True) if c == y)
        if denominator_includes_own:
            denominator = sum(densities)
        else:
            denominator = sum(p for p, c in zip(densities, classes, strict=True) if c != y)
        losses.append(torch.relu(-torch.log(own / denominator) + alpha))
    return torch.stack(losses)


def repmet_v2_reference(
    embeddings: Tensor,
    labels: Tensor,
    reps: Tensor,
    rep_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
) -> Tensor:
    return _mixture_ratio_reference(
        embeddings,
        labels,
        reps,
        rep_classes,
        alpha=alpha,
        sigma=sigma,
        denominator_includes_own=True,
    )


def repmet_v3_reference(
    embeddings: Tensor,
    labels: Tensor,
    reps: Tensor,
    rep_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
) -> Tensor:
    return _mixture_ratio_reference(
        embeddings,
        labels,
        reps,
        rep_classes,
        alpha=alpha,
        sigma=sigma,
        denominator_includes_own=False,
    )


def repmet_cvpr_cross_entropy_reference(
    embeddings: Tensor, labels: Tensor, reps: Tensor, rep_classes: Tensor, *, sigma: float
) -> Tensor:
    """-log P(y_n | x_n) with class scores s_c = max_{j of c} p_nj (RepMet eq. 3-4)."""
    classes = [int(c) for c in rep_classes]
    table = _distance_table(embeddings, reps, squared=True)
    losses = []
    for n, y in enumerate(int(y) for y in labels):
        scores = {}
        for d, c in zip(table[n], classes, strict=True):
            p = torch.exp(-d / (2 * sigma**2))
            scores[c] = p if c not in scores else torch.maximum(scores[c], p)
        losses.append(-torch.log(scores[y] / sum(scores.values())))
    return torch.stack(losses)


def repmet_cvpr_hinge_reference(
    embeddings: Tensor, labels: Tensor, reps: Tensor, rep_classes: Tensor, *, alpha: float
) -> Tensor:
    """[min_{j of y_n} d_nj - min_{j not of y_n} d_nj + alpha]_+ (RepMet eq. 5)."""
    classes = [int(c) for c in rep_classes]
    table = _distance_table(embeddings, reps, squared=True)
    losses = []
    for n, y in enumerate(int(y) for y in labels):
        nearest_own = min(d for d, c in zip(table[n], classes, strict=True) if c == y)
        nearest_other = min(d for d, c in zip(table[n], classes, strict=True) if c != y)
        losses.append(torch.relu(nearest_own - nearest_other + alpha))
    return torch.stack(losses)


def repmet_cvpr_reference(
    embeddings: Tensor,
    labels: Tensor,
    reps: Tensor,
    rep_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
) -> Tensor:
    return repmet_cvpr_cross_entropy_reference(
        embeddings, labels, reps, rep_classes, sigma=sigma
    ) + repmet_cvpr_hinge_reference(embeddings, labels, reps, rep_classes, alpha=alpha)


def cluster_margin_reference(
    embeddings: Tensor,
    labels: Tensor,
    reps: Tensor,
    rep_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
    squared: bool = True,
) -> Tensor:
    classes = [int(c) for c in rep_classes]
    ys = [int(y) for y in labels]
    table = _distance_table(embeddings, reps, squared=squared)
    batch_classes = set(ys)
    in_batch = [c in batch_classes for c in classes]
    radius = [
        max(table[n][j] for n in range(len(ys)) if ys[n] == classes[j]) if in_batch[j] else None
        for j in range(len(classes))
    ]
    normaliser = sum(in_batch)
    losses = []
    for n, y in enumerate(ys):
        total = embeddings.new_zeros(())
        for j, c in enumerate(classes):
            if c != y and in_batch[j]:
                total = total + torch.relu(radius[j] + alpha - table[n][j]) / (2 * sigma**2)
        losses.append(total / normaliser)
    return torch.stack(losses)


def cluster_margin_v1_reference(
    embeddings: Tensor,
    labels: Tensor,
    reps: Tensor,
    rep_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
) -> Tensor:
    return cluster_margin_reference(
        embeddings, labels, reps, rep_classes, alpha=alpha, sigma=sigma, squared=False
    )


RepresentativeReference = Callable[..., Tensor]

# Registry name -> reference per-example loss, for the representative-based losses.
REPRESENTATIVE_REFERENCES: dict[str, RepresentativeReference] = {
    "repmet-v1": repmet_v1_reference,
    "repmet-v2": repmet_v2_reference,
    "repmet-v3": repmet_v3_reference,
    "repmet-cvpr": repmet_cvpr_reference,
    "cluster-margin": cluster_margin_reference,
    "cluster-margin-v1": cluster_margin_v1_reference,
}
