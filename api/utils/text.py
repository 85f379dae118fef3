"""The one rule for text: which characters user text may not hold, what counts as visible,
and the one cleaning of text we did not write (the AI provider's, or a client's quoted back
in an error) before it is stored or shown. The pydantic validators built on it are in
api/schemas/common.py."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

# Characters are judged by their Unicode properties (`unicodedata`), never by hand-kept
# ranges:
# - Cc, control characters: C0, DEL and C1 (e.g. the terminal escape `\x9b[2J`): refused in
#   user text, but tab, CR and LF where free text allows them.
# - Cs, surrogates: a lone one (only reachable through a JSON `\ud800` escape) is not text
#   at all: no encoder (UTF-8, the OpenAI SDK's, psycopg's) accepts it. Always refused.
# - Bidi embeddings and overrides (Bidi_Class LRE, RLE, LRO, RLO, PDF; category Cf): they
#   reorder on screen the text after them — the classic way to make a name read as
#   something else ("Trojan Source"); Unicode recommends the isolates instead, which stay
#   allowed. Refused wherever control characters are.
# - Other format characters (Cf) stay allowed: the zero-width joiner builds emoji (👨‍👩‍👧),
#   ZWNJ is needed in Persian, LRM/RLM in mixed-direction text. A value made only of them
#   (or of spaces) shows nothing and is refused as invisible (`has_visible`).
# - Cn, unassigned in this Python's Unicode version, and Co, private use, stay allowed: the
#   emoji of a newer Unicode than the runtime's are "unassigned" here, and Apple keyboards
#   type U+F8FF (private use).
_LINE_BREAKS_AND_TABS = frozenset("\t\n\r")
_BIDI_OVERRIDES = frozenset({"LRE", "RLE", "LRO", "RLO", "PDF"})
# What shows nothing on screen: format characters (zero-width space and joiners, bidi marks,
# the BOM, soft hyphens ...), separators and controls.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})

Problem = Literal["lone_surrogate", "control_character", "bidi_override"]


@dataclass(frozen=True)
class CharacterRule:
    """Which characters a kind of user text may not hold (see the module's comments):
    lone surrogates always; with `controls`, control characters (but `allowed` ones) and
    bidi overrides."""

    controls: bool
    allowed: frozenset[str] = frozenset()

    def problem(self, value: str) -> Problem | None:
        """What is wrong with the first refused character of `value`; None when none is."""
        for char in value:
            category = unicodedata.category(char)
            if category == "Cs":
                return "lone_surrogate"
            if not self.controls or char in self.allowed:
                continue
            if category == "Cc":
                return "control_character"
            if category == "Cf" and unicodedata.bidirectional(char) in _BIDI_OVERRIDES:
                return "bidi_override"
        return None


ONE_LINE = CharacterRule(controls=True)
MULTI_LINE = CharacterRule(controls=True, allowed=_LINE_BREAKS_AND_TABS)
ANY_TEXT = CharacterRule(controls=False)  # only what cannot be encoded


def has_visible(value: str) -> bool:
    """Does `value` hold at least one character that shows on screen?"""
    return any(unicodedata.category(char) not in INVISIBLE_CATEGORIES for char in value)


def _made_safe(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cs":
        return "\ufffd"
    if category == "Cc" and char not in _LINE_BREAKS_AND_TABS:
        return ""
    return char


def safe_text(value: str, max_chars: int | None = None) -> str:
    """Text we did not write made safe to store and show: lone surrogates become U+FFFD,
    control characters other than tabs and line breaks go (NUL included: PostgreSQL refuses
    it in text and JSONB), and with `max_chars` it is cut to that length, at a word boundary
    when one is near, marked with an ellipsis."""
    value = "".join(map(_made_safe, value))
    if max_chars is None or len(value) <= max_chars:
        return value
    cut = value[: max_chars - 1]
    space = cut.rfind(" ", max_chars // 2)
    return (cut[:space] if space > 0 else cut).rstrip() + "…"
