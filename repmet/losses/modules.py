"""``nn.Module`` forms of the losses, used by the training pipeline; :func:`build_loss` builds the
loss a catalogue entry (:mod:`repmet.catalogue`) names."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from repmet.catalogue import LOSSES
from repmet.config import LOSS_DEFAULTS
from repmet.errors import ArgumentError
from repmet.losses.base import (
    CentreGeometry,
    LossInputError,
    LossOutput,
    check_margin_and_scale,
    representative_geometry,
    require_count_at_least,
)
from repmet.losses.cluster_margin import cluster_margin_per_example
from repmet.losses.magnet import magnet_terms
from repmet.losses.repmet_cvpr import repmet_cvpr_per_example
from repmet.losses.repmet_v1 import repmet_v1_per_example
from repmet.losses.repmet_v2 import repmet_v2_per_example
from repmet.losses.repmet_v3 import repmet_v3_per_example

# Small enough to be clearly a placeholder until ``init_representatives`` copies k-means centroids.
REPRESENTATIVE_INIT_SCALE = 1e-2


class ClusterLoss(nn.Module):
    """Common base of the training losses.

    Args:
        num_classes: C, at least 2.
        k: clusters (Magnet) or representatives (RepMet) per class, at least 1.
        embedding_dim: E, at least 1.
        alpha: margin, >= 0.
        sigma: RepMet's Gaussian standard deviation, > 0 (Magnet: the variance reported before the
            first training batch is sigma^2).

    Raises:
        ArgumentError: a field out of range, named with its value and limit.
    """

    def __init__(
        self, *, num_classes: int, k: int, embedding_dim: int, alpha: float, sigma: float = 0.5
    ) -> None:
        super().__init__()
        require_count_at_least("num_classes", num_classes, 2)
        require_count_at_least("k", k, 1)
        require_count_at_least("embedding_dim", embedding_dim, 1)
        check_margin_and_scale(alpha=alpha, sigma=sigma)
        self.num_classes = num_classes
        self.k = k
        self.embedding_dim = embedding_dim
        self.alpha = alpha
        self.sigma = sigma

    def forward(self, embeddings: Tensor, labels: Tensor, cluster_ids: Tensor) -> LossOutput:
        """Loss of a batch; ``cluster_ids`` are the rows' global cluster indices (Magnet only)."""
        raise NotImplementedError

    @property
    def variance(self) -> float | None:
        """sigma^2 for evaluation; None when the loss has none and evaluation fits one."""
        return self.sigma**2

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters with an optimiser of their own (Adam with ``rep_lr``): the representatives,
        or a field loss's proxies, centres and class weights."""
        return [p for name, p in self.named_parameters() if name == "representatives"]

    def learned_centres(self) -> tuple[Tensor, Tensor] | None:
        """``([J', E], [J'])``: learned centres measured apart from the evaluation centroids, with
        their classes (the field's proxy losses); None for the others."""
        return None

    def network_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the network, by its optimiser (a classifier head): all but
        :meth:`own_parameters`."""
        own = {id(p) for p in self.own_parameters()}
        return [p for p in self.parameters() if id(p) not in own]

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, k={self.k}, embedding_dim={self.embedding_dim}, "
            f"alpha={self.alpha}, sigma={self.sigma}"
        )


class MagnetLoss(ClusterLoss):
    """Magnet loss (Magnet paper eq. 4-5) with a running mean of the batch variance.

    Buffers ``running_variance`` (float64) and ``num_batches_tracked``: every training-mode forward
    folds the detached batch sigma^2 into the cumulative mean, which is the evaluation variance.
    """

    def __init__(
        self, *, num_classes: int, k: int, embedding_dim: int, alpha: float, sigma: float = 0.5
    ) -> None:
        super().__init__(
            num_classes=num_classes, k=k, embedding_dim=embedding_dim, alpha=alpha, sigma=sigma
        )
        self.running_variance: Tensor
        self.num_batches_tracked: Tensor
        self.register_buffer("running_variance", torch.tensor(sigma**2, dtype=torch.float64))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, embeddings: Tensor, labels: Tensor, cluster_ids: Tensor) -> LossOutput:
        terms = magnet_terms(embeddings, labels, cluster_ids, alpha=self.alpha)
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked += 1
                batch_variance = terms.variance.detach().to(self.running_variance)
                self.running_variance += (
                    batch_variance - self.running_variance
                ) / self.num_batches_tracked
        return LossOutput.from_per_example(
            terms.per_example,
            variance=terms.variance,
            batch_accuracy=terms.geometry.nearest_centre_accuracy(),
        )

    @property
    def variance(self) -> float:
        """Running mean of the training batch variances (sigma^2 before the first batch)."""
        return float(self.running_variance)


class RepresentativeLoss(ClusterLoss):
    """Base of the losses with learned representatives ``[C*K, E]`` in class-major layout.

    ``representative_classes`` (a buffer) is ``arange(C*K) // K``: representative j belongs to
    class j // K.
    """

    def __init__(
        self, *, num_classes: int, k: int, embedding_dim: int, alpha: float, sigma: float = 0.5
    ) -> None:
        super().__init__(
            num_classes=num_classes, k=k, embedding_dim=embedding_dim, alpha=alpha, sigma=sigma
        )
        count = num_classes * k
        self.representatives = nn.Parameter(
            torch.randn(count, embedding_dim) * REPRESENTATIVE_INIT_SCALE
        )
        self.representative_classes: Tensor
        self.register_buffer("representative_classes", torch.arange(count) // k)

    def per_example(self, geometry: CentreGeometry) -> Tensor:
        """l_n of the batch described by ``geometry``."""
        raise NotImplementedError

    def forward(self, embeddings: Tensor, labels: Tensor, cluster_ids: Tensor) -> LossOutput:
        geometry = representative_geometry(
            embeddings, labels, self.representatives, self.representative_classes
        )
        return LossOutput.from_per_example(
            self.per_example(geometry), batch_accuracy=geometry.nearest_centre_accuracy()
        )

    def init_representatives(self, centroids: Tensor) -> None:
        """Copies k-means centroids ``[C*K, E]`` (class-major) into the representatives."""
        expected = tuple(self.representatives.shape)
        if tuple(centroids.shape) != expected:
            raise LossInputError(
                f"centroids must have shape {list(expected)} (C*K rows, class-major), "
                f"got {list(centroids.shape)}."
            )
        with torch.no_grad():
            self.representatives.copy_(centroids)

    def normalize_representatives_(self) -> None:
        """Rescales every representative to unit length, in place (for L2-normalised embeddings)."""
        with torch.no_grad():
            norms = self.representatives.norm(dim=1, keepdim=True)
            self.representatives.div_(norms.clamp_min(torch.finfo(norms.dtype).tiny))


class RepMetV1Loss(RepresentativeLoss):
    """RepMet v1 (:func:`repmet.losses.repmet_v1.repmet_v1_per_example`)."""

    def per_example(self, geometry: CentreGeometry) -> Tensor:
        return repmet_v1_per_example(geometry, alpha=self.alpha, sigma=self.sigma)


class RepMetV2Loss(RepresentativeLoss):
    """RepMet v2 (:func:`repmet.losses.repmet_v2.repmet_v2_per_example`)."""

    def per_example(self, geometry: CentreGeometry) -> Tensor:
        return repmet_v2_per_example(geometry, alpha=self.alpha, sigma=self.sigma)


class RepMetV3Loss(RepresentativeLoss):
    """RepMet v3 (:func:`repmet.losses.repmet_v3.repmet_v3_per_example`)."""

    def per_example(self, geometry: CentreGeometry) -> Tensor:
        return repmet_v3_per_example(geometry, alpha=self.alpha, sigma=self.sigma)


class RepMetCVPRLoss(RepresentativeLoss):
    """Published RepMet (:func:`repmet.losses.repmet_cvpr.repmet_cvpr_per_example`)."""

    def per_example(self, geometry: CentreGeometry) -> Tensor:
        return repmet_cvpr_per_example(geometry, alpha=self.alpha, sigma=self.sigma)


class ClusterMarginLoss(RepresentativeLoss):
    """Cluster-margin loss on squared distances (2018 code's "My Loss" v2)."""

    squared: ClassVar[bool] = True

    def per_example(self, geometry: CentreGeometry) -> Tensor:
        return cluster_margin_per_example(
            geometry, alpha=self.alpha, sigma=self.sigma, squared=self.squared
        )


class ClusterMarginV1Loss(ClusterMarginLoss):
    """Cluster-margin loss on plain Euclidean distances (2018 code's "My Loss" v1)."""

    squared = False


def build_loss(
    name: str,
    *,
    num_classes: int,
    k: int,
    embedding_dim: int,
    alpha: float,
    sigma: float = 0.5,
    **options: Any,
) -> ClusterLoss:
    """Builds the catalogued loss ``name`` (one of ``repmet.catalogue.LOSSES``); ``options`` are
    the configuration fields its entry's ``options`` names, each defaulting to the loss's default.

    Raises:
        UnknownNameError: ``name`` is not catalogued (the message lists the choices).
        ArgumentError: a field out of range, or a module that does not fit its entry.
    """
    entry = LOSSES.get(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ArgumentError(f"loss {name!r} takes no options {unknown}")
    for field in entry.options:
        options.setdefault(field, entry.defaults.get(field, LOSS_DEFAULTS[field]))
    loss = entry.load()(
        num_classes=num_classes,
        k=k,
        embedding_dim=embedding_dim,
        alpha=alpha,
        sigma=sigma,
        **options,
    )
    if isinstance(loss, RepresentativeLoss) != entry.learns_representatives:
        raise ArgumentError(
            f"loss {name!r}: its entry says clusters = {entry.clusters!r}, but {entry.module} "
            f"{'does not learn' if entry.learns_representatives else 'learns'} representatives"
        )
    return loss
