"""GET /api/health, the OpenAPI document and the docs page."""

import httpx

from api import migrations


def test_health_ok_when_database_answers_at_head(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["schema"] == migrations.SCHEMA_HEAD
    assert body["version"]


def test_health_503_when_database_unreachable(client: httpx.Client, override_settings) -> None:
    override_settings(DB_URI="postgresql://postgres@127.0.0.1:1/nowhere")
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "unreachable"
    assert body["schema"] is None
    assert "127.0.0.1" not in response.text  # no connection details leak


def test_health_503_when_database_not_configured(client: httpx.Client, override_settings) -> None:
    override_settings(DB_URI="")
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"] == "not_configured"
    assert "DB_URI" in response.json()["detail"]


def test_openapi_document_lists_every_operation(client: httpx.Client, indexed_functions) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    for function in indexed_functions:
        trigger = next(b for b in function.get_bindings() if b.type == "httpTrigger")
        path = "/api/" + trigger.route
        methods = {str(getattr(m, "value", m)) for m in trigger.methods}
        assert {(m, path) for m in methods} <= operations
    assert "Problem" in document["components"]["schemas"]


def test_docs_page_points_at_the_document(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "openapi.json" in response.text
