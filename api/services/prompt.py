"""What the model is sent: the system prompt (api/prompts/diagnostician.md), the vehicle, the
last N turns of the conversation, and the new question with its photos, recording and
fault-code meanings.

Earlier turns are replayed as text only: photos are never re-sent (a marker stands in), so a
turn costs the same however many photos the conversation already holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from api.services.dtc import DtcInfo
from api.services.language import Translation
from api.utils.media import Media

if TYPE_CHECKING:  # the SDK's shapes of a message and of a message part
    from openai.types.chat import ChatCompletionContentPartParam as ChatPart
    from openai.types.chat import ChatCompletionMessageParam as ChatTurn

PROMPT_FILE = Path(__file__).resolve().parent.parent / "prompts" / "diagnostician.md"


class ModLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def installed_on(self) -> date | None: ...


class VehicleLike(Protocol):
    """A garage `Vehicle`, or the make/model/year a legacy client sends (read only)."""

    @property
    def year(self) -> str: ...
    @property
    def make(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def submodel(self) -> str | None: ...
    @property
    def vin(self) -> str | None: ...
    @property
    def mods(self) -> Sequence[ModLike]: ...


@dataclass(frozen=True)
class LegacyMod:
    name: str
    description: str | None = None
    installed_on: date | None = None


@dataclass(frozen=True)
class LegacyVehicle:
    year: str
    make: str
    model: str
    mods: Sequence[LegacyMod] = field(default_factory=tuple)
    submodel: str | None = None
    vin: str | None = None


@dataclass(frozen=True)
class NewTurn:
    """The user's new message, validated."""

    text: str | None
    images: list[Media]
    dtc: list[DtcInfo]
    transcript: str | None = None
    sound_analysis: str | None = None


@cache
def system_prompt() -> str:
    return PROMPT_FILE.read_text(encoding="utf-8").strip()


def vehicle_context(vehicle: VehicleLike) -> str:
    """The vehicle as the model sees it: identity, VIN (it encodes engine and plant), mods."""
    parts = (vehicle.year, vehicle.make, vehicle.model, vehicle.submodel)
    name = " ".join(part for part in parts if part)
    lines = [f"The driver's vehicle: {name or 'not specified'}."]
    if vehicle.vin:
        lines.append(f"VIN: {vehicle.vin}")
    if vehicle.mods:
        lines.append("Installed modifications:")
        for mod in vehicle.mods:
            line = f"- {mod.name}"
            if mod.description:
                line += f": {mod.description}"
            if mod.installed_on:
                line += f" (installed {mod.installed_on.isoformat()})"
            lines.append(line)
    else:
        lines.append("No modifications recorded.")
    return "\n".join(lines)


def turn_text(
    text: str | None,
    *,
    dtc_lines: Iterable[str] = (),
    transcript: str | None = None,
    sound_analysis: str | None = None,
    photo_marker: str | None = None,
) -> str:
    """One user turn as text; used for the new turn and for replaying stored ones."""
    parts = [text.strip()] if text and text.strip() else []
    dtc_lines = list(dtc_lines)
    if dtc_lines:
        parts.append("Fault codes:\n" + "\n".join(f"- {line}" for line in dtc_lines))
    if transcript:
        parts.append(f"Transcript of the attached recording:\n{transcript}")
    if sound_analysis:
        parts.append(f"Analysis of the recording's sound:\n{sound_analysis}")
    if photo_marker:
        parts.append(photo_marker)
    return "\n\n".join(parts) or "(no text)"


def new_turn_message(turn: NewTurn) -> ChatTurn:
    text = turn_text(
        turn.text,
        dtc_lines=[info.for_prompt() for info in turn.dtc],
        transcript=turn.transcript,
        sound_analysis=turn.sound_analysis,
    )
    if not turn.images:
        return {"role": "user", "content": text}
    parts: list[ChatPart] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": image.data_url}} for image in turn.images]
    return {"role": "user", "content": parts}


def _earlier_photos_marker(count: int) -> str | None:
    if not count:
        return None
    return f"[{count} photo(s) sent with this message earlier; not shown again]"


def replay_turn(role: str, content: dict[str, Any] | None) -> ChatTurn:
    """A stored message as history. Handles today's shapes and those migrated from the old
    history (`{"content": "text"}` or `{"content": [parts]}`, possibly with inline images)."""
    content = content or {}
    if role == "assistant":
        return {"role": "assistant", "content": _assistant_text(content)}
    legacy = content.get("content")
    text: object
    if isinstance(legacy, list):  # old inline parts: keep the text, count the images
        text = "\n".join(p.get("text", "") for p in legacy if isinstance(p, dict))
        photos = sum(1 for p in legacy if isinstance(p, dict) and p.get("type") == "image_url")
    else:
        text = content.get("text") if "text" in content else legacy
        photos = sum(1 for a in content.get("attachments", []) if a.get("kind") == "image")
    return {
        "role": "user",
        "content": turn_text(
            text if isinstance(text, str) else None,
            dtc_lines=content.get("dtc_codes", []),
            transcript=content.get("transcript"),
            sound_analysis=content.get("sound_analysis"),
            photo_marker=_earlier_photos_marker(photos),
        ),
    }


def _assistant_text(content: dict[str, Any]) -> str:
    for key in ("answer", "content"):
        value = content.get(key)
        if isinstance(value, str):
            return value
    return "(no answer)"


def language_instruction(language: Translation) -> str:
    """What the model is told about the answer's language: in English (what the rest of the
    prompt is written in) and in the language itself. Enum values stay as the schema says,
    since the server renders them in the language itself (api/services/language.py)."""
    return (
        f"{language.reply_in} Write every text value of your JSON answer (summary, causes, "
        f"how to check, next steps, follow-up questions, fault-code meanings) in "
        f"{language.name}, whatever language the question or earlier turns are in. Keep the "
        "JSON keys and the fixed values of severity, likelihood and safe_to_drive exactly as "
        "the schema gives them."
    )


def build_messages(
    *,
    vehicle: VehicleLike | None,
    history: Sequence[tuple[str, dict[str, Any] | None]],
    turn: NewTurn,
    language: Translation,
) -> list[ChatTurn]:
    """System prompt and answer language, vehicle, the history given (already cut to the
    window), new turn."""
    messages: list[ChatTurn] = [
        {"role": "system", "content": system_prompt()},
        {"role": "system", "content": language_instruction(language)},
    ]
    if vehicle is not None:
        messages.append({"role": "system", "content": vehicle_context(vehicle)})
    messages += [replay_turn(role, content) for role, content in history]
    messages.append(new_turn_message(turn))
    return messages


def title_messages(first_question: str, language: Translation) -> list[ChatTurn]:
    return [
        {
            "role": "system",
            "content": "Write a title of at most 6 words for a car-diagnosis conversation "
            f"that starts with the user's message, in {language.name}. Reply with the title "
            f"only. {language.reply_in}",
        },
        {"role": "user", "content": first_question},
    ]
