"""The Bicep templates in infra/, parsed with pycep-parser (the parser checkov uses), and
the few helpers the tests need to read them: resources by type, variables resolved."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

INFRA = Path("infra")
MAIN = INFRA / "main.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# "//   NAME = default: why" lines in main.bicep: settings deliberately left to their defaults.
DEFAULT_DECISION = re.compile(r"^//\s+([A-Z][A-Z0-9_]*) = default: (\S.*)$", re.MULTILINE)
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\((VaultName|SecretUri)=.+\)$")
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
NAME = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Template:
    path: Path
    text: str
    parsed: dict[str, Any]

    @property
    def variables(self) -> dict[str, Any]:
        return {name: var["value"] for name, var in self.parsed.get("variables", {}).items()}

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        return [
            resource["config"]
            for resource in self.parsed.get("resources", {}).values()
            if resource["type"] == resource_type and not resource["existing"]
        ]

    def resource(self, resource_type: str, name: str | None = None) -> dict[str, Any]:
        matches = [r for r in self.resources(resource_type) if name in (None, r["name"])]
        assert len(matches) == 1, f"{self.path}: one {resource_type} {name or ''} expected"
        return matches[0]

    def secure_parameters(self) -> set[str]:
        return {
            name
            for name, param in self.parsed.get("parameters", {}).items()
            if any(d["type"] == "secure" for d in param["decorators"])
        }

    def allowed(self, parameter: str) -> list[Any]:
        """The values a parameter's @allowed decorator admits."""
        decorators = self.parsed["parameters"][parameter]["decorators"]
        return next(d["argument"] for d in decorators if d["type"] == "allowed")

    def resolve(self, value: Any) -> Any:
        """A bare identifier naming a variable of this file stands for its value."""
        while isinstance(value, str) and value in self.variables:
            value = self.variables[value]
        return value

    def branches(self, value: Any) -> Iterator[Any]:
        """Every value an expression can take: both sides of a condition, every argument of
        union(), variables resolved. Other expressions are yielded as they are."""
        value = self.resolve(value)
        if isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional":
            operands = value["operator"]["operands"]
            yield from self.branches(operands["true_value"])
            yield from self.branches(operands["false_value"])
            return
        if isinstance(value, dict) and value.get("function", {}).get("type") == "union":
            for argument in value["function"]["parameters"].values():
                yield from self.branches(argument)
            return
        yield value


def dotted(value: Any) -> Any:
    """`site.identity.principalId` for a property-accessor expression; anything else as is."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"
    return value


def identifiers(value: Any) -> set[str]:
    """The names an expression uses: bare identifiers and those inside ${...}."""
    if isinstance(value, dict):
        return set().union(*(identifiers(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(identifiers(item) for item in value))
    if not isinstance(value, str):
        return set()
    if "${" in value:
        return {name for part in INTERPOLATION.findall(value) for name in NAME.findall(part)}
    return {value} if value.isidentifier() else set()


@cache
def template(path: Path) -> Template:
    parsed = cast(dict[str, Any], BicepParser().parse(file_path=path))
    return Template(path, path.read_text(), parsed)


def module(name: str) -> Template:
    return template(INFRA / "modules" / f"{name}.bicep")


def module_call(name: str) -> dict[str, Any]:
    """The `module` statement of main.bicep that deploys modules/<name>.bicep."""
    calls = [
        call
        for call in template(MAIN).parsed["modules"].values()
        if call["detail"]["path"] == f"modules/{name}.bicep"
    ]
    assert len(calls) == 1, f"main.bicep deploys modules/{name}.bicep once"
    return calls[0]["config"]


def app_settings() -> dict[str, list[Any]]:
    """Every app setting the template can give the Function App, with every value it can
    take (across the plan, AI provider and e-mail choices)."""
    app = module("functionapp")
    main = template(MAIN)
    settings: dict[str, list[Any]] = {}
    for part in app.branches(
        app.resource("Microsoft.Web/sites/config", "appsettings")["properties"]
    ):
        # The module's appSettings parameter is main.bicep's app settings.
        sources = (
            main.branches(module_call("functionapp")["params"]["appSettings"])
            if part == "appSettings"
            else [part]
        )
        for source in sources:
            assert isinstance(source, dict), source
            assert not {"function", "operator"} & source.keys(), f"unreadable: {source}"
            for name, value in source.items():
                settings.setdefault(name, []).append(value)
    return settings


def settings_left_to_default() -> dict[str, str]:
    return dict(DEFAULT_DECISION.findall(template(MAIN).text))
