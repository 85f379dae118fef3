"""Garage bodies: vehicles and their modifications.

Input text is trimmed and must not contain control characters (PostgreSQL cannot store NUL,
and a name is one line). Optional text that is blank after trimming is stored as null.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from api.schemas.common import InputModel, MultiLine, Omittable, OneLine, OutputModel, Page

FIRST_CAR_YEAR = 1886  # Benz Patent-Motorwagen
# The furthest-ahead UTC offset in use (UTC+14, Kiribati): a mod installed "today" where the
# user lives may already be tomorrow in UTC, and must not be refused as a future date.
FURTHEST_AHEAD_OFFSET = timedelta(hours=14)
VIN_LENGTH = 17
_VIN_CHARACTERS = re.compile(r"[A-HJ-NPR-Z0-9]+")  # ISO 3779: digits and letters but I, O, Q
_FOUR_DIGITS = re.compile(r"[0-9]{4}")


def _blank_is_null(value: str) -> str | None:
    return value or None


def _latest_model_year() -> int:
    """Next calendar year (UTC): new models go on sale the year before their model year."""
    return datetime.now(UTC).year + 1


def _year(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError("year_type", "Send the year as a number or a string, e.g. 2004")
    text = str(value).strip()
    latest = _latest_model_year()
    if not _FOUR_DIGITS.fullmatch(text) or not FIRST_CAR_YEAR <= int(text) <= latest:
        raise PydanticCustomError(
            "year_range",
            "Must be a 4-digit year from {first} to {latest}",
            {"first": FIRST_CAR_YEAR, "latest": latest},
        )
    return text


def _vin(value: str) -> str:
    vin = value.strip().upper()
    if len(vin) != VIN_LENGTH:
        raise PydanticCustomError("vin_length", "A VIN has exactly 17 characters")
    if not _VIN_CHARACTERS.fullmatch(vin):
        raise PydanticCustomError(
            "vin_characters", "A VIN has only digits and the letters A-Z except I, O and Q"
        )
    return vin


def _installed_on_text(value: Any) -> Any:
    """Only ISO date strings: pydantic would otherwise read a number as a Unix time."""
    if not isinstance(value, str | date):
        raise PydanticCustomError("date_type", "Send the date as YYYY-MM-DD")
    return value


def _not_in_future(value: date) -> date:
    if value > (datetime.now(UTC) + FURTHEST_AHEAD_OFFSET).date():
        raise PydanticCustomError("date_in_future", "Must not be in the future")
    return value


def _trimmed(max_length: int, *, min_length: int = 0) -> StringConstraints:
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


Make = Annotated[str, _trimmed(64, min_length=1), OneLine, Field(examples=["Mazda"])]
Model = Annotated[str, _trimmed(64, min_length=1), OneLine, Field(examples=["MX-5"])]
Label = Annotated[str, _trimmed(64), OneLine, AfterValidator(_blank_is_null)]
Year = Annotated[
    str,
    BeforeValidator(_year),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": FIRST_CAR_YEAR},
                {"type": "string", "pattern": "^[0-9]{4}$"},
            ],
            "description": f"A 4-digit year from {FIRST_CAR_YEAR} to next year",
            "examples": [1990, "2004"],
        }
    ),
]
Vin = Annotated[
    str,
    AfterValidator(_vin),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-HJ-NPR-Za-hj-npr-z0-9]{17}$",
            "description": "17 characters, no I, O or Q; stored upper-cased; unique per user",
        }
    ),
]
ModName = Annotated[str, _trimmed(200, min_length=1), OneLine]
Description = Annotated[
    str,
    _trimmed(5000),
    MultiLine,
    AfterValidator(_blank_is_null),
]
InstalledOn = Annotated[
    date,
    BeforeValidator(_installed_on_text),
    AfterValidator(_not_in_future),
    Field(description="ISO date (YYYY-MM-DD), not in the future"),
]


class VehicleCreate(InputModel):
    make: Make
    model: Model
    year: Year
    submodel: Label | None = Field(None, description="Trim or variant; null: none")
    vin: Vin | None = Field(None, description="null: none")
    nickname: Label | None = Field(None, description="null: none")


class VehicleReplace(VehicleCreate):
    """PUT: the full POST body; an optional field left out is cleared."""


class VehicleUpdate(InputModel):
    """PATCH: only the fields sent change. make, model and year cannot be null; null clears
    submodel, vin or nickname."""

    make: Omittable[Make] = None
    model: Omittable[Model] = None
    year: Omittable[Year] = None
    submodel: Label | None = Field(None, description="Trim or variant; null clears it")
    vin: Vin | None = Field(None, description="null clears it")
    nickname: Label | None = Field(None, description="null clears it")


class ModCreate(InputModel):
    name: ModName
    description: Description | None = Field(None, description="Up to 5,000 characters; null: none")
    installed_on: InstalledOn | None = Field(None, description="null: unknown")


class ModReplace(ModCreate):
    """PUT: the full POST body; an optional field left out is cleared."""


class ModUpdate(InputModel):
    """PATCH: only the fields sent change. name cannot be null; null clears description or
    installed_on."""

    name: Omittable[ModName] = None
    description: Description | None = Field(None, description="null clears it")
    installed_on: InstalledOn | None = Field(None, description="null clears it")


class VehiclePublic(OutputModel):
    id: uuid.UUID
    make: str
    model: str
    year: str
    submodel: str | None
    vin: str | None
    nickname: str | None
    created_at: datetime
    updated_at: datetime


class ModPublic(OutputModel):
    id: uuid.UUID
    vehicle_id: uuid.UUID
    name: str
    description: str | None
    installed_on: date | None
    created_at: datetime
    updated_at: datetime


class VehicleDetail(VehiclePublic):
    mods: list[ModPublic] = Field(description="Newest first")


class VehiclePage(Page[VehiclePublic]):
    """A page of the caller's vehicles."""


class ModPage(Page[ModPublic]):
    """A page of a vehicle's mods."""
