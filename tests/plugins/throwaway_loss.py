"""A loss that exists only for the tests: one module plus its catalogue entry, nothing else.

Imported through ``$REPMET_PLUGINS=throwaway_loss`` (with this folder on ``PYTHONPATH``), it shows
that a new loss needs no change anywhere else in the suite: the configuration, the command line,
the trial, the search space ``all``, the study and the report all find it through the catalogue.
"""

from __future__ import annotations

import torch
from torch import Tensor

from repmet.catalogue import LossEntry, register
from repmet.losses.base import CentreGeometry, masked_amin
from repmet.losses.modules import RepresentativeLoss


class NearestMarginLoss(RepresentativeLoss):
    """softplus(d(x, nearest own representative) - d(x, nearest other one) + alpha)."""

    def per_example(self, geometry: CentreGeometry) -> Tensor:
        own = masked_amin(geometry.distances, geometry.same_class, dim=1)
        other = masked_amin(geometry.distances, ~geometry.same_class, dim=1)
        return torch.nn.functional.softplus(own - other + self.alpha)


ENTRY = register(
    LossEntry(
        name="throwaway",
        label="Throwaway (test plugin)",
        module=f"{__name__}:NearestMarginLoss",
        summary="a test-only margin on the nearest representatives",
        clusters="representatives",
        # Normalisation searched for a representative loss: the representatives must follow.
        searched=("k", "m", "d", "normalize_embeddings", "lr", "alpha"),
        ranges={"alpha": (0.1, 1.0)},
        notes=("{label}: a plugin loss with alpha = {alpha:g}.",),
    )
)
