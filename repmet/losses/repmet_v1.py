"""RepMet v1: the nearest own-class representative against all other-class representatives."""

from __future__ import annotations

import torch
from torch import Tensor

from repmet.losses.base import (
    CentreGeometry,
    masked_amax,
    masked_logsumexp,
    representative_loss_function,
)


def repmet_v1_per_example(geometry: CentreGeometry, *, alpha: float, sigma: float) -> Tensor:
    """l_n = [d*_n / (2 sigma^2) + log sum_{j: class(j) != y_n} exp(-d_nj / (2 sigma^2)) + alpha]_+

    with d*_n the distance to the nearest representative of class y_n (spec, repmet-v1).
    """
    log_densities = geometry.log_densities(sigma**2)
    nearest_own = masked_amax(log_densities, geometry.same_class, dim=1)
    others = masked_logsumexp(log_densities, ~geometry.same_class, dim=1)
    return torch.relu(others - nearest_own + alpha)


repmet_v1_loss = representative_loss_function(
    repmet_v1_per_example, name="repmet_v1_loss", summary="RepMet v1 loss of a batch"
)
