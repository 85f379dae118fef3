"""AI diagnosis (`diagnose2`, legacy `Diagnose`) and the stored conversations.

Functions routes are case-insensitive, so v2 cannot be `diagnose`: the legacy `Diagnose`
keeps its name for old app builds and v2 is `diagnose2`. Both map their request onto one
service call (`services.diagnose.diagnose`); only the wire shapes differ. They are
`SlowUserRequest`s: the turn holds no database connection while the AI provider works.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func

from api.endpoints import (
    Form,
    HandlerT,
    ReadRequest,
    Reply,
    Router,
    SlowUserRequest,
    UserRequest,
)
from api.models import Conversation
from api.schemas.diagnose import (
    MAX_DTC_CODES,
    ConversationDetail,
    ConversationPage,
    ConversationQuery,
    ConversationSummary,
    ConversationUpdate,
    DiagnoseForm,
    DiagnoseRequest,
    DiagnoseResponse,
    DiagnosisUsage,
    DtcCode,
    FaultCode,
    LegacyDiagnoseBody,
    LegacyDiagnoseForm,
    LegacyDiagnoseQuery,
    LegacyDiagnoseResponse,
)
from api.services import conversations, dtc, quota
from api.services.diagnose import DiagnoseInput, DiagnoseResult, Replayed, diagnose
from api.services.listing import Listing
from api.services.prompt import LegacyMod, LegacyVehicle
from api.settings import get_settings
from api.utils import http, ratelimit
from api.utils.media import MediaField
from api.utils.multipart import parse_form

router = Router("diagnose")

DIAGNOSE_ERRORS = (404, 429, 502, 503, 504)
# What every diagnosis response says: the quota (200 and 429) and, for an answer, its
# language (Content-Language), which the client may ask for with Accept-Language.
QUOTA_HEADERS = (ratelimit.POLICY_FIELD, ratelimit.LIMIT_FIELD)
ANSWER_HEADERS = (*QUOTA_HEADERS, "Content-Language")


def _diagnosis(method: str, route: str, **options: Any) -> Callable[[HandlerT], HandlerT]:
    """`router.operation` for a diagnosis: the statuses and headers every one of them has."""
    return router.operation(
        method,
        route,
        errors=DIAGNOSE_ERRORS,
        response_headers=ANSWER_HEADERS,
        request_headers=("Accept-Language",),
        error_headers={429: QUOTA_HEADERS},
        **options,
    )


def _reply(outcome: DiagnoseResult | Replayed) -> Reply:
    """A turn's answer, or a replayed one, with the quota as it is now."""
    allowances = ratelimit.fields(quota.policies(outcome.quota))
    if isinstance(outcome, Replayed):
        return Reply(outcome.response, headers=allowances)
    return Reply(outcome, headers=allowances | {"Content-Language": outcome.language})


def _max_body_bytes() -> int:
    return get_settings().diagnose_max_body_bytes


def _form(req: func.HttpRequest, *, lists: tuple[str, ...] = ()) -> dict[str, Any]:
    """Form parts → the JSON body's shape: `lists` fields collect repeated parts, other
    fields keep the last one; empty parts count as absent (a form's file input with no file
    chosen still sends an empty part)."""
    data: dict[str, Any] = {}
    for name, value in parse_form(req, max_bytes=_max_body_bytes()):
        if not value:
            continue
        if name in lists:
            data.setdefault(name, []).append(value)
        else:
            data[name] = value
    return data


def _v2_form(req: func.HttpRequest) -> dict[str, Any]:
    data = _form(req, lists=("images", "dtc_codes"))
    if "dtc_codes" in data:  # repeated, or comma-separated in one field ("P0420, P0301,")
        # Split at most MAX_DTC_CODES times per part: a field of a million commas stays a few
        # items (the last holds the rest), and the list's length check refuses it.
        data["dtc_codes"] = [
            code.strip()
            for value in data["dtc_codes"]
            for code in str(value).split(",", MAX_DTC_CODES)
            if code.strip()
        ]
    return data


@_diagnosis(
    "POST",
    "diagnose2",
    summary="Diagnose a problem from text, photos, a recording and fault codes",
    description="JSON with Base64 media, or multipart/form-data with the same field names "
    "and media as file parts. Omit session_id to start a new conversation.",
    response=DiagnoseResponse,
    form=Form(DiagnoseForm, _v2_form),
    max_body_bytes=_max_body_bytes,
    idempotent=True,
)
def diagnose_v2(request: SlowUserRequest[DiagnoseRequest]) -> Reply:
    body = request.body
    key = request.idempotency
    return _reply(
        diagnose(
            unit_of_work=request.unit_of_work,
            caller=request.caller,
            request=DiagnoseInput(
                text=body.q,
                session_id=body.session_id,
                vehicle_id=body.vehicle_id,
                images=body.images,
                image=body.image,
                audio=body.audio,
                dtc_codes=body.dtc_codes,
                language=body.language,
                accept_language=request.http.headers.get("Accept-Language"),
            ),
            idempotency=key.before(_reply) if key else None,
        )
    )


def _legacy_input(
    fields: LegacyDiagnoseQuery | LegacyDiagnoseBody,
    accept_language: str | None,
    *,
    image: MediaField | None = None,
    audio: MediaField | None = None,
) -> DiagnoseInput:
    mods = fields.mods.split(",") if isinstance(fields.mods, str) else fields.mods or []
    described = any((fields.make, fields.model, fields.year)) or any(m.strip() for m in mods)
    vehicle = LegacyVehicle(
        year=fields.year or "",
        make=fields.make or "",
        model=fields.model or "",
        mods=tuple(LegacyMod(name=m.strip()) for m in mods if m.strip()),
    )
    return DiagnoseInput(
        text=fields.q,
        session_id=fields.session_id,
        legacy_vehicle=vehicle if described else None,
        image=image,
        audio=audio,
        accept_language=accept_language,
        channel="legacy",
    )


@_diagnosis(
    "GET",
    "Diagnose",
    summary="Legacy diagnosis from query parameters (old app builds)",
    response=LegacyDiagnoseResponse,
)
def diagnose_legacy_get(request: SlowUserRequest[None, LegacyDiagnoseQuery]) -> Reply:
    turn = _legacy_input(request.query, request.http.headers.get("Accept-Language"))
    return _reply(diagnose(unit_of_work=request.unit_of_work, caller=request.caller, request=turn))


@_diagnosis(
    "POST",
    "Diagnose",
    summary="Legacy diagnosis with an optional image and recording (old app builds)",
    response=LegacyDiagnoseResponse,
    form=Form(LegacyDiagnoseForm, _form),
    max_body_bytes=_max_body_bytes,
)
def diagnose_legacy_post(request: SlowUserRequest[LegacyDiagnoseBody]) -> Reply:
    body = request.body
    accept_language = request.http.headers.get("Accept-Language")
    turn = _legacy_input(body, accept_language, image=body.image, audio=body.audio)
    return _reply(diagnose(unit_of_work=request.unit_of_work, caller=request.caller, request=turn))


@router.operation(
    "GET",
    "me/usage",
    summary="Your diagnosis allowances: used, left, and when they grow back",
    response=DiagnosisUsage,
    response_headers=QUOTA_HEADERS,
)
def get_usage(request: UserRequest) -> Reply:
    allowances = quota.usage(session=request.session, user=request.user)
    return Reply(allowances, headers=ratelimit.fields(quota.policies(allowances)))


@router.operation(
    "GET",
    "dtc/{code}",
    summary="What an OBD-II fault code means (no AI: the decoder diagnoses use)",
    description="Any well-formed code (P, B, C or U, then 0-3, then three hex digits; case "
    "does not matter) is decoded; `meaning` is null when no standard description is known. "
    "A malformed code is a 422 naming path.code.",
    response=FaultCode,
)
def lookup_fault_code(request: ReadRequest, code: DtcCode) -> dtc.DtcInfo:
    return dtc.explain(code)


@router.operation(
    "GET",
    "conversations",
    summary="Your conversations, most recently active first",
    response=ConversationPage,
)
def list_conversations(
    request: ReadRequest[None, ConversationQuery],
) -> Listing[ConversationSummary]:
    query = request.query
    return conversations.list_conversations(
        reader=request.reader,
        user=request.user,
        limit=query.limit,
        offset=query.offset,
        vehicle_id=query.vehicle_id,
    )


@router.operation(
    "GET",
    "conversations/{conversation_id}",
    summary="One conversation with its messages",
    response=ConversationDetail,
)
def get_conversation(request: UserRequest, conversation_id: uuid.UUID) -> Conversation:
    return conversations.get_conversation(
        session=request.session, user=request.user, conversation_id=conversation_id
    )


@router.operation(
    "PATCH",
    "conversations/{conversation_id}",
    summary="Rename a conversation",
    response=ConversationDetail,
)
def rename_conversation(
    request: UserRequest[ConversationUpdate], conversation_id: uuid.UUID
) -> Conversation:
    return conversations.rename_conversation(
        session=request.session,
        user=request.user,
        conversation_id=conversation_id,
        title=request.body.title,
    )


@router.operation(
    "DELETE",
    "conversations/{conversation_id}",
    summary="Delete a conversation with its messages and attachments",
)
def delete_conversation(request: UserRequest, conversation_id: uuid.UUID) -> None:
    conversations.delete_conversation(
        session=request.session, user=request.user, conversation_id=conversation_id
    )


@router.operation(
    "GET",
    "conversations/{conversation_id}/attachments/{attachment_id}",
    summary="A photo or recording you sent, as stored",
    description="The bytes with the type sniffed when they were sent, as a download "
    "(Content-Disposition: attachment). Attachment ids and types are listed in the "
    "conversation's user messages.",
    response_files=("image/*", "audio/*"),
    response_headers=("Content-Disposition",),
)
def download_attachment(
    request: UserRequest, conversation_id: uuid.UUID, attachment_id: uuid.UUID
) -> func.HttpResponse:
    stored = conversations.attachment_file(
        session=request.session,
        user=request.user,
        conversation_id=conversation_id,
        attachment_id=attachment_id,
    )
    extension = http.FILE_EXTENSIONS.get(stored.mime_type, "bin")
    return http.file_response(
        stored.data, stored.mime_type, filename=f"axly-{stored.kind}-{stored.id}.{extension}"
    )
