"""A TCP forwarder in front of the tests' PostgreSQL that can freeze: while frozen it
accepts and forwards nothing but closes nothing either, as a stopped (SIGSTOP) backend or a
stalled network path looks to a client — the kernel still acknowledges every packet, so
neither TCP keepalives nor the server's own timeouts can notice."""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from sqlalchemy import make_url

from devhost.database import Server

TICK_S = 0.02


def _connect(server: Server) -> socket.socket:
    if server.host.startswith("/"):  # a Unix-domain socket directory (the embedded server)
        unix = socket.socket(socket.AF_UNIX)
        unix.connect(f"{server.host}/.s.PGSQL.{server.port}")
        return unix
    return socket.create_connection((server.host, server.port))


@dataclass
class FreezableProxy:
    target: Server
    listener: socket.socket = field(init=False)
    frozen: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    @property
    def server(self) -> Server:
        """The proxied server, as the tests' fixtures describe servers."""
        return Server(
            user=self.target.user,
            host="127.0.0.1",
            port=self.port,
            password=self.target.password,
            maintenance_db=self.target.maintenance_db,
        )

    def uri(self, direct_uri: str) -> str:
        """`direct_uri` (a database on the target) through this proxy."""
        url = make_url(direct_uri).set(host="127.0.0.1", port=self.port, query={})
        return url.render_as_string(hide_password=False)

    def serve(self) -> None:
        """Forward until stopped; while frozen, touch no socket at all."""
        peers: dict[socket.socket, socket.socket] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while not self.stopped.is_set():
                if self.frozen.is_set():
                    self.stopped.wait(TICK_S)
                    continue
                for key, _ in selector.select(timeout=TICK_S):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    if ready is self.listener:
                        client, _ = self.listener.accept()
                        upstream = _connect(self.target)
                        for one, other in ((client, upstream), (upstream, client)):
                            peers[one] = other
                            selector.register(one, selectors.EVENT_READ)
                        continue
                    if ready not in peers:  # closed with its peer earlier in this round
                        continue
                    data = b""
                    with suppress(OSError):
                        data = ready.recv(65536)
                    if data:
                        with suppress(OSError):
                            peers[ready].sendall(data)
                        continue
                    for closing in (ready, peers[ready]):
                        del peers[closing]
                        selector.unregister(closing)
                        closing.close()
            for open_socket in peers:
                open_socket.close()


@contextmanager
def freezable_proxy(target: Server) -> Iterator[FreezableProxy]:
    proxy = FreezableProxy(target)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.stopped.set()
        thread.join(timeout=5)
        proxy.listener.close()
