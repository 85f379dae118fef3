"""The invocation context the Python worker passes to a function that takes `context`.

As in Azure, each invocation gets its own W3C trace context: the host starts an activity per
invocation, a child of the caller's `traceparent` when the request carries a valid one (else
the first of a new trace), and sends its id and the `tracestate` with the invocation
(azure-functions-host: ScriptInvocationContextExtensions.GetRpcTraceContext); the worker
turns them into `context.trace_context` (azure-functions-python-worker: dispatcher
`_get_context`). The same attribute names are offered here.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import uuid
from collections.abc import Mapping
from types import SimpleNamespace

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})")


def invocation_context(function_name: str, headers: Mapping[str, str]) -> SimpleNamespace:
    """The `context` of one invocation of `function_name` for a request with `headers`
    (lower-case names)."""
    caller = _TRACEPARENT.fullmatch(headers.get("traceparent", ""))
    trace_id, flags = caller.groups() if caller else (secrets.token_hex(16), "01")
    return SimpleNamespace(
        invocation_id=str(uuid.uuid4()),
        function_name=function_name,
        function_directory=os.getcwd(),
        thread_local_storage=threading.local(),
        trace_context=SimpleNamespace(
            trace_parent=f"00-{trace_id}-{secrets.token_hex(8)}-{flags}",
            trace_state=headers.get("tracestate", "") if caller else "",
            attributes={},
        ),
        retry_context=SimpleNamespace(retry_count=0, max_retry_count=0, exception=None),
    )
