"""Abusive bodies are refused small and early (issue 10, D1): a list is length-checked before
its items, a body of very many JSON items is refused unparsed, and no error body exceeds
16 KB however much was wrong with the request."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.orm import Session

from api.endpoints import Operation
from api.models import Conversation, User
from api.routes import routers
from tests.factories import PNG, auth_headers, b64, count, example_path
from tests.fake_openai import FakeOpenAI

MAX_ERROR_BODY = 16 * 1024


def json_post(client: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def assert_small_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:500]
    assert len(response.content) <= MAX_ERROR_BODY
    body = response.json()
    assert body["code"] == code
    return body


def test_the_issue_reproduction_of_500000_images_is_refused_unparsed(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    """Was a 161 MB 422 after 14 s (two errors per item)."""
    body = b'{"q":"x","images":[' + b",".join([b"1"] * 500_000) + b"]}"
    response = json_post(client, "/diagnose2", body, **auth_headers(user))
    problem = assert_small_problem(response, 413, "too_many_json_items")
    assert "errors" not in problem
    assert openai.untouched
    assert count(session, Conversation, Conversation.user_id == user.id) == 0


@pytest.mark.parametrize("items", [5, 5_000])
def test_a_long_images_list_is_one_error_whatever_its_items(
    client: httpx.Client, openai: FakeOpenAI, user: User, items: int
) -> None:
    body = b'{"q":"x","images":[' + b",".join([b"1"] * items) + b"]}"
    response = json_post(client, "/diagnose2", body, **auth_headers(user))
    problem = assert_small_problem(response, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["body.images"]
    assert "at most 4 items" in problem["errors"][0]["message"]
    assert openai.untouched


def test_a_long_images_list_in_a_form_is_one_error_too(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    files = [("images", (f"{n}.png", PNG)) for n in range(30)]
    response = client.post("/diagnose2", headers=auth_headers(user), files=files)
    problem = assert_small_problem(response, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["body.images"]
    assert openai.untouched


def test_a_form_field_of_a_million_commas_is_a_few_codes_not_a_million(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        data={"q": "x", "dtc_codes": "P0420," * 200_000},
        files={"images": ("a.png", PNG)},
    )
    problem = assert_small_problem(response, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["body.dtc_codes"]


def test_a_megabyte_of_unknown_keys_to_login_without_a_token(client: httpx.Client) -> None:
    """Was a 422 of 90,001 errors (11.6 MB)."""
    keys = b",".join(b'"k%05d":1' % n for n in range(80_000))  # 880 KB: under MAX_BODY_BYTES
    response = json_post(client, "/login", b"{" + keys + b"}")
    assert_small_problem(response, 413, "too_many_json_items")


def test_thousands_of_unknown_keys_list_twenty_errors_and_count_the_rest(
    client: httpx.Client,
) -> None:
    keys = b",".join(b'"key%04d":1' % n for n in range(3_000))
    response = json_post(client, "/login", b"{" + keys + b"}")
    problem = assert_small_problem(response, 422, "validation_failed")
    assert len(problem["errors"]) == 20
    assert problem["errors_omitted"] == 3_002 - 20  # 3,000 unknown keys, e-mail, password
    assert problem["errors"][0]["field"] == "body.email"


def test_a_huge_question_is_one_short_error(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "x" * 5_000_000})
    problem = assert_small_problem(response, 422, "validation_failed")
    assert [e["field"] for e in problem["errors"]] == ["body.q"]


def test_unknown_keys_next_to_media_are_reported_without_the_media(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    image = b64(PNG)
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"images": [image], image: image}
    )
    problem = assert_small_problem(response, 422, "validation_failed")
    assert image not in response.text
    assert problem["errors"][0]["loc"] == ["body", image[:63] + "…"]


WITH_BODY = [op for router in routers() for op in router.operations if op.body is not None]


@pytest.mark.parametrize("op", WITH_BODY, ids=[f"{op.method} {op.route}" for op in WITH_BODY])
def test_a_chunked_body_is_411_on_every_route_that_takes_one(
    client: httpx.Client, openai: FakeOpenAI, user: User, op: Operation
) -> None:
    """The Functions host hands a chunked body to the function empty (devhost too): read
    as no body, it made a confusing 400 or 422, or a logout of the wrong session."""
    headers = {"Content-Type": "application/json", **(auth_headers(user) if op.auth else {})}
    response = client.request(
        op.method, example_path(op), content=iter([b'{"q": ', b'"hi"}']), headers=headers
    )
    problem = assert_small_problem(response, 411, "length_required")
    assert "Content-Length" in problem["detail"]
    assert openai.untouched
