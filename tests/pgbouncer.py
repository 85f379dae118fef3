"""A real PgBouncer in transaction mode in front of the tests' PostgreSQL, as Azure Database
for PostgreSQL's built-in one on port 6432: started on a free port with a generated
configuration, stopped at the end of the run.

`make test` installs Debian's `pgbouncer` package when it is missing; a run without it fails
(never skips) naming the fix.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from devhost.database import Server

START_TIMEOUT_S = 15.0


def _executable() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(
            "pgbouncer is not installed: `make test` installs it (Debian package pgbouncer)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _unprivileged_user(server: Server) -> str:
    """Whom PgBouncer runs as when we are root: the owner of the server's socket directory
    (the embedded server's is private to the user it runs as), else nobody."""
    if server.host.startswith("/"):
        owner = pwd.getpwuid(os.stat(server.host).st_uid).pw_name
        if owner != "root":
            return owner
    return "nobody"


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer that forwards every database name to `server`."""

    server: Server
    port: int

    def uri(self, direct_uri: str) -> str:
        """`direct_uri` (a database on `server`) through this pooler."""
        url = make_url(direct_uri).set(host="127.0.0.1", port=self.port, query={})
        return url.render_as_string(hide_password=False)

    def settings(self, direct_uri: str) -> dict[str, str]:
        """The app's settings for that database behind the pooler, as on Azure."""
        return {
            "DB_URI": self.uri(direct_uri),
            "DB_POOLER": "pgbouncer",
            "DB_MIGRATION_URI": direct_uri,
        }


@contextmanager
def running_pgbouncer(server: Server) -> Iterator[PgBouncer]:
    """Start PgBouncer for `server`; stop it (and remove its files) afterwards."""
    executable = _executable()
    with tempfile.TemporaryDirectory(prefix="axly-pgbouncer-") as workdir:
        directory = Path(workdir)
        # Readable by the unprivileged user PgBouncer runs as when we are root.
        directory.chmod(0o755)
        port = _free_port()
        config = directory / "pgbouncer.ini"
        users = directory / "users.txt"
        users.write_text(f"{_quoted(server.user)} {_quoted(server.password or '')}\n")
        config.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host={server.host} port={server.port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {users}",
                    "pool_mode = transaction",
                    "max_client_conn = 500",
                    "default_pool_size = 40",
                    "log_connections = 0",
                    "log_disconnections = 0",
                    "",
                ]
            )
        )
        for path in (config, users):
            path.chmod(0o644)
        command = [executable, str(config)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            command[1:1] = ["-u", _unprivileged_user(server)]
        log = directory / "pgbouncer.log"
        with log.open("w") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_listening(process, port, log)
            yield PgBouncer(server=server, port=port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited at start: {log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("pgbouncer did not start listening in time")
