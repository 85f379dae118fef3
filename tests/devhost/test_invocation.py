"""A function that takes `context` gets the invocation context, as from the Python worker:
its W3C trace context continues the caller's trace (or starts one) with a span of its own."""

from __future__ import annotations

import json
import re

import azure.functions as func
import httpx
import pytest

from devhost.host import create_app

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@pytest.fixture
def client() -> httpx.Client:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="traced")
    def traced(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        trace = context.trace_context
        seen = {
            "function": context.function_name,
            "invocation": context.invocation_id,
            "traceparent": trace.trace_parent,
            "tracestate": trace.trace_state,
        }
        return func.HttpResponse(json.dumps(seen), mimetype="application/json")

    @app.route(route="plain")
    def plain(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("no context asked for")

    transport = httpx.WSGITransport(app=create_app(app))
    return httpx.Client(transport=transport, base_url="http://local/api")


def test_the_invocation_continues_the_callers_trace(client: httpx.Client) -> None:
    seen = client.get("/traced", headers={"traceparent": CALLER, "tracestate": "k=v"}).json()
    version, trace_id, span_id, flags = seen["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER.split("-")[1], "01")
    assert span_id != CALLER.split("-")[2]  # the host's own span for the invocation
    assert seen["tracestate"] == "k=v"
    assert seen["function"] == "traced"


@pytest.mark.parametrize("incoming", [{}, {"traceparent": "garbage", "tracestate": "k=v"}])
def test_without_a_valid_traceparent_each_invocation_starts_a_trace(
    client: httpx.Client, incoming: dict[str, str]
) -> None:
    first, second = (client.get("/traced", headers=incoming).json() for _ in range(2))
    assert TRACEPARENT.fullmatch(first["traceparent"])
    assert first["traceparent"].split("-")[1] != second["traceparent"].split("-")[1]
    assert first["invocation"] != second["invocation"]
    assert first["tracestate"] == ""


def test_a_function_without_context_is_called_without_it(client: httpx.Client) -> None:
    assert client.get("/plain").text == "no context asked for"
