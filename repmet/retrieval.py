"""The field's retrieval and clustering metrics (Musgrave, Belongie and Lim, "A Metric Learning
Reality Check", ECCV 2020): precision at 1, R-precision, MAP@R, and NMI and AMI of a k-means
clustering.

Every query retrieves from the same split with itself left out, by squared Euclidean distance (the
same order as the Euclidean distance). R is the number of other examples of the query's class;
a query whose class has no other example has nothing to retrieve and is not counted. Queries are
processed in blocks, so memory stays bounded on large splits, and each keeps only its R nearest
neighbours (a top-k selection, linear in the split's size, rather than a sort of the whole row).
NMI and AMI work on the non-empty cells of the contingency table and on the distinct class and
cluster sizes, so an SOP-sized split (11,316 classes) needs megabytes. The tests check the
numbers against pytorch-metric-learning's ``AccuracyCalculator`` and scikit-learn (which a trial's
worker process does not import: it would double the worker's start-up).
"""

from __future__ import annotations

import torch
from torch import Tensor

from repmet import geometry
from repmet.errors import ArgumentError

#: The metrics of :func:`retrieval_metrics`, in table order; every one is better when higher.
RETRIEVAL_METRICS: tuple[str, ...] = ("p_at_1", "r_precision", "map_at_r")
#: The clustering metrics of :func:`clustering_metrics`; better when higher.
CLUSTERING_METRICS: tuple[str, ...] = ("nmi", "ami")


def retrieval_metrics(
    embeddings: Tensor, labels: Tensor, *, chunk_size: int | None = None
) -> dict[str, float]:
    """Precision at 1, R-precision and MAP@R of a split retrieving from itself.

    For a query with R other examples of its class and relevance rel(i) of its i-th neighbour:
    P@1 = rel(1); R-precision = sum_{i <= R} rel(i) / R; MAP@R = sum_{i <= R} P(i) rel(i) / R with
    P(i) the precision of the first i neighbours. Each is averaged over the counted queries.

    Returns:
        ``{"p_at_1": p, "r_precision": r, "map_at_r": m}`` in [0, 1]; NaN when no query counts.
    """
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ArgumentError(
            f"embeddings {tuple(embeddings.shape)} and labels {tuple(labels.shape)} must be "
            "[N, E] and [N]"
        )
    points = embeddings.detach().float()
    points = points - points.mean(dim=0, keepdim=True)  # see repmet.geometry: rounding only
    labels = labels.long()
    _, class_index = torch.unique(labels, return_inverse=True)
    counts = torch.bincount(class_index)
    relevant = counts[class_index] - 1  # R of every query
    largest = int(relevant.max()) if relevant.numel() else 0
    if largest == 0:
        return dict.fromkeys(RETRIEVAL_METRICS, float("nan"))
    norms = geometry.squared_norms(points)
    if chunk_size is None:
        chunk_size = geometry.rows_per_block(points.shape[0], geometry.DISTANCE_BLOCK_ELEMENTS)
    totals = torch.zeros(len(RETRIEVAL_METRICS), dtype=torch.float64)
    ranks = torch.arange(1, largest + 1, dtype=torch.float64)
    buffer = points.new_empty(min(chunk_size, points.shape[0]), points.shape[0])
    for block in geometry.row_blocks(points.shape[0], chunk_size):
        distances = geometry.expanded_squared_distances(
            points[block],
            points,
            point_norms=norms[block],
            centre_norms=norms,
            out=buffer[: block.stop - block.start],
        )
        rows = torch.arange(distances.shape[0])
        distances[rows, rows + block.start] = torch.inf  # a query never retrieves itself
        order = geometry.smallest_in_order(distances, largest)
        hits = (labels[order] == labels[block, None]).double()  # rel(i), [B, largest]
        r = relevant[block].double()
        within = ranks[None, :] <= r[:, None]
        hits_within = hits * within
        precision_at_i = hits_within.cumsum(dim=1) / ranks[None, :]
        counted = r > 0
        safe_r = r.clamp_min(1.0)
        totals += torch.stack(
            [
                hits[:, 0][counted].sum(),
                (hits_within.sum(dim=1) / safe_r)[counted].sum(),
                ((precision_at_i * hits_within).sum(dim=1) / safe_r)[counted].sum(),
            ]
        )
    queries = int((relevant > 0).sum())
    return {name: float(t) / queries for name, t in zip(RETRIEVAL_METRICS, totals, strict=True)}


def clustering_metrics(cluster_ids: Tensor, labels: Tensor) -> dict[str, float]:
    """Normalised and adjusted mutual information between a clustering and the labels (Vinh,
    Epps and Bailey, JMLR 2010; the arithmetic mean of the two entropies normalises, as in
    scikit-learn, whose numbers the tests check these against):

    NMI = MI / mean(H(classes), H(clusters)),
    AMI = (MI - E[MI]) / (mean(H(classes), H(clusters)) - E[MI]),

    with E[MI] the expected mutual information of two random labelings with the same cluster
    sizes (hypergeometric model). One labeling with a single group has no information to share:
    both are 1 when both have a single group, else 0.
    """
    _, rows = torch.unique(labels.cpu(), return_inverse=True)
    _, columns = torch.unique(cluster_ids.cpu(), return_inverse=True)
    num_rows, num_columns = int(rows.max()) + 1, int(columns.max()) + 1
    if num_rows == 1 or num_columns == 1:
        value = 1.0 if num_rows == num_columns else 0.0
        return {"nmi": value, "ami": value}
    # The non-empty cells only, in row-major order: a dense table of 11,316 x 11,316 would be 1 GB.
    cells, cell_counts = torch.unique(rows * num_columns + columns, return_counts=True)
    table = cell_counts.double()
    a = torch.bincount(rows, minlength=num_rows).double()
    b = torch.bincount(columns, minlength=num_columns).double()
    n = a.sum()
    outer = a[cells // num_columns] * b[cells % num_columns]
    mutual = (table / n * (n * table / outer).log()).sum()
    h_rows = -(a / n * (a / n).log()).sum()
    h_columns = -(b / n * (b / n).log()).sum()
    mean_entropy = (h_rows + h_columns) / 2
    expected = _expected_mutual_information(a, b, n)
    eps = torch.finfo(torch.float64).eps
    return {
        "nmi": float(mutual / mean_entropy),
        "ami": float(
            _away_from_zero(mutual - expected, eps) / _away_from_zero(mean_entropy - expected, eps)
        ),
    }


def _away_from_zero(value: Tensor, eps: float) -> Tensor:
    """``value``, at least ``eps`` away from 0 with its sign kept (a perfect match has
    MI = E[MI] = H up to rounding, and AMI is then 1)."""
    return value.clamp_min(eps) if value >= 0 else value.clamp_max(-eps)


#: Terms (i, j, n_ij) of the expected mutual information evaluated at once: bounds its memory.
EXPECTED_MI_BLOCK_TERMS = 2**20


def _expected_mutual_information(a: Tensor, b: Tensor, n: Tensor) -> Tensor:
    """E[MI] over contingency tables with row sums ``a`` and column sums ``b`` (float64), the
    sum over cells (i, j) and counts n_ij of (n_ij / N) log(N n_ij / (a_i b_j)) P(n_ij), with
    P the hypergeometric probability, computed in the log domain.

    A term depends on (i, j) only through (a_i, b_j), so the sum runs over pairs of distinct row
    and column sums, each weighted by how many (i, j) share it, and over the possible counts
    max(1, a + b - N) <= n_ij <= min(a, b) of each pair, laid out flat (no classes x clusters x
    largest-count tensor), in blocks of at most ``EXPECTED_MI_BLOCK_TERMS`` terms.
    """
    row_sums, row_multiplicity = torch.unique(a, return_counts=True)
    column_sums, column_multiplicity = torch.unique(b, return_counts=True)
    ai = row_sums.repeat_interleave(column_sums.numel())
    bj = column_sums.repeat(row_sums.numel())
    weight = (row_multiplicity[:, None] * column_multiplicity[None, :]).reshape(-1).double()
    low = (ai + bj - n).clamp_min(1)
    lengths = (torch.minimum(ai, bj) - low + 1).clamp_min(0).long()
    log_margins = (
        torch.lgamma(ai + 1) + torch.lgamma(bj + 1) + torch.lgamma(n - ai + 1)
        + torch.lgamma(n - bj + 1) - torch.lgamma(n + 1)
    )  # fmt: skip
    # Consecutive pairs whose last term falls into the same multiple of the block size form a
    # block (so a block holds at most the block size plus one pair's terms, at most N).
    block_of_pair = (torch.cumsum(lengths, 0) - 1).div(
        EXPECTED_MI_BLOCK_TERMS, rounding_mode="floor"
    )
    pairs_per_block = torch.unique_consecutive(block_of_pair, return_counts=True)[1]
    total = torch.zeros((), dtype=torch.float64)
    for pairs in torch.arange(lengths.numel()).split(pairs_per_block.tolist()):
        pair = torch.repeat_interleave(pairs, lengths[pairs])
        starts = torch.cumsum(lengths[pairs], 0) - lengths[pairs]
        offset = torch.arange(pair.numel()) - starts.repeat_interleave(lengths[pairs])
        nij = low[pair] + offset
        a_p, b_p = ai[pair], bj[pair]
        log_probability = (
            log_margins[pair] - torch.lgamma(nij + 1) - torch.lgamma(a_p - nij + 1)
            - torch.lgamma(b_p - nij + 1) - torch.lgamma(n - a_p - b_p + nij + 1)
        )  # fmt: skip
        terms = nij / n * (n * nij / (a_p * b_p)).log() * log_probability.exp()
        total += (terms * weight[pair]).sum()
    return total
