"""AI diagnosis (`diagnose2`, legacy `Diagnose`) and the stored conversations.

Functions routes are case-insensitive, so v2 cannot be `diagnose`: the legacy `Diagnose`
keeps its name for old app builds and v2 is `diagnose2`. Both map their request onto one
service call (`services.diagnose.diagnose`); only the wire shapes differ. They are
`SlowUserRequest`s: the turn holds no database connection while the AI provider works.
"""

from __future__ import annotations

import uuid
from typing import Any

import azure.functions as func

from api.endpoints import Form, Router, SlowUserRequest, UserRequest
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
    LegacyDiagnoseBody,
    LegacyDiagnoseForm,
    LegacyDiagnoseQuery,
    LegacyDiagnoseResponse,
)
from api.services import conversations
from api.services.diagnose import DiagnoseInput, DiagnoseResult, diagnose
from api.services.listing import Listing
from api.services.prompt import LegacyMod, LegacyVehicle
from api.settings import get_settings
from api.utils.media import MediaField
from api.utils.multipart import parse_form

router = Router("diagnose")

DIAGNOSE_ERRORS = (404, 429, 502, 503, 504)


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


@router.operation(
    "POST",
    "diagnose2",
    summary="Diagnose a problem from text, photos, a recording and fault codes",
    description="JSON with Base64 media, or multipart/form-data with the same field names "
    "and media as file parts. Omit session_id to start a new conversation.",
    response=DiagnoseResponse,
    form=Form(DiagnoseForm, _v2_form),
    max_body_bytes=_max_body_bytes,
    errors=DIAGNOSE_ERRORS,
)
def diagnose_v2(request: SlowUserRequest[DiagnoseRequest]) -> DiagnoseResult:
    body = request.body
    return diagnose(
        unit_of_work=request.unit_of_work,
        user=request.user,
        request=DiagnoseInput(
            text=body.q,
            session_id=body.session_id,
            vehicle_id=body.vehicle_id,
            images=body.images,
            image=body.image,
            audio=body.audio,
            dtc_codes=body.dtc_codes,
        ),
    )


def _legacy_input(
    fields: LegacyDiagnoseQuery | LegacyDiagnoseBody,
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
        channel="legacy",
    )


@router.operation(
    "GET",
    "Diagnose",
    summary="Legacy diagnosis from query parameters (old app builds)",
    response=LegacyDiagnoseResponse,
    errors=DIAGNOSE_ERRORS,
)
def diagnose_legacy_get(
    request: SlowUserRequest[None, LegacyDiagnoseQuery],
) -> DiagnoseResult:
    return diagnose(
        unit_of_work=request.unit_of_work, user=request.user, request=_legacy_input(request.query)
    )


@router.operation(
    "POST",
    "Diagnose",
    summary="Legacy diagnosis with an optional image and recording (old app builds)",
    response=LegacyDiagnoseResponse,
    form=Form(LegacyDiagnoseForm, _form),
    max_body_bytes=_max_body_bytes,
    errors=DIAGNOSE_ERRORS,
)
def diagnose_legacy_post(request: SlowUserRequest[LegacyDiagnoseBody]) -> DiagnoseResult:
    body = request.body
    return diagnose(
        unit_of_work=request.unit_of_work,
        user=request.user,
        request=_legacy_input(body, image=body.image, audio=body.audio),
    )


@router.operation(
    "GET",
    "conversations",
    summary="Your conversations, most recently active first",
    response=ConversationPage,
)
def list_conversations(
    request: UserRequest[None, ConversationQuery],
) -> Listing[ConversationSummary]:
    query = request.query
    return conversations.list_conversations(
        session=request.session,
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
