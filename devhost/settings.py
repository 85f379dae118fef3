"""The Functions configuration devhost needs, read as Core Tools and the worker read it."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_ROUTE_PREFIX = "api"


def load_local_settings(path: Path = Path("local.settings.json")) -> dict[str, str]:
    """Export local.settings.json's `Values` as environment variables and return them.

    Like Core Tools, a variable already in the environment wins, so `FOO=x make dev` can
    override the file. A missing file is fine (CI and fresh clones have none); a malformed
    one raises, since silently running without settings gives confusing errors later.
    """
    if not path.is_file():
        return {}
    values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: 'Values' must be an object")
    for name, value in values.items():
        if not isinstance(value, str):
            raise ValueError(f"{path}: Values.{name} must be a string, not {value!r}")
        os.environ.setdefault(name, value)
    return values


# Read by the C library once, when a process starts (glibc's allocator): the Functions host
# starts its worker with the app settings already in its environment, so these must be
# there before this process exists, not exported by it.
PROCESS_START_PREFIX = "MALLOC_"


def process_start_settings(path: Path = Path("local.settings.json")) -> dict[str, str]:
    """local.settings.json's settings read at process start that the environment lacks
    (the environment wins, as for every setting); `main` restarts with them."""
    if not path.is_file():
        return {}
    values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    return {
        name: str(value)
        for name, value in values.items()
        if name.startswith(PROCESS_START_PREFIX) and name not in os.environ
    }


def read_route_prefix(host_json: Path = Path("host.json")) -> str:
    """Return host.json's `extensions.http.routePrefix`; "api" when unset, "" is allowed."""
    if not host_json.is_file():
        return DEFAULT_ROUTE_PREFIX
    config = json.loads(host_json.read_text(encoding="utf-8"))
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", DEFAULT_ROUTE_PREFIX)
    if not isinstance(prefix, str):
        raise ValueError(f"{host_json}: extensions.http.routePrefix must be a string")
    return prefix


def worker_threads() -> int:
    """How many invocations of synchronous functions run at once, as the Azure Python worker
    decides: PYTHON_THREADPOOL_THREAD_COUNT, else (Python >= 3.9) ThreadPoolExecutor's own
    default, min(32, cores + 4); an invalid value falls back to that default
    (azure-functions-python-worker, dispatcher.py `_get_sync_tp_max_workers`)."""
    try:
        threads = int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", ""))
    except ValueError:
        threads = 0
    return threads if threads >= 1 else min(32, (os.cpu_count() or 1) + 4)
