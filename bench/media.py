"""Budget rows for issue 11 (`python -m bench media`): what a diagnosis with media costs.

- `diagnose_overhead`: POST /api/diagnose2 with a 5 MB JPEG and a small WAV, served
  in-process by the local host against a real PostgreSQL and an instant stand-in provider
  (bench/fake_provider.py), against its floor: the same provider calls made with the bare
  `openai` SDK (the transcription of the WAV, the diagnosis with the image's data URL, the
  title), sending the same payloads to the same stand-in. Interleaved: one of each per round.
- `diagnose_memory`: one API process as the Azure worker runs one (bench/turns.py's server,
  the worker's default thread pool) serving MEMORY_REQUESTS turns one after another: each
  turn's peak RSS growth over the body's size, and whether the process stays flat after
  MEMORY_WARMUP turns; with the allocator settings of the Function App
  (infra/modules/functionapp.bicep) and, for comparison, with glibc's defaults.

Every round sends a new image (random bytes): the per-user sha256 dedupe would
otherwise store it once and hide the cost of writing it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.budgets import interleaved

IMAGE_BYTES = 5 * 1024 * 1024
ROUNDS = 15
MEMORY_REQUESTS = 40
MEMORY_WARMUP = 5
QUESTION = "It rattles at idle and the check-engine light is on"
PORT_ENV = "BENCH_PROVIDER_PORT"  # 0: any free port
API_PORT_ENV = "BENCH_API_PORT"


def jpeg() -> bytes:
    """5 MB that sniff as a JPEG, random (so no two are deduplicated)."""
    return b"\xff\xd8\xff\xe0" + os.urandom(IMAGE_BYTES - 4)


def wav() -> bytes:
    """One second of 16 kHz mono silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(16_000)
        recording.writeframes(b"\0\0" * 16_000)
    return out.getvalue()


@contextmanager
def fake_provider() -> Iterator[str]:
    """bench/fake_provider.py answering at once, on a thread; its base URL."""
    from bench.fake_provider import make_app
    from devhost.server import serving

    port = int(os.environ.get(PORT_ENV, "0"))
    with serving(make_app(0), host="127.0.0.1", port=port, threads=4) as server:
        yield f"http://127.0.0.1:{server.effective_port}/v1"


def configure(provider_url: str) -> None:
    """The app's settings for a run of turns by one user: the stand-in provider, caps that
    never refuse."""
    from api import db
    from api.settings import get_settings
    from bench.garage import use_bench_database

    os.environ.update(
        OPENAI_API_KEY="bench-key",
        OPENAI_BASE_URL=provider_url,
        OPENAI_MAX_RETRIES="0",
        DIAGNOSES_PER_DAY="1000000",
        ATTACHMENT_BYTES_PER_DAY=str(10**12),
    )
    use_bench_database()
    get_settings.cache_clear()
    db.dispose_engine()
    db.schema_status()


def diagnose_call(client: Any, token: str) -> Callable[[], float]:
    """POST /api/diagnose2 with a new image (encoding it is not timed)."""

    def send() -> float:
        body = json.dumps(
            {
                "q": QUESTION,
                "images": [base64.b64encode(jpeg()).decode()],
                "audio": base64.b64encode(wav()).decode(),
            }
        ).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        started = time.perf_counter()
        client.post("/diagnose2", content=body, headers=headers).raise_for_status()
        return (time.perf_counter() - started) * 1000

    return send


def sdk_call(provider_url: str) -> Callable[[], float]:
    """The floor: the provider calls a turn makes, with the bare SDK and the same payloads."""
    import openai

    from api.services.ai import _diagnosis_format

    client = openai.OpenAI(api_key="bench-key", base_url=provider_url, max_retries=0)

    def send() -> float:
        data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg()).decode()
        recording = wav()
        started = time.perf_counter()
        client.audio.transcriptions.create(
            model="gpt-4o-mini-transcribe", file=("recording.wav", recording, "audio/wav")
        )
        client.chat.completions.create(
            model="gpt-4o-mini",
            response_format=_diagnosis_format(azure=False),
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": QUESTION},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                }
            ],
        )
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}]
        )
        return (time.perf_counter() - started) * 1000

    return send


def bench_user_token() -> str:
    from sqlalchemy.orm import Session

    from api import db
    from api.services.auth import start_session
    from bench.garage import garage_owner

    with Session(db.get_engine(), expire_on_commit=False) as session:
        token = start_session(session=session, user=garage_owner(session, 0)).access_token
        session.commit()
    return token


def diagnose_overhead() -> dict[str, Any]:
    import httpx

    from bench.reads import local_host

    with fake_provider() as provider_url:
        configure(provider_url)
        transport = httpx.WSGITransport(app=local_host())
        with httpx.Client(transport=transport, base_url="http://bench/api", timeout=60) as client:
            send_ours = diagnose_call(client, bench_user_token())
            send_floor = sdk_call(provider_url)
            send_ours(), send_floor()  # warm up
            samples = interleaved(send_ours, send_floor, ROUNDS)
    return {
        "figure": "diagnose2, 5 MB JPEG + 1 s WAV, instant stand-in provider",
        **samples,
        "unit": "ms",
        "budget": 1.3,
        "floor_name": "the same 3 provider calls (transcription, diagnosis, title) with the "
        "bare openai SDK",
        "note": "in-process (local host over WSGI), PostgreSQL writes included; a new image "
        "every request; not reached: storing 5 MB in PostgreSQL, decoding the upload and "
        "re-faulting the turn's buffers are work the floor never does, on the same 2 cores "
        "(README, Budgets)",
        "statements": None,
        "guarded": False,
    }


@contextmanager
def api_process(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """One API process as the Azure worker runs one (the worker's default thread pool),
    started with `env` on top of this one's; its base URL and pid."""
    from bench import abuse, turns

    port = int(os.environ.get(API_PORT_ENV, "0")) or turns._free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", turns.SERVER, str(port), str(abuse.worker_threads())],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while not turns._healthy(base):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{base} did not become healthy")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


def serve_turns(env: dict[str, str], requests: int = MEMORY_REQUESTS) -> dict[str, Any]:
    """`requests` turns one after another against an API process started with `env`: its
    resident memory after each (MiB), and each one's peak growth over what the process held
    before it (MiB, the high-water mark reset before each, Linux)."""
    import httpx

    resident: list[float] = []
    peaks: list[float] = []
    body = b""
    with fake_provider() as provider_url:
        configure(provider_url)
        token = bench_user_token()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with api_process(env) as (base, pid), httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(requests):
                body = json.dumps(
                    {
                        "q": QUESTION,
                        "images": [base64.b64encode(jpeg()).decode()],
                        "audio": base64.b64encode(wav()).decode(),
                    }
                ).encode()
                with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as refs:
                    refs.write("5")  # reset the high-water mark
                before = _status_kib(pid, "VmRSS:")
                client.post("/diagnose2", content=body, headers=headers).raise_for_status()
                peaks.append((_status_kib(pid, "VmHWM:") - before) / 1024)
                resident.append(_status_kib(pid, "VmRSS:") / 1024)
    return {"resident": resident, "peaks": peaks, "body_mib": len(body) / 1024 / 1024}


def app_settings_malloc() -> dict[str, str]:
    """The glibc allocator settings the Function App runs with (infra/modules/functionapp.bicep)."""
    from pathlib import Path

    bicep = Path(__file__).parent.parent / "infra" / "modules" / "functionapp.bicep"
    pattern = re.compile(r"^\s*(MALLOC_[A-Z_]+): '([^']*)'", re.MULTILINE)
    return dict(pattern.findall(bicep.read_text(encoding="utf-8")))


def diagnose_memory() -> list[dict[str, Any]]:
    settings = app_settings_malloc()
    runs = {"with": serve_turns(settings), "without": serve_turns({})}
    body_mib = runs["with"]["body_mib"]
    peaks = [peak / body_mib for peak in runs["with"]["peaks"][MEMORY_WARMUP:]]
    plain_peaks = [peak / body_mib for peak in runs["without"]["peaks"][MEMORY_WARMUP:]]
    after = runs["with"]["resident"][MEMORY_WARMUP:]
    plain = runs["without"]["resident"]
    named = ", ".join(f"{k}={v}" for k, v in settings.items()) or "no allocator settings"
    return [
        {
            "figure": "diagnose2 peak RSS growth per request / body size",
            "ours": peaks,
            "floor": [1.0] * len(peaks),
            "unit": "x",
            "budget": 3.0,
            "floor_name": f"the body ({body_mib:.1f} MiB)",
            "note": f"{named}; glibc defaults: {statistics.median(plain_peaks):.1f}x",
            "statements": None,
        },
        {
            "figure": f"API process RSS over {MEMORY_REQUESTS} sequential diagnose2",
            "ours": after,
            "floor": [after[0]] * len(after),
            "unit": "MiB",
            "budget": 1.1,
            "floor_name": f"its RSS after {MEMORY_WARMUP} warm-up requests (flat: 1.0)",
            "note": f"{named}: {runs['with']['resident'][0]:.0f} -> {after[0]:.0f} -> "
            f"{after[-1]:.0f} MiB; glibc defaults: {plain[0]:.0f} -> "
            f"{plain[MEMORY_WARMUP]:.0f} -> {plain[-1]:.0f} MiB",
            "statements": None,
        },
    ]
