"""The garage: a user's vehicles and their modifications (Bearer token on every route)."""

from __future__ import annotations

import uuid

from api.endpoints import ReadRequest, Reply, Router, UserRequest
from api.functions import ROUTE_PREFIX
from api.models import Vehicle, VehicleMod
from api.schemas.common import Pagination
from api.schemas.vehicles import (
    ModCreate,
    ModPage,
    ModPublic,
    ModReplace,
    ModUpdate,
    VehicleCreate,
    VehicleDetail,
    VehiclePage,
    VehiclePublic,
    VehicleReplace,
    VehicleUpdate,
)
from api.services import vehicles as garage
from api.services.listing import Listing, Record

router = Router("vehicles")

VEHICLES = "vehicles"
VEHICLE = "vehicles/{vehicle_id}"
MODS = "vehicles/{vehicle_id}/mods"
MOD = "vehicles/{vehicle_id}/mods/{mod_id}"


def vehicle_location(vehicle: Vehicle) -> str:
    return f"/{ROUTE_PREFIX}/vehicles/{vehicle.id}"


def mod_location(mod: VehicleMod) -> str:
    return f"/{ROUTE_PREFIX}/vehicles/{mod.vehicle_id}/mods/{mod.id}"


@router.operation(
    "GET", VEHICLES, summary="The caller's vehicles, newest first", response=VehiclePage
)
def list_vehicles(request: ReadRequest[None, Pagination]) -> Listing[Record]:
    return garage.list_vehicles(reader=request.reader, user=request.user, page=request.query)


@router.operation(
    "POST",
    VEHICLES,
    summary="Add a vehicle",
    description="409 when the VIN is already on another of the caller's vehicles, or when "
    "the caller has MAX_VEHICLES_PER_USER vehicles.",
    response=VehiclePublic,
    status=201,
    response_headers=("Location",),
    errors=(409,),
    idempotent=True,
)
def create_vehicle(request: UserRequest[VehicleCreate]) -> Reply:
    vehicle = garage.create_vehicle(session=request.session, user=request.user, data=request.body)
    return Reply(vehicle, headers={"Location": vehicle_location(vehicle)})


@router.operation(
    "GET", VEHICLE, summary="A vehicle with its mods (newest first)", response=VehicleDetail
)
def get_vehicle(request: UserRequest, vehicle_id: uuid.UUID) -> Vehicle:
    return garage.get_vehicle(session=request.session, user=request.user, vehicle_id=vehicle_id)


@router.operation(
    "PATCH",
    VEHICLE,
    summary="Change some of a vehicle's fields",
    response=VehiclePublic,
    errors=(409,),
)
def update_vehicle(request: UserRequest[VehicleUpdate], vehicle_id: uuid.UUID) -> Vehicle:
    return garage.update_vehicle(
        session=request.session,
        user=request.user,
        vehicle_id=vehicle_id,
        changes=request.body.model_dump(exclude_unset=True),
    )


@router.operation(
    "PUT",
    VEHICLE,
    summary="Replace a vehicle's fields (optional ones left out are cleared)",
    response=VehiclePublic,
    errors=(409,),
)
def replace_vehicle(request: UserRequest[VehicleReplace], vehicle_id: uuid.UUID) -> Vehicle:
    return garage.update_vehicle(
        session=request.session,
        user=request.user,
        vehicle_id=vehicle_id,
        changes=request.body.model_dump(),
    )


@router.operation(
    "DELETE", VEHICLE, summary="Delete a vehicle and its mods; its conversations are kept, unlinked"
)
def delete_vehicle(request: UserRequest, vehicle_id: uuid.UUID) -> None:
    garage.delete_vehicle(session=request.session, user=request.user, vehicle_id=vehicle_id)


@router.operation("GET", MODS, summary="A vehicle's mods, newest first", response=ModPage)
def list_mods(request: ReadRequest[None, Pagination], vehicle_id: uuid.UUID) -> Listing[Record]:
    return garage.list_mods(
        reader=request.reader, user=request.user, vehicle_id=vehicle_id, page=request.query
    )


@router.operation(
    "POST",
    MODS,
    summary="Add a mod to a vehicle",
    description="409 when the vehicle has MAX_MODS_PER_VEHICLE mods.",
    response=ModPublic,
    status=201,
    response_headers=("Location",),
    errors=(409,),
    idempotent=True,
)
def create_mod(request: UserRequest[ModCreate], vehicle_id: uuid.UUID) -> Reply:
    mod = garage.create_mod(
        session=request.session, user=request.user, vehicle_id=vehicle_id, data=request.body
    )
    return Reply(mod, headers={"Location": mod_location(mod)})


@router.operation("GET", MOD, summary="One mod of a vehicle", response=ModPublic)
def get_mod(request: UserRequest, vehicle_id: uuid.UUID, mod_id: uuid.UUID) -> VehicleMod:
    return garage.get_mod(
        session=request.session, user=request.user, vehicle_id=vehicle_id, mod_id=mod_id
    )


@router.operation("PATCH", MOD, summary="Change some of a mod's fields", response=ModPublic)
def update_mod(
    request: UserRequest[ModUpdate], vehicle_id: uuid.UUID, mod_id: uuid.UUID
) -> VehicleMod:
    return garage.update_mod(
        session=request.session,
        user=request.user,
        vehicle_id=vehicle_id,
        mod_id=mod_id,
        changes=request.body.model_dump(exclude_unset=True),
    )


@router.operation(
    "PUT",
    MOD,
    summary="Replace a mod's fields (optional ones left out are cleared)",
    response=ModPublic,
)
def replace_mod(
    request: UserRequest[ModReplace], vehicle_id: uuid.UUID, mod_id: uuid.UUID
) -> VehicleMod:
    return garage.update_mod(
        session=request.session,
        user=request.user,
        vehicle_id=vehicle_id,
        mod_id=mod_id,
        changes=request.body.model_dump(),
    )


@router.operation("DELETE", MOD, summary="Delete a mod")
def delete_mod(request: UserRequest, vehicle_id: uuid.UUID, mod_id: uuid.UUID) -> None:
    garage.delete_mod(
        session=request.session, user=request.user, vehicle_id=vehicle_id, mod_id=mod_id
    )
