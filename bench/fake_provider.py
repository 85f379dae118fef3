"""A stand-in OpenAI-compatible provider for `make load`: `python -m bench.fake_provider
--port N [--delay S]`. Diagnosis calls (those asking for the `diagnosis` schema) get a valid
diagnosis, other chat calls a title, transcriptions a transcript; each after `delay` seconds,
as a real model takes its time. Never used by the tests (they have tests/fake_openai.py)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

DIAGNOSIS = {
    "summary": "The catalytic converter is likely failing.",
    "severity": "medium",
    "safe_to_drive": "yes",
    "likely_causes": [
        {"cause": "Worn catalytic converter", "likelihood": "high", "how_to_check": "O2 sensors"}
    ],
    "next_steps": ["Check for exhaust leaks"],
    "follow_up_questions": ["Is the check-engine light flashing?"],
    "dtc": [{"code": "P0420", "meaning": "Catalyst efficiency below threshold"}],
}
USAGE = {"prompt_tokens": 321, "completion_tokens": 54, "total_tokens": 375}


def completion(content: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-load",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def make_app(delay_s: float) -> Any:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        path = environ.get("PATH_INFO", "")
        time.sleep(delay_s)
        if path.endswith("/audio/transcriptions"):
            reply: dict[str, Any] = {"text": "It rattles at idle."}
        elif path.endswith("/chat/completions"):
            request = json.loads(body)
            content = json.dumps(DIAGNOSIS) if "response_format" in request else "Catalyst warning"
            reply = completion(content, request.get("model", "gpt-4o-mini"))
        else:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": {"message": "no such route"}}']
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(reply).encode()]

    return app


def main() -> None:
    import waitress

    parser = argparse.ArgumentParser(prog="python -m bench.fake_provider")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds per answer")
    args = parser.parse_args()
    waitress.serve(make_app(args.delay), host="127.0.0.1", port=args.port, threads=32)


if __name__ == "__main__":
    main()
