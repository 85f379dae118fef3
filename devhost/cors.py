"""The Functions host's own CORS layer, which answers for the app on Azure (DECISIONS.md).

Read in Azure/azure-functions-host v4.1037.0 (commit 89dc438): on Linux Consumption and
Flex Consumption the host always adds ASP.NET Core's CorsMiddleware ahead of routing
(src/WebJobs.Script.WebHost/WebScriptHostBuilderExtension.cs,
WebJobsApplicationBuilderExtension.cs) with one policy: the origins of the environment
variable CORS_ALLOWED_ORIGINS, parsed as a JSON array (Configuration/HostCorsOptionsSetup.cs;
the platform writes it from the site's CORS configuration, Models/HostAssignmentContext.cs),
any header, any method, no exposed headers, no max-age (Configuration/CorsOptionsSetup.cs).
What that middleware does (dotnet/aspnetcore src/Middleware/CORS/src/Infrastructure/
CorsMiddleware.cs and CorsService.cs):
- a preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered 204 at once,
  for any path and whatever the origin; only an allowed origin gets CORS headers, which
  echo the requested method and headers;
- any other request with an allowed Origin gets Access-Control-Allow-Origin set (replacing
  one the function sent) when the response starts, host-made 404s and 500s included;
- `Vary: Origin` is appended when more than one origin is allowed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SETTING = "CORS_ALLOWED_ORIGINS"
_ORIGIN = re.compile(r"https?://[^/\s,]+")


def parse_allowed_origins(value: str) -> tuple[str, ...]:
    """Read CORS_ALLOWED_ORIGINS: a JSON array (what the platform writes, e.g.
    `["https://app.axly.pro"]`) or, for local settings, a comma list.

    Origins are lower-cased as ASP.NET Core's CorsPolicyBuilder does. `*` and anything that
    is not a bare origin (a path, a trailing slash) are refused: the allowlist is exact.
    """
    text = value.strip()
    if text.startswith("["):
        try:
            origins = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{SETTING} is not a valid JSON array: {exc}") from None
        if not all(isinstance(origin, str) for origin in origins):
            raise ValueError(f"{SETTING} must be an array of strings")
    else:
        origins = text.split(",")
    cleaned = tuple(origin.strip().lower() for origin in origins if origin.strip())
    for origin in cleaned:
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"{SETTING}: {origin!r} is not an exact origin such as https://app.axly.pro"
                " ('*', paths and trailing slashes are not allowed)"
            )
    return cleaned


@dataclass(frozen=True)
class HostCors:
    """The host's CORS policy: exact origins, any method, any header."""

    allowed_origins: frozenset[str]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> HostCors:
        return cls(frozenset(parse_allowed_origins(environ.get(SETTING, ""))))

    @staticmethod
    def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
        """`headers` are lower-case request header names."""
        return (
            method == "OPTIONS"
            and "origin" in headers
            and "access-control-request-method" in headers
        )

    def preflight_headers(self, headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """The headers of the host's 204 answer to a preflight."""
        answer = self._allow(headers.get("origin"))
        if answer:
            requested = _comma_separated(headers.get("access-control-request-headers", ""))
            if requested:
                answer.append(("Access-Control-Allow-Headers", ",".join(requested)))
            answer.append(
                ("Access-Control-Allow-Methods", headers["access-control-request-method"])
            )
        return answer

    def response_headers(self, headers: Mapping[str, str]) -> list[tuple[str, str]]:
        """The headers the host puts on any other response to a request with an Origin."""
        return self._allow(headers.get("origin"))

    def _allow(self, origin: str | None) -> list[tuple[str, str]]:
        if origin is None or origin not in self.allowed_origins:
            return []
        answer = [("Access-Control-Allow-Origin", origin)]
        if len(self.allowed_origins) > 1:
            answer.append(("Vary", "Origin"))
        return answer


def _comma_separated(value: str) -> Iterable[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
