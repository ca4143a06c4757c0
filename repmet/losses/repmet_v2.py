"""RepMet v2: own-class mixture mass over the mass of all representatives."""

from __future__ import annotations

import torch
from torch import Tensor

from repmet.losses.base import (
    CentreGeometry,
    masked_logsumexp,
    representative_loss_function,
)


def repmet_v2_per_example(geometry: CentreGeometry, *, alpha: float, sigma: float) -> Tensor:
    """l_n = [-log(sum_{j of class y_n} p_nj / sum_{all j} p_nj) + alpha]_+ (spec, repmet-v2).

    The ratio is at most 1, so l_n >= alpha always.
    """
    log_densities = geometry.log_densities(sigma**2)
    own = masked_logsumexp(log_densities, geometry.same_class, dim=1)
    return torch.relu(log_densities.logsumexp(dim=1) - own + alpha)


repmet_v2_loss = representative_loss_function(
    repmet_v2_per_example, name="repmet_v2_loss", summary="RepMet v2 loss of a batch"
)
