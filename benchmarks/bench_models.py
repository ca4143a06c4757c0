"""Cost of one training step (forward, backward, SGD step) of the embedding networks on the CPU.

    python benchmarks/bench_models.py [--batch 48] [--steps 30] [--repeats 5]

Each case is repeated and the best mean time per step kept, for 1 and for 2 threads; timings are
only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from repmet.models import build_model

CASES = [
    ("small-cnn", 1, 8),
    ("small-cnn", 1, 28),
    ("small-cnn", 3, 32),
    ("resnet18", 3, 32),
]


def step_time_ms(
    name: str, channels: int, size: int, *, batch: int, steps: int, repeats: int
) -> float:
    model = build_model(name, embedding_dim=64, in_channels=channels, image_size=size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.randn(batch, channels, size, size)

    def step() -> None:
        optimizer.zero_grad()
        model(images).pow(2).mean().backward()
        optimizer.step()

    step()  # warm-up: allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps)
    return 1000 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'model':<10} {'input':<14} {'1 thread':>10} {'2 threads':>10}")
    summary = []
    for name, channels, size in CASES:
        times = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            times.append(
                step_time_ms(
                    name, channels, size, batch=args.batch, steps=args.steps, repeats=args.repeats
                )
            )
        shape = f"{args.batch}x{channels}x{size}x{size}"
        print(f"{name:<10} {shape:<14} {times[0]:>8.2f}ms {times[1]:>8.2f}ms")
        summary.append(f"{name}@{size}={times[0]:.2f}/{times[1]:.2f}")
    print(f"model-step-ms: {' '.join(summary)} (1/2 threads)")


if __name__ == "__main__":
    main()
