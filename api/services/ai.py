"""The AI provider behind the official `openai` SDK: OpenAI (or any compatible endpoint via
OPENAI_BASE_URL), or Azure OpenAI when AZURE_OPENAI_ENDPOINT is set.

Upstream failures become domain errors with no upstream text in them: a timeout is 504;
a 400 / 422 that blames what the user sent (REJECTED_INPUTS) is 422
`upstream_rejected_input`; rate limiting, 5xx, connection errors and any other refusal are
502 (after OPENAI_MAX_RETRIES retries; a 400 / 422 of ours is logged as an error).

A 200 is not trusted either: every reply is read raw and must be a usable one — a JSON body
(by its Content-Type) of the expected shape with correctly typed fields, usage included for
chat completions (`ChatReply`, `TranscriptionReply`). One that is not — HTML from a proxy, a
JSON array, a completion without `model`, usage as strings — is asked for once more, then
answered 502 `upstream_invalid_reply`; so is a diagnosis that breaks its schema. Nothing is
stored for such a turn.

Every call spends the turn's `Deadline` (DIAGNOSE_DEADLINE_S) and records the tokens each
reply was billed (`openai_tokens`): see `_call`. Text the provider returns goes through
`safe_text` (lone surrogates replaced, controls but line breaks and tabs dropped) and is
capped field by field before anyone stores or shows it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.errors import (
    AppError,
    RejectedInputError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from api.schemas.diagnose import MAX_TITLE_CHARS, Diagnosis
from api.settings import get_settings
from api.utils import metrics
from api.utils.deadline import Deadline
from api.utils.media import Media
from api.utils.text import safe_text

if TYPE_CHECKING:
    from openai import APIStatusError, OpenAI
    from openai._legacy_response import LegacyAPIResponse
    from openai.types.chat import ChatCompletionContentPartParam
    from openai.types.chat import ChatCompletionMessageParam as ChatTurn
    from openai.types.shared_params import ResponseFormatJSONSchema

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLY_ATTEMPTS = 2  # the first reply, and one retry when it is unusable
TITLE_MAX_TOKENS = 20
MAX_TRANSCRIPT_CHARS = 20_000  # a 25 MB recording is about half an hour of speech
MAX_SOUND_ANALYSIS_CHARS = 2_000
MAX_MODEL_NAME_CHARS = 100
MIN_CALL_S = 1.0  # no provider call can answer in less: fail now rather than start one
TITLE_MIN_S = 5.0  # the title is a nicety: with less left, the fallback title is used
RETRY_BACKOFF_S = 0.5  # the pause before the first retry, doubled for each further one
# How each call is named in messages to clients and in the log.
CALL_LABELS: dict[metrics.ProviderCall, str] = {
    "diagnosis": "diagnosis",
    "title": "title",
    "transcription": "transcription",
    "sound": "sound analysis",
}
# Error codes with which the provider (OpenAI, Azure OpenAI) answers 400 / 422 to what the
# user sent, and which input each blames. Any other 400 / 422 is ours (a schema or a
# parameter it refuses): 502, logged as an error.
REJECTED_INPUTS: dict[str, Literal["images", "content"]] = {
    "invalid_image": "images",
    "invalid_image_format": "images",
    "invalid_image_url": "images",
    "image_parse_error": "images",
    "image_too_large": "images",
    "content_policy_violation": "content",
    "content_filter": "content",  # Azure OpenAI's content filtering
}
# Calls whose only input from the user is the recording: a 400 / 422 naming no parameter
# (Whisper's "Invalid file format" names none) or naming the recording is about it; one
# naming another parameter (the model, response_format, ...) is about our request.
RECORDING_CALLS: frozenset[metrics.ProviderCall] = frozenset({"transcription", "sound"})
RECORDING_PARAMS = ("file", "input_audio")
REJECTED_DETAILS = {
    "images": "The AI provider could not read an image you sent; send it as a JPEG or PNG",
    "audio": "The AI provider could not use the recording you sent; send another (WAV, MP3 or M4A)",
    "content": "The AI provider refused this message under its content policy; rephrase it "
    "or send other media",
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


# --- what a usable reply is ----------------------------------------------------------------


class _Reply(BaseModel):
    """Strict: a number sent as a string, or a null where a value belongs, is unusable."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)


# A token count we can believe and store: not negative, and within a PostgreSQL integer
# (far above any real request: context windows hold about a million tokens). A reply
# outside it is unusable (502 after one retry) rather than clamped: a made-up count would
# be stored and reported as what the turn cost.
TokenCount = Annotated[int, Field(ge=0, le=2**31 - 1)]


class _ChatUsage(_Reply):
    prompt_tokens: TokenCount
    completion_tokens: TokenCount


class _ChatMessage(_Reply):
    content: str | None = None  # None: a refusal or a filtered answer, no text


class _ChatChoice(_Reply):
    message: _ChatMessage


class ChatReply(_Reply):
    """A chat completion we can use: who answered, its text and what it cost."""

    model: str
    choices: list[_ChatChoice]
    usage: _ChatUsage

    @property
    def text(self) -> str:
        """The first choice's text, made safe; "" when there is none."""
        content = self.choices[0].message.content if self.choices else None
        return safe_text(content or "").strip()

    @property
    def tokens(self) -> tuple[int, int]:
        return self.usage.prompt_tokens, self.usage.completion_tokens


class _TranscriptionUsage(_Reply):
    """Token usage (gpt-4o-*-transcribe), or seconds of audio (whisper), which are not
    tokens and are not recorded."""

    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None


class TranscriptionReply(_Reply):
    text: str
    usage: _TranscriptionUsage | None = None

    @property
    def tokens(self) -> tuple[int | None, int | None]:
        usage = self.usage or _TranscriptionUsage()
        return usage.input_tokens, usage.output_tokens


ReplyT = TypeVar("ReplyT", ChatReply, TranscriptionReply)


class UnusableReplyError(Exception):
    """A 200 from the provider that cannot become a usable reply (never shown to clients)."""


def _read(raw: LegacyAPIResponse[Any], shape: type[ReplyT], action: str) -> ReplyT:
    """The reply as `shape`, or UnusableReplyError: not JSON by its Content-Type, not
    JSON at all, or not of the expected shape and types."""
    content_type = raw.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (content_type == "application/json" or content_type.endswith("+json")):
        log.warning("AI provider answered %s with %r, not JSON", action, content_type[:100])
        raise UnusableReplyError(action)
    try:
        # json.loads, not pydantic's parser: it keeps a lone surrogate escape (`\udc00`) as
        # text for safe_text to replace, where pydantic's would refuse the whole reply.
        reply: ReplyT = shape.model_validate(_json(raw.content))
    except ValidationError as error:
        problems = ", ".join(f"{e['type']} at {e['loc']}" for e in error.errors()[:5])
        log.warning("AI provider's %s reply is unusable: %s", action, problems)
        raise UnusableReplyError(action) from None
    return reply


def _json(text: str | bytes) -> Any:
    """Parsed JSON, or UnusableReplyError."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise UnusableReplyError("not JSON") from None


def _usable(action: str, call: Callable[[], T]) -> T:
    """`call` (one provider request and the reading of its reply), retried once when the
    reply is unusable; then 502 upstream_invalid_reply."""
    for _ in range(REPLY_ATTEMPTS):
        try:
            return call()
        except UnusableReplyError:
            continue
    raise UpstreamError(
        f"The AI provider's answer could not be used ({action}); please try again",
        code="upstream_invalid_reply",
    )


# The JSON Schema keywords each provider's strict structured output accepts; anything else
# (pydantic's `title` and `default`, maxLength, ...) can make the provider refuse the whole
# request (400), so only these are sent. The structure every schema needs:
_STRICT_STRUCTURE = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "anyOf"}
    | {"$ref", "$defs", "description"}
)
# OpenAI's Structured Outputs guide ("Supported schemas"): for strings pattern and format,
# for numbers multipleOf, maximum, exclusiveMaximum, minimum, exclusiveMinimum, for arrays
# minItems and maxItems — not minLength / maxLength. Azure OpenAI's ("Unsupported
# type-specific keywords") refuses all of those, so it gets the structure only.
STRICT_KEYWORDS = {
    "openai": _STRICT_STRUCTURE
    | {"pattern", "format", "multipleOf", "maximum", "exclusiveMaximum", "minimum"}
    | {"exclusiveMinimum", "minItems", "maxItems"},
    "azure": _STRICT_STRUCTURE,
}
# Keywords whose value maps names (of properties, of definitions) to schemas.
_SCHEMA_MAPS = frozenset({"properties", "$defs"})


def _diagnosis_format(*, azure: bool) -> ResponseFormatJSONSchema:
    """The diagnosis schema the model must answer in (strict structured output), in the
    keywords the provider documents (STRICT_KEYWORDS). The caps a provider cannot be told
    as keywords (maxLength everywhere, maxItems on Azure) still reach the model in the
    descriptions every capped field carries ("At most 200 characters"), and are enforced
    on the reply whatever the model does (`Cap` cuts a longer value)."""
    keywords = STRICT_KEYWORDS["azure" if azure else "openai"]
    schema = _strict_schema(Diagnosis.model_json_schema(), keywords)
    return {
        "type": "json_schema",
        "json_schema": {"name": "diagnosis", "strict": True, "schema": schema},
    }


def _strict_schema(schema: dict[str, Any], keywords: frozenset[str]) -> dict[str, Any]:
    """`schema` with only `keywords`, at every level (names of properties are kept)."""
    kept: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword not in keywords:
            continue
        if keyword in _SCHEMA_MAPS:
            value = {name: _strict_schema(sub, keywords) for name, sub in value.items()}
        elif keyword == "items":
            value = _strict_schema(value, keywords)
        elif keyword == "anyOf":
            value = [_strict_schema(sub, keywords) for sub in value]
        kept[keyword] = value
    return kept


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
    from openai._constants import DEFAULT_CONNECTION_LIMITS

    from api.utils.deadline_transport import DeadlineTransport

    # Each call's socket operations end by the turn's deadline (see `_call`).
    http_client = openai.DefaultHttpxClient(
        transport=DeadlineTransport(limits=DEFAULT_CONNECTION_LIMITS)
    )
    if provider.azure_endpoint:
        return openai.AzureOpenAI(
            azure_endpoint=provider.azure_endpoint,
            api_key=provider.api_key,
            api_version=provider.azure_api_version,
            timeout=provider.timeout_s,
            max_retries=provider.max_retries,
            http_client=http_client,
        )
    return openai.OpenAI(
        api_key=provider.api_key,
        base_url=provider.base_url or None,
        timeout=provider.timeout_s,
        max_retries=provider.max_retries,
        http_client=http_client,
    )


@contextmanager
def _upstream(call: metrics.ProviderCall) -> Iterator[None]:
    """Translate SDK errors; the upstream's own text is logged, never shown."""
    import openai

    action = CALL_LABELS[call]
    try:
        yield
    except (openai.BadRequestError, openai.UnprocessableEntityError) as refused:
        raise _refusal(call, refused) from None
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


def _refusal(call: metrics.ProviderCall, refused: APIStatusError) -> AppError:
    """A 400 / 422: 422 `upstream_rejected_input` naming the user's input it blames (see
    REJECTED_INPUTS), else our own request's fault — 502, logged as an error."""
    rejected = (
        "audio"
        if call in RECORDING_CALLS and _names_the_recording(refused.param)
        else REJECTED_INPUTS.get(refused.code or "")
    )
    if rejected is not None:
        log.warning("AI provider refused the user's %s (%s): %s", rejected, call, refused.code)
        return RejectedInputError(REJECTED_DETAILS[rejected], extra={"rejected": rejected})
    log.error(
        "AI provider refused our %s request: %s %s (param %s)",
        CALL_LABELS[call],
        refused.status_code,
        refused.code,
        refused.param,
    )
    return UpstreamError(f"The AI provider failed ({CALL_LABELS[call]}); please try again")


def _names_the_recording(param: str | None) -> bool:
    """Whether a refusal's `param` leaves the recording as the one thing it can be about."""
    return param is None or any(name in param for name in RECORDING_PARAMS)


def _call(
    call: metrics.ProviderCall,
    deadline: Deadline,
    request: Callable[[OpenAI, str], LegacyAPIResponse[Any]],
    shape: type[ReplyT],
    *,
    model: str | None = None,
    max_retries: int | None = None,
) -> ReplyT:
    """One provider request for `model` (default: the chat model), within the turn's deadline,
    its raw reply read as `shape` (UnusableReplyError when it cannot be); the tokens of each
    usable reply are recorded as `openai_tokens`. Each attempt may wait OPENAI_TIMEOUT_S or
    the time left, whichever is less, for any one read, none starts with less than
    MIN_CALL_S left, and none outlasts the deadline however slowly its bytes arrive
    (`bounded_by`): 504. Retries (OPENAI_MAX_RETRIES, of 429 / 5xx / connection errors /
    timeouts) are made here, not by the SDK, which would sleep as long as a provider's
    Retry-After asks (up to two minutes) past any budget: ours wait what the provider asks
    (at least a short, doubling backoff), and only when that wait and another attempt still
    fit; otherwise the failure is reported at once."""
    import openai

    from api.utils.deadline_transport import bounded_by

    action = CALL_LABELS[call]
    provider, chat_model = _provider()
    model = model or chat_model
    retries = provider.max_retries if max_retries is None else max_retries
    retryable = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
    attempt = 0
    with _upstream(call):
        while True:
            timeout = min(provider.timeout_s, _time_left(deadline, action))
            client = _client(provider).with_options(timeout=timeout, max_retries=0)
            try:
                with bounded_by(deadline):  # however slowly its bytes arrive
                    raw = request(client, model)
            except retryable as error:
                pause = max(RETRY_BACKOFF_S * 2**attempt, _retry_after_s(error))
                if attempt >= retries or deadline.remaining() < pause + MIN_CALL_S:
                    raise
            else:
                reply = _read(raw, shape, action)
                answered_by = reply.model if isinstance(reply, ChatReply) else model
                prompt_tokens, completion_tokens = reply.tokens
                metrics.provider_reply(
                    model=_model_name(answered_by),
                    call=call,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                )
                return reply
            time.sleep(pause)
            attempt += 1


def _model_name(name: str) -> str:
    return safe_text(name, MAX_MODEL_NAME_CHARS)


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
    """The structured diagnosis for `messages`; one retry when the reply is unusable or
    breaks the schema (the tokens of both are counted: both were billed)."""
    provider, _ = _provider()
    response_format = _diagnosis_format(azure=bool(provider.azure_endpoint))
    billed = [0, 0]

    def attempt() -> tuple[ChatReply, Diagnosis]:
        reply = _call(
            "diagnosis",
            deadline,
            lambda client, model: client.chat.completions.with_raw_response.create(
                model=model, messages=messages, response_format=response_format
            ),
            ChatReply,
        )
        billed[0] += reply.usage.prompt_tokens
        billed[1] += reply.usage.completion_tokens
        try:
            content = reply.choices[0].message.content or ""
            return reply, Diagnosis.model_validate(_json(content))
        except (ValidationError, IndexError, UnusableReplyError):
            log.warning("AI reply did not match the diagnosis schema")
            raise UnusableReplyError("diagnosis") from None

    reply, diagnosis = _usable("diagnosis", attempt)
    return Completion(diagnosis, _model_name(reply.model), billed[0], billed[1])


def transcribe(audio: Media, deadline: Deadline) -> str:
    extension = audio.mime_type.split("/")[1].replace("mpeg", "mp3").replace("mp4", "m4a")
    transcription = _usable(
        "transcription",
        lambda: _call(
            "transcription",
            deadline,
            lambda client, model: client.audio.transcriptions.with_raw_response.create(
                model=model, file=(f"recording.{extension}", audio.data, audio.mime_type)
            ),
            TranscriptionReply,
            model=get_settings().openai_transcribe_model,
        ),
    )
    return safe_text(transcription.text.strip(), MAX_TRANSCRIPT_CHARS)


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
    reply = _usable(
        "sound analysis",
        lambda: _call(
            "sound",
            deadline,
            lambda client, model: client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": content}]
            ),
            ChatReply,
            model=model,
        ),
    )
    return safe_text(reply.text, MAX_SOUND_ANALYSIS_CHARS) or None


def title_for(messages: list[ChatTurn], deadline: Deadline) -> str | None:
    """A short title from a cheap call; None when the provider cannot make one (fails, or
    answers something unusable), or when less than TITLE_MIN_S is left. No retries: the
    diagnosis is already paid for and a fallback title exists, so the turn should not wait
    on a struggling provider for a nicety."""
    if deadline.remaining() < TITLE_MIN_S:
        return None
    try:
        reply = _call(
            "title",
            deadline,
            lambda client, model: client.chat.completions.with_raw_response.create(
                model=model, messages=messages, max_completion_tokens=TITLE_MAX_TOKENS
            ),
            ChatReply,
            max_retries=0,
        )
    except (UpstreamError, UpstreamTimeoutError, UnusableReplyError, RejectedInputError):
        return None
    title = " ".join(reply.text.strip("\"'").split())  # one line
    return safe_text(title, MAX_TITLE_CHARS) or None
