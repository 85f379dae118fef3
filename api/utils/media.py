"""Images and audio from clients: Base64 (or data URLs) or raw bytes, typed by their magic
bytes — never by what the client declares — and held to size limits.

Every failure names the field it is about (`images[1]`, `audio`), so a client can tell
which of several attachments was refused.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
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
# The most one message can carry: MAX_IMAGES images and a recording.
MAX_TURN_ATTACHMENT_BYTES = MAX_IMAGES * MAX_IMAGE_BYTES + MAX_AUDIO_BYTES

_DATA_URL = re.compile(r"data:[^,]{0,200},", re.IGNORECASE)  # matched at the start only


@dataclass(frozen=True)
class Media:
    """One validated attachment."""

    kind: MediaKind
    mime_type: str
    data: bytes
    # The client's own Base64 of `data`, when it is exactly what encoding `data` gives (no
    # whitespace, canonical padding): sent on to the provider as it is, not encoded again.
    encoded: str | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def base64(self) -> str:
        if self.encoded is not None:
            return self.encoded
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
    # An MPEG audio frame header: 11 sync bits; no reserved version (01) or layer (00) (which
    # also keeps out AAC/ADTS, FF F1); a bitrate index that is not "bad" (1111) and a sample
    # rate index that is not reserved (11). Two bytes of sync alone match too much noise.
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, sample_rate = head[2] >> 4, (head[2] >> 2) & 0b11
    return version != 0b01 and layer != 0b00 and bitrate != 0b1111 and sample_rate != 0b11


# ISO base media brands of audio files (Apple M4A/M4B, generic MP4 from phone recorders,
# 3GPP); image (HEIC, AVIF) and QuickTime brands share the `ftyp` box and are refused.
MP4_AUDIO_BRANDS = {
    b"M4A ", b"M4B ", b"mp41", b"mp42", b"isom", b"iso2", b"iso4", b"iso5", b"iso6",
    b"dash", b"3gp4", b"3gp5", b"3gp6", b"3g2a",
}  # fmt: skip


def _audio_type(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp" and head[8:12] in MP4_AUDIO_BRANDS:
        return "audio/mp4"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    # EBML is also Matroska (.mkv/.mka); the header's DocType, in its first bytes, says webm.
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head:
        return "audio/webm"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if _is_mp3(head):
        return "audio/mpeg"
    return None


SNIFFERS = {"image": _image_type, "audio": _audio_type}
SNIFF_BYTES = 64  # enough for every signature above, WebM's DocType included
ACCEPTED = {
    "image": "JPEG, PNG, WEBP or GIF",
    "audio": "WAV, MP3, M4A/MP4, OGG, WEBM or FLAC",
}


def decode_base64(value: str, *, field: str, max_bytes: int) -> tuple[bytes, str]:
    """Strict Base64 (an optional `data:` prefix and whitespace are allowed): the bytes, and
    the Base64 text they were read from. The size is checked from the encoded length first,
    so an oversized upload is never decoded. Whitespace is looked for only when strict
    decoding fails: clients send Base64 without it, and a pass over megabytes of text for
    nothing is the most expensive step of reading an image."""
    encoded = value.strip()
    prefix = _DATA_URL.match(encoded)
    if prefix:
        encoded = encoded[prefix.end() :]
    if len(encoded) // 4 * 3 > max_bytes + 2:
        raise _too_large(field, max_bytes)
    try:
        return binascii.a2b_base64(encoded, strict_mode=True), encoded
    except (binascii.Error, ValueError):
        pass
    encoded = "".join(encoded.split())  # line-wrapped Base64 (MIME, `base64` without -w0)
    try:
        return binascii.a2b_base64(encoded, strict_mode=True), encoded
    except (binascii.Error, ValueError):
        raise BadRequestError(
            f"{field} is not valid Base64 (or a data URL with Base64 content)",
            code="invalid_base64",
            extra={"field": field},
        ) from None


def _canonical(data: bytes, encoded: str) -> bool:
    """Is `encoded` exactly base64(data)? Decoding was strict, so only the last group can
    differ: extra padding, or bits that a lenient decoder ignores."""
    if len(encoded) != (len(data) + 2) // 3 * 4:
        return False
    last_group = data[-(len(data) % 3 or 3) :]
    return not data or encoded[-4:] == base64.b64encode(last_group).decode("ascii")


def load_media(value: MediaField, *, kind: MediaKind, field: str) -> Media:
    """Validate one attachment: Base64 text or raw bytes (multipart file parts)."""
    max_bytes = MAX_BYTES[kind]
    encoded = None
    if isinstance(value, str):
        data, encoded = decode_base64(value, field=field, max_bytes=max_bytes)
        encoded = encoded if _canonical(data, encoded) else None
    else:
        data = value
    if len(data) > max_bytes:
        raise _too_large(field, max_bytes)
    mime_type = SNIFFERS[kind](data[:SNIFF_BYTES])
    if mime_type is None:
        raise UnsupportedMediaTypeError(
            f"{field} is not a supported {kind}: send {ACCEPTED[kind]}",
            code=f"unsupported_{kind}_type",
            extra={"field": field},
        )
    return Media(kind=kind, mime_type=mime_type, data=data, encoded=encoded)


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
