"""RepMet v3: own-class mixture mass over the mass of the other-class representatives."""

from __future__ import annotations

import torch
from torch import Tensor

from repmet.losses.base import CentreGeometry, LossOutput, masked_logsumexp, representative_loss


def repmet_v3_per_example(geometry: CentreGeometry, *, alpha: float, sigma: float) -> Tensor:
    """l_n = [-log(sum_{j of class y_n} p_nj / sum_{j not of class y_n} p_nj) + alpha]_+
    (spec, repmet-v3)."""
    log_densities = geometry.log_densities(sigma**2)
    own = masked_logsumexp(log_densities, geometry.same_class, dim=1)
    others = masked_logsumexp(log_densities, ~geometry.same_class, dim=1)
    return torch.relu(others - own + alpha)


def repmet_v3_loss(
    embeddings: Tensor,
    labels: Tensor,
    representatives: Tensor,
    representative_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
) -> LossOutput:
    """RepMet v3 loss of a batch (see :func:`repmet_v3_per_example`; arguments as in
    :func:`repmet.losses.repmet_v1.repmet_v1_loss`)."""
    return representative_loss(
        repmet_v3_per_example,
        embeddings,
        labels,
        representatives,
        representative_classes,
        alpha=alpha,
        sigma=sigma,
    )
