"""Evaluation accuracies (spec: "Evaluation: five accuracies"); errors are 1 - accuracy.

- Simple: the class of the nearest centroid.
- Magnet (Magnet paper eq. 6): a softmax over the L nearest centroids, summed per class.
- RepMet (RepMet paper eq. 6): the unnormalised sum of Gaussian kernels over a class's centroids.
- Unsupervised: k-means with C clusters, matched to classes one-to-one (Hungarian algorithm).

Queries are processed in chunks so that one ``[B, J]`` distance block stays within
``repmet.geometry.DISTANCE_BLOCK_ELEMENTS``; ``[N, J, E]`` is never formed. The block is
``|c|^2 - 2 q.c`` from one matrix product of ``[q, 1]`` and ``[-2c, |c|^2]``; ``|q|^2`` is added
where a distance is needed. Queries and centroids are centred on the centroids' mean first (see
:mod:`repmet.geometry`). Far-away queries do not underflow to ties: class scores go through
log-sum-exp, and predictions sum the kernels divided by the nearest centroid's (whose term is 1).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from repmet import geometry
from repmet.errors import ArgumentError
from repmet.kmeans import kmeans

#: The classification rules :func:`predict` and :func:`class_scores` accept.
METHODS = ("simple", "magnet", "repmet")
#: k-means runs of the unsupervised accuracy; the one of lowest inertia counts.
UNSUPERVISED_RESTARTS = 10
#: The most restarts x points x clusters the unsupervised k-means spends: a split of N points and
#: C classes keeps every restart while restarts * N * C is at most this (every split up to
#: 5,000 points x 1,000 classes at 10 restarts), and as many as fit, at least one, above it.
UNSUPERVISED_WORK = 50_000_000


class LabelledImages(Protocol):
    """What :func:`compute_embeddings` needs from a data set."""

    labels: Tensor

    def get_batch(self, indices: Tensor) -> Tensor: ...


def compute_embeddings(
    model: nn.Module,
    dataset: LabelledImages,
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, Tensor]:
    """Embeds a whole split in eval mode without autograd, ``batch_size`` examples at a time.

    The model must already live on ``device``; its train/eval mode is restored afterwards.

    Returns:
        ``(embeddings, labels)``: ``[N, E]`` float32 on the CPU and the data set's labels.
    """
    if batch_size < 1:
        raise ArgumentError(f"batch_size = {batch_size} is invalid; it must be at least 1.")
    labels = dataset.labels
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.no_grad():
            for start in range(0, labels.shape[0], batch_size):
                indices = torch.arange(start, min(start + batch_size, labels.shape[0]))
                batch = dataset.get_batch(indices).to(device, non_blocking=True)
                parts.append(model(batch).to(device="cpu", dtype=torch.float32))
    finally:
        model.train(was_training)
    embeddings = torch.cat(parts) if parts else torch.empty(0, 0)
    return embeddings, labels.clone()


def _segment_logsumexp(values: Tensor, segments: Tensor, num_segments: int) -> Tensor:
    """``out[b, s] = log sum_{p : segments[b, p] == s} exp(values[b, p])``; -inf for empty ones."""
    rows = values.shape[0]
    maxima = values.new_full((rows, num_segments), -torch.inf)
    maxima.scatter_reduce_(1, segments, values, reduce="amax")
    shifted = (values - maxima.gather(1, segments)).exp_()
    sums = values.new_zeros(rows, num_segments).scatter_add_(1, segments, shifted)
    return sums.log_() + maxima


def _per_class_reduce(
    values: Tensor, centroid_classes: Tensor, num_classes: int, class_major: bool, reduce: str
) -> Tensor:
    """``[B, J] -> [B, C]``: "amin" or "logsumexp" over each class's centroids.

    With the class-major layout (centroid j of class j // k) this is a reshape to ``[B, C, k]``
    and a plain reduction, several times faster than the scatter used for any other layout.
    """
    rows = values.shape[0]
    if class_major:
        grouped = values.reshape(rows, num_classes, -1)
        return grouped.amin(dim=2) if reduce == "amin" else torch.logsumexp(grouped, dim=2)
    segments = centroid_classes.expand(rows, -1)
    if reduce == "logsumexp":
        return _segment_logsumexp(values, segments, num_classes)
    out = values.new_full((rows, num_classes), torch.inf)
    return out.scatter_reduce_(1, segments, values, reduce="amin")


def _log_class_scores(
    distances: Tensor,
    centroid_classes: Tensor,
    num_classes: int,
    method: str,
    variance: float,
    L: int,
    class_major: bool,
) -> Tensor:
    """``[B, C]`` scores in the log domain whose argmax over classes is the prediction.

    simple: minus the squared distance to the class's nearest centroid.
    magnet: log P(c | x) = log sum_{kept j of c} exp(-d_j / 2 sigma2) - log sum_{kept j} exp(...)
        over the L nearest centroids (Magnet eq. 6).
    repmet: log sum_{j of c} exp(-d_j / 2 sigma2) over all J centroids (RepMet eq. 6).
    """
    if method == "simple":
        return -_per_class_reduce(distances, centroid_classes, num_classes, class_major, "amin")
    if method == "repmet":
        logits = distances / (-2.0 * variance)
        return _per_class_reduce(logits, centroid_classes, num_classes, class_major, "logsumexp")
    kept_distances, kept = distances.topk(min(L, distances.shape[1]), dim=1, largest=False)
    logits = kept_distances / (-2.0 * variance)
    per_class = _segment_logsumexp(logits, centroid_classes[kept], num_classes)
    return per_class - torch.logsumexp(logits, dim=1, keepdim=True)


def _check_rule_parameters(variance: float, L: int) -> None:
    if not variance > 0:
        raise ArgumentError(f"variance = {variance} is invalid; it must be positive.")
    if L < 1:
        raise ArgumentError(f"L = {L} is invalid; the Magnet rule needs at least 1 centroid.")


#: The smallest exponent :func:`_shifted_kernels` evaluates: exp of anything below -87 is a
#: float32 subnormal or 0, which the CPU computes about 10 times slower than a normal result.
NEGLIGIBLE_EXPONENT = -80.0


def _shifted_kernels(nearest: Tensor, distances: Tensor, variance: float) -> Tensor:
    """``exp((d_nearest - d) / (2 sigma2))``, the Gaussian kernels of Magnet and RepMet eq. 6
    divided by the nearest centroid's (whose term is then 1), with exponents below
    ``NEGLIGIBLE_EXPONENT`` raised to it. The predictions compare per-class sums of these, the
    largest of which is at least 1: at most L terms of exp(-80) each change no float32 or
    float64 sum of that size, so the raised floor leaves every prediction as it was."""
    exponents = (nearest - distances).div_(2.0 * variance).clamp_min_(NEGLIGIBLE_EXPONENT)
    return exponents.exp_()


def _block_predictions(
    partial: Tensor,
    point_norms: Tensor,
    table: Tensor | None,
    centroid_classes: Tensor,
    num_classes: int,
    methods: tuple[str, ...],
    variance: float,
    L: int,
    class_major: bool,
) -> dict[str, Tensor]:
    """``[B]`` predicted classes of each method from one top-L search of the ``[B, J]`` block
    ``partial = |c_j|^2 - 2 q.c_j`` (the distances less the row's constant ``|q|^2``, which
    ranks the centroids as the distances do), with ``table`` a ``[B, C]`` buffer of zeros for
    Magnet's per-class sums, left zero: the argmax over classes of :func:`_log_class_scores`,
    without any ``[B, J]``- or ``[B, C]``-wide work past the search (with thousands of
    centroids, that work cost several times the distances). Only the kept distances are
    completed, ``(partial + |q|^2)`` clamped at 0, the same operations as the full block of
    :func:`class_scores`.

    simple: the smallest class among the centroids at the nearest distance.
    magnet: Magnet eq. 6 over the L kept centroids; the normaliser and a shift by the nearest
        centroid's logit (whose term is then 1, so the winner never underflows) leave the argmax
        unchanged. The per-class sums are read back at the kept classes only, so the
        ``[B, C]`` table is neither scanned nor cleared whole; ties go to the smallest class.
    repmet: RepMet eq. 6 for every class with a centroid among the L nearest, from all k
        centroids of that class (class-major layout), with the same shift. A class with no
        centroid kept scores at most k exp(-d_L / 2 sigma2), d_L the L-th smallest distance; a
        row whose best kept class does not beat that bound (never when L >= J) is scored over
        all J centroids.
    """
    num_centroids = partial.shape[1]
    kept_partial, kept = partial.topk(min(L, num_centroids), dim=1, largest=False)
    # Adding the same |q|^2 to a row keeps its order (rounding is monotone): still ascending.
    kept_distances = kept_partial.add_(point_norms[:, None]).clamp_min_(0)
    kept_classes = centroid_classes[kept]
    out: dict[str, Tensor] = {}
    if "simple" in methods:
        nearest = kept_distances == kept_distances[:, :1]
        out["simple"] = torch.where(nearest, kept_classes, num_classes).amin(dim=1)
    if "magnet" in methods:
        assert table is not None
        weights = _shifted_kernels(kept_distances[:, :1], kept_distances, variance)
        sums = table.scatter_add_(1, kept_classes, weights).gather(1, kept_classes)  # [B, L]
        table.scatter_(1, kept_classes, 0.0)  # all zero again, for the next block
        winners = sums == sums.amax(dim=1, keepdim=True)
        out["magnet"] = torch.where(winners, kept_classes, num_classes).amin(dim=1)
    if "repmet" in methods:
        out["repmet"] = _repmet_predictions(
            partial, point_norms, kept_distances, kept_classes, centroid_classes, num_classes,
            variance, class_major,
        )  # fmt: skip
    return out


def _repmet_predictions(
    partial: Tensor,
    point_norms: Tensor,
    kept_distances: Tensor,
    kept_classes: Tensor,
    centroid_classes: Tensor,
    num_classes: int,
    variance: float,
    class_major: bool,
) -> Tensor:
    """``[B]`` RepMet eq. 6 predictions from the classes of the L nearest centroids (see
    :func:`_block_predictions`), falling back to all J centroids where that is not certain."""
    num_rows, num_centroids = partial.shape

    def log_scores(rows: Tensor | slice) -> Tensor:
        distances = (partial[rows] + point_norms[rows, None]).clamp_min_(0)
        return _per_class_reduce(
            distances / (-2.0 * variance), centroid_classes, num_classes, class_major, "logsumexp"
        )

    if not class_major:
        return log_scores(slice(None)).argmax(dim=1)
    k = num_centroids // num_classes
    # [B, k, L]: the k centroids of each kept class, one row per centroid of the class, so that
    # the sum over them adds contiguous rows (a reduction over a last dimension of 3 is slow).
    members = (torch.arange(k)[:, None] + kept_classes[:, None, :] * k).reshape(num_rows, -1)
    member_distances = (partial.gather(1, members) + point_norms[:, None]).clamp_min_(0)
    nearest = kept_distances[:, :1]
    scores = _shifted_kernels(nearest, member_distances, variance).reshape(num_rows, k, -1)
    scores = scores.sum(dim=1)  # [B, L]
    best = scores.amax(dim=1, keepdim=True)
    predicted = torch.where(scores == best, kept_classes, num_classes).amin(dim=1)
    if kept_classes.shape[1] < num_centroids:
        bound = k * ((nearest.squeeze(1) - kept_distances[:, -1]) / (2.0 * variance)).exp()
        unsure = (best.squeeze(1) <= bound).nonzero().squeeze(1)
        if unsure.numel():
            predicted[unsure] = log_scores(unsure).argmax(dim=1)
    return predicted


def _check_arguments(
    embeddings: Tensor, centroids: Tensor, centroid_classes: Tensor, variance: float, L: int
) -> None:
    if embeddings.dim() != 2 or centroids.dim() != 2 or embeddings.shape[1] != centroids.shape[1]:
        raise ArgumentError(
            f"embeddings {tuple(embeddings.shape)} and centroids "
            f"{tuple(centroids.shape)} must be [N, E] and [J, E] with the same E."
        )
    if centroid_classes.shape != (centroids.shape[0],):
        raise ArgumentError(
            f"centroid_classes has shape {tuple(centroid_classes.shape)}; it must "
            f"be [{centroids.shape[0]}], one class per centroid."
        )
    _check_rule_parameters(variance, L)


def _layout(centroid_classes: Tensor) -> tuple[int, bool]:
    """The number of classes C, and whether centroid j belongs to class j // (J / C)."""
    num_classes = int(centroid_classes.max()) + 1
    num_centroids = centroid_classes.shape[0]
    class_major = num_centroids % num_classes == 0 and torch.equal(
        centroid_classes,
        torch.arange(num_centroids, device=centroid_classes.device)
        // (num_centroids // num_classes),
    )
    return num_classes, class_major


def log_class_scores(
    distances: Tensor, centroid_classes: Tensor, *, method: str, variance: float, L: int
) -> Tensor:
    """``[B, C]`` log-domain class scores of B queries from their ``[B, J]`` squared distances to
    the J centroids, whose argmax over classes is the rule's prediction: the rules of
    :func:`predict` for a caller that has the distances already (the few-shot episodes of
    :mod:`repmet.episodes`, whose centroids differ from one episode to the next).

    simple: minus the squared distance to the class's nearest centroid; magnet: log of the class
    probabilities of Magnet eq. 6 over the ``min(L, J)`` nearest centroids; repmet: log of the
    kernel sums of RepMet eq. 6.
    """
    _check_method(method)
    _check_rule_parameters(variance, L)
    if distances.dim() != 2 or centroid_classes.shape != (distances.shape[1],):
        raise ArgumentError(
            f"distances {tuple(distances.shape)} and centroid_classes "
            f"{tuple(centroid_classes.shape)} must be [B, J] and [J]."
        )
    centroid_classes = centroid_classes.long()
    num_classes, class_major = _layout(centroid_classes)
    return _log_class_scores(
        distances, centroid_classes, num_classes, method, variance, L, class_major
    )


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ArgumentError(
            f"unknown evaluation method {method!r}; choose one of: {', '.join(METHODS)}."
        )


def _per_chunk(
    embeddings: Tensor,
    centroids: Tensor,
    centroid_classes: Tensor,
    *,
    methods: tuple[str, ...],
    variance: float,
    L: int,
    chunk_size: int | None,
    predictions: bool,
) -> dict[str, Tensor]:
    """Computes each method's ``[N, C]`` log class scores, or with ``predictions`` its ``[N]``
    predicted classes (from one top-L search per chunk, see :func:`_block_predictions`), chunk by
    chunk: one distance block per chunk, shared by all methods."""
    _check_arguments(embeddings, centroids, centroid_classes, variance, L)
    for method in methods:
        _check_method(method)
    dtype = torch.promote_types(embeddings.dtype, centroids.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    embeddings = embeddings.detach().to(dtype)
    centroids = centroids.detach().to(dtype)
    centroid_classes = centroid_classes.long()
    num_classes, class_major = _layout(centroid_classes)
    num_centroids = centroids.shape[0]
    origin = centroids.mean(dim=0, keepdim=True)
    centroids = centroids - origin
    # [-2 c, |c|^2] against [q, 1]: |c|^2 - 2 q.c (the expansion of repmet.geometry, centred as
    # there, less |q|^2) from one matrix product, with no pass over the block to add the norms.
    augmented = torch.cat([centroids * -2.0, geometry.squared_norms(centroids)[:, None]], dim=1)
    if chunk_size is None:
        chunk_size = geometry.rows_per_block(num_centroids, geometry.DISTANCE_BLOCK_ELEMENTS)
    results: dict[str, list[Tensor]] = {method: [] for method in methods}
    rows = min(chunk_size, embeddings.shape[0])
    buffer = centroids.new_empty(rows, num_centroids)
    table = centroids.new_zeros(rows, num_classes) if "magnet" in methods and predictions else None
    for block in geometry.row_blocks(embeddings.shape[0], chunk_size):
        size = block.stop - block.start
        queries = embeddings[block] - origin
        point_norms = geometry.squared_norms(queries)
        ones = queries.new_ones(size, 1)
        partial = torch.mm(torch.cat([queries, ones], dim=1), augmented.T, out=buffer[:size])
        if predictions:
            parts = _block_predictions(
                partial, point_norms, None if table is None else table[:size], centroid_classes,
                num_classes, methods, variance, L, class_major,
            )  # fmt: skip
        else:
            distances = partial.add_(point_norms[:, None]).clamp_min_(0)
            parts = {
                method: _log_class_scores(
                    distances, centroid_classes, num_classes, method, variance, L, class_major
                )
                for method in methods
            }
        for method in methods:
            results[method].append(parts[method])
    empty = (
        torch.empty(0, dtype=torch.long) if predictions else embeddings.new_empty(0, num_classes)
    )
    return {method: torch.cat(parts) if parts else empty for method, parts in results.items()}


def class_scores(
    embeddings: Tensor,
    centroids: Tensor,
    centroid_classes: Tensor,
    *,
    method: str,
    variance: float = 0.5,
    L: int = 128,
    chunk_size: int | None = None,
) -> Tensor:
    """``[N, C]`` per-class scores of each query, whose argmax is :func:`predict`'s answer.

    simple: minus the squared distance to the class's nearest centroid.
    magnet: the class probabilities of Magnet eq. 6 over the L nearest centroids (rows sum to 1).
    repmet: the unnormalised kernel sums of RepMet eq. 6, sum_{j of c} exp(-d_j / (2 sigma2));
        they can underflow to 0 for far-away queries (:func:`predict` works in the log domain).

    Args:
        variance: sigma2 of the Gaussian kernels (magnet and repmet).
        L: centroids kept by the Magnet rule (``min(L, J)``).
        chunk_size: queries per chunk; default keeps a ``[B, J]`` block within
            ``repmet.geometry.DISTANCE_BLOCK_ELEMENTS``.
    """
    _check_method(method)
    scores = _per_chunk(
        embeddings,
        centroids,
        centroid_classes,
        methods=(method,),
        variance=variance,
        L=L,
        chunk_size=chunk_size,
        predictions=False,
    )[method]
    return scores if method == "simple" else scores.exp()


def predict(
    embeddings: Tensor,
    centroids: Tensor,
    centroid_classes: Tensor,
    *,
    method: str,
    variance: float = 0.5,
    L: int = 128,
    chunk_size: int | None = None,
) -> Tensor:
    """LongTensor ``[N]``: the predicted class of each query under ``method`` (see module doc)."""
    _check_method(method)
    return _per_chunk(
        embeddings,
        centroids,
        centroid_classes,
        methods=(method,),
        variance=variance,
        L=L,
        chunk_size=chunk_size,
        predictions=True,
    )[method]


def assignment_accuracy(cluster_ids: Tensor, labels: Tensor) -> float:
    """Share of examples whose cluster maps to their label under the best one-to-one mapping of
    clusters to labels (the assignment problem on the cluster x label contingency table).

    Only the non-empty cells are edges, and each cluster also gets an edge of its own to a
    dummy label, so that a mapping of every cluster exists: with 11,316 classes the dense table
    would hold 128 million cells. Every edge weighs its count plus 1 (each cluster takes exactly
    one edge, so the constant does not change the best mapping; sparse graphs have no
    zero-weight edges), and the exact sparse solver (LAPJVsp) finds the mapping.
    """
    if cluster_ids.shape != labels.shape or labels.numel() == 0:
        raise ArgumentError(
            f"cluster_ids {tuple(cluster_ids.shape)} and labels "
            f"{tuple(labels.shape)} must be non-empty and of the same shape."
        )
    from scipy.sparse import csr_matrix  # here: slow to import, needed late
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    clusters, cluster_index = torch.unique(cluster_ids.cpu(), return_inverse=True)
    classes, class_index = torch.unique(labels.cpu(), return_inverse=True)
    num_clusters, num_classes = clusters.numel(), classes.numel()
    cells, counts = torch.unique(
        cluster_index.reshape(-1) * num_classes + class_index.reshape(-1), return_counts=True
    )
    dummies = torch.arange(num_clusters)
    rows = torch.cat([cells // num_classes, dummies]).numpy()
    columns = torch.cat([cells % num_classes, num_classes + dummies]).numpy()
    weights = torch.cat([counts + 1, torch.ones(num_clusters, dtype=torch.long)]).double().numpy()
    graph = csr_matrix((weights, (rows, columns)), shape=(num_clusters, num_classes + num_clusters))
    matched_rows, matched_columns = min_weight_full_bipartite_matching(graph, maximize=True)
    matched = float(graph[matched_rows, matched_columns].sum()) - num_clusters
    return round(matched) / labels.numel()


def unsupervised_restarts(num_points: int, num_classes: int, restarts: int) -> int:
    """The k-means restarts :func:`unsupervised_clusters` runs: all ``restarts`` while
    ``restarts * N * C`` is at most :data:`UNSUPERVISED_WORK`, else as many as fit, at least 1.
    A restart costs about N x C distance evaluations per iteration, so 10 restarts of a
    60,000-image split of 11,316 classes would take the better part of an hour; one restart of a
    split that large already averages over thousands of clusters' seedings."""
    return max(1, min(restarts, UNSUPERVISED_WORK // max(num_points * num_classes, 1)))


def unsupervised_clusters(
    embeddings: Tensor, labels: Tensor, *, seed: int = 0, restarts: int = UNSUPERVISED_RESTARTS
) -> Tensor:
    """``[N]`` clusters of k-means with C = number of distinct labels on the embeddings (spec,
    accuracy 5), the run of lowest inertia of ``restarts`` (as scikit-learn's ``n_init``; fewer
    for large splits, :func:`unsupervised_restarts`): a single run can merge two classes into one
    cluster, which says more about its seeding than about the embedding."""
    num_classes = int(torch.unique(labels).numel())
    generator = torch.Generator().manual_seed(seed)
    kept = unsupervised_restarts(embeddings.shape[0], num_classes, restarts)
    return kmeans(embeddings.detach(), num_classes, generator=generator, restarts=kept).assignments


def unsupervised_accuracy(
    embeddings: Tensor, labels: Tensor, *, seed: int = 0, restarts: int = UNSUPERVISED_RESTARTS
) -> float:
    """:func:`assignment_accuracy` of the :func:`unsupervised_clusters` against the labels."""
    clusters = unsupervised_clusters(embeddings, labels, seed=seed, restarts=restarts)
    return assignment_accuracy(clusters, labels)


def supervised_error_rates(
    embeddings: Tensor,
    labels: Tensor,
    centroids: Tensor,
    centroid_classes: Tensor,
    *,
    variance: float,
    L: int = 128,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Errors (1 - accuracy, in [0, 1]) of the three supervised rules, under the keys "simple",
    "magnet" and "repmet"; they share one distance block per chunk."""
    predictions = _per_chunk(
        embeddings,
        centroids,
        centroid_classes,
        methods=METHODS,
        variance=variance,
        L=L,
        chunk_size=chunk_size,
        predictions=True,
    )
    labels = labels.long()
    return {
        method: 1.0 - float((predicted == labels).double().mean())
        for method, predicted in predictions.items()
    }


def error_rates(
    embeddings: Tensor,
    labels: Tensor,
    centroids: Tensor,
    centroid_classes: Tensor,
    *,
    variance: float,
    L: int = 128,
    seed: int = 0,
    chunk_size: int | None = None,
    restarts: int = UNSUPERVISED_RESTARTS,
    clusters: Tensor | None = None,
) -> dict[str, float]:
    """Errors (1 - accuracy, in [0, 1]) of a split under the keys "simple", "magnet", "repmet"
    and "unsupervised": :func:`supervised_error_rates`, and the unsupervised error of
    ``clusters`` when the caller has them, else of :func:`unsupervised_clusters` (``seed``,
    ``restarts``)."""
    labels = labels.long()
    errors = supervised_error_rates(
        embeddings, labels, centroids, centroid_classes, variance=variance, L=L,
        chunk_size=chunk_size,
    )  # fmt: skip
    if clusters is None:
        clusters = unsupervised_clusters(embeddings, labels, seed=seed, restarts=restarts)
    errors["unsupervised"] = 1.0 - assignment_accuracy(clusters, labels)
    return errors
