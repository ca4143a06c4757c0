"""Shared pieces of the cluster losses: the output record, distances, masked reductions, validation.

Every loss compares each batch row with a set of class-labelled centres (Magnet: the batch cluster
means; RepMet and cluster-margin: the learned representatives). :class:`CentreGeometry` holds those
squared distances together with the row/centre class mask, so each loss is a few masked reductions
over one ``[N, J]`` matrix, with no Python loop over examples or centres.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from repmet.errors import ArgumentError
from repmet.geometry import pairwise_squared_distances


class LossInputError(ArgumentError):
    """A batch on which a loss is undefined (a label without representative, no impostor, ...)."""


@dataclass(frozen=True)
class LossOutput:
    """What every loss returns.

    Attributes:
        loss: scalar, the mean of ``per_example`` over the batch.
        per_example: ``[N]`` losses l_n, kept by the sampler's per-example loss table.
        variance: Magnet's batch sigma^2 (differentiable); ``None`` for the other losses.
        batch_accuracy: detached share of rows whose nearest centre is of their class (module
            forms only; ``None`` from the plain functions).
    """

    loss: Tensor
    per_example: Tensor
    variance: Tensor | None = None
    batch_accuracy: Tensor | None = None

    @classmethod
    def from_per_example(
        cls,
        per_example: Tensor,
        *,
        variance: Tensor | None = None,
        batch_accuracy: Tensor | None = None,
    ) -> LossOutput:
        """Averages the per-example losses over the batch (spec, Notation)."""
        return cls(per_example.mean(), per_example, variance, batch_accuracy)


def require_at_least(field: str, value: float, limit: float) -> None:
    """Raises :class:`ArgumentError` unless ``value >= limit`` (NaN fails too)."""
    if not value >= limit:
        raise ArgumentError(f"{field} must be at least {limit}, got {value!r}.")


def require_count_at_least(field: str, value: int, limit: int) -> None:
    """Raises :class:`ArgumentError` unless ``value`` is an integer (not a bool) ``>= limit``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ArgumentError(f"{field} must be an integer of at least {limit}, got {value!r}.")
    require_at_least(field, value, limit)


def require_positive(field: str, value: float) -> None:
    """Raises :class:`ArgumentError` unless ``0 < value < inf``."""
    if not 0 < value < math.inf:
        raise ArgumentError(f"{field} must be a finite number greater than 0, got {value!r}.")


def check_margin_and_scale(*, alpha: float, sigma: float | None = None) -> None:
    """Validates the margin alpha (>= 0, finite) and, when given, the RepMet sigma (> 0)."""
    require_at_least("alpha", alpha, 0)
    if not math.isfinite(alpha):
        raise ArgumentError(f"alpha must be finite, got {alpha!r}.")
    if sigma is not None:
        require_positive("sigma", sigma)


def safe_sqrt(values: Tensor) -> Tensor:
    """Square root whose gradient at 0 is 0 instead of infinite (coincident points)."""
    positive = values > 0
    roots = torch.where(positive, values, torch.ones_like(values)).sqrt()
    return torch.where(positive, roots, torch.zeros_like(values))


def masked_logsumexp(values: Tensor, mask: Tensor, dim: int) -> Tensor:
    """log sum exp of ``values`` where ``mask`` is True along ``dim``.

    A slice with nothing kept is an empty sum: -inf, with a zero gradient (torch.logsumexp's
    backward handles all -inf slices; the losses' tests pin that behaviour down).
    """
    return values.masked_fill(~mask, -math.inf).logsumexp(dim=dim)


def masked_amin(values: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Minimum of ``values`` where ``mask`` is True along ``dim``; +inf for an empty slice."""
    return values.masked_fill(~mask, math.inf).amin(dim=dim)


def masked_amax(values: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Maximum of ``values`` where ``mask`` is True along ``dim``; -inf for an empty slice."""
    return values.masked_fill(~mask, -math.inf).amax(dim=dim)


def check_batch(embeddings: Tensor, labels: Tensor) -> None:
    """Checks that ``embeddings`` is a float [N, E] matrix and ``labels`` an integer [N] vector."""
    if embeddings.ndim != 2 or not embeddings.is_floating_point():
        raise LossInputError(
            f"embeddings must be a floating-point [N, E] matrix, got {embeddings.dtype} "
            f"of shape {list(embeddings.shape)}."
        )
    if labels.shape != embeddings.shape[:1] or labels.is_floating_point():
        raise LossInputError(
            f"labels must be an integer vector of length {embeddings.shape[0]} (one per row), "
            f"got {labels.dtype} of shape {list(labels.shape)}."
        )


@dataclass(frozen=True)
class CentreGeometry:
    """Squared distances of the batch rows to class-labelled centres and the class mask.

    Attributes:
        distances: ``[N, J]`` squared Euclidean distances d(x_n, c_j).
        same_class: ``[N, J]`` bool, True where centre j is of row n's class.
        centre_classes: ``[J]`` class of each centre.
        labels: ``[N]`` class of each row.
    """

    distances: Tensor
    same_class: Tensor
    centre_classes: Tensor
    labels: Tensor

    @classmethod
    def build(
        cls, embeddings: Tensor, labels: Tensor, centres: Tensor, centre_classes: Tensor
    ) -> CentreGeometry:
        distances = pairwise_squared_distances(embeddings, centres)
        same_class = labels.unsqueeze(1) == centre_classes.unsqueeze(0)
        return cls(distances, same_class, centre_classes, labels)

    def log_densities(self, variance: Tensor | float) -> Tensor:
        """log p_nj = -d_nj / (2 sigma^2), the Gaussian log-density up to a constant."""
        return self.distances / (-2.0 * variance)

    def nearest_centre_accuracy(self) -> Tensor:
        """Detached share of rows whose nearest centre is of their own class (batch accuracy)."""
        nearest = self.distances.detach().argmin(dim=1)
        return (self.centre_classes[nearest] == self.labels).float().mean()


def representative_geometry(
    embeddings: Tensor, labels: Tensor, representatives: Tensor, representative_classes: Tensor
) -> CentreGeometry:
    """Validates a batch against a representative set and builds its :class:`CentreGeometry`.

    Raises:
        LossInputError: malformed shapes, a batch label without a representative, or
            representatives of a single class (then no example has other-class representatives).
    """
    check_batch(embeddings, labels)
    dim = embeddings.shape[1]
    if representatives.ndim != 2 or representatives.shape[1] != dim:
        raise LossInputError(
            f"representatives must be a [J, {dim}] matrix like the embeddings, "
            f"got shape {list(representatives.shape)}."
        )
    count = representatives.shape[0]
    if representative_classes.shape != (count,) or representative_classes.is_floating_point():
        raise LossInputError(
            f"representative_classes must be an integer vector of length {count}, "
            f"got {representative_classes.dtype} of shape {list(representative_classes.shape)}."
        )
    if count == 0 or bool((representative_classes == representative_classes[0]).all()):
        raise LossInputError(
            "representative_classes must hold at least two classes, so that every example "
            "has representatives of other classes."
        )
    geometry = CentreGeometry.build(embeddings, labels, representatives, representative_classes)
    uncovered = ~geometry.same_class.any(dim=1)
    if bool(uncovered.any()):
        missing = sorted(set(labels[uncovered].tolist()))
        raise LossInputError(
            f"batch labels {missing} have no representative; every batch class needs at least one."
        )
    return geometry


class RepresentativeLossTerms(Protocol):
    """Per-example loss of a representative-based loss, from the batch geometry."""

    def __call__(self, geometry: CentreGeometry, *, alpha: float, sigma: float) -> Tensor: ...


def representative_loss(
    per_example: RepresentativeLossTerms,
    embeddings: Tensor,
    labels: Tensor,
    representatives: Tensor,
    representative_classes: Tensor,
    *,
    alpha: float,
    sigma: float,
) -> LossOutput:
    """Validates the inputs and averages ``per_example`` over the batch."""
    check_margin_and_scale(alpha=alpha, sigma=sigma)
    geometry = representative_geometry(embeddings, labels, representatives, representative_classes)
    return LossOutput.from_per_example(per_example(geometry, alpha=alpha, sigma=sigma))


REPRESENTATIVE_LOSS_ARGS = """
    Args:
        embeddings: ``[N, E]`` batch embeddings.
        labels: ``[N]`` classes.
        representatives: ``[J, E]`` representatives.
        representative_classes: ``[J]`` class of each representative.
        alpha: margin, >= 0.
        sigma: standard deviation of the representative Gaussians, > 0.

    Returns:
        :class:`LossOutput` with ``.loss`` (batch mean) and ``.per_example`` ``[N]``.
    """


def representative_loss_function(
    per_example: RepresentativeLossTerms, *, name: str, summary: str
) -> Callable[..., LossOutput]:
    """The public batch-loss function of a representative-based loss, with the common signature
    ``(embeddings, labels, representatives, representative_classes, *, alpha, sigma)``."""

    def loss(
        embeddings: Tensor,
        labels: Tensor,
        representatives: Tensor,
        representative_classes: Tensor,
        *,
        alpha: float,
        sigma: float,
    ) -> LossOutput:
        return representative_loss(
            per_example,
            embeddings,
            labels,
            representatives,
            representative_classes,
            alpha=alpha,
            sigma=sigma,
        )

    loss.__name__ = loss.__qualname__ = name
    loss.__module__ = per_example.__module__
    loss.__doc__ = f"{summary} (see :func:`{per_example.__name__}`).\n{REPRESENTATIVE_LOSS_ARGS}"
    return loss
