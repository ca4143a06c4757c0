"""RepMet as published (Karlinsky et al., CVPR 2019, eq. 3-5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from repmet.losses.base import CentreGeometry, masked_amin, representative_loss_function


def class_log_scores(geometry: CentreGeometry, log_densities: Tensor) -> Tensor:
    """log s_c(x_n) = max_{j of class c} log p_nj as an ``[N, C]`` matrix (RepMet eq. 3).

    C is the largest class index + 1; a class without representatives scores -inf.
    """
    num_classes = int(torch.maximum(geometry.centre_classes.max(), geometry.labels.max())) + 1
    empty = log_densities.new_full((log_densities.shape[0], num_classes), -math.inf)
    index = geometry.centre_classes.unsqueeze(0).expand_as(log_densities)
    return empty.scatter_reduce(1, index, log_densities, reduce="amax", include_self=True)


def repmet_cvpr_per_example(geometry: CentreGeometry, *, alpha: float, sigma: float) -> Tensor:
    """l_n = -log P(y_n | x_n) + [min_{j of y_n} d_nj - min_{j not of y_n} d_nj + alpha]_+

    with the posterior P(c | x) = s_c(x) / sum_c' s_c'(x) (RepMet eq. 4) and the hinge of eq. 5.
    """
    scores = class_log_scores(geometry, geometry.log_densities(sigma**2))
    own_score = scores.gather(1, geometry.labels.unsqueeze(1)).squeeze(1)
    cross_entropy = scores.logsumexp(dim=1) - own_score
    nearest_own = masked_amin(geometry.distances, geometry.same_class, dim=1)
    nearest_other = masked_amin(geometry.distances, ~geometry.same_class, dim=1)
    return cross_entropy + torch.relu(nearest_own - nearest_other + alpha)


repmet_cvpr_loss = representative_loss_function(
    repmet_cvpr_per_example, name="repmet_cvpr_loss", summary="Published RepMet loss of a batch"
)
