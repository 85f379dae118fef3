"""Diagnose (v2 and legacy) and conversation bodies; `Diagnosis` is also the JSON schema the
model must answer in (structured output), so it carries no constraints the model's strict
mode cannot take.

User text refuses control characters other than tabs and line breaks (422 before any paid
call: PostgreSQL cannot store NUL). The model's text is not refused but cleaned of NUL, so a
paid answer is never lost to it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.schemas.common import FreeText, InputModel, OutputModel, Pagination, without_nul
from api.utils.media import MAX_IMAGES, MediaField

MAX_QUESTION_CHARS = 4000
MAX_TITLE_CHARS = 200
MAX_DTC_CODES = 20
DtcCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, pattern=r"^[PBCUpbcu][0-3][0-9A-Fa-f]{3}$"
    ),
]
LegacyModsText = Annotated[FreeText, StringConstraints(max_length=2000)]
LegacyModList = Annotated[
    list[Annotated[FreeText, StringConstraints(max_length=100)]], Field(max_length=30)
]
ModelText = Annotated[str, AfterValidator(without_nul)]  # adds nothing to the JSON schema


# --- What the model answers (strict structured output) -------------------------------------


class _ModelReply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LikelyCause(_ModelReply):
    cause: ModelText
    likelihood: Literal["high", "medium", "low"]
    how_to_check: ModelText


class DtcMeaning(_ModelReply):
    code: ModelText
    meaning: ModelText


class Diagnosis(_ModelReply):
    summary: ModelText
    severity: Literal["low", "medium", "high", "critical"]
    safe_to_drive: Literal["yes", "no", "unknown"]
    likely_causes: list[LikelyCause]
    next_steps: list[ModelText]
    follow_up_questions: list[ModelText]
    dtc: list[DtcMeaning]


# --- v2 -------------------------------------------------------------------------------------


class DiagnoseRequest(InputModel):
    """At least one of q, images, image, audio or dtc_codes."""

    q: FreeText | None = Field(None, max_length=MAX_QUESTION_CHARS, description="The question")
    vehicle_id: uuid.UUID | None = Field(None, description="One of your vehicles, for context")
    session_id: uuid.UUID | None = Field(None, description="Conversation to continue")
    # maxItems is checked before any item is: a long list costs one error, not one per item.
    images: list[MediaField] = Field(
        default_factory=list,
        max_length=MAX_IMAGES,
        description="Up to 4 images: Base64 or data URLs, 8 MB each",
    )
    image: MediaField | None = Field(None, description="One image (older clients)")
    audio: MediaField | None = Field(None, description="A recording: Base64 or data URL, 25 MB")
    dtc_codes: list[DtcCode] = Field(
        default_factory=list, max_length=MAX_DTC_CODES, description="OBD-II codes, e.g. P0420"
    )

    @model_validator(mode="after")
    def _something_to_diagnose(self) -> DiagnoseRequest:
        if not (_has_text(self.q) or self.images or self.image or self.audio or self.dtc_codes):
            raise ValueError("send at least one of q, images, image, audio or dtc_codes")
        return self


def _has_text(value: str | None) -> bool:
    return bool(value and value.strip())


class Usage(OutputModel):
    prompt_tokens: int
    completion_tokens: int


class DiagnoseResponse(OutputModel):
    session_id: uuid.UUID
    message_id: uuid.UUID = Field(description="The assistant message")
    answer: str = Field(description="Markdown for display")
    diagnosis: Diagnosis
    usage: Usage


# --- legacy `Diagnose` ----------------------------------------------------------------------


class _LegacyFields(InputModel):
    """What both legacy forms carry; `mods` differs (a query can only hold text)."""

    q: FreeText | None = Field(None, max_length=MAX_QUESTION_CHARS)
    make: FreeText | None = Field(None, max_length=100)
    model: FreeText | None = Field(None, max_length=100)
    year: FreeText | None = Field(None, max_length=10)


class LegacyDiagnoseQuery(_LegacyFields):
    mods: LegacyModsText | None = Field(None, description="Comma-separated")
    session_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _something_to_diagnose(self) -> LegacyDiagnoseQuery:
        if not _has_text(self.q):
            raise ValueError("send q, the question")
        return self


class LegacyDiagnoseBody(_LegacyFields):
    mods: LegacyModsText | LegacyModList | None = Field(
        None, description="Comma-separated, or a list (up to 30, 100 characters each)"
    )
    session_id: uuid.UUID | None = None
    image: MediaField | None = None
    audio: MediaField | None = None

    @model_validator(mode="after")
    def _something_to_diagnose(self) -> LegacyDiagnoseBody:
        if not (_has_text(self.q) or self.image or self.audio):
            raise ValueError("send at least one of q, image or audio")
        return self


class LegacyDiagnoseResponse(OutputModel):
    answer: str
    session_id: uuid.UUID


# --- conversations --------------------------------------------------------------------------


class ConversationQuery(Pagination):
    vehicle_id: uuid.UUID | None = None


class ConversationSummary(OutputModel):
    id: uuid.UUID
    title: str | None
    vehicle_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    last_message_preview: str | None


class MessageOut(OutputModel):
    id: uuid.UUID
    role: Literal["user", "assistant"] | None = Field(
        description="null on some messages migrated from the old history"
    )
    content: dict[str, Any] | None
    created_at: datetime


class ConversationDetail(OutputModel):
    id: uuid.UUID
    title: str | None
    vehicle_id: uuid.UUID | None
    created_at: datetime
    messages: list[MessageOut]


class ConversationUpdate(InputModel):
    title: FreeText = Field(min_length=1, max_length=MAX_TITLE_CHARS)

    @field_validator("title")
    @classmethod
    def _not_blank(cls, title: str) -> str:
        if not title.strip():
            raise ValueError("the title cannot be blank")
        return title.strip()
