"""The provider's transport: socket operations end by the call's deadline, and outside a
deadline it is httpx2's own."""

from __future__ import annotations

import time

import httpx2
import pytest
from pytest_httpserver import HTTPServer

from api.utils.deadline import Deadline
from api.utils.deadline_transport import DeadlineTransport, bounded_by

LIMITS = httpx2.Limits(max_connections=2)


def test_without_a_deadline_requests_go_as_usual(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/ping").respond_with_data("pong")
    with httpx2.Client(transport=DeadlineTransport(limits=LIMITS)) as client:
        assert client.get(httpserver.url_for("/ping")).text == "pong"


def test_no_connection_is_even_opened_once_the_deadline_has_passed(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/ping").respond_with_data("pong")
    spent = Deadline(time.monotonic() - 1)
    with (
        httpx2.Client(transport=DeadlineTransport(limits=LIMITS)) as client,
        bounded_by(spent),
        pytest.raises(httpx2.ConnectTimeout),
    ):
        client.get(httpserver.url_for("/ping"))
    assert httpserver.log == []
