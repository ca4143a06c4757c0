"""How busy a study keeps a cluster's trial slots, and what each loss of a study costs.

1. Slots busy: a 5-loss study (``--space repmet`` with its defaults, 16 trials of 500 iterations
   per loss, TPE + ASHA) joins a loopback Ray cluster of 8 logical CPUs (``ray start --head
   --num-cpus 8``, started and stopped by this script) with ``--address`` and ``--cpus-per-trial
   1``: 8 trial slots. The share of slots in use is the trials' own time (the sum of every trial's
   ``time_total_s``: its training and measurement steps) over the study's time (``elapsed_s`` in
   ``study.json``: from the start of its Tune experiment to its end) times 8. What a slot spends
   idle is what the study pays around trials: starting the trial workers, the driver creating
   each trial and saving its checkpoints, and the slots left empty while the study's last trials
   finish (formerly, with one Tune experiment per loss, also each new experiment's workers and the
   end of every loss). The slots are logical: on a machine with fewer cores the 8 trials share
   them, and each runs slower.
2. Smoke ratio: the wall time of a 4-loss ``--smoke`` study (``--space all --losses
   repmet-v1,repmet-v2,repmet-v3,repmet-cvpr``) over that of a 1-loss one (``--losses repmet-v1``),
   each a command with its own local Ray as a user runs it, alternately, the medians of
   ``--repeats`` runs.

Targets: at least 90% of the slots busy, and a smoke ratio of at most 1.5.

    python benchmarks/bench_utilisation.py [--num-samples 16] [--max-iterations 500] [--repeats 2]

The last line is machine-readable: ``utilisation: slots_busy=0.41 smoke_ratio=2.40``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "tests")]

from processes import ray_head, run_study  # noqa: E402

from repmet.study_folder.trials import loss_trial_folders  # noqa: E402

SLOTS = 8
FOUR_LOSSES = "repmet-v1,repmet-v2,repmet-v3,repmet-cvpr"
ONE_LOSS = "repmet-v1"


def trial_seconds(folder: Path) -> tuple[float, int, float]:
    """The sum of the trials' own time (each trial's last ``time_total_s``), the trials, and the
    seconds from the start of the first trial's first step to the end of the last trial's last
    (Tune's whole-second timestamps)."""
    total, count, starts, ends = 0.0, 0, [], []
    losses = json.loads((folder / "study.json").read_text())["losses"]
    for trial in (t for loss in losses for t in loss_trial_folders(folder, loss)[1]):
        result = trial / "result.json"
        if not result.is_file():
            continue
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            total += rows[-1]["time_total_s"]
            count += 1
            starts.append(rows[0]["timestamp"] - rows[0]["time_this_iter_s"])
            ends.append(rows[-1]["timestamp"])
    return total, count, max(ends, default=0.0) - min(starts, default=0.0)


def timed_study(storage: Path, *args: str) -> tuple[float, Path]:
    """Runs ``study/run.py ARGS`` as a new study in ``storage``; its wall time and its folder."""
    name = f"s{len(list(storage.iterdir()))}"
    started = time.monotonic()
    result = run_study(*args, "--storage", str(storage), "--name", name, timeout=3600)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"study {' '.join(args)} failed: {result.stderr.strip()}")
    return wall, storage / name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=16, help="trials per loss")
    parser.add_argument("--max-iterations", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2, help="alternating smoke runs of each")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        share = slots_busy(Path(scratch), args)
        ratio = smoke_ratio(Path(scratch), args.repeats)
    print(f"utilisation: slots_busy={share:.2f} smoke_ratio={ratio:.2f}")
    return 0


def slots_busy(storage: Path, args: argparse.Namespace) -> float:
    with ray_head(num_cpus=SLOTS) as address:
        wall, folder = timed_study(
            storage, "--space", "repmet", "--address", address, "--cpus-per-trial", "1",
            "--num-samples", str(args.num_samples), "--max-iterations", str(args.max_iterations),
            "--eval-every", str(args.eval_every),
        )  # fmt: skip
    elapsed = json.loads((folder / "study.json").read_text())["elapsed_s"]
    busy, trials, window = trial_seconds(folder)
    share = busy / (elapsed * SLOTS)
    print(
        f"5-loss study on {SLOTS} slots: {trials} trials, their own time {busy:.1f} s; the study "
        f"{elapsed:.1f} s ({share:.0%} of the slots busy), the command {wall:.1f} s "
        f"({busy / (wall * SLOTS):.0%}), from the first trial's first step to the last trial's "
        f"end {window:.1f} s ({busy / (window * SLOTS):.0%})",
        flush=True,
    )
    return share


def smoke_ratio(storage: Path, repeats: int) -> float:
    walls: dict[str, list[float]] = {FOUR_LOSSES: [], ONE_LOSS: []}
    for _ in range(repeats):
        for losses in (FOUR_LOSSES, ONE_LOSS):
            seconds, _ = timed_study(storage, "--space", "all", "--losses", losses, "--smoke")
            walls[losses].append(seconds)
            print(f"--smoke --losses {losses}: {seconds:.1f} s wall", flush=True)
    four, one = statistics.median(walls[FOUR_LOSSES]), statistics.median(walls[ONE_LOSS])
    print(f"median wall: 4 losses {four:.1f} s, 1 loss {one:.1f} s")
    return four / one


if __name__ == "__main__":
    sys.exit(main())
