"""The CPUs the process may really use: its affinity, cut by its container's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.utils.cpus import usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def cgroup_v2(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n", encoding="ascii")
    return tmp_path


@pytest.mark.parametrize(
    ("cpu_max", "cpus"),
    [
        ("max 100000", AFFINITY),  # no quota
        ("50000 100000", 1),  # half a CPU still gets one slot
        ("100000 100000", 1),
        ("150000 100000", min(2, AFFINITY)),  # a fraction rounds up
        (f"{100000 * (AFFINITY + 8)} 100000", AFFINITY),  # never more than it may run on
    ],
)
def test_a_cgroup_v2_quota_caps_the_affinity(tmp_path: Path, cpu_max: str, cpus: int) -> None:
    assert usable_cpus(cgroup_v2(tmp_path, cpu_max)) == cpus


@pytest.mark.parametrize(("quota", "cpus"), [("-1", AFFINITY), ("100000", 1)])
def test_a_cgroup_v1_quota_too(tmp_path: Path, quota: str, cpus: int) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota, encoding="ascii")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000", encoding="ascii")
    assert usable_cpus(tmp_path) == cpus


def test_no_cgroup_files_or_unreadable_ones_leave_the_affinity(tmp_path: Path) -> None:
    assert usable_cpus(tmp_path) == AFFINITY
    assert usable_cpus(cgroup_v2(tmp_path, "garbage")) == AFFINITY


def test_the_affinity_not_the_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert usable_cpus(tmp_path) == 1
