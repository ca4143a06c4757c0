"""Softmax cross-entropy on the embedding: the baseline both papers measure themselves against."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from repmet.losses.base import LossOutput, check_batch
from repmet.losses.modules import ClusterLoss


class SoftmaxLoss(ClusterLoss):
    """Cross-entropy of a linear classifier (``classifier``, ``[C, E]`` weights and a bias) on the
    embedding, trained with the network by the network's optimiser.

    The classifier is only the training signal: the suite measures the embedding itself, with the
    same four accuracies as every other loss. It has no variance of its own (``variance`` is None),
    so evaluation fits one to the training embeddings (see ``repmet.clusters.KMeansClusters``).
    """

    def __init__(
        self, *, num_classes: int, k: int, embedding_dim: int, alpha: float, sigma: float = 0.5
    ) -> None:
        super().__init__(
            num_classes=num_classes, k=k, embedding_dim=embedding_dim, alpha=alpha, sigma=sigma
        )
        self.classifier = nn.Linear(embedding_dim, num_classes)

    def forward(self, embeddings: Tensor, labels: Tensor, cluster_ids: Tensor) -> LossOutput:
        check_batch(embeddings, labels)
        logits = self.classifier(embeddings)
        per_example = F.cross_entropy(logits, labels, reduction="none")
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return LossOutput.from_per_example(per_example, batch_accuracy=accuracy)

    @property
    def variance(self) -> None:
        """No variance: evaluation fits one (see the class)."""
        return None
