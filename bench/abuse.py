"""Figures for issue 10 (printed by `make bench`, never asserted):

- what a rejected 10 MB body costs the server: peak memory above the baseline (RSS high-water
  mark, reset before each request; and Python's own allocations by tracemalloc) and the size
  of the error body, for the abusive bodies the issue found;
- GET /api/vehicles latency while 20 clients log in at once, with bcrypt unlimited and with
  BCRYPT_MAX_CONCURRENCY at its default (one per core), through a real HTTP server with the
  Python worker's default thread pool (min(32, cores + 4)).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

TEN_MB = 10 * 1024 * 1024
LOGIN_CLIENTS = 20
PROBE_SECONDS = 10  # each phase: GET requests one after another for this long


@dataclass(frozen=True)
class Body:
    label: str
    path: str
    content: bytes
    content_type: str = "application/json"


def abusive_bodies() -> list[Body]:
    """Each about 10 MB (the diagnose routes take up to DIAGNOSE_MAX_BODY_BYTES)."""
    items = TEN_MB // 2
    keys = TEN_MB // 12
    boundary = "bench-boundary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{n}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + b"\x89PNG\r\n\x1a\n"
        + b"\0" * (TEN_MB // 40)
        + b"\r\n"
        for n in range(40)
    )
    return [
        Body(
            "5,000,000 images [1,1,...]",
            "/diagnose2",
            b'{"q":"x","images":[' + b",".join([b"1"] * items) + b"]}",
        ),
        Body(
            "830,000 unknown keys",
            "/diagnose2",
            b"{" + b",".join(b'"k%07d":1' % n for n in range(keys)) + b"}",
        ),
        Body(
            "3,300,000 empty objects",
            "/diagnose2",
            b'{"images":[' + b",".join([b"{}"] * (TEN_MB // 3)) + b"]}",
        ),
        Body("one 10 MB unknown key", "/diagnose2", b'{"' + b"k" * TEN_MB + b'":1}'),
        Body("a 10 MB question", "/diagnose2", b'{"q":"' + b"x" * TEN_MB + b'"}'),
        Body(
            "40 image parts (multipart)",
            "/diagnose2",
            parts + f"--{boundary}--\r\n".encode(),
            f"multipart/form-data; boundary={boundary}",
        ),
    ]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def _peak_extra(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float, float]:
    """The response, and the MB of resident memory and of Python allocations at their peak
    above what was in use before the call."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")  # reset the high-water mark (Linux)
    before = _rss_kib("VmRSS:")
    tracemalloc.start()
    response = call()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return response, (_rss_kib("VmHWM:") - before) / 1024, traced_peak / 1024 / 1024


def rejected_bodies(client: httpx.Client, headers: dict[str, str]) -> None:
    print(f"rejected bodies of ~{TEN_MB // 1024 // 1024} MB (extra memory at peak, error body):")
    for body in abusive_bodies():
        send = partial(
            client.post,
            body.path,
            content=body.content,
            headers={**headers, "Content-Type": body.content_type},
        )
        response, rss_mb, traced_mb = _peak_extra(send)
        problem = response.json()
        print(
            f"  {body.label}: {response.status_code} {problem['code']}, "
            f"{len(response.content)} bytes, {len(problem.get('errors', []))} errors listed; "
            f"+{rss_mb:.1f} MB RSS, +{traced_mb:.1f} MB Python allocations"
        )


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def probe_vehicles(base_url: str, headers: dict[str, str], seconds: float) -> list[float]:
    """GET /api/vehicles one after another (10 ms apart, as a client does something with
    each answer) for `seconds`: each one's milliseconds."""
    import httpx

    samples: list[float] = []
    ends = time.monotonic() + seconds
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while time.monotonic() < ends:
            started = time.perf_counter()
            client.get("/vehicles", headers=headers).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    return samples


def vehicles_during_logins(
    base_url: str, headers: dict[str, str], emails: list[str], password: str
) -> None:
    """GET /api/vehicles p50/p99 alone, then while LOGIN_CLIENTS clients (each its own
    account in `emails`) log in over and over; and how long those logins took."""
    import httpx

    idle = probe_vehicles(base_url, headers, PROBE_SECONDS)
    stop = threading.Event()
    logins: list[float] = []
    statuses: dict[int, int] = {}

    def log_in_repeatedly(email: str) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = client.post("/login", json={"email": email, "password": password})
                logins.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 429:  # as the app does
                    stop.wait(int(response.headers["Retry-After"]))

    threads = [threading.Thread(target=log_in_repeatedly, args=(email,)) for email in emails]
    for thread in threads:
        thread.start()
    time.sleep(1)  # let the logins pile up
    started = time.monotonic()
    busy = probe_vehicles(base_url, headers, PROBE_SECONDS)
    stop.set()
    elapsed = time.monotonic() - started + 1
    for thread in threads:
        thread.join()
    print(
        f"    GET /api/vehicles idle: p50 {statistics.median(idle):.0f} ms, "
        f"p99 {percentile(idle, 0.99):.0f} ms; during {LOGIN_CLIENTS} concurrent logins: "
        f"p50 {statistics.median(busy):.0f} ms, p99 {percentile(busy, 0.99):.0f} ms "
        f"({len(busy)} requests)"
    )
    print(
        f"    logins meanwhile: {statuses.get(200, 0) / elapsed:.1f}/s served, "
        f"p50 {statistics.median(logins):.0f} ms, p99 {percentile(logins, 0.99):.0f} ms, "
        f"statuses {dict(sorted(statuses.items()))}"
    )


def worker_threads() -> int:
    """The Python worker's default thread pool (PYTHON_THREADPOOL_THREAD_COUNT unset)."""
    return min(32, (os.cpu_count() or 1) + 4)
