"""Thread count from CPU affinity and cgroup quotas; the OpenMP wait policy set at import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from polyspeech import threads
from polyspeech.errors import InputError
from polyspeech.threads import (
    cgroup_cpus,
    choose_threads,
    configure,
    cpu_ticks,
    idle_cpus,
    usable_cpus,
)


@pytest.fixture
def eight_cpus(monkeypatch):
    """A process allowed on eight CPUs, all idle, without OMP_NUM_THREADS."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(threads, "idle_cpus", lambda: 8.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def cgroup(tmp_path, membership: str, files: dict[str, str]):
    """A fake cgroup mount under tmp_path/cgroup and /proc/self/cgroup file: (root, membership)."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    (tmp_path / "membership").write_text(membership)
    return root, tmp_path / "membership"


@pytest.mark.parametrize(
    ("cpu_max", "quota", "cpus"),
    [("150000 100000\n", 1.5, 2), ("50000 100000\n", 0.5, 1), ("max 100000\n", None, 8)],
)
def test_cgroup_v2_quota_rounds_up_and_caps_affinity(tmp_path, eight_cpus, cpu_max, quota, cpus):
    paths = cgroup(tmp_path, "0::/\n", {"cpu.max": cpu_max})
    assert cgroup_cpus(*paths) == quota
    assert usable_cpus(*paths) == cpus


def test_quota_of_a_parent_cgroup_binds(tmp_path, eight_cpus):
    files = {"a/cpu.max": "300000 100000\n", "a/b/cpu.max": "max 100000\n"}
    paths = cgroup(tmp_path, "0::/a/b\n", files)
    assert cgroup_cpus(*paths) == 3
    assert usable_cpus(*paths) == 3


def test_cgroup_v1_quota_when_the_cgroup_path_is_not_mounted_here(tmp_path, eight_cpus):
    # a container without a cgroup namespace: /proc/self/cgroup names the host's folder
    membership = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"
    files = {"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000"}
    paths = cgroup(tmp_path, membership, files)
    assert cgroup_cpus(*paths) == 2
    assert usable_cpus(*paths) == 2


def test_cgroup_v1_without_quota(tmp_path, eight_cpus):
    files = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    paths = cgroup(tmp_path, "1:cpu:/\n", files)
    assert cgroup_cpus(*paths) is None
    assert usable_cpus(*paths) == 8


def test_no_cgroup_information_leaves_affinity(tmp_path, eight_cpus):
    assert cgroup_cpus(tmp_path / "none", tmp_path / "no-membership") is None
    assert usable_cpus(tmp_path / "none", tmp_path / "no-membership") == 8


def test_affinity_below_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert usable_cpus(*cgroup(tmp_path, "0::/\n", {"cpu.max": "400000 100000\n"})) == 1


def test_automatic_is_the_usable_cpus(tmp_path, eight_cpus):
    paths = cgroup(tmp_path, "0::/\n", {"cpu.max": "200000 100000\n"})
    assert choose_threads(None, *paths) == 2
    assert choose_threads(0, *paths) == 2


@pytest.mark.parametrize(("idle", "chosen"), [(0.2, 1), (1.4, 1), (1.6, 2), (5.0, 2), (None, 2)])
def test_automatic_leaves_the_busy_cpus(tmp_path, eight_cpus, monkeypatch, idle, chosen):
    monkeypatch.setattr(threads, "idle_cpus", lambda: idle)
    paths = cgroup(tmp_path, "0::/\n", {"cpu.max": "200000 100000\n"})
    assert choose_threads(None, *paths) == chosen


# an empty OMP_NUM_THREADS counts as unset: automatic, and no CPU is idle
@pytest.mark.parametrize(("value", "chosen"), [("3", 3), ("4,2", 4), (" 5 ", 5), ("", 1)])
def test_omp_num_threads_wins_over_the_cpus(tmp_path, eight_cpus, monkeypatch, value, chosen):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    monkeypatch.setattr(threads, "idle_cpus", lambda: 0.0)
    paths = cgroup(tmp_path, "0::/\n", {"cpu.max": "200000 100000\n"})
    assert choose_threads(None, *paths) == chosen


def test_the_option_wins_over_omp_num_threads(tmp_path, eight_cpus, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    paths = cgroup(tmp_path, "0::/\n", {"cpu.max": "100000 100000\n"})
    assert choose_threads(5, *paths) == 5


def test_cpu_ticks_of_the_allowed_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  30 0 10 100 5 0 0 0 0 0\n"
        "cpu0 10 0 5 50 2 0 0 0 0 0\n"
        "cpu1 20 0 5 50 3 0 0 1 4 0\n"
        "cpu12 1 1 1 1 1 1 1 1 0 0\n"
        "intr 123 4 5\nprocs_running 3\n"
    )
    assert cpu_ticks({1, 12}, stat) == (53 + 2, 79 + 8)
    assert cpu_ticks({0}, stat) == (52, 67)


def test_idle_cpus_on_this_machine():
    idle = idle_cpus(0.05)
    assert idle is None or 0 <= idle <= len(os.sched_getaffinity(0))


def test_idle_cpus_without_proc_stat(tmp_path):
    assert idle_cpus(0.0, tmp_path / "missing") is None


def test_negative_threads_are_an_error():
    with pytest.raises(InputError, match="--threads -1"):
        choose_threads(-1)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "2.5"])
def test_a_malformed_omp_num_threads_is_an_error(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(InputError, match="OMP_NUM_THREADS"):
        choose_threads(None)


@pytest.fixture
def torch_threads():
    """Put torch's thread count back after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_configure_sets_torch_threads(torch_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert configure(3) == 3
    assert torch.get_num_threads() == 3
    monkeypatch.setattr(threads, "idle_cpus", lambda: None)
    assert configure(None) == usable_cpus()
    assert torch.get_num_threads() == usable_cpus()
    monkeypatch.setattr(threads, "idle_cpus", lambda: 0.0)
    assert configure(0) == 1
    assert torch.get_num_threads() == 1


def test_configure_rejects_negative_threads(torch_threads):
    before = torch.get_num_threads()
    with pytest.raises(InputError, match="--threads"):
        configure(-2)
    assert torch.get_num_threads() == before


def fresh_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter, without this one's OpenMP settings, plus ``env``."""
    cleared = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")
    environment = {k: v for k, v in os.environ.items() if k not in cleared} | env
    command = [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, env=environment, check=True)


SPIN = "import polyspeech, os; print(os.environ.get('GOMP_SPINCOUNT'))"


def test_import_shortens_openmp_spinning():
    assert fresh_python(SPIN).stdout.strip() == "1000"


@pytest.mark.parametrize(
    ("env", "spin"), [({"GOMP_SPINCOUNT": "5"}, "5"), ({"OMP_WAIT_POLICY": "active"}, "None")]
)
def test_the_users_openmp_settings_win(env, spin):
    assert fresh_python(SPIN, **env).stdout.strip() == spin


def test_libgomp_reads_the_spin_count():
    # libgomp prints the settings it read from the environment when it loads, at import torch
    stderr = fresh_python("import polyspeech, torch", OMP_DISPLAY_ENV="verbose").stderr
    if "GOMP_SPINCOUNT" not in stderr:
        pytest.skip("torch does not use GNU OpenMP here")
    assert "GOMP_SPINCOUNT = '1000'" in stderr
