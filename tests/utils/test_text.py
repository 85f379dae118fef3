"""The one text rule decides by Unicode properties (`unicodedata`): what each kind of text
refuses, what it keeps, and how provider text is made safe."""

from __future__ import annotations

import pytest

from api.utils.text import (
    ANY_TEXT,
    MULTI_LINE,
    ONE_LINE,
    CharacterRule,
    has_visible,
    safe_text,
)

C0 = [chr(code) for code in range(0x20)]
C1 = [chr(code) for code in range(0x80, 0xA0)]
CONTROLS = [*C0, "\x7f", *C1]
LINE_BREAKS_AND_TABS = ["\t", "\n", "\r"]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_every_c0_and_c1_control_is_refused_in_one_line_text(char: str) -> None:
    assert ONE_LINE.problem(f"a{char}b") == "control_character"
    assert ANY_TEXT.problem(f"a{char}b") is None


def test_free_text_keeps_tabs_and_line_breaks_only() -> None:
    for char in CONTROLS:
        expected = None if char in LINE_BREAKS_AND_TABS else "control_character"
        assert MULTI_LINE.problem(f"a{char}b") == expected, f"U+{ord(char):04X}"


@pytest.mark.parametrize("rule", [ONE_LINE, MULTI_LINE, ANY_TEXT])
@pytest.mark.parametrize("code", [0xD800, 0xDBFF, 0xDC00, 0xDFFF], ids=hex)
def test_a_lone_surrogate_is_refused_by_every_rule(rule: CharacterRule, code: int) -> None:
    assert rule.problem(f"x {chr(code)} y") == "lone_surrogate"


@pytest.mark.parametrize("override", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e"])
def test_bidi_embeddings_and_overrides_are_refused(override: str) -> None:
    assert ONE_LINE.problem(f"invoice{override}fdp.exe") == "bidi_override"
    assert MULTI_LINE.problem(f"invoice{override}fdp.exe") == "bidi_override"


KEPT = {
    "an emoji built with zero-width joiners": "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "a zero-width non-joiner (Persian)": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
    "left-to-right and right-to-left marks": "Golf \u200fGTI\u200e",
    "bidi isolates": "\u2067\u05e9\u05dc\u05d5\u05dd\u2069 Corolla",
    "private use (Apple keyboards type U+F8FF)": "Bought at the \uf8ff store",
    "a character unassigned in this Python's Unicode": "new \u0378 symbol",
}


@pytest.mark.parametrize("value", KEPT.values(), ids=KEPT.keys())
def test_legitimate_text_is_kept(value: str) -> None:
    assert ONE_LINE.problem(value) is None
    assert MULTI_LINE.problem(value) is None
    assert has_visible(value)


def test_text_of_format_characters_and_spaces_only_is_invisible() -> None:
    assert not has_visible("\u200b\u200d\ufeff \u00ad\u2028")
    assert has_visible("\u200bA")


def test_provider_text_is_made_safe_not_refused() -> None:
    assert safe_text("a\x00b\x9b[2J\tc\nd\udc00e\u202e") == "ab[2J\tc\nd\ufffde\u202e"


@pytest.mark.parametrize(
    ("value", "visible"),
    [
        ("a", True),
        ("  \u200b x", True),
        ("", False),
        (" \t\n", False),
        ("\u2028\u3000", False),  # line separator, ideographic space
    ],
)
def test_visible_means_a_character_that_shows(value: str, visible: bool) -> None:
    assert has_visible(value) is visible


def test_safe_text_cuts_at_a_word_boundary_when_one_is_near() -> None:
    assert safe_text("the quick brown fox", max_chars=12) == "the quick…"
    assert safe_text("short", max_chars=12) == "short"


def test_safe_text_cuts_mid_word_when_no_boundary_is_near() -> None:
    assert safe_text("a" * 20, max_chars=10) == "a" * 9 + "…"
