"""An HTTP transport for the openai SDK whose every socket operation ends by a `Deadline`.

The SDK's timeout is per socket operation: a read waits at most that long, but a server
that sends a byte now and then (a trickling proxy, a stuck stream) restarts it each time,
so one call can outlast any budget. Here each connect, TLS handshake, read and write waits
at most the time left before the call's deadline, and none starts once it has passed
(httpcore2's timeout errors, which the SDK reports as APITimeoutError): a call cannot
outlive the turn's DIAGNOSE_DEADLINE_S, however its bytes arrive.

The deadline is set around one call with `bounded_by` (a contextvar: the SDK sits between
the caller and the sockets and cannot carry it); outside such a block nothing is bounded
beyond the SDK's own timeouts.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import httpcore2
import httpx2

from api.utils.deadline import Deadline

_call_deadline: ContextVar[Deadline | None] = ContextVar("call_deadline", default=None)


@contextmanager
def bounded_by(deadline: Deadline) -> Iterator[None]:
    """Every socket operation of the SDK calls made in this block ends by `deadline`."""
    token = _call_deadline.set(deadline)
    try:
        yield
    finally:
        _call_deadline.reset(token)


def _bounded(timeout: float | None, expired: type[httpcore2.TimeoutException]) -> float | None:
    """The operation's timeout, shortened to the time left; `expired` when none is left."""
    deadline = _call_deadline.get()
    if deadline is None:
        return timeout
    left = deadline.remaining()
    if left <= 0:
        raise expired("The call's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore2.NetworkStream):
    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _Stream(
            self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        bounded = _bounded(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx2.HTTPTransport):
    """httpx2's own transport (TLS, pooling, error mapping), its connection pool rebuilt
    over the bounded network backend: HTTPTransport takes no backend of its own."""

    def __init__(self, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )
