"""The GPU path: a smoke study whose trials share one GPU, and ResNet18 training throughput.

    python benchmarks/bench_gpu.py [--gpus-per-trial 0.5] [--image-size 224] [--iterations 60]

1. Runs ``study/run.py --smoke`` (repmet-v2 and magnet) with ``--gpus-per-trial`` (0.5: two trials
   on the GPU at once) and reports its wall time and trials per hour.
2. Trains a ResNet18 trial on a generated image folder (10 classes of coloured shapes, written to
   a temporary folder) at ``--image-size``, in float32 and with bfloat16 autocast (``amp``), and
   reports training images per second and evaluation embeddings per second.

Needs a CUDA GPU; ``--device cpu`` runs the second part on the CPU (slowly) as a check of the
script itself.
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


def resnet_throughput(root: Path, *, device: str, image_size: int, iterations: int) -> None:
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
        return
    if args.device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}")
    with tempfile.TemporaryDirectory() as scratch:
        if not args.skip_study and args.device == "cuda":
            smoke_study(Path(scratch) / "results", args.gpus_per_trial)
        images = Path(scratch) / "shapes"
        write_image_folder(images)
        resnet_throughput(
            images, device=args.device, image_size=args.image_size, iterations=args.iterations
        )


if __name__ == "__main__":
    main()
