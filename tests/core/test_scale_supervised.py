"""The supervised rules at many classes: the top-L predictions against the full class scores."""

from __future__ import annotations

import pytest
import torch

from repmet import evaluation
from repmet.evaluation import METHODS, predict


def _many_classes(seed: int, classes: int = 400, k: int = 3, dim: int = 16):
    gen = torch.Generator().manual_seed(seed)
    centroids = torch.randn(classes * k, dim, generator=gen)
    queries = centroids[torch.randint(0, classes * k, (700,), generator=gen)]
    queries = queries + 0.7 * torch.randn(queries.shape, generator=gen)
    return queries, centroids, torch.arange(classes * k) // k


@pytest.mark.parametrize("variance", [0.02, 0.5, 8.0])
def test_top_l_predictions_equal_the_argmax_of_the_log_domain_scores(variance: float) -> None:
    # 1,200 centroids, L = 128: at variance 0.02 nearly every kept kernel but the nearest is below
    # exp(-80) (the floor of the shifted kernels), at 8.0 RepMet often rescoring over all 1,200.
    queries, centroids, classes = _many_classes(0)
    kernels = ((queries[:, None] - centroids[None]).pow(2).sum(-1)) / (2 * variance)
    spread = kernels.topk(128, dim=1, largest=False).values
    floored = (spread - spread[:, :1]) > 80
    if variance == 0.02:
        assert floored.double().mean() > 0.9
    for method in METHODS:
        scores = evaluation._per_chunk(
            queries, centroids, classes, methods=(method,), variance=variance, L=128,
            chunk_size=None, predictions=False,
        )[method]  # fmt: skip
        got = predict(queries, centroids, classes, method=method, variance=variance, L=128)
        assert torch.equal(got, scores.argmax(dim=1)), method
        assert got.unique().numel() > 100


def test_blocks_reuse_the_magnet_table_and_agree_with_one_block() -> None:
    # Magnet's [B, C] table of class sums is cleared at the kept classes only, block after block:
    # a sum left over from an earlier block would change later predictions.
    queries, centroids, classes = _many_classes(1)

    def predictions(chunk_size: int | None) -> dict[str, torch.Tensor]:
        return evaluation._per_chunk(
            queries, centroids, classes, methods=METHODS, variance=0.5, L=128,
            chunk_size=chunk_size, predictions=True,
        )  # fmt: skip

    whole = predictions(None)
    for chunk_size in (1, 7, 256):
        chunked = predictions(chunk_size)
        for method in METHODS:
            assert torch.equal(chunked[method], whole[method]), (method, chunk_size)
