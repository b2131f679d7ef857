"""Peak resident memory of this process, for `polyspeech evaluate` and the benchmarks.

``/proc/self/status``'s VmHWM, not ``getrusage``'s ru_maxrss: Linux carries ru_maxrss across
``execve``, so a child started by a large parent (one that has just built a 1B-parameter model)
reports the parent's size at the fork as its own peak. VmHWM belongs to the process's own
memory map, which starts anew at ``execve``.
"""

from pathlib import Path


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (memory is measured on Linux only)")


def peak_bytes() -> int:
    return _status_bytes("VmHWM")


def current_bytes() -> int:
    return _status_bytes("VmRSS")


def reset_peak() -> None:
    """Start VmHWM again from the present size (Linux: ``clear_refs`` 5), so that each of
    several models run in turn gets its own peak."""
    Path("/proc/self/clear_refs").write_text("5")
