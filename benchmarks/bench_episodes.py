"""Few-shot episodes: time to draw a list and to measure it, batched, against a loop over episodes.

Example:
    python benchmarks/bench_episodes.py --episodes 1000 --dim 128 --modes 3 --threads 2

A split of ``--classes`` classes with ``--per-class`` examples each and Gaussian class clusters;
for each of the 1-shot and 5-shot settings (``--ways``-way, ``--queries`` queries per class) it
times :func:`repmet.episodes.draw_episodes` and :func:`repmet.episodes.episode_accuracies` (best
of ``--repeats``), and the same three rules applied one episode at a time with
:func:`repmet.evaluation.predict` on the same representatives, which must give the same accuracies.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from repmet.episodes import Episodes, draw_episodes, episode_accuracies, episode_representatives
from repmet.evaluation import METHODS, predict


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def per_episode_loop(
    embeddings: torch.Tensor, episodes: Episodes, *, modes: int, variance: float, L: int
) -> dict[str, float]:
    """The rules of repmet.evaluation applied episode by episode: the reference for speed."""
    representatives = episode_representatives(embeddings, episodes, modes=modes, seed=0)
    m = representatives.shape[2]
    centre_classes = torch.arange(episodes.ways).repeat_interleave(m)
    truth = torch.arange(episodes.ways).repeat_interleave(episodes.queries)
    correct = dict.fromkeys(METHODS, 0.0)
    for episode in range(episodes.count):
        centres = representatives[episode].reshape(-1, embeddings.shape[1])
        queries = embeddings[episodes.query[episode].reshape(-1)]
        for method in METHODS:
            predicted = predict(
                queries, centres, centre_classes, method=method, variance=variance, L=L
            )
            correct[method] += float((predicted == truth).double().mean())
    return {method: total / episodes.count for method, total in correct.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--classes", type=int, default=100, help="classes of the split")
    parser.add_argument("--per-class", type=int, default=30, help="examples per class")
    parser.add_argument("--dim", type=int, default=128, help="embedding size")
    parser.add_argument("--modes", type=int, default=3, help="K, representatives per class")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(args.classes).repeat_interleave(args.per_class)
    means = torch.randn(args.classes, args.dim, generator=generator) * 0.25
    embeddings = means[labels] + torch.randn(labels.numel(), args.dim, generator=generator) * 0.5
    variance, L = 0.5, 128
    print(
        f"{args.episodes} episodes, {args.ways}-way, {args.queries} queries, E = {args.dim}, "
        f"K = {args.modes}, threads = {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print(f"{'shots':<6}{'draw s':>8}{'measure s':>11}{'loop s':>9}{'speed-up':>10}  accuracy")
    summary = []
    for shots in (1, 5):

        def draw(shots: int = shots) -> Episodes:
            return draw_episodes(
                labels,
                ways=args.ways,
                shots=shots,
                queries=args.queries,
                count=args.episodes,
                seed=0,
            )

        episodes = draw()

        def measure(episodes: Episodes = episodes) -> dict:
            return episode_accuracies(
                embeddings, episodes, modes=args.modes, variance=variance, l_nearest=L, seed=0
            )

        measure()  # warm-up: thread pools and allocator
        draw_s = best_seconds(draw, args.repeats)
        measure_s = best_seconds(measure, args.repeats)
        start = time.perf_counter()
        looped = per_episode_loop(embeddings, episodes, modes=args.modes, variance=variance, L=L)
        loop_s = time.perf_counter() - start
        batched = measure()
        for method in METHODS:
            if abs(batched[method].mean - looped[method]) > 1e-9:
                raise SystemExit(f"{method}: batched {batched[method].mean} != loop {looped}")
        shown = " ".join(
            f"{method}={batched[method].mean:.3f}+-{batched[method].half_width:.3f}"
            for method in METHODS
        )
        print(
            f"{shots:<6}{draw_s:>8.3f}{measure_s:>11.3f}{loop_s:>9.2f}"
            f"{loop_s / measure_s:>9.0f}x  {shown}",
            flush=True,
        )
        summary.append(f"{shots}shot_draw_s={draw_s:.3f} {shots}shot_measure_s={measure_s:.3f}")
    print(f"episodes: {' '.join(summary)}")


if __name__ == "__main__":
    main()
