"""The GPU path: a smoke study whose trials share one GPU, and ResNet18 training throughput.

    python benchmarks/bench_gpu.py                          # 2 trials per GPU, 224 px
    python benchmarks/bench_gpu.py --gpus-per-trial 0.25    # 4 trials per GPU
    python benchmarks/bench_gpu.py --device cpu --skip-study --image-size 64 --iterations 5
                                                            # checks the script on a CPU

1. Runs ``study/run.py --smoke --amp`` (repmet-v2 and magnet) with ``--gpus-per-trial`` (0.5: two
   trials on the GPU at once, 0.25: four) and reports its wall time and trials per hour.
2. Trains a ResNet18 run on a generated image folder (10 classes of coloured discs, written to a
   temporary folder) at ``--image-size``, in float32 and with bfloat16 autocast (``amp``), and
   reports training images per second and evaluation embeddings per second.

What keeps a GPU busy with 2-4 fractional trials (``--gpus-per-trial 0.5`` or ``0.25``; Ray gives
each trial its share and the trial runs on ``cuda``):

- **Data on the device.** An in-memory set (digits, digits-distorted, MNIST, Fashion-MNIST,
  ``arrays``) is copied to the GPU once per trial (MNIST's training split is 172 MB in float32);
  a training batch is then an index into it on the GPU, and the random-shift augmentation runs
  there too. Nothing crosses the bus per batch but the indices.
- **Photo sets** (Flowers 102, Pets, Dogs, ``folder``) are decoded per batch by the trial's CPU
  threads (``--cpus-per-trial``), side by side, into pinned memory, and copied to the GPU without
  blocking. Augmented training batches are decoded one file after the other, so that their random
  crops draw in a fixed order and a resumed trial stays exact. Decoding is the bottleneck of
  photo trials: give each trial 4 or more CPUs (``--cpus-per-trial 4``) and check the
  images per second of part 2 against the GPU's. The next training batch is not prefetched: the
  sampler chooses it from the loss table that the current batch updates.
- **Batches.** With GPUs the search spaces allow M * D up to 256 examples (64 on CPUs).
- **Mixed precision.** ``--amp`` (study) or ``amp=True`` runs the network under bfloat16 autocast;
  losses, distances and k-means stay in float32.
- **Evaluation** embeds whole splits in batches of ``eval_batch_size`` (512) under ``no_grad`` and
  the same autocast, then computes distances in bounded chunks on the CPU.

Needs a CUDA GPU; without one it prints that it skipped, and ``--device cpu`` runs part 2 on the
CPU as a check of the script itself. The last line is machine-readable:
``gpu-throughput: train_fp32=... embed_fp32=... train_bf16=... embed_bf16=... images_per_s ...``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from repmet.config import TrainingConfig
from repmet.training import TrainingRun

REPOSITORY = Path(__file__).resolve().parent.parent


def write_image_folder(
    root: Path, *, classes: int = 10, per_class: int = 40, side: int = 256
) -> None:
    """Class c: a disc of hue c/classes at a random place and size on a noisy background."""
    rng = np.random.default_rng(0)
    grid_y, grid_x = np.mgrid[0:side, 0:side]
    for label in range(classes):
        folder = root / f"class_{label:02d}"
        folder.mkdir(parents=True)
        colour = np.array(
            [np.cos(2 * np.pi * label / classes), np.sin(2 * np.pi * label / classes), 0.5]
        )
        colour = (colour - colour.min()) / (np.ptp(colour) + 1e-9) * 255
        for index in range(per_class):
            image = rng.integers(0, 80, size=(side, side, 3)).astype(np.float64)
            cy, cx = rng.integers(side // 4, 3 * side // 4, size=2)
            radius = rng.integers(side // 8, side // 3)
            disc = (grid_y - cy) ** 2 + (grid_x - cx) ** 2 < radius**2
            image[disc] = colour
            Image.fromarray(image.astype(np.uint8)).save(folder / f"{index:03d}.png")


def smoke_study(storage: Path, gpus_per_trial: float) -> None:
    command = [
        sys.executable,
        str(REPOSITORY / "study" / "run.py"),
        "--space", "all",
        "--losses", "repmet-v2,magnet",
        "--smoke",
        "--amp",
        "--gpus-per-trial", str(gpus_per_trial),
        "--storage", str(storage),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    trials = 2 * 2  # --smoke: 2 trials per loss
    print(
        f"smoke study, {gpus_per_trial} GPU per trial: {trials} trials in {seconds:.1f} s "
        f"({3600 * trials / seconds:.0f} trials/hour, Ray start-up included)"
    )


def resnet_throughput(
    root: Path, *, device: str, image_size: int, iterations: int
) -> dict[str, float]:
    """Training and embedding images per second, in float32 and with bfloat16 autocast."""
    figures = {}
    for amp in (False, True):
        config = TrainingConfig(
            loss="repmet-v2",
            dataset="folder",
            data_root=str(root),
            model="resnet18",
            embedding_dim=512,
            image_size=image_size,
            m=8,
            d=6,
            k=2,
            refresh_every=0,
            iterations=iterations,
            device=device,
            amp=amp,
        )
        trial = TrainingRun(config)
        trial.train(min(5, iterations))  # warm-up: kernels, allocator
        if device == "cuda":
            torch.cuda.synchronize()
        stats = trial.train(iterations)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        embeddings, _ = trial.embed("train")
        eval_seconds = time.perf_counter() - start
        print(
            f"resnet18 {image_size}x{image_size} {'bf16 autocast' if amp else 'float32':>13}: "
            f"train {stats.examples_per_second:,.0f} images/s (batch {config.batch_size}), "
            f"embed {len(embeddings) / eval_seconds:,.0f} images/s"
        )
        precision = "bf16" if amp else "fp32"
        figures[f"train_{precision}"] = stats.examples_per_second
        figures[f"embed_{precision}"] = len(embeddings) / eval_seconds
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--gpus-per-trial", type=float, default=0.5)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--skip-study", action="store_true")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        # Not an error: `make bench` runs every script, also on machines without a GPU.
        print("skipped: no CUDA GPU here (--device cpu checks the script on the CPU)")
        print("gpu-throughput: skipped (no CUDA GPU)")
        return
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}")
    with tempfile.TemporaryDirectory() as scratch:
        if not args.skip_study and args.device == "cuda":
            smoke_study(Path(scratch) / "results", args.gpus_per_trial)
        images = Path(scratch) / "shapes"
        write_image_folder(images)
        figures = resnet_throughput(
            images, device=args.device, image_size=args.image_size, iterations=args.iterations
        )
    shown = " ".join(f"{name}={value:.0f}" for name, value in figures.items())
    print(f"gpu-throughput: {shown} images_per_s device={args.device} size={args.image_size}")


if __name__ == "__main__":
    main()
