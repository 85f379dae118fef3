"""Images and audio from clients: Base64 (or data URLs) or raw bytes, typed by their magic
bytes — never by what the client declares — and held to size limits.

Every failure names the field it is about (`images[1]`, `audio`), so a client can tell
which of several attachments was refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from api.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

MediaKind = Literal["image", "audio"]
# Base64 text or a data URL (JSON, multipart text fields); raw bytes (multipart file parts).
MediaField = str | bytes

MAX_IMAGES = 4
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_AUDIO_BYTES = 25 * 1024 * 1024
MAX_BYTES = {"image": MAX_IMAGE_BYTES, "audio": MAX_AUDIO_BYTES}

_DATA_URL = re.compile(r"^data:[^,]{0,200},", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Media:
    """One validated attachment."""

    kind: MediaKind
    mime_type: str
    data: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    @property
    def data_url(self) -> str:
        return f"data:{self.mime_type};base64,{self.base64}"


def _image_type(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _is_mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    # An MPEG audio frame header: 11 sync bits, then a layer that is not "reserved" (00).
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _audio_type(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        return "audio/mp4"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "audio/webm"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if _is_mp3(head):
        return "audio/mpeg"
    return None


SNIFFERS = {"image": _image_type, "audio": _audio_type}
ACCEPTED = {
    "image": "JPEG, PNG, WEBP or GIF",
    "audio": "WAV, MP3, M4A/MP4, OGG, WEBM or FLAC",
}


def decode_base64(value: str, *, field: str, max_bytes: int) -> bytes:
    """Strict Base64 (an optional `data:` prefix and whitespace are allowed); the size is
    checked from the encoded length first, so an oversized upload is never decoded."""
    encoded = _WHITESPACE.sub("", _DATA_URL.sub("", value.strip(), count=1))
    if len(encoded) // 4 * 3 > max_bytes + 2:
        raise _too_large(field, max_bytes)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(
            f"{field} is not valid Base64 (or a data URL with Base64 content)",
            code="invalid_base64",
            extra={"field": field},
        ) from None


def load_media(value: MediaField, *, kind: MediaKind, field: str) -> Media:
    """Validate one attachment: Base64 text or raw bytes (multipart file parts)."""
    max_bytes = MAX_BYTES[kind]
    if isinstance(value, str):
        data = decode_base64(value, field=field, max_bytes=max_bytes)
    else:
        data = value
    if len(data) > max_bytes:
        raise _too_large(field, max_bytes)
    mime_type = SNIFFERS[kind](data[:16])
    if mime_type is None:
        raise UnsupportedMediaTypeError(
            f"{field} is not a supported {kind}: send {ACCEPTED[kind]}",
            code=f"unsupported_{kind}_type",
            extra={"field": field},
        )
    return Media(kind=kind, mime_type=mime_type, data=data)


def load_images(images: list[MediaField], image: MediaField | None = None) -> list[Media]:
    """`images` plus the single `image` older clients send, at most MAX_IMAGES in all."""
    fields = [(f"images[{i}]", value) for i, value in enumerate(images)]
    if image is not None:
        fields.append(("image", image))
    if len(fields) > MAX_IMAGES:
        raise PayloadTooLargeError(
            f"Send at most {MAX_IMAGES} images per message, not {len(fields)}",
            code="too_many_images",
            extra={"field": "images"},
        )
    return [load_media(value, kind="image", field=field) for field, value in fields]


def _too_large(field: str, max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{field} is larger than {max_bytes // (1024 * 1024)} MB",
        code="media_too_large",
        extra={"field": field},
    )
