"""How many threads torch computes on, and one thread for feature extraction.

:func:`configure` sets torch's thread count: the user's choice (``--threads``, else
``OMP_NUM_THREADS``), or else :func:`usable_cpus`, the CPUs this process may really run on (its
CPU affinity and its cgroup's CPU quota; torch's own default counts every core of the machine),
fewer where other processes keep some of those busy (:func:`idle_cpus`, watched for 0.1 s).

OpenMP threads that wait for work spin before they sleep; while another job takes a core, those
spinning threads take the time the working ones need. So the thread count follows the idle CPUs
(under load: one thread, nothing to wait for), and ``polyspeech/__init__.py`` sets
``GOMP_SPINCOUNT=1000`` (unless the environment sets it or ``OMP_WAIT_POLICY``) before anything
imports torch: about libgomp's default speed on idle cores, and a load that comes after the count
was chosen costs about twice, not twenty times (docs/guide.md, "Measurements behind the code's
choices"). GNU OpenMP (libgomp, torch's on Linux CPU wheels) reads it once, when torch loads it:
a program that imported torch before polyspeech keeps the long spin unless its environment sets
``GOMP_SPINCOUNT`` before it starts.

Feature extraction (filterbank, pitch) runs on one thread (:func:`one_thread`), so that
training's feature worker processes, several at once, do not each take every core; a second
thread would save a small share of a clip's transcription (docs/guide.md, as above).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from polyspeech.errors import InputError

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")  # which cgroup this process is in, per hierarchy
STAT = Path("/proc/stat")
SAMPLE_S = 0.1  # how long automatic threads watch the CPUs: 10 clock ticks a CPU


def _quota_v2(folder: Path) -> float | None:
    """CPUs a cgroup v2 ``cpu.max`` ("QUOTA PERIOD", QUOTA ``max`` for none) allows."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _quota_v1(folder: Path) -> float | None:
    """CPUs cgroup v1's ``cpu.cfs_quota_us`` (-1 for none) over ``cpu.cfs_period_us`` allows."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_folders(root: Path, membership: Path) -> Iterator[tuple[Path, bool]]:
    """Each folder whose CPU quota binds this process, with True for cgroup v2: its own cgroup
    and every one above it (a quota anywhere up the tree applies)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0":
            mount, v2 = root, True
        elif "cpu" in controllers.split(","):
            mount, v2 = root / controllers, False
            if not mount.is_dir():  # mounted as cpu, with cpu,cpuacct a link or absent
                mount = root / "cpu"
        else:
            continue
        # in a container without its own cgroup namespace the path names a host folder that
        # is not mounted here: then the folders that do exist, the mount itself at least
        folder = mount / path.strip("/")
        while True:
            yield folder, v2
            if folder == mount:
                break
            folder = folder.parent


def cgroup_cpus(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> float | None:
    """The CPUs the cgroup CPU quota lets this process use (e.g. 1.5), the tightest along its
    cgroups (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None without a
    quota. ``root``: where cgroups are mounted; ``membership``: the ``/proc/self/cgroup`` file."""
    quotas = [
        quota
        for folder, v2 in _cgroup_folders(root, membership)
        if (quota := _quota_v2(folder) if v2 else _quota_v1(folder)) is not None
    ]
    return min(quotas, default=None)


def usable_cpus(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> int:
    """The CPUs this process may run on: the fewer of its CPU affinity and its cgroup quota
    (rounded up: a quota of 1.5 CPUs lets two threads run three quarters of the time)."""
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpus(root, membership)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(cpus, 1)


def cpu_ticks(cpus: set[int], stat: Path = STAT) -> tuple[int, int]:
    """Clock ticks (idle, all) that the CPUs numbered ``cpus`` have counted since boot, from the
    ``cpuN`` lines of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    idle = total = 0
    for line in stat.read_text().splitlines():
        name, *fields = line.split()
        if name[3:].isdigit() and name.startswith("cpu") and int(name[3:]) in cpus:
            ticks = [int(field) for field in fields[:8]]  # then guest time, counted in user
            idle += ticks[3] + ticks[4]
            total += sum(ticks)
    return idle, total


def idle_cpus(seconds: float = SAMPLE_S, stat: Path = STAT) -> float | None:
    """How many of this process's CPUs the other processes leave idle, over the next
    ``seconds`` (the time this process itself computes meanwhile counts as idle); None where
    /proc/stat cannot be read."""
    cpus = os.sched_getaffinity(0)
    try:
        idle_before, total_before = cpu_ticks(cpus, stat)
        own_before = time.process_time()
        time.sleep(seconds)
        idle_after, total_after = cpu_ticks(cpus, stat)
    except (OSError, ValueError, IndexError):
        return None
    own = (time.process_time() - own_before) * os.sysconf("SC_CLK_TCK")
    total = total_after - total_before
    if total <= 0:
        return None
    return min(1.0, (idle_after - idle_before + own) / total) * len(cpus)


def _environment_threads() -> int | None:
    """OMP_NUM_THREADS as a number of threads (its first entry: libgomp also takes a
    comma-separated list, for nested levels), None where it is unset or empty."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not value:
        return None
    first = value.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise InputError(f"OMP_NUM_THREADS={value}: give a whole number of threads, 1 or more")
    return int(first)


def choose_threads(
    threads: int | None, root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP
) -> int:
    """The number of threads to compute on: ``threads`` if it is 1 or more, else (0 or None,
    automatic) OMP_NUM_THREADS if set, else :func:`usable_cpus`, or as many as other
    processes leave idle (:func:`idle_cpus`, rounded; at least one) where that is fewer."""
    if threads is not None and threads < 0:
        raise InputError(f"--threads {threads}: give 1 or more threads, or 0 for automatic")
    if threads:
        return threads
    chosen = _environment_threads()
    if chosen is not None:
        return chosen
    chosen = usable_cpus(root, membership)
    idle = idle_cpus()
    if idle is not None:
        chosen = min(chosen, max(1, math.floor(idle + 0.5)))
    return chosen


def configure(threads: int | None = None) -> int:
    """Set torch's intra-op threads to :func:`choose_threads` of ``threads`` (``--threads``;
    0 or None: automatic) and return that number. Raises InputError for a negative count or a
    malformed OMP_NUM_THREADS.

    torch's inter-op pool is left alone: polyspeech runs no inter-op work (``torch.jit.fork``),
    so its threads are never started, and torch allows setting its size only once.
    """
    chosen = choose_threads(threads)
    torch.set_num_threads(chosen)
    return chosen


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block, as many as before after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
