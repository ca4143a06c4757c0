"""RepMet v3: own-class mixture mass over the mass of the other-class representatives."""

from __future__ import annotations

import torch
from torch import Tensor

from repmet.losses.base import (
    CentreGeometry,
    masked_logsumexp,
    representative_loss_function,
)


def repmet_v3_per_example(geometry: CentreGeometry, *, alpha: float, sigma: float) -> Tensor:
    """l_n = [-log(sum_{j of class y_n} p_nj / sum_{j not of class y_n} p_nj) + alpha]_+
    (spec, repmet-v3)."""
    log_densities = geometry.log_densities(sigma**2)
    own = masked_logsumexp(log_densities, geometry.same_class, dim=1)
    others = masked_logsumexp(log_densities, ~geometry.same_class, dim=1)
    return torch.relu(others - own + alpha)


repmet_v3_loss = representative_loss_function(
    repmet_v3_per_example, name="repmet_v3_loss", summary="RepMet v3 loss of a batch"
)
