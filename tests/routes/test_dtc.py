"""GET /api/dtc/{code} through the local host: the decoder the prompt uses, never an
invented meaning, a malformed code named in a 422, no AI call."""

from __future__ import annotations

import httpx
import pytest

from api.models import User
from tests.factories import auth_headers
from tests.fake_openai import FakeOpenAI


def test_a_generic_code_gets_its_structure_and_standard_meaning(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.get("/dtc/p0420", headers=auth_headers(user))
    assert response.status_code == 200
    assert response.json() == {
        "code": "P0420",
        "system": "powertrain",
        "generic": True,
        "defined_by": "generic",
        "subsystem": "auxiliary emission controls",
        "meaning": "Catalyst System Efficiency Below Threshold",
    }
    assert openai.untouched


@pytest.mark.parametrize(
    ("code", "system", "defined_by", "subsystem"),
    [
        ("P1134", "powertrain", "manufacturer-specific", "fuel and air metering"),
        ("C0035", "chassis", "generic", None),
        ("B1000", "body", "manufacturer-specific", None),
        ("U3000", "network communication", "reserved", None),
    ],
)
def test_a_code_without_a_standard_description_gets_no_meaning(
    client: httpx.Client, user: User, code: str, system: str, defined_by: str, subsystem
) -> None:
    body = client.get(f"/dtc/{code}", headers=auth_headers(user)).json()
    assert body == {
        "code": code,
        "system": system,
        "generic": defined_by == "generic",
        "defined_by": defined_by,
        "subsystem": subsystem,
        "meaning": None,
    }


@pytest.mark.parametrize("code", ["P04200", "X0420", "P4420", "P04G0", "P042", "P%200420"])
def test_a_malformed_code_is_422_naming_it(client: httpx.Client, user: User, code: str) -> None:
    response = client.get(f"/dtc/{code}", headers=auth_headers(user))
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert [error["field"] for error in problem["errors"]] == ["path.code"]
    assert problem["code"] == "validation_failed"


def test_the_lookup_needs_a_token(client: httpx.Client) -> None:
    response = client.get("/dtc/P0420")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
