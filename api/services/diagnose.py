"""One diagnosis turn, shared by `diagnose2` and the legacy `Diagnose`.

Order of work: check the provider is configured, validate the media, check ownership
(conversation, vehicle) and the caps, call the AI provider, and only then write the turn.

Failed turns are rolled back, not kept: when the provider fails (429/5xx → 502, timeout →
504, unusable reply → 502) nothing has been written yet and the request's transaction is
rolled back, so the conversation is exactly as it was — no half turn, no user message
without an answer, no count against the caps. Nothing is silently lost: the client gets the
error and still holds what it sent, and can send it again.

The daily cap counts `diagnosis_usage`, a ledger written with each successful turn, so
deleting conversations does not give diagnoses back. A user runs one turn at a time: an
advisory lock is taken before counting and held to the end of the transaction, so parallel
requests cannot all pass the check; a turn that finds it taken is refused at once (429
`diagnosis_in_progress`) rather than waiting, for up to DIAGNOSE_DEADLINE_S, on a pooled
database connection. The whole turn runs against one `Deadline` (DIAGNOSE_DEADLINE_S).

The conversation and vehicle the turn reads are held with FOR KEY SHARE row locks until it
ends: deleting either meanwhile waits for the turn instead of breaking its final save (a
500 after the provider was paid). Editing them is not blocked.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.errors import AppError, LimitReachedError, RateLimitedError
from api.models import (
    ChatAttachment,
    ChatMessage,
    Conversation,
    DiagnosisUsage,
    User,
    utcnow,
)
from api.schemas.diagnose import MAX_TITLE_CHARS, Diagnosis
from api.services import ai, dtc, prompt
from api.services.conversations import owned_conversation
from api.services.vehicles import get_vehicle
from api.settings import get_settings
from api.utils import metrics
from api.utils.deadline import Deadline
from api.utils.locks import try_lock_for
from api.utils.media import Media, MediaField, load_images, load_media
from api.utils.throttle import wait_for_slot

TITLE_FALLBACK_WORDS = 8
MAX_EXPLAINED_CODES = 30  # dtc_codes holds up to 20; the text and transcript may add a few
QUOTA_WINDOW = timedelta(days=1)
IN_PROGRESS_RETRY = timedelta(seconds=5)  # a turn usually takes a few seconds


@dataclass(frozen=True)
class DiagnoseInput:
    """A turn as either route received it (legacy clients describe the vehicle inline)."""

    text: str | None = None
    session_id: uuid.UUID | None = None
    vehicle_id: uuid.UUID | None = None
    legacy_vehicle: prompt.LegacyVehicle | None = None
    images: list[MediaField] = field(default_factory=list)
    image: MediaField | None = None
    audio: MediaField | None = None
    dtc_codes: list[str] = field(default_factory=list)
    channel: Literal["v2", "legacy"] = "v2"  # which route, for telemetry


@dataclass(frozen=True)
class DiagnoseResult:
    session_id: uuid.UUID
    message_id: uuid.UUID
    answer: str
    diagnosis: Diagnosis
    usage: dict[str, int]


def diagnose(*, session: Session, user: User, request: DiagnoseInput) -> DiagnoseResult:
    """One turn; `diagnose_duration_ms` is recorded whatever the outcome (`ok` or the error
    code), with what the client sent (never its content)."""
    started = time.perf_counter()
    outcome = "internal_error"
    try:
        result = _turn(session, user, request)
    except AppError as error:
        outcome = error.code
        raise
    else:
        outcome = "ok"
        return result
    finally:
        metrics.diagnosis_turn(
            round((time.perf_counter() - started) * 1000, 1),
            route=request.channel,
            outcome=outcome,
            model=ai.chat_model(),
            images=len(request.images) + (request.image is not None),
            audio=request.audio is not None,
            dtc_count=len(request.dtc_codes),
        )


def _turn(session: Session, user: User, request: DiagnoseInput) -> DiagnoseResult:
    deadline = Deadline.after(get_settings().diagnose_deadline_s)
    received_at = utcnow()
    ai.ensure_configured()
    images = load_images(request.images, request.image)
    audio = load_media(request.audio, kind="audio", field="audio") if request.audio else None
    conversation = _conversation(session, user, request.session_id)
    vehicle = _vehicle(session, user, request, conversation)
    _check_caps(session, user, conversation)

    transcript = ai.transcribe(audio, deadline) if audio else None
    turn = prompt.NewTurn(
        text=request.text,
        images=images,
        dtc=_explained_codes(request, transcript),
        transcript=transcript,
        sound_analysis=ai.analyse_sound(audio, deadline) if audio else None,
    )
    history = _history(session, conversation)
    messages = prompt.build_messages(vehicle=vehicle, history=history, turn=turn)
    completion = ai.diagnose(messages, deadline)
    answer = render_answer(completion.diagnosis)

    if conversation is None:
        conversation = Conversation(user_id=user.id, created_at=received_at)
        session.add(conversation)
    if request.vehicle_id is not None:
        conversation.vehicle_id = request.vehicle_id
    if conversation.title is None:
        conversation.title = _title(request.text, completion.diagnosis, deadline)
    conversation.updated_at = utcnow()
    session.flush()
    media = [*images, *([audio] if audio else [])]
    _store_question(session, conversation, turn, media, created_at=received_at)
    assistant = ChatMessage(
        conversation_id=conversation.id,
        role="assistant",
        created_at=utcnow(),
        content={
            "answer": answer,
            "diagnosis": completion.diagnosis.model_dump(mode="json"),
            "model": completion.model,
            "usage": _usage(completion),
        },
    )
    session.add(assistant)
    _charge(session, user, at=received_at)
    session.flush()
    return DiagnoseResult(
        session_id=conversation.id,
        message_id=assistant.id,
        answer=answer,
        diagnosis=completion.diagnosis,
        usage=_usage(completion),
    )


def _explained_codes(request: DiagnoseInput, transcript: str | None) -> list[dtc.DtcInfo]:
    """The codes sent, then those named in the text or recording, up to MAX_EXPLAINED_CODES
    (a question full of codes must not blow up the prompt)."""
    codes = dtc.find_codes([*request.dtc_codes, request.text, transcript])
    return [dtc.explain(code) for code in codes[:MAX_EXPLAINED_CODES]]


def _conversation(
    session: Session, user: User, session_id: uuid.UUID | None
) -> Conversation | None:
    if session_id is None:
        return None
    return owned_conversation(
        session=session, user=user, conversation_id=session_id, key_share_lock=True
    )


def _vehicle(
    session: Session, user: User, request: DiagnoseInput, conversation: Conversation | None
) -> prompt.VehicleLike | None:
    """The vehicle named in the request, else the conversation's; legacy: as described."""
    if request.legacy_vehicle is not None:
        return request.legacy_vehicle
    vehicle_id = request.vehicle_id or (conversation.vehicle_id if conversation else None)
    if vehicle_id is None:
        return None
    return get_vehicle(session=session, user=user, vehicle_id=vehicle_id, key_share_lock=True)


def _check_caps(session: Session, user: User, conversation: Conversation | None) -> None:
    settings = get_settings()
    if not try_lock_for(session, "diagnoses", str(user.id)):
        raise RateLimitedError(
            "A diagnosis is already running for your account; wait for it to finish",
            retry_after=IN_PROGRESS_RETRY,
            code="diagnosis_in_progress",
        )
    wait = wait_for_slot(
        session,
        DiagnosisUsage.created_at,
        DiagnosisUsage.user_id == user.id,
        limit=settings.diagnoses_per_day,
        window=QUOTA_WINDOW,
        now=utcnow(),
    )
    if wait is not None:
        raise RateLimitedError(
            f"You have used your {settings.diagnoses_per_day} diagnoses for the last 24 hours",
            retry_after=wait,
            code="diagnosis_quota_exceeded",
        )
    if conversation is None:
        return
    messages = session.scalar(
        select(func.count())
        .select_from(ChatMessage)
        .where(ChatMessage.conversation_id == conversation.id)
    )
    if (messages or 0) + 2 > settings.messages_per_conversation:
        raise LimitReachedError(
            f"This conversation has reached {settings.messages_per_conversation} messages; "
            "start a new conversation",
            code="conversation_full",
        )


def _charge(session: Session, user: User, *, at: datetime) -> None:
    """Count a successful turn against DIAGNOSES_PER_DAY, dropping the user's rows that have
    left the window (so the ledger stays as small as the cap)."""
    session.execute(
        delete(DiagnosisUsage).where(
            DiagnosisUsage.user_id == user.id, DiagnosisUsage.created_at <= at - QUOTA_WINDOW
        )
    )
    session.add(DiagnosisUsage(user_id=user.id, created_at=at))


def _history(
    session: Session, conversation: Conversation | None
) -> list[tuple[str, dict[str, Any] | None]]:
    """The last DIAGNOSE_HISTORY_TURNS turns (a question and its answer each), oldest first.
    Messages with no role (some migrated from the old history) are left out: the model
    cannot be told who said them."""
    turns = get_settings().diagnose_history_turns
    if conversation is None or turns == 0:
        return []
    rows = session.execute(
        select(ChatMessage.role, ChatMessage.content)
        .where(ChatMessage.conversation_id == conversation.id, ChatMessage.role.is_not(None))
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(2 * turns)
    ).all()
    return [(role, content) for role, content in reversed(rows)]


def _store_question(
    session: Session,
    conversation: Conversation,
    turn: prompt.NewTurn,
    media: list[Media],
    *,
    created_at: datetime,
) -> ChatMessage:
    """The user's message: text and references to attachments; the bytes go to their own
    table, so messages (and every history read) stay small."""
    message = ChatMessage(
        conversation_id=conversation.id, role="user", content={}, created_at=created_at
    )
    session.add(message)
    session.flush()  # the message id, for the attachments
    attachments = [
        ChatAttachment(
            conversation_id=conversation.id,
            message_id=message.id,
            kind=item.kind,
            mime_type=item.mime_type,
            size_bytes=item.size_bytes,
            sha256=item.sha256,
            data=item.data,
        )
        for item in media
    ]
    session.add_all(attachments)
    session.flush()
    message.content = {
        "text": turn.text,
        "dtc_codes": [info.code for info in turn.dtc],
        "transcript": turn.transcript,
        "sound_analysis": turn.sound_analysis,
        "attachments": [
            {
                "id": str(a.id),
                "kind": a.kind,
                "mime_type": a.mime_type,
                "size_bytes": a.size_bytes,
                "sha256": a.sha256,
            }
            for a in attachments
        ],
    }
    return message


def _title(question: str | None, diagnosis: Diagnosis, deadline: Deadline) -> str:
    """Made once, on the first turn: a cheap model call, else the question's first words."""
    opening = question.strip() if question and question.strip() else diagnosis.summary
    title = ai.title_for(prompt.title_messages(opening), deadline)
    if title:
        return title
    words = opening.split()
    title = " ".join(words[:TITLE_FALLBACK_WORDS])
    if len(words) > TITLE_FALLBACK_WORDS or len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1] + "…"
    return title


def _usage(completion: ai.Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
    }


SEVERITY_LABELS = {"low": "Low", "medium": "Medium", "high": "High", "critical": "Critical"}
SAFE_LABELS = {"yes": "Yes", "no": "No", "unknown": "Not sure"}


def render_answer(diagnosis: Diagnosis) -> str:
    """The Markdown the app shows, rendered from the structured diagnosis."""
    lines = [
        diagnosis.summary,
        "",
        f"**Severity:** {SEVERITY_LABELS[diagnosis.severity]} · "
        f"**Safe to drive:** {SAFE_LABELS[diagnosis.safe_to_drive]}",
    ]
    if diagnosis.likely_causes:
        lines += ["", "### Likely causes"]
        lines += [
            f"{i}. **{c.cause}** ({c.likelihood} likelihood) — check: {c.how_to_check}"
            for i, c in enumerate(diagnosis.likely_causes, start=1)
        ]
    sections = [
        ("Fault codes", [f"**{d.code}**: {d.meaning}" for d in diagnosis.dtc]),
        ("Next steps", diagnosis.next_steps),
        ("Questions for you", diagnosis.follow_up_questions),
    ]
    for heading, items in sections:
        if items:
            lines += ["", f"### {heading}", *(f"- {item}" for item in items)]
    return "\n".join(lines)
