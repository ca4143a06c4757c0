"""The cluster-margin loss: push examples out of other-class representative balls."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from repmet.losses.base import (
    CentreGeometry,
    LossOutput,
    masked_amax,
    representative_loss,
    safe_sqrt,
)


def cluster_margin_per_example(
    geometry: CentreGeometry, *, alpha: float, sigma: float, squared: bool = True
) -> Tensor:
    """l_n = sum_{j: class(j) != y_n} S_j [rad_j + alpha - d_nj]_+ / (2 sigma^2 sum_j S_j)

    S_j = 1 when class(j) is in the batch; rad_j = max over batch rows of class(j) of d_nj
    (spec, cluster-margin). ``squared=False`` uses plain Euclidean distances for d and rad (v1).
    """
    distances = geometry.distances if squared else safe_sqrt(geometry.distances)
    in_batch = geometry.same_class.any(dim=0)
    radius = masked_amax(distances, geometry.same_class, dim=0)
    radius = torch.where(in_batch, radius, torch.zeros_like(radius))
    intrusions = torch.relu(radius.unsqueeze(0) + alpha - distances)
    counted = in_batch.unsqueeze(0) & ~geometry.same_class
    intrusions = torch.where(counted, intrusions, torch.zeros_like(intrusions))
    # The count is cast first: an integer tensor times a float would be rounded to float32.
    batch_representatives = in_batch.sum().to(distances.dtype)
    return intrusions.sum(dim=1) / (2.0 * sigma**2 * batch_representatives)


def cluster_margin_loss(
    embeddings: Tensor,
    labels: Tensor,
    representatives: Tensor,
    representative_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
    squared: bool = True,
) -> LossOutput:
    """Cluster-margin loss of a batch (see :func:`cluster_margin_per_example`; arguments as in
    :func:`repmet.losses.repmet_v1.repmet_v1_loss`, plus ``squared``: squared distances when
    True, plain Euclidean distances when False)."""
    return representative_loss(
        functools.partial(cluster_margin_per_example, squared=squared),
        embeddings,
        labels,
        representatives,
        representative_classes,
        alpha=alpha,
        sigma=sigma,
    )
