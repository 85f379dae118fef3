"""A local OpenAI-compatible server (pytest-httpserver) for the real `openai` SDK to talk to.

Diagnosis calls (those asking for the `diagnosis` JSON schema) are answered from a queue of
scripted replies (a valid diagnosis when the queue is empty); title calls get `title`;
transcriptions get `transcript` (each a text, or a whole scripted `Response`; transcriptions
take a queue of them too). Every request is kept as it arrives (before any scripted
delay), to assert what crossed the wire, with the timeout the SDK gave it (the SDK sends it
in a header). `meanwhile`, when set, runs while a diagnosis call is being answered: what a
test looks at or does while the provider works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

DIAGNOSIS = {
    "summary": "The catalytic converter is likely failing.",
    "severity": "medium",
    "safe_to_drive": "yes",
    "likely_causes": [
        {
            "cause": "Worn catalytic converter",
            "likelihood": "high",
            "how_to_check": "Compare upstream and downstream O2 sensor readings",
        }
    ],
    "next_steps": ["Check for exhaust leaks"],
    "follow_up_questions": ["Is the check-engine light flashing?"],
    "dtc": [{"code": "P0420", "meaning": "Catalyst efficiency below threshold"}],
}


def completion(content: str, *, model: str = "gpt-4o-mini-2024-07-18") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 321, "completion_tokens": 54, "total_tokens": 375},
    }


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def error_response(status: int) -> Response:
    return json_response(
        {"error": {"message": f"upstream secret detail {status}", "type": "server_error"}},
        status,
    )


@dataclass(frozen=True)
class Slow:
    """A scripted diagnosis reply sent only after `seconds` (a timeout, if the client gives
    up first)."""

    seconds: float
    reply: Any = field(default_factory=lambda: DIAGNOSIS)


def trickled(body: Any, *, pause_s: float, chunk_bytes: int = 16) -> Response:
    """A JSON reply sent `chunk_bytes` at a time, `pause_s` before each chunk: every read
    waits less than any timeout, the whole takes as long as the stand-in likes."""
    data = json.dumps(body).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), chunk_bytes):
            time.sleep(pause_s)
            yield data[start : start + chunk_bytes]

    return Response(chunks(), status=200, content_type="application/json")


@dataclass(frozen=True)
class Transcription:
    form: dict[str, str]
    filename: str | None
    mimetype: str
    data: bytes


@dataclass
class FakeOpenAI:
    server: HTTPServer
    replies: list[Any] = field(default_factory=list)  # dict | str | Response | Slow
    title: str | Response = "Catalyst warning on the motorway"
    transcript: str | list[str | Response] = (
        "It rattles when I accelerate past 3000 rpm, code P0301 came up."
    )
    sound: str = "A metallic rattle rising with engine speed."
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)
    chat_timeouts: list[float] = field(default_factory=list)
    transcriptions: list[Transcription] = field(default_factory=list)
    meanwhile: Callable[[], object] | None = None

    def __post_init__(self) -> None:
        self.server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(
            self.chat
        )
        self.server.expect_request("/v1/audio/transcriptions", method="POST").respond_with_handler(
            self._transcribe
        )

    def _transcribe(self, request: Request) -> Response:
        upload = request.files["file"]
        self.transcriptions.append(
            Transcription(dict(request.form), upload.filename, upload.mimetype, upload.read())
        )
        reply = self.transcript.pop(0) if isinstance(self.transcript, list) else self.transcript
        if isinstance(reply, Response):
            return reply
        usage = {"type": "tokens", "input_tokens": 80, "output_tokens": 12, "total_tokens": 92}
        return json_response({"text": reply, "usage": usage})

    def chat(self, request: Request) -> Response:
        body = request.get_json()
        self.chat_bodies.append(body)
        self.chat_timeouts.append(float(request.headers["x-stainless-read-timeout"]))
        if "response_format" not in body:
            if body["model"] != "gpt-4o-mini":
                return json_response(completion(self.sound, model=body["model"]))
            if isinstance(self.title, Response):
                return self.title
            return json_response(completion(self.title))
        if self.meanwhile is not None:
            self.meanwhile()
        reply = self.replies.pop(0) if self.replies else DIAGNOSIS
        if isinstance(reply, Slow):
            time.sleep(reply.seconds)
            reply = reply.reply
        if isinstance(reply, Response):
            return reply
        content = reply if isinstance(reply, str) else json.dumps(reply)
        return json_response(completion(content))

    @property
    def diagnosis_bodies(self) -> list[dict[str, Any]]:
        return [body for body in self.chat_bodies if "response_format" in body]

    @property
    def untouched(self) -> bool:
        return not (self.chat_bodies or self.transcriptions)


# The JSON Schema keywords strict structured output takes, as each provider documents them:
# OpenAI's Structured Outputs guide ("Supported schemas", "Supported properties") and Azure
# OpenAI's ("Unsupported type-specific keywords" leaves it the structure alone).
STRICT_STRUCTURE = {
    *("type", "properties", "required", "additionalProperties", "items", "enum", "anyOf"),
    *("$ref", "$defs", "description"),
}
OPENAI_STRICT_KEYWORDS = STRICT_STRUCTURE | {
    *("pattern", "format", "multipleOf", "maximum", "exclusiveMaximum", "minimum"),
    *("exclusiveMinimum", "minItems", "maxItems"),
}


def schema_keywords(schema: dict[str, Any]) -> set[str]:
    """Every keyword `schema` uses, at any depth (names of properties and definitions are
    not keywords)."""
    used = set(schema)
    for keyword, value in schema.items():
        if keyword in ("properties", "$defs"):
            subschemas = list(value.values())
        elif keyword == "items":
            subschemas = [value]
        elif keyword == "anyOf":
            subschemas = value
        else:
            subschemas = []
        for subschema in subschemas:
            used |= schema_keywords(subschema)
    return used
