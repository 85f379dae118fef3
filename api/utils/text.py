"""The one rule for text: which characters user text may not hold, what counts as visible,
and the one cleaning of text we did not write (the AI provider's, or a client's quoted back
in an error) before it is stored or shown. The pydantic validators built on it are in
api/schemas/common.py."""

from __future__ import annotations

import re
import unicodedata

# Control characters are exactly Unicode's Cc: C0 (U+0000-U+001F), DEL and C1 (U+0080-U+009F),
# e.g. the terminal escape `\x9b[2J`. Lone surrogates (U+D800-U+DFFF, only reachable through
# JSON `\ud800` escapes) are not text at all: no encoder (UTF-8, the OpenAI SDK's, psycopg's)
# accepts them.
_SURROGATES = "\ud800-\udfff"
_CONTROLS_BUT_LINE_BREAKS_AND_TABS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
LONE_SURROGATE = re.compile(f"[{_SURROGATES}]")
ANY_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_SURROGATES}]")
CONTROL_BUT_LINE_BREAKS_AND_TABS = re.compile(
    f"[{_CONTROLS_BUT_LINE_BREAKS_AND_TABS}{_SURROGATES}]"
)
_UNSAFE = re.compile(f"[{_CONTROLS_BUT_LINE_BREAKS_AND_TABS}]")
# What shows nothing on screen: format characters (zero-width space and joiners, bidi marks,
# the BOM, soft hyphens ...), separators and controls.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})


def has_visible(value: str) -> bool:
    """Does `value` hold at least one character that shows on screen?"""
    return any(unicodedata.category(char) not in INVISIBLE_CATEGORIES for char in value)


def safe_text(value: str, max_chars: int | None = None) -> str:
    """Text we did not write made safe to store and show: lone surrogates become U+FFFD,
    control characters other than tabs and line breaks go (NUL included: PostgreSQL refuses
    it in text and JSONB), and with `max_chars` it is cut to that length, at a word boundary
    when one is near, marked with an ellipsis."""
    value = _UNSAFE.sub("", LONE_SURROGATE.sub("\ufffd", value))
    if max_chars is None or len(value) <= max_chars:
        return value
    cut = value[: max_chars - 1]
    space = cut.rfind(" ", max_chars // 2)
    return (cut[:space] if space > 0 else cut).rstrip() + "…"
