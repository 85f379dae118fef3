"""The one text rule: what shows on screen, and text we did not write made safe."""

from __future__ import annotations

import pytest

from api.utils.text import ANY_CONTROL, CONTROL_BUT_LINE_BREAKS_AND_TABS, has_visible, safe_text


@pytest.mark.parametrize(
    ("value", "visible"),
    [
        ("a", True),
        ("  \u200b x", True),
        ("", False),
        (" \t\n", False),
        ("\u200b\u200d\ufeff\u00ad", False),  # zero-width, joiner, BOM, soft hyphen
        ("\u2028\u3000", False),  # line separator, ideographic space
    ],
)
def test_visible_means_a_character_that_shows(value: str, visible: bool):
    assert has_visible(value) is visible


def test_safe_text_drops_controls_keeps_line_breaks_and_tabs_and_mends_surrogates():
    assert safe_text("a\x00b\x1b[2Jc\x9b\td\r\ne\ud800") == "ab[2Jc\td\r\ne\ufffd"


def test_safe_text_cuts_at_a_word_boundary_when_one_is_near():
    assert safe_text("the quick brown fox", max_chars=12) == "the quick…"
    assert safe_text("short", max_chars=12) == "short"


def test_safe_text_cuts_mid_word_when_no_boundary_is_near():
    assert safe_text("a" * 20, max_chars=10) == "a" * 9 + "…"


def test_the_control_patterns_differ_only_in_line_breaks_and_tabs():
    for char in "\t\n\r":
        assert ANY_CONTROL.search(char)
        assert not CONTROL_BUT_LINE_BREAKS_AND_TABS.search(char)
    for char in "\x00\x7f\x9f\ud800":
        assert ANY_CONTROL.search(char)
        assert CONTROL_BUT_LINE_BREAKS_AND_TABS.search(char)
