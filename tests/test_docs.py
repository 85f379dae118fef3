"""README.md stays true: every setting is documented, the route tables are exactly the
app's routes (method and path), and every setting
has a development value in local.settings.example.json."""

import json
import re
from pathlib import Path

import pytest

from api.settings import Settings
from api.utils.media import MAX_TURN_ATTACHMENT_BYTES

README = Path("README.md").read_text(encoding="utf-8")
SETTINGS = [field.alias for field in Settings.model_fields.values()]


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_is_documented_and_in_the_example(name: str) -> None:
    assert f"`{name}`" in README
    assert name in json.loads(Path("local.settings.example.json").read_text())["Values"]


# A row of a route table: `| GET | `vehicles/{vehicle_id}/mods?limit&offset` | ...`.
ROUTE_ROW = re.compile(r"^\| ([A-Z]+) \| `([^`?]+)(?:\?[^`]*)?` \|", re.MULTILINE)


def documented_routes() -> list[tuple[str, str]]:
    """(method, route) of every row of the route tables under README "Routes"."""
    routes = README.split("\n## Routes\n", 1)[1].split("\n## ", 1)[0]
    return ROUTE_ROW.findall(routes)


def test_the_readme_documents_exactly_the_routes_the_app_serves(indexed_functions) -> None:
    served = set()
    for function in indexed_functions:
        trigger = next(b for b in function.get_bindings() if b.type == "httpTrigger")
        served |= {(str(method.value), trigger.route) for method in trigger.methods}
    documented = documented_routes()
    assert len(documented) == len(set(documented)), "a route is documented twice"
    assert not served - set(documented), "served but not in README"
    assert not set(documented) - served, "in README but not served"


def test_quick_start_is_the_two_make_commands() -> None:
    quick_start = README.split("## Quick start")[1].split("##")[0]
    assert "make dev" in quick_start
    assert "make test" in quick_start


def test_the_attachment_allowance_row_states_its_real_minimum_and_what_0_means() -> None:
    (row,) = [line for line in README.splitlines() if line.startswith("| `ATTACHMENT_BYTES_PER")]
    assert f"at least {MAX_TURN_ATTACHMENT_BYTES} " in row
    assert "0, like anything below the minimum, is refused" in row
