"""Attachments are typed by their bytes, decoded strictly and held to their limits."""

import base64
import string

import pytest

from api.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from api.utils.media import MAX_IMAGE_BYTES, load_images, load_media

SAMPLES = {
    "image": [
        (b"\xff\xd8\xff\xdb" + bytes(20), "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "image/png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(20), "image/webp"),
        (b"GIF89a" + bytes(20), "image/gif"),
    ],
    "audio": [
        (b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(20), "audio/wav"),
        (b"ID3\x04\x00" + bytes(20), "audio/mpeg"),
        (b"\xff\xfb\x90\x64" + bytes(20), "audio/mpeg"),  # an MPEG-1 layer III frame
        (b"\x00\x00\x00\x20ftypM4A " + bytes(20), "audio/mp4"),
        (b"OggS\x00\x02" + bytes(20), "audio/ogg"),
        # An EBML header as browsers' MediaRecorder writes it, DocType "webm".
        (bytes.fromhex("1a45dfa39f4286810142f7810142f2810442f381084282847765626d"), "audio/webm"),
        (b"fLaC\x00\x00\x00\x22" + bytes(20), "audio/flac"),
    ],
}


@pytest.mark.parametrize(
    ("kind", "data", "mime"),
    [(kind, data, mime) for kind, samples in SAMPLES.items() for data, mime in samples],
)
def test_type_comes_from_magic_bytes(kind, data: bytes, mime: str) -> None:
    encoded = base64.b64encode(data).decode()
    as_data_url = f"data:application/octet-stream;base64,{encoded[:8]}\n {encoded[8:]}"
    for value in (data, encoded, as_data_url):
        media = load_media(value, kind=kind, field="f")
        assert (media.mime_type, media.data) == (mime, data)


def test_an_image_is_not_audio_and_noise_is_neither() -> None:
    png = SAMPLES["image"][1][0]
    with pytest.raises(UnsupportedMediaTypeError, match="audio is not a supported audio"):
        load_media(png, kind="audio", field="audio")
    with pytest.raises(UnsupportedMediaTypeError):
        load_media(b"\xff\xf9" + bytes(20), kind="audio", field="audio")  # layer bits "00"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfb\xf0\x00" + bytes(20),  # frame sync, but bitrate index 1111 ("bad")
        b"\xff\xfb\x9c\x00" + bytes(20),  # frame sync, but sample rate index 11 (reserved)
        b"\xff\xeb\x90\x00" + bytes(20),  # frame sync, but version bits 01 (reserved)
        b"\x00\x00\x00\x18ftypheic" + bytes(20),  # an iPhone photo (HEIC), not M4A
        b"\x00\x00\x00\x1cftypavif" + bytes(20),  # an AVIF image
        bytes.fromhex("1a45dfa3a34286810142f7810142f2810442f381084282886d6174726f736b61"),  # MKV
    ],
)
def test_look_alikes_are_not_audio(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        load_media(data, kind="audio", field="audio")


def test_base64_is_strict() -> None:
    with pytest.raises(BadRequestError, match=r"images\[2\] is not valid Base64"):
        load_media("iVBORw0K?Gg==", kind="image", field="images[2]")


def test_the_clients_base64_is_passed_on_as_it_is_when_it_is_exactly_the_encoding() -> None:
    """No second encoding of megabytes for the provider's data URL; whitespace and
    non-canonical text (bits a lenient decoder ignores) are re-encoded, never passed on."""
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(39))  # 47 bytes: the last group is 2 of 3
    png = base64.b64encode(data).decode()
    assert load_media(png, kind="image", field="image").base64 is png
    assert load_media(f"data:image/png;base64,{png}", kind="image", field="image").base64 == png
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
    assert png[-2:] != "=="  # one "=": the last character carries 2 spare bits
    assert png[-1] == "="
    spare_bits_set = png[:-2] + alphabet[alphabet.index(png[-2]) + 1] + "="
    for unusual in (f"{png[:10]}\n{png[10:]}\n", spare_bits_set):
        media = load_media(unusual, kind="image", field="image")
        assert (media.base64, media.data) == (png, data)


def test_size_is_checked_before_decoding_and_after() -> None:
    with pytest.raises(PayloadTooLargeError, match="8 MB"):
        load_media("A" * (MAX_IMAGE_BYTES // 3 * 4 + 8), kind="image", field="image")
    with pytest.raises(PayloadTooLargeError):
        load_media(b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES), kind="image", field="image")


def test_images_and_the_single_image_share_one_limit() -> None:
    png = SAMPLES["image"][1][0]
    assert [m.mime_type for m in load_images([png] * 3, png)] == ["image/png"] * 4
    with pytest.raises(PayloadTooLargeError, match="at most 4 images"):
        load_images([png] * 4, png)
