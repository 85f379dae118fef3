"""Logging set-up: every record carries the current invocation's request id."""

import logging
from typing import Any

from api.utils.http import current_request_id

_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = current_request_id.get()
    return record


def configure_logging() -> None:
    """Attach the request id to every record; in Azure the worker owns handlers and levels."""
    logging.setLogRecordFactory(_record_with_request_id)
    logging.getLogger("api").setLevel(logging.INFO)
