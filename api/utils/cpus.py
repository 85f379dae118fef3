"""How many CPUs this process may really use: `os.cpu_count()` is the machine's, which a
container, a plan's CPU quota or a CPU affinity mask can cut far below."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs the process may be scheduled on (its affinity), fewer when its cgroup's CPU
    quota allows less time than that (a fraction rounds up); at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = _cpu_quota(cgroup)
    return max(1, min(cpus or 1, math.ceil(quota))) if quota else max(1, cpus or 1)


def _cpu_quota(cgroup: Path) -> float | None:
    """CPUs' worth of time the cgroup may use per period; None: unlimited or unknown."""
    found = _quota_and_period(cgroup)
    if found is None:
        return None
    quota, period = found
    if not (quota.isdigit() and period.isdigit()) or int(period) == 0:  # "max" or "-1"
        return None
    return int(quota) / int(period)


def _quota_and_period(cgroup: Path) -> tuple[str, str] | None:
    """cgroup v2's `cpu.max` ("200000 100000", "max 100000"), else v1's two files."""
    try:
        quota, period = (cgroup / "cpu.max").read_text(encoding="ascii").split()
        return quota, period
    except (OSError, ValueError):
        pass
    try:
        return (
            (cgroup / "cpu" / "cpu.cfs_quota_us").read_text(encoding="ascii").strip(),
            (cgroup / "cpu" / "cpu.cfs_period_us").read_text(encoding="ascii").strip(),
        )
    except OSError:
        return None
