"""The AI provider behind the official `openai` SDK: OpenAI (or any compatible endpoint via
OPENAI_BASE_URL), or Azure OpenAI when AZURE_OPENAI_ENDPOINT is set.

Upstream failures become domain errors with no upstream text in them: a timeout is 504;
rate limiting, 5xx, connection errors and any other refusal are 502 (after
OPENAI_MAX_RETRIES retries). A reply that does not fit the diagnosis schema is asked for
once more, then 502.

Every call spends the turn's `Deadline` (DIAGNOSE_DEADLINE_S) and records the tokens each
reply was billed (`openai_tokens`): see `_call`. Text the provider returns is cleaned of NUL before
anyone stores it (PostgreSQL refuses it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import ValidationError

from api.errors import ServiceUnavailableError, UpstreamError, UpstreamTimeoutError
from api.schemas.common import without_nul
from api.schemas.diagnose import MAX_TITLE_CHARS, Diagnosis
from api.settings import get_settings
from api.utils import metrics
from api.utils.deadline import Deadline
from api.utils.media import Media

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionContentPartParam
    from openai.types.chat import ChatCompletionMessageParam as ChatTurn
    from openai.types.shared_params import ResponseFormatJSONSchema

log = logging.getLogger(__name__)

T = TypeVar("T")

DIAGNOSIS_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "diagnosis", "strict": True, "schema": Diagnosis.model_json_schema()},
}
SCHEMA_ATTEMPTS = 2  # the first reply, and one retry when it does not fit the schema
TITLE_MAX_TOKENS = 20
MIN_CALL_S = 1.0  # no provider call can answer in less: fail now rather than start one
TITLE_MIN_S = 5.0  # the title is a nicety: with less left, the fallback title is used
RETRY_BACKOFF_S = 0.5  # the pause before the first retry, doubled for each further one
# Token counts as chat completions name them, then as transcriptions do.
PROMPT_TOKEN_FIELDS = ("prompt_tokens", "input_tokens")
COMPLETION_TOKEN_FIELDS = ("completion_tokens", "output_tokens")
# How each call is named in messages to clients and in the log.
CALL_LABELS: dict[metrics.ProviderCall, str] = {
    "diagnosis": "diagnosis",
    "title": "title",
    "transcription": "transcription",
    "sound": "sound analysis",
}
# What chat models accept.
INPUT_AUDIO_FORMATS: dict[str, Literal["wav", "mp3"]] = {"audio/wav": "wav", "audio/mpeg": "mp3"}
SOUND_PROMPT = (
    "This is a recording from a vehicle. Describe the sounds you hear that matter for "
    "diagnosing a fault (knocks, squeals, misfires, hisses, rattles; when they occur), "
    "in at most 5 sentences. Do not diagnose."
)


@dataclass(frozen=True)
class Provider:
    """The connection settings; equal settings share one SDK client (and its pool)."""

    api_key: str
    base_url: str
    azure_endpoint: str
    azure_api_version: str
    timeout_s: float
    max_retries: int


@dataclass(frozen=True)
class Completion:
    diagnosis: Diagnosis
    model: str
    prompt_tokens: int
    completion_tokens: int


def _provider() -> tuple[Provider, str]:
    """The configured provider and the chat model (or Azure deployment) name."""
    settings = get_settings()
    if settings.azure_openai_endpoint:
        if not (settings.azure_openai_api_key and settings.azure_openai_deployment):
            raise _not_configured()
        provider = Provider(
            api_key=settings.azure_openai_api_key,
            base_url="",
            azure_endpoint=settings.azure_openai_endpoint,
            azure_api_version=settings.azure_openai_api_version,
            timeout_s=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )
        return provider, chat_model()
    if not settings.openai_api_key:
        raise _not_configured()
    provider = Provider(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        azure_endpoint="",
        azure_api_version="",
        timeout_s=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,
    )
    return provider, chat_model()


def chat_model() -> str:
    """The diagnosis and title model (the Azure deployment with Azure OpenAI), as configured."""
    settings = get_settings()
    if settings.azure_openai_endpoint:
        return settings.azure_openai_deployment
    return settings.openai_model


def _not_configured() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "AI diagnosis is not configured on this server", code="ai_not_configured"
    )


def ensure_configured() -> None:
    """Refuse early (503) so nothing is validated or stored for a request we cannot serve."""
    _provider()


@lru_cache(maxsize=4)
def _client(provider: Provider) -> OpenAI:
    import openai

    if provider.azure_endpoint:
        return openai.AzureOpenAI(
            azure_endpoint=provider.azure_endpoint,
            api_key=provider.api_key,
            api_version=provider.azure_api_version,
            timeout=provider.timeout_s,
            max_retries=provider.max_retries,
        )
    return openai.OpenAI(
        api_key=provider.api_key,
        base_url=provider.base_url or None,
        timeout=provider.timeout_s,
        max_retries=provider.max_retries,
    )


@contextmanager
def _upstream(action: str) -> Iterator[None]:
    """Translate SDK errors; the upstream's own text is logged, never shown."""
    import openai

    try:
        yield
    except openai.APITimeoutError:
        log.warning("AI provider timed out (%s)", action)
        raise UpstreamTimeoutError(
            f"The AI provider did not answer in time ({action}); please try again"
        ) from None
    except openai.RateLimitError:
        log.warning("AI provider rate limited us (%s)", action)
        raise UpstreamError(
            f"The AI provider is busy ({action}); please try again shortly",
            code="upstream_rate_limited",
        ) from None
    except openai.OpenAIError as exc:
        log.warning("AI provider failed (%s): %s", action, type(exc).__name__)
        raise UpstreamError(f"The AI provider failed ({action}); please try again") from None


def _call(
    call: metrics.ProviderCall,
    deadline: Deadline,
    request: Callable[[OpenAI, str], T],
    *,
    model: str | None = None,
    max_retries: int | None = None,
) -> T:
    """One provider request for `model` (default: the chat model), within the turn's
    deadline; the tokens of each reply are recorded as `openai_tokens`. Each attempt may take
    OPENAI_TIMEOUT_S or the time left, whichever is less, and none starts with less than
    MIN_CALL_S left (504). Retries (OPENAI_MAX_RETRIES, of 429 / 5xx / connection errors /
    timeouts) are made here, not by the SDK, which would sleep as long as a provider's
    Retry-After asks (up to two minutes) past any budget: ours wait what the provider asks
    (at least a short, doubling backoff), and only when that wait and another attempt still
    fit; otherwise the failure is reported at once."""
    import openai

    action = CALL_LABELS[call]
    provider, chat_model = _provider()
    model = model or chat_model
    retries = provider.max_retries if max_retries is None else max_retries
    retryable = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
    attempt = 0
    with _upstream(action):
        while True:
            timeout = min(provider.timeout_s, _time_left(deadline, action))
            client = _client(provider).with_options(timeout=timeout, max_retries=0)
            try:
                response = request(client, model)
            except retryable as error:
                pause = max(RETRY_BACKOFF_S * 2**attempt, _retry_after_s(error))
                if attempt >= retries or deadline.remaining() < pause + MIN_CALL_S:
                    raise
            else:
                _record_tokens(response, call=call, model=model)
                return response
            time.sleep(pause)
            attempt += 1


def _record_tokens(response: Any, *, call: metrics.ProviderCall, model: str) -> None:
    """Chat replies report prompt/completion tokens, transcriptions input/output tokens (or
    only seconds of audio, which are not tokens: such a reply is recorded without counts)."""
    usage = getattr(response, "usage", None)
    metrics.provider_reply(
        model=without_nul(getattr(response, "model", None) or model),
        call=call,
        prompt_tokens=_first_int(usage, PROMPT_TOKEN_FIELDS),
        completion_tokens=_first_int(usage, COMPLETION_TOKEN_FIELDS),
    )


def _first_int(usage: Any, names: tuple[str, ...]) -> int | None:
    values = (getattr(usage, name, None) for name in names)
    return next((value for value in values if isinstance(value, int)), None)


def _retry_after_s(error: Exception) -> float:
    """How long the provider asked us to wait (`retry-after-ms`, else `retry-after` in
    seconds); 0 when it did not say."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers[name]) * scale
        except (KeyError, ValueError):
            continue
    return 0.0


def _time_left(deadline: Deadline, action: str) -> float:
    left = deadline.remaining()
    if left < MIN_CALL_S:
        log.warning("Diagnosis out of time before the %s call", action)
        raise UpstreamTimeoutError(f"The diagnosis ran out of time ({action}); please try again")
    return left


def diagnose(messages: list[ChatTurn], deadline: Deadline) -> Completion:
    """The structured diagnosis for `messages`; one retry when the reply breaks the schema."""
    prompt_tokens = completion_tokens = 0
    for _ in range(SCHEMA_ATTEMPTS):
        response = _call(
            "diagnosis",
            deadline,
            lambda client, model: client.chat.completions.create(
                model=model, messages=messages, response_format=DIAGNOSIS_FORMAT
            ),
        )
        if response.usage is not None:
            prompt_tokens += response.usage.prompt_tokens
            completion_tokens += response.usage.completion_tokens
        try:
            diagnosis = Diagnosis.model_validate_json(response.choices[0].message.content or "")
        except (ValidationError, IndexError):
            log.warning("AI reply did not match the diagnosis schema")
            continue
        return Completion(diagnosis, without_nul(response.model), prompt_tokens, completion_tokens)
    raise UpstreamError(
        "The AI provider's answer was not a valid diagnosis; please try again",
        code="upstream_invalid_reply",
    )


def transcribe(audio: Media, deadline: Deadline) -> str:
    extension = audio.mime_type.split("/")[1].replace("mpeg", "mp3").replace("mp4", "m4a")
    transcription = _call(
        "transcription",
        deadline,
        lambda client, model: client.audio.transcriptions.create(
            model=model, file=(f"recording.{extension}", audio.data, audio.mime_type)
        ),
        model=get_settings().openai_transcribe_model,
    )
    return without_nul(transcription.text).strip()


def analyse_sound(audio: Media, deadline: Deadline) -> str | None:
    """What an audio-capable chat model hears in a WAV/MP3 recording, when one is set.

    Only OPENAI_AUDIO_MODEL ever receives `input_audio`; other formats are skipped."""
    model = get_settings().openai_audio_model
    audio_format = INPUT_AUDIO_FORMATS.get(audio.mime_type)
    if not model or audio_format is None:
        return None
    content: list[ChatCompletionContentPartParam] = [
        {"type": "text", "text": SOUND_PROMPT},
        {"type": "input_audio", "input_audio": {"data": audio.base64, "format": audio_format}},
    ]
    response = _call(
        "sound",
        deadline,
        lambda client, model: client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}]
        ),
        model=model,
    )
    return _reply_text(response) or None


def title_for(messages: list[ChatTurn], deadline: Deadline) -> str | None:
    """A short title from a cheap call; None when the provider cannot make one, or when less
    than TITLE_MIN_S is left. No retries: the diagnosis is already paid for and a fallback
    title exists, so the turn should not wait on a struggling provider for a nicety."""
    if deadline.remaining() < TITLE_MIN_S:
        return None
    try:
        response = _call(
            "title",
            deadline,
            lambda client, model: client.chat.completions.create(
                model=model, messages=messages, max_completion_tokens=TITLE_MAX_TOKENS
            ),
            max_retries=0,
        )
    except (UpstreamError, UpstreamTimeoutError):
        return None
    title = _reply_text(response).strip("\"'").strip()
    return title[:MAX_TITLE_CHARS] or None


def _reply_text(response: Any) -> str:
    """The first choice's text; "" when there is none (a filtered or empty reply)."""
    if not response.choices:
        return ""
    return without_nul(response.choices[0].message.content or "").strip()
