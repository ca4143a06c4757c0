"""Magnet loss (Rippel et al., ICLR 2016, eq. 4-5)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from repmet.losses.base import (
    CentreGeometry,
    LossInputError,
    LossOutput,
    check_batch,
    check_margin_and_scale,
    masked_logsumexp,
)


class MagnetTerms(NamedTuple):
    """The Magnet loss of a batch and the geometry it was computed from."""

    per_example: Tensor
    variance: Tensor
    geometry: CentreGeometry


def magnet_terms(
    embeddings: Tensor, labels: Tensor, cluster_ids: Tensor, *, alpha: float
) -> MagnetTerms:
    """Per-example Magnet loss l_n, the batch variance sigma^2 and the row/cluster-mean geometry.

    mu_m is the mean of batch cluster m's rows, sigma^2 = sum_n d(x_n, mu_m(n)) / (N - 1) (eq. 4),
    l_n = [d(x_n, mu_m(n)) / (2 sigma^2) + alpha
           + log sum_{m: class(m) != y_n} exp(-d(x_n, mu_m) / (2 sigma^2))]_+   (eq. 5).
    Gradients flow through the means and sigma^2.
    """
    check_margin_and_scale(alpha=alpha)
    check_batch(embeddings, labels)
    count = embeddings.shape[0]
    if cluster_ids.shape != labels.shape or cluster_ids.is_floating_point():
        raise LossInputError(
            f"cluster_ids must be an integer vector of length {count} (one per row), "
            f"got {cluster_ids.dtype} of shape {list(cluster_ids.shape)}."
        )
    if count < 2:
        raise LossInputError(f"the Magnet variance needs at least 2 batch rows, got {count}.")
    _, membership = torch.unique(cluster_ids, return_inverse=True)
    num_clusters = int(membership.max()) + 1
    members = F.one_hot(membership, num_clusters).T.to(embeddings.dtype)
    means = (members @ embeddings) / members.sum(dim=1, keepdim=True)
    cluster_classes = torch.zeros(num_clusters, dtype=labels.dtype, device=labels.device)
    cluster_classes = cluster_classes.scatter(0, membership, labels)
    if bool((cluster_classes[membership] != labels).any()):
        raise LossInputError("every Magnet batch cluster must hold rows of a single class.")
    geometry = CentreGeometry.build(embeddings, labels, means, cluster_classes)
    impostors = ~geometry.same_class
    if not bool(impostors.any()):
        raise LossInputError(
            "the Magnet loss needs batch clusters of at least two classes (no impostor cluster)."
        )
    # Exact differences rather than the matrix expansion: sigma^2 sums the smallest distances.
    own_distances = (embeddings - means[membership]).pow(2).sum(dim=1)
    variance = own_distances.sum() / (count - 1)
    # A batch whose clusters collapsed to points has sigma^2 = 0; the floor keeps values finite.
    scale = variance.clamp_min(torch.finfo(embeddings.dtype).eps)
    impostor_term = masked_logsumexp(geometry.log_densities(scale), impostors, dim=1)
    per_example = torch.relu(own_distances / (2.0 * scale) + alpha + impostor_term)
    return MagnetTerms(per_example, variance, geometry)


def magnet_loss(
    embeddings: Tensor, labels: Tensor, cluster_ids: Tensor, *, alpha: float
) -> LossOutput:
    """Magnet loss of a batch (Magnet paper eq. 4-5; see :func:`magnet_terms`).

    Args:
        embeddings: ``[N, E]`` batch embeddings.
        labels: ``[N]`` classes.
        cluster_ids: ``[N]`` batch cluster of each row, any integer ids; a cluster's class is its
            rows' label.
        alpha: margin, >= 0.

    Returns:
        :class:`LossOutput` with ``variance`` = the batch sigma^2 (differentiable).

    Raises:
        LossInputError: fewer than 2 rows, a cluster mixing classes, or a single class in the batch.
    """
    terms = magnet_terms(embeddings, labels, cluster_ids, alpha=alpha)
    return LossOutput.from_per_example(terms.per_example, variance=terms.variance)
