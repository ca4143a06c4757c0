"""Running the commands as processes of their own, as a user would, and a Ray cluster of their
own for them to join (used by tests and by ``benchmarks/bench_utilisation.py``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
#: ``python study/run.py`` with this interpreter.
STUDY_COMMAND = [sys.executable, str(REPOSITORY / "study" / "run.py")]
#: The ``ray`` command of this interpreter's environment.
RAY = str(Path(sys.executable).parent / "ray")


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra``, the repository importable, and no Ray address
    (a command must start its own Ray unless told otherwise)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH")) if p)
    env.pop("RAY_ADDRESS", None)
    return env


def run_study(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python study/run.py ARGS`` in its own process, with ``env`` added to the environment."""
    return subprocess.run(
        [*STUDY_COMMAND, *args],
        cwd=REPOSITORY,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def ray_head(num_cpus: int) -> Iterator[str]:
    """A Ray head on the loopback interface with ``num_cpus`` logical CPUs, started with ``ray
    start`` and stopped at the end; yields its address (``127.0.0.1:PORT``) for ``--address``."""
    port = free_port()
    # A short temp dir: Ray's socket paths must stay under the Unix limit, and a private one keeps
    # this head out of /tmp/ray/ray_current_cluster, where other ray.init() calls would find it.
    temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    head = [RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1"]
    head += ["--num-cpus", str(num_cpus), "--include-dashboard=false", f"--temp-dir={temp_dir}"]
    try:
        started = subprocess.run(
            head, env=subprocess_env(), capture_output=True, text=True, timeout=120
        )
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed: {started.stderr}")
        yield f"127.0.0.1:{port}"
    finally:
        stop_cluster(temp_dir)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(entry.name)
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            table[pid] = (parent, command)
    return table


def stop_cluster(temp_dir: str) -> None:
    """Stops only the processes of the head started with ``temp_dir`` and their descendants
    (``ray stop`` would also stop any other Ray on the machine, including this session's)."""
    table = processes()
    ours = {pid for pid, (_, command) in table.items() if temp_dir in command}
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in table.items() if parent in ours} - ours
        ours |= children
        grew = bool(children)
    # The GCS server and the raylet ignore SIGTERM while the rest of the head still runs (`ray
    # stop` waits 16 s before it kills them): a short grace period, then SIGKILL.
    for sig, grace_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 15.0)):
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(map(running, ours)):
            time.sleep(0.1)


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie waiting for its parent has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
