"""Evaluation and training at the field's scale: every metric, and the cluster-index refresh, on
synthetic splits with Stanford Online Products' ratio of images to classes (60,502 / 11,316).

    python benchmarks/bench_scale.py                  # N = 2,000 ... 60,000, 128-d; 512-d at 60,000
    python benchmarks/bench_scale.py --quick          # N = 2,000 only (checks the script)
    python benchmarks/bench_scale.py --refresh        # point 3: refresh, representatives, sampler

Evaluation mode measures, per size, each group of metrics that the suite computes together:
the supervised errors (simple, Magnet, RepMet: one top-L search per block), P@1 / R-precision /
MAP@R, NMI / AMI (of a given clustering), and the unsupervised error (k-means with C clusters and
at most ``--restarts`` runs, fewer for large splits as ``unsupervised_restarts`` decides, then the
one-to-one matching). Where faiss is installed (``pip install faiss-cpu``), the same work by faiss
is timed next to it in the same child: the L = 128 nearest centroids of every query, the R + 1
nearest neighbours of every query, and k-means with C clusters (20 iterations, as
pytorch-metric-learning runs it, and the same number of restarts). The unsupervised row also
reports the inertia of our clusters and of faiss's, and faiss's unsupervised error: the same
restarts are the same work, not the same result. ``--threads T`` pins torch's and faiss's
threads; on a machine that other processes share, use ``--threads 1`` (two threads on two busy
cores wait for each other at each of k-means' many small operations).

Refresh mode measures, on ``--n`` training embeddings of C = n * 11,316 / 60,502 classes with K
clusters per class: a Magnet refresh (per-class k-means), the representatives' initialisation
(per-class k-means, then each example's nearest own-class representative), the Magnet evaluation
centroids (10 restarts) and the batch sampler (seed, M - 1 impostors among the J = C * K clusters,
D examples each, then the loss table's update with the batch's losses, as in training).

Each measurement runs in a fresh child process. Its time is wall-clock seconds of one run; its
memory the child's peak resident set (``ru_maxrss`` from ``os.wait4``, including Python, torch and
the data) and the growth of that peak over the child's size once the data exist. The data are
class centres drawn from N(0, I) plus N(0, 0.6^2 I) noise per example; every class has at least
two examples (three in refresh mode, so that K = 3 fits). One summary line ends the output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from repmet.evaluation import UNSUPERVISED_RESTARTS

SOP_IMAGES, SOP_CLASSES = 60_502, 11_316
SIZES = (2_000, 8_000, 32_000, 60_000)
#: The evaluation measurements, in table order.
EVALUATION = ("supervised", "retrieval", "clustering", "unsupervised")
#: The refresh measurements, in table order.
REFRESH = ("magnet_refresh", "representatives", "evaluation_centroids", "sampler")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def synthetic_split(
    n: int, dim: int, *, smallest: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(embeddings [n, dim], labels [n], class centres [C, dim])`` with SOP's ratio of images
    to classes."""
    gen = torch.Generator().manual_seed(seed)
    classes = max(2, round(n * SOP_CLASSES / SOP_IMAGES))
    rest = torch.randint(0, classes, (n - smallest * classes,), generator=gen)
    labels = torch.cat([torch.arange(classes).repeat(smallest), rest])
    labels = labels[torch.randperm(n, generator=gen)]
    centres = torch.randn(classes, dim, generator=gen)
    embeddings = centres[labels] + 0.6 * torch.randn(n, dim, generator=gen)
    return embeddings, labels, centres


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def _faiss_kmeans(points: torch.Tensor, k: int, restarts: int) -> object:
    import faiss

    kmeans = faiss.Kmeans(points.shape[1], k, niter=20, nredo=restarts, seed=0)
    # faiss subsamples to 256 points per centroid by default; SOP has about 5.
    kmeans.train(points.numpy())
    return kmeans


def _inertia(points: torch.Tensor, clusters: torch.Tensor) -> float:
    """Sum of squared distances of the points to the means of their clusters."""
    _, index = torch.unique(clusters, return_inverse=True)
    sums = torch.zeros(int(index.max()) + 1, points.shape[1], dtype=torch.float64)
    sums.index_add_(0, index, points.double())
    means = sums / torch.bincount(index)[:, None]
    return float((points.double() - means[index]).pow(2).sum())


def _faiss_knn(queries: torch.Tensor, base: torch.Tensor, count: int) -> None:
    import faiss

    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base.numpy())
    index.search(queries.numpy(), count)


def child(args: argparse.Namespace) -> dict[str, object]:
    """One measurement (``args.only``) in this process; returns what the parent prints."""
    from repmet import evaluation, retrieval

    if args.threads:
        torch.set_num_threads(args.threads)
    refresh = args.only in REFRESH
    embeddings, labels, centres = synthetic_split(args.n, args.dim, smallest=3 if refresh else 2)
    classes = centres.shape[0]
    # Paid once per trial worker, not per measurement.
    import scipy.optimize  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401

    try:
        import faiss

        has_faiss = not args.no_faiss
        if args.threads:
            faiss.omp_set_num_threads(args.threads)  # the same threads as torch
    except ImportError:
        has_faiss = False
    out: dict[str, object] = {"faiss_seconds": None}
    if refresh:
        return {**out, **_refresh_child(args, embeddings, labels, classes)}
    gen = torch.Generator().manual_seed(1)
    k = 3
    centroids = centres.repeat_interleave(k, 0) + 0.3 * torch.randn(
        classes * k, args.dim, generator=gen
    )
    centroid_classes = torch.arange(classes * k) // k
    noisy = torch.where(
        torch.rand(args.n, generator=gen) < 0.3, torch.randint(0, classes, (args.n,)), labels
    )
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on is the metric's
    before = _status_kib("VmRSS")
    if args.only == "supervised":
        seconds, result = _timed(
            lambda: evaluation.error_rates(
                embeddings, labels, centroids, centroid_classes, variance=0.5, clusters=labels
            )
        )
        if has_faiss:
            out["faiss_seconds"], _ = _timed(lambda: _faiss_knn(embeddings, centroids, 128))
    elif args.only == "retrieval":
        seconds, result = _timed(lambda: retrieval.retrieval_metrics(embeddings, labels))
        largest = int(torch.bincount(labels).max())
        if has_faiss:
            out["faiss_seconds"], _ = _timed(lambda: _faiss_knn(embeddings, embeddings, largest))
    elif args.only == "clustering":
        seconds, result = _timed(lambda: retrieval.clustering_metrics(noisy, labels))
    else:
        kept = evaluation.unsupervised_restarts(args.n, classes, args.restarts)
        seconds, clusters = _timed(
            lambda: evaluation.unsupervised_clusters(embeddings, labels, restarts=args.restarts)
        )
        matching, accuracy = _timed(lambda: evaluation.assignment_accuracy(clusters, labels))
        seconds += matching
        result = {
            "unsupervised_error": 1.0 - accuracy,
            "matching_seconds": matching,
            "restarts_kept": kept,
            "inertia": _inertia(embeddings, clusters),
        }
        if has_faiss:
            out["faiss_seconds"], faiss_kmeans = _timed(
                lambda: _faiss_kmeans(embeddings, classes, kept)
            )
            _, nearest = faiss_kmeans.index.search(embeddings.numpy(), 1)
            faiss_clusters = torch.from_numpy(nearest[:, 0])
            result["faiss_inertia"] = _inertia(embeddings, faiss_clusters)
            faiss_accuracy = evaluation.assignment_accuracy(faiss_clusters, labels)
            result["faiss_unsupervised_error"] = 1.0 - faiss_accuracy
    growth = (_status_kib("VmHWM") - before) / 1024
    return {**out, "seconds": seconds, "growth_mib": growth, "result": result}


def _refresh_child(
    args: argparse.Namespace, embeddings: torch.Tensor, labels: torch.Tensor, classes: int
) -> dict[str, object]:
    from repmet.clusters import EVALUATION_RESTARTS, ClusterIndex, LossTable
    from repmet.sampling import ClusterBatchSampler

    gen = torch.Generator().manual_seed(2)
    k = args.k
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    result: dict[str, object] = {}
    if args.only == "magnet_refresh":
        seconds, _ = _timed(
            lambda: ClusterIndex.fit(embeddings, labels, num_classes=classes, k=k, generator=gen)
        )
    elif args.only == "representatives":

        def initialise() -> ClusterIndex:
            fitted = ClusterIndex.fit(embeddings, labels, num_classes=classes, k=k, generator=gen)
            return ClusterIndex.from_representatives(embeddings, labels, fitted.centroids, k=k)

        seconds, _ = _timed(initialise)
    elif args.only == "evaluation_centroids":
        seconds, _ = _timed(
            lambda: ClusterIndex.fit(
                embeddings,
                labels,
                num_classes=classes,
                k=k,
                generator=gen,
                restarts=EVALUATION_RESTARTS,
            )
        )
    else:
        index = ClusterIndex.fit(embeddings, labels, num_classes=classes, k=k, generator=gen)
        table = LossTable(args.n)
        table.update(torch.arange(args.n), torch.rand(args.n, generator=gen))
        sampler = ClusterBatchSampler(m=args.m, d=args.d, generator=gen)
        batches = 200

        def train_steps() -> None:
            # As training does: draw a batch, then store its examples' losses.
            for _ in range(batches):
                batch = sampler.sample(index, table)
                table.update(batch.indices, torch.rand(batch.indices.shape[0], generator=gen))

        seconds, _ = _timed(train_steps)
        seconds /= batches
        result["per"] = "batch"
    growth = (_status_kib("VmHWM") - before) / 1024
    return {"seconds": seconds, "growth_mib": growth, "result": result}


def run_child(argv: list[str], only: str, n: int, dim: int) -> dict[str, object]:
    """Runs one measurement in a fresh process; adds its peak resident set (MiB)."""
    command = [sys.executable, __file__, *argv, "--only", only, "--n", str(n), "--dim", str(dim)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        return {"failed": process.returncode, "peak_mib": usage.ru_maxrss / 1024}
    return {**json.loads(stdout.splitlines()[-1]), "peak_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="N values")
    parser.add_argument("--dim", type=int, default=128, help="embedding size E")
    parser.add_argument("--no-512", action="store_true", help="skip the 512-d run at the largest N")
    parser.add_argument("--quick", action="store_true", help="N = 2,000 only, no 512-d run")
    parser.add_argument("--restarts", type=int, default=UNSUPERVISED_RESTARTS)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch and faiss threads (0 = their defaults)"
    )
    parser.add_argument("--no-faiss", action="store_true", help="do not time faiss")
    parser.add_argument("--refresh", action="store_true", help="the training-scale measurements")
    parser.add_argument("--n", type=int, default=60_000, help="refresh mode: training embeddings")
    parser.add_argument("--k", type=int, default=3, help="refresh mode: clusters per class")
    parser.add_argument("--m", type=int, default=12, help="refresh mode: clusters per batch")
    parser.add_argument("--d", type=int, default=4, help="refresh mode: examples per cluster")
    parser.add_argument("--only", choices=[*EVALUATION, *REFRESH], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only is not None:
        print(json.dumps(child(args)))
        return
    shared = [f"--restarts={args.restarts}", f"--threads={args.threads}"]
    shared += [f"--k={args.k}", f"--m={args.m}", f"--d={args.d}"]
    shared += ["--no-faiss"] if args.no_faiss else []
    print(
        f"threads = {args.threads or torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f} (other processes share these cores when it is above 0)",
        flush=True,
    )
    if args.refresh:
        classes = round(args.n * SOP_CLASSES / SOP_IMAGES)
        print(
            f"N = {args.n}, C = {classes}, K = {args.k}, E = {args.dim}, M = {args.m}, D = {args.d}"
        )
        print(f"{'measurement':<22}{'seconds':>10}{'peak MiB':>10}{'growth MiB':>12}", flush=True)
        rows = {}
        for only in REFRESH:
            row = run_child(shared, only, args.n, args.dim)
            rows[only] = row
            seconds = row.get("seconds", float("nan"))
            per = " per batch" if only == "sampler" else ""
            print(
                f"{only:<22}{seconds:>10.4f}{row['peak_mib']:>10.0f}"
                f"{row.get('growth_mib', float('nan')):>12.0f}{per}",
                flush=True,
            )
        shown = " ".join(
            f"{name}={row.get('seconds', float('nan')):.3g}" for name, row in rows.items()
        )
        peak = max(row["peak_mib"] for row in rows.values())
        print(f"scale-refresh: n={args.n} classes={classes} k={args.k} {shown} seconds", end=" ")
        print(f"peak_mib={peak:.0f}")
        return

    sizes = [2_000] if args.quick else [int(size) for size in args.sizes.split(",")]
    runs = [(size, args.dim) for size in sizes]
    if not (args.quick or args.no_512) and args.dim != 512:
        runs.append((sizes[-1], 512))
    print(
        f"{'N':>7}{'C':>7}{'E':>5}  {'metrics':<14}{'seconds':>9}{'faiss s':>9}{'ratio':>7}"
        f"{'peak MiB':>10}{'growth MiB':>12}",
        flush=True,
    )
    totals: dict[tuple[int, int], dict[str, float]] = {}
    for size, dim in runs:
        classes = round(size * SOP_CLASSES / SOP_IMAGES)
        total = {"seconds": 0.0, "peak": 0.0, "worst_ratio": 0.0}
        for only in EVALUATION:
            row = run_child(shared, only, size, dim)
            if "failed" in row:
                print(f"{size:>7}{classes:>7}{dim:>5}  {only:<14} failed (exit {row['failed']})")
                total["seconds"] = float("inf")
                continue
            seconds, faiss_seconds = float(row["seconds"]), row["faiss_seconds"]
            ratio = seconds / faiss_seconds if faiss_seconds else float("nan")
            if faiss_seconds:
                total["worst_ratio"] = max(total["worst_ratio"], ratio)
            total["seconds"] += seconds
            total["peak"] = max(total["peak"], float(row["peak_mib"]))
            shown_faiss = f"{faiss_seconds:>9.2f}" if faiss_seconds else f"{'-':>9}"
            print(
                f"{size:>7}{classes:>7}{dim:>5}  {only:<14}{seconds:>9.2f}{shown_faiss}"
                f"{ratio:>7.2f}{row['peak_mib']:>10.0f}{row['growth_mib']:>12.0f}  "
                f"{json.dumps(row['result'])}",
                flush=True,
            )
        totals[(size, dim)] = total
    shown = " | ".join(
        f"n={size} dim={dim} total_s={t['seconds']:.1f} peak_mib={t['peak']:.0f} "
        f"worst_vs_faiss={t['worst_ratio']:.2f}"
        for (size, dim), t in totals.items()
    )
    print(f"scale-evaluation: restarts={args.restarts} {shown}")


if __name__ == "__main__":
    main()
