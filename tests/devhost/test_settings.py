"""local.settings.json and host.json are read the way Core Tools reads them, and the worker's
thread count as the Azure Python worker reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devhost.settings import load_local_settings, read_route_prefix, worker_threads


def write_json(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_values_become_environment_variables_but_real_ones_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DEVHOST_TEST_NEW", raising=False)  # also restores it afterwards
    monkeypatch.setenv("DEVHOST_TEST_SET", "from-environment")
    settings = write_json(
        tmp_path / "local.settings.json",
        {
            "IsEncrypted": False,
            "Values": {"DEVHOST_TEST_NEW": "ünïcode", "DEVHOST_TEST_SET": "from-file"},
        },
    )

    values = load_local_settings(settings)

    assert values == {"DEVHOST_TEST_NEW": "ünïcode", "DEVHOST_TEST_SET": "from-file"}
    assert os.environ["DEVHOST_TEST_NEW"] == "ünïcode"
    assert os.environ["DEVHOST_TEST_SET"] == "from-environment"


def test_missing_file_is_a_no_op(tmp_path: Path):
    environment = dict(os.environ)
    assert load_local_settings(tmp_path / "local.settings.json") == {}
    assert dict(os.environ) == environment


def test_file_without_values_is_a_no_op(tmp_path: Path):
    assert load_local_settings(write_json(tmp_path / "s.json", {"Host": {}})) == {}


def test_default_path_is_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEVHOST_TEST_CWD", raising=False)
    write_json(tmp_path / "local.settings.json", {"Values": {"DEVHOST_TEST_CWD": "1"}})
    assert load_local_settings() == {"DEVHOST_TEST_CWD": "1"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"Values": ["A=1"]}, "'Values' must be an object"),
        ({"Values": {"PORT": 7071}}, "Values.PORT must be a string"),
        ({"Values": {"ON": True}}, "Values.ON must be a string"),
    ],
)
def test_values_that_are_not_strings_are_rejected(tmp_path: Path, content: object, message: str):
    with pytest.raises(ValueError, match=message):
        load_local_settings(write_json(tmp_path / "local.settings.json", content))


def test_malformed_json_is_an_error(tmp_path: Path):
    path = tmp_path / "local.settings.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        load_local_settings(path)


@pytest.mark.parametrize(
    ("host_json", "expected"),
    [
        ({"version": "2.0"}, "api"),
        ({"extensions": {}}, "api"),
        ({"extensions": {"http": {"maxConcurrentRequests": 10}}}, "api"),
        ({"extensions": {"http": {"routePrefix": ""}}}, ""),
        ({"extensions": {"http": {"routePrefix": "v1"}}}, "v1"),
    ],
)
def test_route_prefix_from_host_json(tmp_path: Path, host_json: object, expected: str):
    assert read_route_prefix(write_json(tmp_path / "host.json", host_json)) == expected


def test_route_prefix_defaults_to_api_without_host_json(tmp_path: Path):
    assert read_route_prefix(tmp_path / "host.json") == "api"


def test_route_prefix_must_be_a_string(tmp_path: Path):
    host_json = write_json(tmp_path / "host.json", {"extensions": {"http": {"routePrefix": 1}}})
    with pytest.raises(ValueError, match="routePrefix must be a string"):
        read_route_prefix(host_json)


@pytest.mark.parametrize(
    ("value", "threads"),
    [("24", 24), ("1", 1), (None, min(32, (os.cpu_count() or 1) + 4)), ("0", None), ("x", None)],
)
def test_worker_threads_are_the_azure_workers(
    monkeypatch: pytest.MonkeyPatch, value: str | None, threads: int | None
):
    """PYTHON_THREADPOOL_THREAD_COUNT, else the worker's default (ThreadPoolExecutor's)."""
    if value is None:
        monkeypatch.delenv("PYTHON_THREADPOOL_THREAD_COUNT", raising=False)
    else:
        monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", value)
    default = min(32, (os.cpu_count() or 1) + 4)
    assert worker_threads() == (threads or default)
