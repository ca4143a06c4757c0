"""Few-shot episodes on unseen classes (spec: "Unseen classes: the class-disjoint protocol and
few-shot episodes").

RepMet's few-shot procedure (Karlinsky et al., CVPR 2019, and its official code): a
new class is given by a handful of support examples; their embeddings, or the k-means modes of
them, become the class's representatives, and the queries are classified against those
representatives only. Here:

- :func:`draw_episodes`: N-way, S-shot, Q-query episodes from a split's labels. N classes are drawn
  without replacement from the classes with at least S + Q examples, then S support and Q query
  examples per class without replacement, all from a generator of its own seeded with ``seed``:
  the same labels and seed give the same :class:`Episodes` in any process, whatever the global
  random state.
- :func:`episode_representatives`: m = min(modes, S) representatives per class from the support
  embeddings only: the support mean for m = 1 (then the simple rule is a prototypical network),
  the support itself for m = S, the k-means modes of the class's support otherwise (one
  per-group k-means over every class of every episode at once).
- :func:`episode_accuracies`: each query classified by the suite's three rules of
  :mod:`repmet.evaluation` (simple, Magnet eq. 6 with L = min(L, N*m), RepMet eq. 6); an
  episode's accuracy is its correct queries / (N * Q); reported as the mean over episodes with
  the 95% interval half-width 1.96 sd / sqrt(episodes).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from repmet import geometry
from repmet.errors import ArgumentError, ConfigError, DataError, DataNotFoundError
from repmet.evaluation import METHODS, log_class_scores
from repmet.kmeans import kmeans

#: Tag of an episode file, so that another tensor file is refused with a clear message.
FILE_FORMAT = "repmet-episodes/1"
#: The normal quantile of a two-sided 95% interval.
Z_95 = 1.96


@dataclass(frozen=True, eq=False)
class Episodes:
    """A fixed list of E episodes of N classes, S support and Q query examples per class.

    Attributes:
        support: LongTensor ``[E, N, S]``, positions of the support examples in the split.
        query: LongTensor ``[E, N, Q]``, positions of the query examples in the split.
        classes: LongTensor ``[E, N]``, the split's label of each episode class; the episode's
            own class index of ``support[e, n]`` and ``query[e, n]`` is n.

    Two lists are equal when all three tensors are.
    """

    support: Tensor
    query: Tensor
    classes: Tensor

    def __post_init__(self) -> None:
        tensors = (self.support, self.query, self.classes)
        if any(t.dtype != torch.long for t in tensors) or (
            self.support.dim(),
            self.query.dim(),
            self.classes.dim(),
        ) != (3, 3, 2):
            raise ArgumentError(
                "episodes need LongTensors support [E, N, S], query [E, N, Q] and classes "
                f"[E, N], got {[(tuple(t.shape), t.dtype) for t in tensors]}."
            )
        if not self.support.shape[:2] == self.query.shape[:2] == self.classes.shape:
            raise ArgumentError(
                f"support {tuple(self.support.shape)}, query {tuple(self.query.shape)} and "
                f"classes {tuple(self.classes.shape)} disagree on [E, N]."
            )

    @property
    def count(self) -> int:
        """E, the number of episodes."""
        return self.classes.shape[0]

    @property
    def ways(self) -> int:
        """N, the classes per episode."""
        return self.classes.shape[1]

    @property
    def shots(self) -> int:
        """S, the support examples per class."""
        return self.support.shape[2]

    @property
    def queries(self) -> int:
        """Q, the query examples per class."""
        return self.query.shape[2]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Episodes):
            return NotImplemented
        return all(
            torch.equal(mine, theirs)
            for mine, theirs in zip(
                (self.support, self.query, self.classes),
                (other.support, other.query, other.classes),
                strict=True,
            )
        )

    __hash__ = None  # type: ignore[assignment]  # mutable tensors: equal lists, no hash

    def save(self, path: str | Path) -> None:
        """Writes the list to ``path`` (a ``torch.save`` of plain tensors), through a temporary
        file renamed into place, so that an interrupted write never leaves half a list."""
        path = Path(path)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        payload = {
            "format": FILE_FORMAT,
            "support": self.support,
            "query": self.query,
            "classes": self.classes,
        }
        try:
            torch.save(payload, temporary)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> Episodes:
        """Reads a list written by :meth:`save` (tensors only: ``weights_only=True``).

        Raises:
            DataNotFoundError: no file at ``path``.
            DataError: a file that is not an episode list of this format.
        """
        path = Path(path)
        if not path.is_file():
            raise DataNotFoundError(f"no episode file at {path}.")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several kinds for a foreign or truncated file
            raise DataError(f"{path} is not a readable episode file ({error}).") from None
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise DataError(f"{path} is not an episode file of format {FILE_FORMAT}.")
        try:
            return cls(payload["support"], payload["query"], payload["classes"])
        except (KeyError, ArgumentError) as error:
            raise DataError(f"{path} holds a malformed episode list ({error}).") from None

    def check_labels(self, labels: Tensor) -> None:
        """Raises :class:`DataError` unless every support and query position exists in a split
        with these labels and holds its episode class: a list drawn from another split is
        refused rather than measured.
        """
        positions = torch.cat([self.support.flatten(), self.query.flatten()])
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= len(labels)):
            raise DataError(
                f"the episodes refer to example {int(positions.max())} of a split of "
                f"{len(labels)} examples; they were drawn from another split."
            )
        expected = self.classes[:, :, None]
        labels = labels.long()
        if not (
            torch.equal(labels[self.support], expected.expand_as(self.support))
            and torch.equal(labels[self.query], expected.expand_as(self.query))
        ):
            raise DataError(
                "the episodes' examples do not have their episode classes in this split; "
                "they were drawn from another split."
            )


def _distinct_positions(sizes: Tensor, draws: int, generator: torch.Generator) -> Tensor:
    """``[R, draws]``: row r holds ``draws`` distinct positions in ``0 .. sizes[r] - 1``, a
    uniform ordered sample without replacement (every row must have ``sizes[r] >= draws``).

    Draw t picks the rank-th of the ``sizes - t`` positions not taken yet, rank uniform, found by
    stepping over the taken positions in increasing order: O(draws^2) operations on R-long
    vectors, whatever the sizes (no ``[R, max(sizes)]`` table of random keys).
    """
    rows = sizes.shape[0]
    uniforms = torch.rand(rows, draws, dtype=torch.float64, generator=generator)
    chosen = torch.empty(rows, draws, dtype=torch.long)
    for t in range(draws):  # draws = ways, or shots + queries: a few dozen at most
        remaining = sizes - t
        rank = (uniforms[:, t] * remaining).long().clamp_max_(remaining - 1)
        taken = chosen[:, :t].sort(dim=1).values
        for j in range(t):
            rank += taken[:, j] <= rank
        chosen[:, t] = rank
    return chosen


def draw_episodes(
    labels: Tensor, *, ways: int, shots: int, queries: int, count: int, seed: int
) -> Episodes:
    """Draws ``count`` episodes of ``ways`` classes with ``shots`` support and ``queries`` query
    examples each (spec: "Episode (N-way, S-shot, Q-query)").

    Classes are drawn without replacement, uniformly, from the classes that have at least
    ``shots + queries`` examples; a class's S + Q examples are drawn without replacement, the
    first S of the draw being its support. Episodes are independent of one another (a class or an
    example can recur in another episode).

    Args:
        labels: ``[n]`` integer labels of the split (any values; an episode keeps them).
        seed: seeds the draw's own CPU generator; the global random state is neither read nor
            changed.

    Raises:
        ConfigError: a count below 1, or fewer than ``ways`` classes with enough examples.
    """
    for name, value, minimum in (
        ("ways", ways, 2),
        ("shots", shots, 1),
        ("queries", queries, 1),
        ("count", count, 1),
    ):
        if value < minimum:
            raise ConfigError(
                f"few-shot {name} = {value} is invalid; it must be at least {minimum}."
            )
    labels = labels.detach().cpu().long().reshape(-1)
    classes, sizes = torch.unique(labels, return_counts=True)
    per_class = shots + queries
    eligible = sizes >= per_class
    num_eligible = int(eligible.sum())
    if num_eligible < ways:
        raise ConfigError(
            f"{ways}-way {shots}-shot {queries}-query episodes need {ways} classes with at "
            f"least {per_class} examples; this split has {num_eligible} such of "
            f"{classes.numel()} classes."
        )
    generator = torch.Generator().manual_seed(seed)
    eligible_classes = eligible.nonzero().squeeze(1)  # positions in `classes`
    chosen = eligible_classes[
        _distinct_positions(torch.full((count,), num_eligible), ways, generator)
    ]  # [E, N]
    # The split's examples grouped by class: class c's examples are by_class[starts[c]:][:sizes[c]].
    by_class = torch.argsort(labels, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    offsets = _distinct_positions(sizes[chosen].reshape(-1), per_class, generator)
    examples = by_class[starts[chosen].reshape(-1, 1) + offsets].reshape(count, ways, per_class)
    return Episodes(
        support=examples[:, :, :shots].contiguous(),
        query=examples[:, :, shots:].contiguous(),
        classes=classes[chosen],
    )


def _check_embeddings(embeddings: Tensor, episodes: Episodes) -> Tensor:
    if embeddings.dim() != 2:
        raise ArgumentError(f"embeddings must be [n, E], got {tuple(embeddings.shape)}.")
    largest = max(int(episodes.support.max()), int(episodes.query.max()))
    if largest >= embeddings.shape[0]:
        raise ArgumentError(
            f"the episodes refer to example {largest} of {embeddings.shape[0]} embeddings."
        )
    embeddings = embeddings.detach()
    return embeddings if embeddings.is_floating_point() else embeddings.float()


def episode_representatives(
    embeddings: Tensor, episodes: Episodes, *, modes: int, seed: int
) -> Tensor:
    """``[E, N, m, D]``: m = min(modes, S) representatives of every class of every episode,
    from its support embeddings only (spec: "Representatives of an episode").

    m = 1: the support mean. m = S: the support embeddings themselves (what k-means with one
    mode per point returns). Otherwise the k-means modes of each class's support: one per-group
    k-means run (greedy k-means++ seeding, then Lloyd iterations) over all E * N supports at
    once, seeded with ``seed``. One run, not the evaluation centroids' best of 10: a support
    holds a handful of points, and ten runs cost three times as much (docs/algorithms.md).
    """
    if modes < 1:
        raise ArgumentError(f"modes = {modes} is invalid; a class needs at least 1 mode.")
    embeddings = _check_embeddings(embeddings, episodes)
    with torch.no_grad():
        support = embeddings[episodes.support]  # [E, N, S, D]
        m = min(modes, episodes.shots)
        if m == 1:
            return support.mean(dim=2, keepdim=True)
        if m == episodes.shots:
            return support
        groups = episodes.count * episodes.ways
        result = kmeans(
            support.reshape(-1, support.shape[-1]),
            m,
            groups=torch.arange(groups).repeat_interleave(episodes.shots),
            num_groups=groups,
            generator=torch.Generator().manual_seed(seed),
        )
        return result.centroids.reshape(episodes.count, episodes.ways, m, -1)


def query_log_scores(
    representatives: Tensor,
    queries: Tensor,
    *,
    methods: tuple[str, ...] = METHODS,
    variance: float,
    l_nearest: int,
) -> dict[str, Tensor]:
    """Per rule, ``[B, P, N]`` log-domain class scores of P queries in each of B episodes against
    that episode's ``[N, m, D]`` representatives (``representatives`` is ``[B, N, m, D]``,
    ``queries`` ``[B, P, D]``); the argmax over the last dimension is the predicted episode class.

    The rules are those of :func:`repmet.evaluation.log_class_scores` (simple: minus the distance
    to the nearest representative; magnet: log of Magnet eq. 6 over the min(L, N*m) nearest;
    repmet: log of RepMet eq. 6) with sigma^2 = ``variance`` and L = ``l_nearest``. Distances are
    taken after centring each episode on its representatives' mean (see :mod:`repmet.geometry`).
    """
    batch, ways, m, dim = representatives.shape
    if queries.dim() != 3 or queries.shape[0] != batch or queries.shape[2] != dim:
        raise ArgumentError(
            f"queries {tuple(queries.shape)} must be [B, P, D] for representatives "
            f"{tuple(representatives.shape)}."
        )
    with torch.no_grad():
        centres = representatives.reshape(batch, ways * m, dim)
        distances = geometry.pairwise_squared_distances(queries, centres)  # [B, P, N*m]
        rows = distances.reshape(-1, ways * m)
        centre_classes = torch.arange(ways, device=rows.device).repeat_interleave(m)
        return {
            method: log_class_scores(
                rows, centre_classes, method=method, variance=variance, L=l_nearest
            ).reshape(batch, -1, ways)
            for method in methods
        }


@dataclass(frozen=True, eq=False)
class EpisodeAccuracy:
    """A rule's accuracy over a list of episodes.

    Attributes:
        mean: the mean of the per-episode accuracies.
        half_width: 1.96 sd / sqrt(E), sd the sample standard deviation of the per-episode
            accuracies (n - 1); the 95% interval is mean +- half_width. NaN for a single episode.
        per_episode: ``[E]`` float64, correct queries / (N * Q) of each episode.
    """

    mean: float
    half_width: float
    per_episode: Tensor

    @classmethod
    def of(cls, per_episode: Tensor) -> EpisodeAccuracy:
        count = per_episode.numel()
        spread = float(per_episode.std()) if count > 1 else math.nan
        return cls(float(per_episode.mean()), Z_95 * spread / math.sqrt(count), per_episode)


def episode_accuracies(
    embeddings: Tensor,
    episodes: Episodes,
    *,
    modes: int,
    variance: float,
    l_nearest: int,
    seed: int,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, EpisodeAccuracy]:
    """Few-shot accuracy of every rule on a fixed episode list (spec: "Unseen classes").

    Args:
        embeddings: ``[n, D]`` embeddings of the split the episodes were drawn from.
        modes: K, the representatives per class of the run (m = min(K, S) per episode class).
        variance: the run's sigma^2 (magnet: its running batch variance; representative
            losses: sigma^2).
        l_nearest: L of the Magnet rule (min(L, N*m) representatives are kept).
        seed: seeds the k-means of the modes (unused when m is 1 or S).

    Returns:
        Per rule of ``methods``, its :class:`EpisodeAccuracy`.

    Episodes are scored in blocks whose gathered query embeddings stay within
    ``repmet.geometry.DISTANCE_BLOCK_ELEMENTS``; the blocks only bound memory, the numbers do not
    depend on them.
    """
    representatives = episode_representatives(embeddings, episodes, modes=modes, seed=seed)
    embeddings = _check_embeddings(embeddings, episodes)
    ways, per_class = episodes.ways, episodes.queries
    # The episode class of each query row.
    truth = torch.arange(ways, device=embeddings.device).repeat_interleave(per_class)
    m, dim = representatives.shape[2], representatives.shape[3]
    block = geometry.rows_per_block(
        ways * per_class * max(dim, ways * m), geometry.DISTANCE_BLOCK_ELEMENTS
    )
    correct: dict[str, list[Tensor]] = {method: [] for method in methods}
    with torch.no_grad():
        for part in geometry.row_blocks(episodes.count, block):
            queries = embeddings[episodes.query[part]].reshape(-1, ways * per_class, dim)
            scores = query_log_scores(
                representatives[part],
                queries,
                methods=methods,
                variance=variance,
                l_nearest=l_nearest,
            )
            for method, log_scores in scores.items():
                correct[method].append((log_scores.argmax(dim=2) == truth).sum(dim=1))
    return {
        method: EpisodeAccuracy.of(torch.cat(parts).cpu().double() / (ways * per_class))
        for method, parts in correct.items()
    }
