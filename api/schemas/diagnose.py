"""Diagnose (v2 and legacy) and conversation bodies; `Diagnosis` is also the JSON schema the
model must answer in (structured output).

User text follows the one text rule (api/schemas/common.py): a 422 before any paid call.
The model's text is never refused for its characters (a paid answer must not be lost to a
stray NUL) but cleaned by `safe_text`, and each field has a cap: in the schema the model
is given (in the keywords its provider takes, and in words: `api.services.ai`) and on the
reply, where anything longer is cut (at a word, with an ellipsis) rather than paid for again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    RootModel,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from api.schemas.common import (
    FORM,
    FreeText,
    InputModel,
    MultiLine,
    OutputModel,
    Page,
    Pagination,
)
from api.services.language import LANGUAGE_TAG
from api.utils.media import MAX_IMAGES, MediaField
from api.utils.text import safe_text

MAX_QUESTION_CHARS = 4000
MAX_TITLE_CHARS = 200
MAX_DTC_CODES = 20
DtcCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, pattern=r"^[PBCUpbcu][0-3][0-9A-Fa-f]{3}$"
    ),
]
LanguageTag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=35, pattern=LANGUAGE_TAG),
    Field(description="A BCP 47 language tag, e.g. es or pt-BR", examples=["es"]),
]
LegacyModsText = Annotated[str, StringConstraints(max_length=2000), MultiLine]
LegacyModList = Annotated[
    list[Annotated[str, StringConstraints(max_length=100), MultiLine]], Field(max_length=30)
]


# --- What the model answers (strict structured output) -------------------------------------


@dataclass(frozen=True)
class Cap:
    """`Annotated[str, Cap(n)]` or `Annotated[list[...], Cap(n)]` on a field of the model's
    reply: the schema says maxLength / maxItems n and the description says it in words (a
    provider is sent only the keywords it takes), and a longer reply is cut to n — text
    cleaned and cut at a word with an ellipsis (`safe_text`), a list to its first n
    items."""

    limit: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)  # a str or list schema: both take max_length
        cast("dict[str, Any]", schema)["max_length"] = self.limit
        return core_schema.no_info_before_validator_function(self._cut, schema)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        unit = "characters" if json_schema.get("type") == "string" else "items"
        json_schema["description"] = f"At most {self.limit} {unit}"
        return json_schema

    def _cut(self, value: Any) -> Any:
        if isinstance(value, str):
            return safe_text(value, self.limit)
        return value[: self.limit] if isinstance(value, list) else value


class _ModelReply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LikelyCause(_ModelReply):
    cause: Annotated[str, Cap(200)]
    likelihood: Literal["high", "medium", "low"]
    how_to_check: Annotated[str, Cap(600)]


class DtcMeaning(_ModelReply):
    code: Annotated[str, Cap(16)]
    meaning: Annotated[str, Cap(300)]


class Diagnosis(_ModelReply):
    summary: Annotated[str, Cap(1500)]
    severity: Literal["low", "medium", "high", "critical"]
    safe_to_drive: Literal["yes", "no", "unknown"]
    likely_causes: Annotated[list[LikelyCause], Cap(6)]
    next_steps: Annotated[list[Annotated[str, Cap(400)]], Cap(8)]
    follow_up_questions: Annotated[list[Annotated[str, Cap(300)]], Cap(5)]
    dtc: Annotated[list[DtcMeaning], Cap(30)]


# --- v2 -------------------------------------------------------------------------------------

# How media travel: Base64 text (or a data URL) in JSON; in multipart/form-data, a file part
# (raw bytes) — or a text part holding Base64, which is read the same way. One Python type
# (`MediaField`) for both, so a form body is a `DiagnoseRequest` too; the schemas differ.
Base64Media = Annotated[
    MediaField, WithJsonSchema({"type": "string", "description": "Base64, or a data: URL"})
]
FileMedia = Annotated[
    MediaField,
    WithJsonSchema(
        {
            "type": "string",
            "format": "binary",  # what generators (openapi-python-client) read as a file
            "contentMediaType": "application/octet-stream",  # OpenAPI 3.1's own spelling
            "description": "A file part (a text part with Base64 is read too)",
        }
    ),
]
IMAGES = "Up to 4 images, 8 MB each"
IMAGE = "One image (older clients)"
AUDIO = "A recording, up to 25 MB"


class DiagnoseRequest(InputModel):
    """diagnose2 as JSON: at least one of q, images, image, audio or dtc_codes; media as
    Base64 or data URLs; null reads as a field left out."""

    q: FreeText | None = Field(None, max_length=MAX_QUESTION_CHARS, description="The question")
    vehicle_id: uuid.UUID | None = Field(None, description="One of your vehicles, for context")
    session_id: uuid.UUID | None = Field(
        None, description="Conversation to continue; without it, a new one"
    )
    # maxItems is checked before any item is: a long list costs one error, not one per item.
    images: list[Base64Media] = Field(
        default_factory=list, max_length=MAX_IMAGES, description=IMAGES
    )
    image: Base64Media | None = Field(None, description=IMAGE)
    audio: Base64Media | None = Field(None, description=AUDIO)
    dtc_codes: list[DtcCode] = Field(
        default_factory=list,
        max_length=MAX_DTC_CODES,
        description="OBD-II codes, e.g. P0420 (in a form: repeated, or comma-separated)",
    )
    language: LanguageTag | None = Field(
        None,
        description="The language to answer in (BCP 47, e.g. es or pt-BR); it wins over "
        "Accept-Language and becomes the conversation's. Without it: the conversation's "
        "language, else Accept-Language, else DEFAULT_LANGUAGE",
    )

    @model_validator(mode="after")
    def _something_to_diagnose(self) -> Self:
        if not (_has_text(self.q) or self.images or self.image or self.audio or self.dtc_codes):
            raise ValueError("send at least one of q, images, image, audio or dtc_codes")
        return self


class DiagnoseForm(DiagnoseRequest):
    """diagnose2 as multipart/form-data: the same fields, media as file parts; `images` and
    `dtc_codes` repeat their part."""

    model_config = FORM

    images: list[FileMedia] = Field(default_factory=list, max_length=MAX_IMAGES, description=IMAGES)
    image: FileMedia | None = Field(None, description=IMAGE)
    audio: FileMedia | None = Field(None, description=AUDIO)


def _has_text(value: str | None) -> bool:
    return bool(value and value.strip())


class Usage(OutputModel):
    model_config = ConfigDict(extra="forbid")  # stored in AssistantTurn: see _StoredContent

    prompt_tokens: int
    completion_tokens: int


class DiagnoseResponse(OutputModel):
    session_id: uuid.UUID
    message_id: uuid.UUID = Field(description="The assistant message")
    answer: str = Field(description="Markdown for display, in `language`")
    diagnosis: Diagnosis
    usage: Usage
    language: str = Field(description="The language the answer is in (also Content-Language)")
    language_fallback: bool = Field(
        description="True when the language asked for (language field or Accept-Language) is "
        "not supported, so the answer is in the default language instead"
    )


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
    def _something_to_diagnose(self) -> Self:
        if not _has_text(self.q):
            raise ValueError("send q, the question")
        return self


class LegacyDiagnoseBody(_LegacyFields):
    """POST Diagnose as JSON: media as Base64 or data URLs; mods also as a list."""

    mods: LegacyModsText | LegacyModList | None = Field(
        None, description="Comma-separated, or a list (up to 30, 100 characters each)"
    )
    session_id: uuid.UUID | None = None
    image: Base64Media | None = None
    audio: Base64Media | None = None

    @model_validator(mode="after")
    def _something_to_diagnose(self) -> Self:
        if not (_has_text(self.q) or self.image or self.audio):
            raise ValueError("send at least one of q, image or audio")
        return self


class LegacyDiagnoseForm(LegacyDiagnoseBody):
    """POST Diagnose as multipart/form-data: an image and a recording as file parts (a
    repeated part counts once: its last value)."""

    model_config = FORM

    mods: LegacyModsText | None = Field(None, description="Comma-separated")
    image: FileMedia | None = None
    audio: FileMedia | None = None


class LegacyDiagnoseResponse(OutputModel):
    answer: str
    session_id: uuid.UUID


# --- conversations --------------------------------------------------------------------------


class ConversationQuery(Pagination):
    vehicle_id: uuid.UUID | None = None


CONVERSATION_LANGUAGE = "The language its answers are in; null until one is answered"


class ConversationSummary(OutputModel):
    id: uuid.UUID
    title: str | None
    vehicle_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    last_message_preview: str | None
    language: str | None = Field(description=CONVERSATION_LANGUAGE)


class _StoredContent(OutputModel):
    """A message's content exactly as stored: a key this model does not know makes the
    content another kind (in the end `LegacyTurn`), so nothing stored is ever left out."""

    model_config = ConfigDict(extra="forbid")


class Attachment(_StoredContent):
    """A photo or recording sent with a question (its bytes stay on the server)."""

    id: uuid.UUID
    kind: Literal["image", "audio"]
    mime_type: str
    size_bytes: int
    sha256: str


class UserTurn(_StoredContent):
    """A question: its text, the fault codes (sent or found in the text or recording), the
    recording's transcript and sound analysis, and what was attached."""

    text: str | None
    dtc_codes: list[str]
    transcript: str | None
    sound_analysis: str | None
    attachments: list[Attachment]


class AssistantTurn(_StoredContent):
    """An answer: the structured diagnosis, its Markdown, the model and its token usage."""

    answer: str
    diagnosis: Diagnosis
    model: str
    usage: Usage


class LegacyTurn(RootModel[dict[str, Any]]):
    """A turn migrated from the old history, as the old app stored it (any JSON object)."""


class ConversationPage(Page[ConversationSummary]):
    """A page of the caller's conversations."""


class ConversationMessage(OutputModel):
    id: uuid.UUID
    role: Literal["user", "assistant"] | None = Field(
        description="null on some messages migrated from the old history"
    )
    content: UserTurn | AssistantTurn | LegacyTurn | None = Field(
        union_mode="left_to_right",
        description="A user's question (UserTurn), an answer (AssistantTurn), or a turn "
        "migrated from the old history (LegacyTurn)",
    )
    created_at: datetime


class ConversationDetail(OutputModel):
    id: uuid.UUID
    title: str | None
    vehicle_id: uuid.UUID | None
    created_at: datetime
    language: str | None = Field(description=CONVERSATION_LANGUAGE)
    messages: list[ConversationMessage]


class ConversationUpdate(InputModel):
    title: FreeText = Field(min_length=1, max_length=MAX_TITLE_CHARS)

    @field_validator("title")
    @classmethod
    def _not_blank(cls, title: str) -> str:
        if not title.strip():
            raise ValueError("the title cannot be blank")
        return title.strip()


# --- quota and fault codes -------------------------------------------------------------------


class DiagnosisUsage(OutputModel):
    """The caller's diagnosis allowances over the rolling 24 hours (each turn counts for 24
    hours from when it was asked; nothing resets at midnight)."""

    diagnoses_today: int = Field(
        description="Diagnoses counted in the last 24 hours, a running one included"
    )
    diagnoses_per_day: int = Field(description="DIAGNOSES_PER_DAY")
    diagnoses_remaining: int
    resets_at: datetime | None = Field(
        description="When the oldest diagnosis counted leaves the 24-hour window, giving one "
        "back (the Retry-After of a diagnosis_quota_exceeded 429 when none is left); null "
        "when none is counted"
    )
    attachment_bytes_today: int = Field(
        description="Attachment bytes newly stored in the last 24 hours (a file sent before "
        "counts once)"
    )
    attachment_bytes_per_day: int = Field(description="ATTACHMENT_BYTES_PER_DAY")
    attachment_bytes_remaining: int
    attachment_bytes_resets_at: datetime | None = Field(
        description="When the oldest diagnosis that stored bytes leaves the window; null when "
        "none did"
    )
    diagnosis_running: bool = Field(
        description="A diagnosis of yours is running now (another answers 429 until it ends)"
    )
    window_seconds: int = Field(description="The window, 86400")


class FaultCode(OutputModel):
    """What an OBD-II code means, from the same decoder the diagnosis prompt uses."""

    code: str = Field(examples=["P0420"])
    system: str = Field(description="powertrain, body, chassis or network communication")
    generic: bool = Field(description="Defined by SAE/ISO for every make (not by the maker)")
    defined_by: Literal["generic", "manufacturer-specific", "reserved"]
    subsystem: str | None = Field(description="The SAE J2012 group, where it defines one")
    meaning: str | None = Field(
        description="The standard description of a generic code; null when we do not know it "
        "(manufacturer-specific codes, B and C codes): never guessed"
    )
