"""One diagnosis turn, shared by `diagnose2` and the legacy `Diagnose`, in three steps, so
that no database connection is held while the AI provider works (seconds, up to
DIAGNOSE_DEADLINE_S):

1. `_reserve`, one short transaction: the conversation and vehicle are checked (another
   user's id is 404, like a missing one), the caps are counted, the history the prompt
   needs is read, and the turn is recorded as running: a `diagnosis_usage` row with
   `pending_until` set. A partial unique index allows one such row per user, so a second
   turn is refused at once (429 `diagnosis_in_progress`); the row counts against
   DIAGNOSES_PER_DAY like a finished turn, and is written before the cap is counted, so
   parallel turns cannot all pass it.
2. No database on the request's thread: the media were checked before step 1 (a bad file
   is a 4xx with nothing touched); transcription, sound analysis, diagnosis and title calls
   all spend one `Deadline` (DIAGNOSE_DEADLINE_S). Meanwhile another thread writes the
   files the user has not stored before (each file's bytes once per user, by sha256), in a
   short transaction of its own: megabytes take tens of milliseconds to write, which the
   provider's time hides instead of the turn's answer waiting for them.
3. `_store`, one short transaction: the question, its attachments (referring to the files
   written in step 2), the answer, and the charge: the reservation becomes a ledger row
   carrying the bytes newly stored (ATTACHMENT_BYTES_PER_DAY).

An Idempotency-Key (api/services/idempotency.py) follows the same steps: step 1 claims it
(before the caps, so a retry of a turn that answered gets that answer again — no provider
call, no charge — and a retry of one still running gets 409), step 3 stores the response
with the turn, and a failed turn releases it with its reservation. A key whose process died
lasts exactly as long as the turn's reservation, so a retry then runs the turn anew.

The answer's language (api/services/language.py) is chosen in step 1, from the request and
the conversation's own, and stored on the conversation in step 3.

A failed turn is not stored at all: on any error after step 1, `_release` deletes the
reservation and the files step 2 wrote (no message refers to them) in a short transaction
of its own, so the conversation is exactly as it was (no question without its answer) and
nothing is charged; the client still holds what it sent and can send it again. A process
that dies mid-turn leaves its reservation (and perhaps files) behind: it expires at
`pending_until` (the deadline plus RESERVATION_GRACE) and the user's next turn removes it,
with the user's files no message refers to, so nobody stays locked out or keeps bytes
nobody can see.

Deletions while the provider works. Step 3 locks the rows it writes under in the order a
deletion locks them (the account, then the vehicle, then the conversation), so it either
waits for a deletion in flight or makes the deletion wait for it — never half a turn,
never a deadlock:
- the account is gone: 401 `account_deleted`, nothing stored (its ledger went with it);
- the caller's session ended (logout, logout everywhere, a password change or reset): 401
  `session_ended`, nothing stored and nothing charged (the reservation is released), as
  for a request sent after the logout;
- the conversation is gone: the turn is discarded, 404 "No such conversation" as for one
  deleted before the turn; it is still charged (the provider was paid, and deleting a
  conversation mid-turn must not become a way around DIAGNOSES_PER_DAY);
- the vehicle is gone: the turn is stored and its conversation no longer names the
  vehicle — what deleting the vehicle just after the turn would have done.

The service never commits: each step runs in a unit of work from the `UnitOfWork` factory
the Router hands to slow operations (api/endpoints.py), which commits when the step's block
ends and rolls back when it raises.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from sqlalchemy import (
    and_,
    delete,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.db import UnitOfWork
from api.errors import (
    AppError,
    LimitReachedError,
    NotFoundError,
    RateLimitedError,
    UpstreamTimeoutError,
)
from api.models import (
    AttachmentBlob,
    ChatAttachment,
    ChatMessage,
    Conversation,
    DiagnosisUsage,
    User,
    Vehicle,
    utcnow,
)
from api.schemas.diagnose import MAX_TITLE_CHARS, Diagnosis
from api.services import ai, dtc, prompt
from api.services import idempotency as idempotency_keys
from api.services.auth import Caller, hold_account, hold_session
from api.services.conversations import owned_conversation
from api.services.idempotency import Claim, Idempotency, StoredResponse
from api.services.language import AnswerLanguage, Translation, choose
from api.services.quota import Quota, policies, read_quota
from api.services.vehicles import get_vehicle
from api.settings import get_settings
from api.utils import metrics, ratelimit
from api.utils.deadline import Deadline
from api.utils.media import Media, MediaField, load_images, load_media
from api.utils.throttle import Slot, waits_for_slots

log = logging.getLogger(__name__)

TITLE_FALLBACK_WORDS = 8
MAX_EXPLAINED_CODES = 30  # dtc_codes holds up to 20; the text and transcript may add a few
QUOTA_WINDOW = timedelta(days=1)
# How long past the turn's deadline its reservation lasts: room for the last provider call
# to return and for step 3. A turn that finds its reservation gone stores nothing.
RESERVATION_GRACE = timedelta(seconds=60)

History = list[tuple[str, dict[str, Any] | None]]


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
    language: str | None = None  # the `language` field (a BCP 47 tag)
    accept_language: str | None = None  # the Accept-Language header
    channel: Literal["v2", "legacy"] = "v2"  # which route, for telemetry


@dataclass(frozen=True)
class DiagnoseResult:
    session_id: uuid.UUID
    message_id: uuid.UUID
    answer: str
    diagnosis: Diagnosis
    usage: dict[str, int]
    language: str
    language_fallback: bool
    quota: Quota  # after this turn


@dataclass(frozen=True)
class Replayed:
    """A retried Idempotency-Key whose turn answered before: that response, and the quota
    now (it charged nothing)."""

    response: StoredResponse
    quota: Quota


@dataclass(frozen=True)
class Reservation:
    """What step 1 found and recorded, for the steps after it (no database rows: its
    session is closed)."""

    id: uuid.UUID  # the running turn's diagnosis_usage row
    user_id: uuid.UUID
    conversation_id: uuid.UUID | None  # None: the turn starts a conversation
    needs_title: bool
    vehicle: prompt.VehicleLike | None
    history: History
    language: AnswerLanguage
    claim: Claim | None  # the request's Idempotency-Key, owned until the turn ends


@dataclass(frozen=True)
class Files:
    """What step 2 found and wrote: each attachment's sha256, in the turn's order, and
    sha256 → id of each file it added (those the user had not stored before)."""

    digests: list[str]
    added: dict[str, uuid.UUID]


@dataclass(frozen=True)
class Consultation:
    """What the provider answered (step 2)."""

    turn: prompt.NewTurn
    completion: ai.Completion
    title: str | None


def diagnose(
    *,
    unit_of_work: UnitOfWork,
    caller: Caller,
    request: DiagnoseInput,
    idempotency: Idempotency[DiagnoseResult] | None = None,
) -> DiagnoseResult | Replayed:
    """One turn (or, for a retried Idempotency-Key, the answer it had); `diagnose_duration_ms`
    is recorded whatever the outcome (`ok`, `replayed` or the error code), with what the
    client sent (never its content)."""
    started = time.perf_counter()
    outcome = "internal_error"
    try:
        result = _turn(unit_of_work, caller, request, idempotency)
    except AppError as error:
        outcome = error.code
        raise
    else:
        outcome = "replayed" if isinstance(result, Replayed) else "ok"
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


def _turn(
    unit_of_work: UnitOfWork,
    caller: Caller,
    request: DiagnoseInput,
    idempotency: Idempotency[DiagnoseResult] | None,
) -> DiagnoseResult | Replayed:
    user = caller.user
    deadline = Deadline.after(get_settings().diagnose_deadline_s)
    received_at = utcnow()
    ai.ensure_configured()
    images = load_images(request.images, request.image)
    audio = load_media(request.audio, kind="audio", field="audio") if request.audio else None
    media = [*images, *([audio] if audio else [])]
    key = idempotency.key if idempotency else None
    with unit_of_work() as session:
        reservation = _reserve(session, user, request, key, media, deadline, at=received_at)
    if isinstance(reservation, Replayed):
        return reservation
    written = _write_files_meanwhile(unit_of_work, user, media)
    try:
        consultation = _consult(request, reservation, images, audio, deadline)
        files = written.result()
        with unit_of_work() as session:
            result = _store(
                session, caller, request, reservation, consultation, media, files, received_at
            )
            if reservation.claim is not None and idempotency is not None:
                idempotency_keys.complete(
                    session=session, claim=reservation.claim, response=idempotency.render(result)
                )
            return result
    except BaseException:
        _release(unit_of_work, reservation, written)
        raise


# --- step 1: check and reserve ----------------------------------------------------------


def _reserve(
    session: Session,
    user: User,
    request: DiagnoseInput,
    key: idempotency_keys.Key | None,
    media: list[Media],
    deadline: Deadline,
    *,
    at: datetime,
) -> Reservation | Replayed:
    hold_account(session=session, user_id=user.id)
    now = utcnow()
    running_until = now + timedelta(seconds=deadline.remaining()) + RESERVATION_GRACE
    claim = None
    if key is not None:
        claimed = idempotency_keys.claim(
            session=session, key=key, now=now, running_until=running_until
        )
        if isinstance(claimed, StoredResponse):
            return Replayed(claimed, read_quota(session=session, user_id=user.id, now=now))
        claim = claimed
    conversation = (
        owned_conversation(session=session, user=user, conversation_id=request.session_id)
        if request.session_id is not None
        else None
    )
    vehicle = _vehicle(session, user, request, conversation)
    reservation_id = None
    try:
        reservation_id = _start(session, user, at=at, until=running_until)
        _check_caps(session, user, reservation_id, conversation, media, at=at)
    except (RateLimitedError, LimitReachedError) as refused:
        # Refusals say how much is left (RateLimit fields), this turn not counted.
        quota = read_quota(session=session, user_id=user.id, now=now, excluding=reservation_id)
        refused.headers.update(ratelimit.fields(policies(quota)))
        raise
    settings = get_settings()
    return Reservation(
        id=reservation_id,
        user_id=user.id,
        conversation_id=conversation.id if conversation else None,
        needs_title=conversation is None or conversation.title is None,
        vehicle=vehicle,
        history=_history(session, conversation),
        language=choose(
            asked=request.language,
            kept=conversation.language if conversation else None,
            accept_language=request.accept_language,
            supported=settings.supported_languages,
            default=settings.default_language,
        ),
        claim=claim,
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
    return get_vehicle(session=session, user=user, vehicle_id=vehicle_id)


def _start(session: Session, user: User, *, at: datetime, until: datetime) -> uuid.UUID:
    """Record the turn as running (until `until`), first removing the user's rows that no
    longer count: a reservation a dead process left behind, and turns that have left the
    window (so the ledger stays as small as the caps); 429 when another turn of the user's
    is running."""
    now = utcnow()
    removed = session.scalars(
        delete(DiagnosisUsage)
        .where(
            DiagnosisUsage.user_id == user.id,
            or_(
                DiagnosisUsage.pending_until <= now,
                and_(
                    DiagnosisUsage.pending_until.is_(None),
                    DiagnosisUsage.created_at <= at - QUOTA_WINDOW,
                ),
            ),
        )
        .returning(DiagnosisUsage.pending_until.is_not(None))
    )
    if any(removed):  # a reservation whose process died mid-turn, perhaps after writing files
        _delete_unreferenced_files(session, user.id)
    reservation_id: uuid.UUID | None = session.scalar(
        insert(DiagnosisUsage)
        .values(user_id=user.id, created_at=at, pending_until=until)
        .on_conflict_do_nothing(
            index_elements=[DiagnosisUsage.user_id],
            index_where=DiagnosisUsage.pending_until.is_not(None),
        )
        .returning(DiagnosisUsage.id)
    )
    if reservation_id is None:
        raise RateLimitedError(
            "A diagnosis is already running for your account; wait for it to finish",
            retry_after=_running_turn_wait(session, user, now=now),
            code="diagnosis_in_progress",
        )
    return reservation_id


def _running_turn_wait(session: Session, user: User, *, now: datetime) -> timedelta:
    """How long until the user's running turn frees its place: until its deadline (it has
    answered or given up by then), or, past that (its process died, or it is storing),
    until its reservation expires. Read from its reservation, `pending_until`."""
    pending_until = session.scalar(
        select(DiagnosisUsage.pending_until).where(
            DiagnosisUsage.user_id == user.id, DiagnosisUsage.pending_until.is_not(None)
        )
    )
    if pending_until is None:  # it ended just now
        return timedelta(0)
    turn_deadline = pending_until - RESERVATION_GRACE
    return (turn_deadline if turn_deadline > now else pending_until) - now


def _check_caps(
    session: Session,
    user: User,
    reservation_id: uuid.UUID,
    conversation: Conversation | None,
    media: list[Media],
    *,
    at: datetime,
) -> None:
    """DIAGNOSES_PER_DAY and ATTACHMENT_BYTES_PER_DAY over the ledger (the user's other rows:
    this turn's reservation is one of them once charged), then MESSAGES_PER_CONVERSATION.
    Exact without a lock: no other turn of the user's can run or be charged meanwhile."""
    settings = get_settings()
    others = (DiagnosisUsage.user_id == user.id, DiagnosisUsage.id != reservation_id)
    turns = Slot(DiagnosisUsage.created_at, others, settings.diagnoses_per_day, QUOTA_WINDOW)

    def attachments(need: int) -> Slot:
        return Slot(
            DiagnosisUsage.created_at,
            others,
            settings.attachment_bytes_per_day,
            QUOTA_WINDOW,
            weight=DiagnosisUsage.attachment_bytes,
            need=need,
        )

    # Both caps in one statement, the attachments as if every file were new: the most the
    # turn can add. Only when that does not fit is it worth hashing the files (megabytes, on
    # the request's time; otherwise the file writer hashes them meanwhile) to find those
    # sent before, which count nothing.
    most = sum(item.size_bytes for item in media)
    wait, *bytes_wait = waits_for_slots(
        session, turns, *([attachments(most)] if most else []), now=at
    )
    if wait is not None:
        raise RateLimitedError(
            f"You have used your {settings.diagnoses_per_day} diagnoses for the last 24 hours",
            retry_after=wait,
            code="diagnosis_quota_exceeded",
        )
    wait = bytes_wait[0] if bytes_wait else None
    if wait is not None:
        new_bytes = sum(item.size_bytes for item in _new_files(session, user, media).values())
        wait = waits_for_slots(session, attachments(new_bytes), now=at)[0] if new_bytes else None
    if wait is not None:
        raise RateLimitedError(
            "This message's attachments would pass your allowance for the last 24 hours "
            f"(ATTACHMENT_BYTES_PER_DAY: {settings.attachment_bytes_per_day} bytes; files "
            "you have sent before count once)",
            retry_after=wait,
            code="attachment_quota_exceeded",
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


def _new_files(session: Session, user: User, media: list[Media]) -> dict[str, Media]:
    """The turn's files the user has not stored before, by sha256 (each once)."""
    files = {item.sha256: item for item in media}
    stored = session.scalars(
        select(AttachmentBlob.sha256).where(
            AttachmentBlob.user_id == user.id, AttachmentBlob.sha256.in_(files)
        )
    )
    for digest in stored:
        del files[digest]
    return files


def _history(session: Session, conversation: Conversation | None) -> History:
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


# --- step 2: the provider, with no database connection held ------------------------------


def _consult(
    request: DiagnoseInput,
    reservation: Reservation,
    images: list[Media],
    audio: Media | None,
    deadline: Deadline,
) -> Consultation:
    transcript = ai.transcribe(audio, deadline) if audio else None
    turn = prompt.NewTurn(
        text=request.text,
        images=images,
        dtc=_explained_codes(request, transcript),
        transcript=transcript,
        sound_analysis=ai.analyse_sound(audio, deadline) if audio else None,
    )
    language = reservation.language.translation
    messages = prompt.build_messages(
        vehicle=reservation.vehicle, history=reservation.history, turn=turn, language=language
    )
    completion = ai.diagnose(messages, deadline)
    title = (
        _title(request.text, completion.diagnosis, language, deadline)
        if reservation.needs_title
        else None
    )
    return Consultation(turn=turn, completion=completion, title=title)


def _explained_codes(request: DiagnoseInput, transcript: str | None) -> list[dtc.DtcInfo]:
    """The codes sent, then those named in the text or recording, up to MAX_EXPLAINED_CODES
    (a question full of codes must not blow up the prompt)."""
    codes = dtc.find_codes([*request.dtc_codes, request.text, transcript])
    return [dtc.explain(code) for code in codes[:MAX_EXPLAINED_CODES]]


# --- step 3: store, or release --------------------------------------------------------------


def _store(
    session: Session,
    caller: Caller,
    request: DiagnoseInput,
    reservation: Reservation,
    consultation: Consultation,
    media: list[Media],
    written: Files,
    received_at: datetime,
) -> DiagnoseResult:
    hold_session(session=session, caller=caller)  # 401 when it ended meanwhile
    user = caller.user
    charge = session.scalar(
        select(DiagnosisUsage)
        .where(DiagnosisUsage.id == reservation.id, DiagnosisUsage.pending_until.is_not(None))
        .with_for_update()
    )
    if charge is None:  # it expired and the user's next turn removed it
        raise UpstreamTimeoutError("The diagnosis ran out of time (saving); please try again")
    linked_vehicle = _still_owned_vehicle(session, user, request.vehicle_id)
    conversation = _conversation_to_write(session, user, reservation, received_at)
    if conversation is None:
        _charge(charge, stored_bytes=0)
        raise NotFoundError("No such conversation", keep_changes=True)
    if request.vehicle_id is not None:
        conversation.vehicle_id = linked_vehicle
    if conversation.title is None:  # unless the user named it meanwhile
        conversation.title = consultation.title
    conversation.language = reservation.language.code
    conversation.updated_at = utcnow()
    # Rows get their ids here, so that the turn's are written a statement per table, after
    # the files are held (autoflush would write the conversation before that).
    with session.no_autoflush:
        files, stored_bytes = _store_files(session, user, media, written)
    question, attachments = _question(
        conversation, consultation.turn, media, written.digests, files, received_at
    )
    completion = consultation.completion
    answer = render_answer(completion.diagnosis, reservation.language.translation)
    assistant = ChatMessage(
        id=uuid.uuid4(),
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
    session.add_all([question, assistant])
    session.flush()  # the messages before the attachments that refer to them
    session.add_all(attachments)
    _charge(charge, stored_bytes=stored_bytes)
    session.flush()
    return DiagnoseResult(
        session_id=conversation.id,
        message_id=assistant.id,
        answer=answer,
        diagnosis=completion.diagnosis,
        usage=_usage(completion),
        language=reservation.language.code,
        language_fallback=reservation.language.fallback,
        quota=read_quota(session=session, user_id=user.id, now=utcnow()),
    )


def _still_owned_vehicle(
    session: Session, user: User, vehicle_id: uuid.UUID | None
) -> uuid.UUID | None:
    """The vehicle to link the conversation to, held (FOR KEY SHARE) so it cannot be deleted
    before the link is written; None when it was deleted during the turn."""
    if vehicle_id is None:
        return None
    return session.scalar(
        select(Vehicle.id)
        .where(Vehicle.id == vehicle_id, Vehicle.user_id == user.id)
        .with_for_update(read=True, key_share=True)
    )


def _conversation_to_write(
    session: Session, user: User, reservation: Reservation, received_at: datetime
) -> Conversation | None:
    """The turn's conversation, locked; a new one for a first turn; None when it was
    deleted during the turn."""
    if reservation.conversation_id is None:
        conversation = Conversation(id=uuid.uuid4(), user_id=user.id, created_at=received_at)
        session.add(conversation)
        return conversation
    try:
        return owned_conversation(
            session=session,
            user=user,
            conversation_id=reservation.conversation_id,
            for_update=True,
        )
    except NotFoundError:
        return None


def _charge(charge: DiagnosisUsage, *, stored_bytes: int) -> None:
    """The reservation becomes the turn's ledger row (the rows that have left the window go
    when the next turn starts: `_start`)."""
    charge.pending_until = None
    charge.attachment_bytes = stored_bytes


def _release(unit_of_work: UnitOfWork, reservation: Reservation, written: Future[Files]) -> None:
    """Delete a failed turn's reservation (a charged one stays) and the files it wrote, and
    forget its Idempotency-Key. Best effort: if the database cannot be reached either, they
    expire on their own (the user's next turn removes them)."""
    try:
        added = written.result().added
    except Exception:  # nothing written; the turn's own error says why
        added = {}
    try:
        with unit_of_work() as session:
            if added:
                _delete_unreferenced_files(session, reservation.user_id, set(added.values()))
            session.execute(
                delete(DiagnosisUsage).where(
                    DiagnosisUsage.id == reservation.id, DiagnosisUsage.pending_until.is_not(None)
                )
            )
            if reservation.claim is not None:
                idempotency_keys.release(session=session, claim=reservation.claim)
    except Exception:
        log.warning("Could not release a diagnosis reservation; it expires", exc_info=True)


@cache
def _file_writers() -> ThreadPoolExecutor:
    """Threads that write turns' files while their provider calls run: as many as the
    worker's own thread pool by default (min(32, cores + 4)), so a turn never waits for one."""
    return ThreadPoolExecutor(thread_name_prefix="axly-files")


def _write_files_meanwhile(
    unit_of_work: UnitOfWork, user: User, media: list[Media]
) -> Future[Files]:
    """Start writing the turn's files on another thread (the request's context with it: its
    logs keep the request id)."""
    context = contextvars.copy_context()
    return _file_writers().submit(context.run, _write_new_files, unit_of_work, user.id, media)


def _write_new_files(unit_of_work: UnitOfWork, user_id: uuid.UUID, media: list[Media]) -> Files:
    """Each file's sha256 (hashed here, off the request's thread: hashlib lets go of the GIL
    for it), and the files the user has not stored before written in a transaction of their
    own; a file already stored (by sha256) is left as it is, and step 3 refers to it."""
    digests = [item.sha256 for item in media]
    files = dict(zip(digests, media, strict=True))
    if not files:
        return Files(digests, {})
    with unit_of_work() as session:
        rows = session.execute(
            insert(AttachmentBlob)
            .values([{"user_id": user_id, "sha256": d, "data": f.data} for d, f in files.items()])
            .on_conflict_do_nothing(index_elements=[AttachmentBlob.user_id, AttachmentBlob.sha256])
            .returning(AttachmentBlob.sha256, AttachmentBlob.id)
        )
        return Files(digests, dict(rows.all()))


def _delete_unreferenced_files(
    session: Session, user_id: uuid.UUID, ids: set[uuid.UUID] | None = None
) -> None:
    """The user's files (of `ids`, or all) that no message refers to: written by a turn
    that then failed, or whose process died."""
    session.execute(
        delete(AttachmentBlob).where(
            AttachmentBlob.user_id == user_id,
            *([AttachmentBlob.id.in_(ids)] if ids is not None else []),
            ~exists().where(ChatAttachment.blob_id == AttachmentBlob.id),
        )
    )


def _store_files(
    session: Session, user: User, media: list[Media], written: Files
) -> tuple[dict[str, uuid.UUID], int]:
    """Each distinct file's stored bytes (sha256 → AttachmentBlob id); and how many bytes
    this turn added (step 2's files, and any written here). Files are held (FOR KEY SHARE),
    so deleting another conversation that carries them keeps them; one such deletion that
    won the race meanwhile removed its file, which is written again here."""
    digests = dict(zip(written.digests, media, strict=True))
    if not digests:
        return {}, 0
    rows = session.execute(
        select(AttachmentBlob.sha256, AttachmentBlob.id)
        .where(AttachmentBlob.user_id == user.id, AttachmentBlob.sha256.in_(digests))
        .with_for_update(read=True, key_share=True)
    )
    stored = dict(rows.all())
    again = [
        AttachmentBlob(user_id=user.id, sha256=digest, data=item.data)
        for digest, item in digests.items()
        if digest not in stored
    ]
    session.add_all(again)
    session.flush()
    new = {digest for digest in written.added if digest in stored} | {b.sha256 for b in again}
    return {**stored, **{blob.sha256: blob.id for blob in again}}, sum(
        digests[digest].size_bytes for digest in new
    )


def _question(
    conversation: Conversation,
    turn: prompt.NewTurn,
    media: list[Media],
    digests: list[str],
    files: dict[str, uuid.UUID],
    created_at: datetime,
) -> tuple[ChatMessage, list[ChatAttachment]]:
    """The user's message, with text and references to its attachments, and the attachments;
    the bytes are in their own table, so messages (and every history read) stay small."""
    message_id = uuid.uuid4()
    attachments = [
        ChatAttachment(
            id=uuid.uuid4(),
            conversation_id=conversation.id,
            message_id=message_id,
            blob_id=files[digest],
            kind=item.kind,
            mime_type=item.mime_type,
            size_bytes=item.size_bytes,
            sha256=digest,
        )
        for item, digest in zip(media, digests, strict=True)
    ]
    content = {
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
    message = ChatMessage(
        id=message_id,
        conversation_id=conversation.id,
        role="user",
        content=content,
        created_at=created_at,
    )
    return message, attachments


def _title(
    question: str | None, diagnosis: Diagnosis, language: Translation, deadline: Deadline
) -> str:
    """Made once, on the first turn: a cheap model call, else the question's first words."""
    opening = question.strip() if question and question.strip() else diagnosis.summary
    title = ai.title_for(prompt.title_messages(opening, language), deadline)
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


def render_answer(diagnosis: Diagnosis, words: Translation) -> str:
    """The Markdown the app shows, rendered from the structured diagnosis, its headings and
    labels in the answer's language (the model wrote the rest in it)."""
    lines = [
        diagnosis.summary,
        "",
        f"**{words.severity}:** {words.severities[diagnosis.severity]} · "
        f"**{words.safe_to_drive}:** {words.safe[diagnosis.safe_to_drive]}",
    ]
    if diagnosis.likely_causes:
        lines += ["", f"### {words.likely_causes}"]
        lines += [
            f"{i}. **{c.cause}** ({words.likelihoods[c.likelihood]}) — {words.check}: "
            f"{c.how_to_check}"
            for i, c in enumerate(diagnosis.likely_causes, start=1)
        ]
    sections = [
        (words.fault_codes, [f"**{d.code}**: {d.meaning}" for d in diagnosis.dtc]),
        (words.next_steps, diagnosis.next_steps),
        (words.questions, diagnosis.follow_up_questions),
    ]
    for heading, items in sections:
        if items:
            lines += ["", f"### {heading}", *(f"- {item}" for item in items)]
    return "\n".join(lines)
