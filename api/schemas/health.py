"""Health check body."""

from typing import Literal

from pydantic import Field

from api.schemas.common import OutputModel


class Health(OutputModel):
    status: Literal["ok", "error"]
    database: Literal["ok", "unreachable", "not_configured"]
    schema_revision: str | None = Field(
        alias="schema", serialization_alias="schema", description="Alembic revision"
    )
    version: str
    detail: str | None = Field(None, description="What failed, when status is error")
