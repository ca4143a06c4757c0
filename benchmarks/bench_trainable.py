"""Overhead of running a trial through the Ray Tune trainable instead of calling the loop directly.

    python benchmarks/bench_trainable.py [--iterations 1000] [--eval-every 100] [--repeats 3]

Three ways of running the same configuration on digits, measured side by side in one process:
  direct     the schedule's steps (TrainingRun.train(eval_every), then the validation errors);
  trainable  MetricLearningTrainable.train() in this process (metrics, TensorBoard, bookkeeping);
  tune       one Ray Tune trial in a worker process (sum of its time_this_iter_s).
Each is repeated and the best time kept; the target is an overhead below 5 % at eval_every = 100.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

import torch  # noqa: E402

from repmet.config import TrainingConfig  # noqa: E402
from repmet.schedule import steps  # noqa: E402
from repmet.training import TrainingRun, load_splits, use_threads  # noqa: E402


def run_direct(config: TrainingConfig) -> float:
    use_threads(config)
    run = TrainingRun(config, splits=load_splits(config))
    start = time.perf_counter()
    for _ in steps(run):
        pass
    return time.perf_counter() - start


def run_trainable(config: TrainingConfig, logdir: str) -> float:
    from ray.tune.trainable import trainable as trainable_module

    from trainables import MetricLearningTrainable

    trainable_module.DEFAULT_STORAGE_PATH = logdir  # keep the trial folder in the scratch space
    trainable = MetricLearningTrainable(config=config.to_dict())
    start = time.perf_counter()
    result = {"done": False}
    while not result["done"]:
        result = trainable.train()
    elapsed = time.perf_counter() - start
    trainable.stop()
    return elapsed


def run_tune(config: TrainingConfig, storage: str) -> float:
    from ray import tune

    from trainables import MetricLearningTrainable

    tuner = tune.Tuner(
        tune.with_resources(MetricLearningTrainable, {"cpu": config.num_threads or 1}),
        param_space=config.to_dict(),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    result = tuner.fit()[0]
    return float(result.metrics_dataframe["time_this_iter_s"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loss", default="repmet-v2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = TrainingConfig(
        loss=args.loss,
        iterations=args.iterations,
        eval_every=args.eval_every,
        num_threads=args.threads,
    )
    import ray

    ray.init(num_cpus=max(args.threads, 1), log_to_driver=False, configure_logging=False)
    times: dict[str, list[float]] = {"direct": [], "trainable": [], "tune": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            times["direct"].append(run_direct(config))
            times["trainable"].append(run_trainable(config, scratch))
            times["tune"].append(run_tune(config, os.path.join(scratch, f"tune{repeat}")))
    ray.shutdown()

    base = min(times["direct"])
    print(
        f"{args.loss} on digits, {args.iterations} iterations, eval every {args.eval_every}, "
        f"{args.threads} thread(s), best of {args.repeats}"
    )
    print(f"{'path':<10} {'seconds':>8} {'it/s':>8} {'overhead':>9}")
    for name, values in times.items():
        best = min(values)
        print(
            f"{name:<10} {best:8.2f} {args.iterations / best:8.1f} {100 * (best / base - 1):8.1f}%"
        )
    overheads = {name: 100 * (min(values) / base - 1) for name, values in times.items()}
    print(
        f"trainable-overhead: trainable={overheads['trainable']:.1f}% "
        f"tune={overheads['tune']:.1f}% direct_s={base:.2f}"
    )


if __name__ == "__main__":
    main()
