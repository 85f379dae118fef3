"""Is this instance able to serve? The database answers and its schema is at head."""

from __future__ import annotations

from dataclasses import dataclass

from api import db, migrations
from api.errors import ServiceUnavailableError
from api.settings import get_settings


@dataclass(frozen=True)
class HealthReport:
    status: str
    database: str
    schema: str | None
    version: str
    detail: str | None = None

    @property
    def healthy(self) -> bool:
        return self.status == "ok"


def check_health() -> HealthReport:
    version = get_settings().app_version
    startup = db.schema_status()  # runs the start-up migration on first use
    try:
        with db.get_engine().connect() as connection:
            revision = migrations.current_revision(connection)
    except ServiceUnavailableError as exc:
        return HealthReport("error", "not_configured", None, version, exc.detail)
    except Exception:
        return HealthReport("error", "unreachable", None, version, "The database does not answer")
    if revision != migrations.SCHEMA_HEAD:
        detail = startup.error or f"Schema at {revision}, expected {migrations.SCHEMA_HEAD}"
        return HealthReport("error", "ok", revision, version, detail)
    return HealthReport("ok", "ok", revision, version)
