"""The field's losses: pytorch-metric-learning's losses and miners as catalogue losses.

Each module holds the library's own loss (and miner) and only adapts its interface: the value and
the gradients are the library's (``tests/core/test_field_losses.py`` checks both against the library
called directly). The library is imported here, so only a run of one of these losses pays for it.

The losses return one scalar for the batch, reduced as the library reduces it (for the pair and
triplet losses, the mean over the pairs or triplets with a positive loss). The per-example losses
of :class:`~repmet.losses.base.LossOutput` repeat that scalar: class-balanced batches do not read
the loss table, which only the neighbourhood sampler uses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from torch import Tensor, nn

from repmet.geometry import pairwise_squared_distances
from repmet.losses.base import LossOutput, check_batch
from repmet.losses.modules import ClusterLoss


def class_mean_accuracy(embeddings: Tensor, labels: Tensor) -> Tensor:
    """Detached share of rows whose nearest batch class mean is their own class's (the batch
    accuracy of the spec, with a class-balanced batch's classes as its clusters)."""
    embeddings = embeddings.detach()
    classes, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(classes.shape[0], embeddings.shape[1], dtype=embeddings.dtype)
    sums = sums.to(embeddings.device).index_add_(0, inverse, embeddings)
    counts = torch.bincount(inverse, minlength=classes.shape[0]).to(embeddings.dtype)
    nearest = pairwise_squared_distances(embeddings, sums / counts[:, None]).argmin(dim=1)
    return (nearest == inverse).float().mean()


class FieldLoss(ClusterLoss):
    """Base of the field's losses: ``loss`` is the library's loss module, ``miner`` its miner or
    None. Its learned parameters (proxies, centres, class weights) are trained by an optimiser of
    their own (``rep_lr``), as representatives are; the evaluation variance is fitted, as for
    softmax."""

    def __init__(
        self,
        *,
        num_classes: int,
        k: int,
        embedding_dim: int,
        alpha: float,
        sigma: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(
            num_classes=num_classes, k=k, embedding_dim=embedding_dim, alpha=alpha, sigma=sigma
        )
        self.loss = self.build_loss(**options)
        self.miner: nn.Module | None = self.build_miner(**options)

    def build_loss(self, **options: Any) -> nn.Module:
        """The library's loss, from the configuration's fields."""
        raise NotImplementedError

    def build_miner(self, **options: Any) -> nn.Module | None:
        """The library's miner, or None when the loss uses every pair of the batch."""
        return None

    def forward(self, embeddings: Tensor, labels: Tensor, cluster_ids: Tensor) -> LossOutput:
        check_batch(embeddings, labels)
        mined = self.miner(embeddings, labels) if self.miner is not None else None
        loss = self.loss(embeddings, labels, mined)
        return LossOutput(
            loss=loss,
            per_example=loss.detach().expand(embeddings.shape[0]),
            batch_accuracy=class_mean_accuracy(embeddings, labels),
        )

    @property
    def variance(self) -> None:
        """No variance: evaluation fits one (``repmet.clusters.KMeansClusters``)."""
        return None

    def own_parameters(self) -> list[nn.Parameter]:
        return list(self.loss.parameters())


class ContrastiveLoss(FieldLoss):
    """Contrastive loss (Hadsell et al., CVPR 2006, eq. 4): ``alpha`` is the negative margin."""

    def build_loss(self, *, pos_margin: float, **options: Any) -> nn.Module:
        return losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=self.alpha)


class TripletLoss(FieldLoss):
    """Triplet margin loss (Schroff et al., CVPR 2015, eq. 1) over the semi-hard triplets that a
    ``TripletMarginMiner`` with the same margin ``alpha`` keeps."""

    def build_loss(self, **options: Any) -> nn.Module:
        return losses.TripletMarginLoss(margin=self.alpha)

    def build_miner(self, **options: Any) -> nn.Module:
        return miners.TripletMarginMiner(margin=self.alpha, type_of_triplets="semihard")


class MultiSimilarityLoss(FieldLoss):
    """Multi-similarity loss (Wang et al., CVPR 2019, eq. 12) over the pairs that its miner (eq.
    10-11, epsilon = ``alpha``) keeps; ``scale``, ``neg_scale`` and ``base`` are the paper's
    alpha, beta and lambda."""

    def build_loss(
        self, *, scale: float, neg_scale: float, base: float, **options: Any
    ) -> nn.Module:
        return losses.MultiSimilarityLoss(alpha=scale, beta=neg_scale, base=base)

    def build_miner(self, **options: Any) -> nn.Module:
        return miners.MultiSimilarityMiner(epsilon=self.alpha)


class ProxyAnchorLoss(FieldLoss):
    """Proxy-Anchor loss (Kim et al., CVPR 2020, eq. 4): one proxy per class, margin ``alpha``,
    scale ``scale``."""

    def build_loss(self, *, scale: float, **options: Any) -> nn.Module:
        return losses.ProxyAnchorLoss(
            num_classes=self.num_classes,
            embedding_size=self.embedding_dim,
            margin=self.alpha,
            alpha=scale,
        )

    def learned_centres(self) -> tuple[Tensor, Tensor]:
        # On the unit sphere: the loss compares by cosine.
        proxies = self.loss.proxies.detach()
        return F.normalize(proxies, dim=1), torch.arange(self.num_classes)


class SoftTripleLoss(FieldLoss):
    """SoftTriple loss (Qian et al., ICCV 2019, eq. 10): ``k`` centres per class, lambda
    ``scale``, gamma ``gamma``, margin ``alpha``."""

    def build_loss(self, *, scale: float, gamma: float, **options: Any) -> nn.Module:
        return losses.SoftTripleLoss(
            num_classes=self.num_classes,
            embedding_size=self.embedding_dim,
            centers_per_class=self.k,
            la=scale,
            gamma=gamma,
            margin=self.alpha,
        )

    def learned_centres(self) -> tuple[Tensor, Tensor]:
        # ``fc`` is [E, C * K]; the library reshapes its similarities to [N, C, K], class-major.
        centres = self.loss.fc.detach().t()
        return F.normalize(centres, dim=1), torch.arange(centres.shape[0]) // self.k


class ArcFaceLoss(FieldLoss):
    """ArcFace (Deng et al., CVPR 2019, eq. 3): additive angular margin ``alpha`` in degrees,
    scale ``scale``, one class weight per class."""

    def build_loss(self, *, scale: float, **options: Any) -> nn.Module:
        return losses.ArcFaceLoss(
            num_classes=self.num_classes,
            embedding_size=self.embedding_dim,
            margin=self.alpha,
            scale=scale,
        )

    def learned_centres(self) -> tuple[Tensor, Tensor]:
        weights = self.loss.W.detach().t()  # [E, C] in the library
        return F.normalize(weights, dim=1), torch.arange(self.num_classes)
