"""The garage: a user's vehicles and their modifications.

Every query is scoped to the caller, so another user's vehicle or mod, or a mod looked up
under a different vehicle, is "not found" exactly like an id that does not exist. Lists and
details take a fixed number of statements, however many vehicles or mods there are.
"""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Select, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.db import Read, Reader
from api.errors import ConflictError, NotFoundError
from api.models import VIN_PER_USER_INDEX, User, Vehicle, VehicleMod
from api.schemas.common import Pagination
from api.schemas.vehicles import ModCreate, VehicleCreate
from api.services.listing import Listing, PagedQuery, Record, page_of
from api.settings import get_settings

if TYPE_CHECKING:
    from api.services.auth import Account

T = TypeVar("T", Vehicle, VehicleMod)
Row = TypeVarTuple("Row")


def list_vehicles(*, reader: Reader, user: Account, page: Pagination) -> Listing[Record]:
    return _newest_first(reader, Vehicle, "user_id", user.id, page)


def get_vehicle(*, session: Session, user: User, vehicle_id: uuid.UUID) -> Vehicle:
    """The vehicle with its mods (newest first), loaded by one more statement."""
    query = _owned_vehicle(user, vehicle_id).options(selectinload(Vehicle.mods))
    return _vehicle_or_404(session, query)


def create_vehicle(*, session: Session, user: User, data: VehicleCreate) -> Vehicle:
    session.execute(_locked_for_cap_check(select(User.id).where(User.id == user.id)))
    _check_cap(
        _count(session, Vehicle, Vehicle.user_id == user.id),
        limit=get_settings().max_vehicles_per_user,
        message="An account can keep at most {limit} vehicles; delete one to add another",
        code="vehicle_limit_reached",
    )
    vehicle = Vehicle(user_id=user.id, **data.model_dump())
    session.add(vehicle)
    _flush_checking_vin(session)
    return vehicle


def update_vehicle(
    *, session: Session, user: User, vehicle_id: uuid.UUID, changes: dict[str, Any]
) -> Vehicle:
    """Apply validated field values (a VehicleUpdate's set fields, or a whole VehicleReplace)."""
    vehicle = _vehicle_or_404(session, _owned_vehicle(user, vehicle_id))
    _assign(vehicle, changes)
    _flush_checking_vin(session)
    return vehicle


def delete_vehicle(*, session: Session, user: User, vehicle_id: uuid.UUID) -> None:
    """The database deletes its mods and unlinks the conversations that mention it."""
    session.delete(_vehicle_or_404(session, _owned_vehicle(user, vehicle_id)))
    session.flush()


def list_mods(
    *, reader: Reader, user: Account, vehicle_id: uuid.UUID, page: Pagination
) -> Listing[Record]:
    if not reader.rows(_owned_vehicle_id(), {"vehicle_id": vehicle_id, "user_id": user.id}):
        raise NotFoundError("No such vehicle")
    return _newest_first(reader, VehicleMod, "vehicle_id", vehicle_id, page)


def get_mod(
    *, session: Session, user: User, vehicle_id: uuid.UUID, mod_id: uuid.UUID
) -> VehicleMod:
    return _mod_or_404(session, user, vehicle_id, mod_id)


def create_mod(
    *, session: Session, user: User, vehicle_id: uuid.UUID, data: ModCreate
) -> VehicleMod:
    vehicle = _vehicle_or_404(session, _locked_for_cap_check(_owned_vehicle(user, vehicle_id)))
    _check_cap(
        _count(session, VehicleMod, VehicleMod.vehicle_id == vehicle.id),
        limit=get_settings().max_mods_per_vehicle,
        message="A vehicle can have at most {limit} mods; delete one to add another",
        code="mod_limit_reached",
    )
    mod = VehicleMod(vehicle_id=vehicle.id, **data.model_dump())
    session.add(mod)
    session.flush()
    return mod


def update_mod(
    *,
    session: Session,
    user: User,
    vehicle_id: uuid.UUID,
    mod_id: uuid.UUID,
    changes: dict[str, Any],
) -> VehicleMod:
    """Apply validated field values (a ModUpdate's set fields, or a whole ModReplace)."""
    mod = _mod_or_404(session, user, vehicle_id, mod_id)
    _assign(mod, changes)
    session.flush()
    return mod


def delete_mod(*, session: Session, user: User, vehicle_id: uuid.UUID, mod_id: uuid.UUID) -> None:
    session.delete(_mod_or_404(session, user, vehicle_id, mod_id))
    session.flush()


def _owned_vehicle(user: User, vehicle_id: uuid.UUID) -> Select[Vehicle]:
    return select(Vehicle).where(Vehicle.id == vehicle_id, Vehicle.user_id == user.id)


@functools.cache
def _owned_vehicle_id() -> Read:
    """`_owned_vehicle`'s row exists, for reads (`vehicle_id`, `user_id` bound at execution)."""
    return Read.of(
        select(Vehicle.id).where(
            Vehicle.id == bindparam("vehicle_id"), Vehicle.user_id == bindparam("user_id")
        )
    )


def _vehicle_or_404(session: Session, query: Select[Vehicle]) -> Vehicle:
    vehicle = session.scalar(query)
    if vehicle is None:
        raise NotFoundError("No such vehicle")
    return vehicle


def _mod_or_404(
    session: Session, user: User, vehicle_id: uuid.UUID, mod_id: uuid.UUID
) -> VehicleMod:
    """The mod only if it belongs to that vehicle and the vehicle to the user."""
    mod = session.scalar(
        select(VehicleMod)
        .join(VehicleMod.vehicle)
        .where(
            VehicleMod.id == mod_id,
            VehicleMod.vehicle_id == vehicle_id,
            Vehicle.user_id == user.id,
        )
    )
    if mod is None:
        raise NotFoundError("No such mod")
    return mod


def _count(session: Session, entity: type[T], where: ColumnElement[bool]) -> int:
    return session.scalar(select(func.count()).select_from(entity).where(where)) or 0


def _newest_first(
    reader: Reader, entity: type[T], owner: str, owner_id: uuid.UUID, page: Pagination
) -> Listing[Record]:
    """A page of the `entity` rows whose column `owner` is `owner_id`, as plain rows, not
    ORM objects: a list only reads, so identity-mapping and tracking each item would be
    per-row cost for nothing."""
    query = _newest_first_query(entity, owner)
    rows, total = page_of(
        reader, query, limit=page.limit, offset=page.offset, values={"owner_id": owner_id}
    )
    return Listing(items=rows, total=total, columns=query.page.columns)


@functools.cache
def _newest_first_query(entity: type[T], owner: str) -> PagedQuery:
    columns = entity.__table__.columns
    query = (
        select(*columns)
        .where(columns[owner] == bindparam("owner_id"))
        .order_by(columns["created_at"].desc(), columns["id"].desc())
    )
    return PagedQuery.of(query)


def _locked_for_cap_check(query: Select[*Row]) -> Select[*Row]:
    """Caps are checked by counting and then inserting, so two concurrent requests could both
    count limit - 1 and both insert. Locking the parent row first (the user for vehicles, the
    vehicle for mods) makes such requests take turns: the second waits until the first
    commits, and its count (a new snapshot under READ COMMITTED) then includes the first's
    row. FOR NO KEY UPDATE rather than FOR UPDATE: it conflicts with itself but not with the
    KEY SHARE lock taken by inserting a row that references the parent (a conversation, say),
    so it blocks nothing else."""
    return query.with_for_update(key_share=True)


def _check_cap(count: int, *, limit: int, message: str, code: str) -> None:
    if count >= limit:
        raise ConflictError(message.format(limit=limit), code=code)


def _assign(row: Vehicle | VehicleMod, changes: dict[str, Any]) -> None:
    for field, value in changes.items():
        setattr(row, field, value)


def _flush_checking_vin(session: Session) -> None:
    """The unique index is what keeps VINs unique (two requests may race); its violation
    becomes a 409, and the request's transaction is rolled back by the caller."""
    try:
        session.flush()
    except IntegrityError as error:
        violated = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if violated != VIN_PER_USER_INDEX:
            raise
        raise ConflictError("You already have a vehicle with this VIN", code="vin_taken") from None
