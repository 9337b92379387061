"""What the scale harnesses read about processes and the machine (Linux /proc).

The VM is shared with other jobs, so every number is reported with the load average at
the time and, where wall time is distorted, with the CPU time the processes really used.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default)."""
    pages = Path(f"/proc/{pid or os.getpid()}/statm").read_text().split()[1]
    return int(pages) * _PAGE_BYTES


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (2 cores: above 2 means queueing)."""
    return [round(value, 2) for value in os.getloadavg()]


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99), rounded to 0.001; a single value is its own percentile,
    and no values give 0.0."""
    if len(values) < 2:
        return round(float(values[0]), 3) if values else 0.0
    return round(float(statistics.quantiles(values, n=100)[q - 1]), 3)


def directory_bytes(path: str | Path) -> int:
    """Bytes of all files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
