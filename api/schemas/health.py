"""Health check body, and the OpenAPI document's own entry."""

from typing import Any, Literal

from pydantic import ConfigDict, Field, RootModel

from api.schemas.common import OutputModel


class Health(OutputModel):
    status: Literal["ok", "error"]
    database: Literal["ok", "unreachable", "not_configured"]
    schema_revision: str | None = Field(
        alias="schema", serialization_alias="schema", description="Alembic revision"
    )
    version: str
    detail: str | None = Field(None, description="What failed, when status is error")


class OpenAPIDocument(RootModel[dict[str, Any]]):
    """This API's OpenAPI 3.1 description: the document being read."""

    model_config = ConfigDict(defer_build=True)
