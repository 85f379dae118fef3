"""GET /api/health, the OpenAPI document and the docs page (with its assets)."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

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


class Links(HTMLParser):
    """Every URL an HTML page makes the browser load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_docs_page_loads_everything_from_this_api(client: httpx.Client) -> None:
    """Nothing from a CDN: the page works with no network but this API's."""
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "://" not in page.text
    links = Links()
    links.feed(page.text)
    assert "openapi.json" in links.urls
    media_types = {}
    for url in links.urls:
        assert not urlsplit(url).netloc, url
        assert not url.startswith("/"), url
        asset = client.get(url)  # relative to /api/docs, as the browser resolves it
        assert asset.status_code == 200, url
        media_types[urlsplit(url).path] = asset.headers["content-type"]
        if "?v=" in url:  # the URL changes with the content
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert media_types == {
        "docs/swagger-ui.css": "text/css; charset=utf-8",
        "docs/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
        "docs/docs.js": "text/javascript; charset=utf-8",
        "openapi.json": "application/json",
    }


def test_docs_with_a_trailing_slash_redirects_to_the_page(client: httpx.Client) -> None:
    """The host serves `docs/` as `docs`, where the page's relative links would break."""
    response = client.get("/docs/")
    assert response.status_code == 308
    page = urljoin(str(response.url), response.headers["location"])
    assert page == "http://testserver/api/docs"
    assert client.get(page).status_code == 200


def test_docs_assets_are_gzipped_for_clients_that_take_it(client: httpx.Client) -> None:
    bundle = Path("api/static/swagger-ui/swagger-ui-bundle.js").read_bytes()
    plain = client.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "identity"})
    zipped = client.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip, br"})
    assert "content-encoding" not in plain.headers
    assert plain.content == bundle
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(bundle) / 2
    assert zipped.content == bundle  # httpx decodes it
    assert zipped.headers["vary"] == "Accept-Encoding"


def test_only_the_pages_assets_are_served(client: httpx.Client) -> None:
    for name in ("package.json", "LICENSE", "swagger-ui.css.map"):  # an allowlist, by name
        response = client.get(f"/docs/{name}")
        assert response.status_code == 404, name
        assert response.json()["code"] == "not_found"


DOCS_SCRIPT_HARNESS = """
const fs = require("fs");
const status = {
  firstChild: { textContent: "Loading the API docs..." },
  removed: false,
  remove() { this.removed = true; },
};
const started = [];
globalThis.document = { getElementById: (id) => (id === "docs-status" ? status : null) };
const loaded = process.argv[1] === "loaded";  // node -e: argv[1] is the first argument
globalThis.window = loaded ? { SwaggerUIBundle: (config) => started.push(config) } : {};
eval(fs.readFileSync("api/static/docs.js", "utf8"));
const text = status.firstChild.textContent;
console.log(JSON.stringify({ removed: status.removed, text, started }));
"""


@pytest.mark.parametrize("swagger_ui", ["loaded", "missing"])
def test_docs_page_says_so_when_swagger_ui_does_not_start(swagger_ui: str) -> None:
    """The page's visible status line goes once Swagger UI starts; when its script did not
    load, the line says so (docs.js run by node against a stand-in page)."""
    node = shutil.which("node")
    assert node, "node is needed to run the docs page's script: apt-get install -y nodejs"
    ran = subprocess.run(
        [node, "-e", DOCS_SCRIPT_HARNESS, swagger_ui], capture_output=True, text=True, timeout=30
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    if swagger_ui == "loaded":
        assert result["removed"] is True
        [config] = result["started"]
        assert config["url"] == "openapi.json"
        assert config["validatorUrl"] is None  # the default would call validator.swagger.io
    else:
        assert result["removed"] is False
        assert "could not start Swagger UI (its script did not load)" in result["text"]
    page = Path("api/docs.py").read_text(encoding="utf-8")
    assert '<p id="docs-status" role="status">' in page  # visible until docs.js removes it
