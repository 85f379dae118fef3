"""CORS_ALLOWED_ORIGINS as the host reads it: the platform's JSON array, or a comma list."""

from __future__ import annotations

import pytest

from devhost.cors import HostCors, parse_allowed_origins


def test_the_value_the_platform_writes_is_read():
    """HostAssignmentContext.ApplyAppSettings writes JsonConvert.SerializeObject(origins)."""
    platform = '["https://app.axly.pro","http://localhost:19006"]'
    assert parse_allowed_origins(platform) == ("https://app.axly.pro", "http://localhost:19006")


def test_a_json_array_with_spaces_and_an_empty_one_are_read():
    assert parse_allowed_origins(' [ "https://App.Axly.pro" ] ') == ("https://app.axly.pro",)
    assert parse_allowed_origins("[]") == ()


def test_a_comma_list_is_read_trimmed_and_lower_cased():
    value = " https://app.axly.pro ,HTTP://LOCALHOST:19006,"
    assert parse_allowed_origins(value) == ("https://app.axly.pro", "http://localhost:19006")


def test_unset_means_no_origin():
    assert parse_allowed_origins("") == ()
    assert HostCors.from_environment({}).allowed_origins == frozenset()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*", "not an exact origin"),
        ('["*"]', "not an exact origin"),
        ("https://app.axly.pro/", "not an exact origin"),
        ("https://app.axly.pro/path", "not an exact origin"),
        ("app.axly.pro", "not an exact origin"),
        ('["https://app.axly.pro",', "not a valid JSON array"),
        ('["https://app.axly.pro", 1]', "array of strings"),
    ],
)
def test_anything_but_exact_origins_is_refused(value: str, message: str):
    with pytest.raises(ValueError, match=message):
        parse_allowed_origins(value)


def test_preflight_needs_options_origin_and_requested_method():
    asked = {"origin": "https://a.example", "access-control-request-method": "GET"}
    assert HostCors.is_preflight("OPTIONS", asked)
    assert not HostCors.is_preflight("GET", asked)
    assert not HostCors.is_preflight("OPTIONS", {"origin": "https://a.example"})
    assert not HostCors.is_preflight("OPTIONS", {"access-control-request-method": "GET"})
