"""The performance budgets (issue 11): each figure measured next to the floor it is compared
to, interleaved in one run (ours and the floor alternate, round by round, so a noisy
neighbour slows both), and the table `make bench` prints first.

A row is what a row function returns, a plain dict:
    {"figure": str, "ours": list[float], "floor": list[float], "unit": "ms" | "MiB" | "x",
     "budget": float,  # the ratio median(ours) / median(floor) that must not be exceeded
     "floor_name": str, "note": str, "statements": int | None}
and optionally "guarded": False for a row the check leaves out (the note says why: a
budget not reached yet, so the table shows it as it is rather than failing every run).
`row_functions()` lists the row functions, in the table's order. `make bench-check` fails
(exit 1, naming the row) when a guarded row's ratio passes CHECK_MARGIN times its budget:
the margin absorbs a shared runner's noise, so the check catches regressions, not jitter.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
CHECK_MARGIN = 1.5


def interleaved(
    ours: Callable[[], float], floor: Callable[[], float], rounds: int
) -> dict[str, list[float]]:
    """`rounds` samples of each (what a call returns: a figure it measured), alternating
    which goes first each round: {"ours": [...], "floor": [...]}, as rows hold them."""
    samples: dict[str, list[float]] = {"ours": [], "floor": []}
    for round_ in range(rounds):
        pair = (("ours", ours), ("floor", floor))
        for key, sample in pair if round_ % 2 == 0 else reversed(pair):
            samples[key].append(sample())
    return samples


def timed_ms(call: Callable[[], object]) -> float:
    """How long `call()` took, in milliseconds."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def ratio(row: Row) -> float:
    return float(statistics.median(row["ours"]) / statistics.median(row["floor"]))


def _spread(samples: list[float]) -> str:
    """Median and interquartile range."""
    if len(samples) < 2:
        return _figure(samples[0])
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return f"{_figure(median)} ({_figure(q1)}-{_figure(q3)})"


def _figure(value: float) -> str:
    """Three significant digits or so, without exponents."""
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table (what README keeps)."""
    lines = [
        "| figure | ours: median (p25-p75) | floor: median (p25-p75) | ratio | budget | met "
        "| statements | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        unit = row["unit"]
        measured = ratio(row)
        lines.append(
            f"| {row['figure']} | {_spread(row['ours'])} {unit} "
            f"| {row['floor_name']}: {_spread(row['floor'])} {unit} | {measured:.2f}x "
            f"| <= {row['budget']:g}x | {'yes' if measured <= row['budget'] else 'NO'}"
            f"{'' if row.get('guarded', True) else ' (not checked)'} "
            f"| {'' if row['statements'] is None else row['statements']} | {row['note']} |"
        )
    return "\n".join(lines)


def failures(rows: list[Row]) -> list[str]:
    """The guarded rows whose ratio passes CHECK_MARGIN times their budget, with figures."""
    return [
        f"{row['figure']}: {ratio(row):.2f}x > {CHECK_MARGIN:g} x budget {row['budget']:g}x"
        for row in rows
        if row.get("guarded", True) and ratio(row) > CHECK_MARGIN * row["budget"]
    ]


def row_functions() -> list[Callable[[], Row | list[Row] | None]]:
    """The registry, imported when used (each row module imports what it measures). A
    function returns one row, or several measured in one set-up."""
    from bench import coldstart, logins, media, original, reads

    return [
        coldstart.cold_start,
        coldstart.first_request,
        reads.vehicles,
        media.diagnose_overhead,
        media.diagnose_memory,
        logins.vehicles_during_logins,
        original.vehicles,
        original.cold_start,
    ]


def measure() -> list[Row]:
    """Every row of the registry; a function returns None for a row that cannot be measured
    here (it says why)."""
    rows: list[Row] = []
    for row_function in row_functions():
        measured = row_function()
        for row in [measured] if isinstance(measured, dict) else measured or []:
            print(f"  measured: {row['figure']}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def report(rows: list[Row] | None = None) -> list[Row]:
    """Measure every row (or take the ones given) and print the table, with the machine it
    ran on."""
    import os
    import platform

    rows = measure() if rows is None else rows
    print(
        f"Budgets (issue 11) on {platform.machine()} Linux, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}:"
    )
    print(table(rows))
    return rows


def check() -> int:
    """`make bench-check`: 1 (naming each row) when a budget is passed by CHECK_MARGIN."""
    rows = report()
    for row in rows:
        if not row.get("guarded", True):
            print(f"not checked: {row['figure']} ({row['note']})")
    failed = failures(rows)
    for failure in failed:
        print(f"BUDGET EXCEEDED: {failure}")
    return 1 if failed else 0
