"""Schemathesis over the whole OpenAPI document, through the local host: every operation,
valid and invalid inputs, with a token. Zero server errors; every response conforms to the
documented schema. Routes added later are fuzzed automatically."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from api.openapi import build_openapi
from api.routes import ROUTERS
from tests.factories import auth_headers, create_user

# The same document GET /api/openapi.json serves (a test in tests/routes checks that route).
schema = schemathesis.openapi.from_dict(build_openapi(ROUTERS, version="test"))
schema.config.generation.update(modes=["positive", "negative"], database="none")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case, wsgi_app, session) -> None:
    user = create_user(session)
    # On the schema, not per call: checks that send probes of their own (a request without
    # the token, for Bearer routes) use the schema's transport, which must be the app's.
    case.operation.schema.app = wsgi_app
    case.call_and_validate(app=wsgi_app, headers=auth_headers(user))
