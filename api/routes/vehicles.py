"""The garage: a user's vehicles and their modifications (Bearer token on every route)."""

from __future__ import annotations

from api.endpoints import ROUTE_PREFIX, Reply, Request, Router
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
from api.services.listing import Listing

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
    "GET",
    VEHICLES,
    summary="The caller's vehicles, newest first",
    query=Pagination,
    response=VehiclePage,
)
def list_vehicles(request: Request) -> Listing[Vehicle]:
    return garage.list_vehicles(session=request.db, user=request.current_user, page=request.query)


@router.operation(
    "POST",
    VEHICLES,
    summary="Add a vehicle",
    description="409 when the VIN is already on another of the caller's vehicles, or when "
    "the caller has MAX_VEHICLES_PER_USER vehicles.",
    body=VehicleCreate,
    response=VehiclePublic,
    status=201,
    response_headers=("Location",),
    errors=(409,),
)
def create_vehicle(request: Request) -> Reply:
    vehicle = garage.create_vehicle(
        session=request.db, user=request.current_user, data=request.body
    )
    return Reply(vehicle, status=201, headers={"Location": vehicle_location(vehicle)})


@router.operation(
    "GET", VEHICLE, summary="A vehicle with its mods (newest first)", response=VehicleDetail
)
def get_vehicle(request: Request) -> Vehicle:
    return garage.get_vehicle(
        session=request.db, user=request.current_user, vehicle_id=request.route["vehicle_id"]
    )


@router.operation(
    "PATCH",
    VEHICLE,
    summary="Change some of a vehicle's fields",
    body=VehicleUpdate,
    response=VehiclePublic,
    errors=(409,),
)
def update_vehicle(request: Request) -> Vehicle:
    return garage.update_vehicle(
        session=request.db,
        user=request.current_user,
        vehicle_id=request.route["vehicle_id"],
        changes=request.body.model_dump(exclude_unset=True),
    )


@router.operation(
    "PUT",
    VEHICLE,
    summary="Replace a vehicle's fields (optional ones left out are cleared)",
    body=VehicleReplace,
    response=VehiclePublic,
    errors=(409,),
)
def replace_vehicle(request: Request) -> Vehicle:
    return garage.update_vehicle(
        session=request.db,
        user=request.current_user,
        vehicle_id=request.route["vehicle_id"],
        changes=request.body.model_dump(),
    )


@router.operation(
    "DELETE",
    VEHICLE,
    summary="Delete a vehicle and its mods; its conversations are kept, unlinked",
    status=204,
)
def delete_vehicle(request: Request) -> None:
    garage.delete_vehicle(
        session=request.db, user=request.current_user, vehicle_id=request.route["vehicle_id"]
    )


@router.operation(
    "GET",
    MODS,
    summary="A vehicle's mods, newest first",
    query=Pagination,
    response=ModPage,
)
def list_mods(request: Request) -> Listing[VehicleMod]:
    return garage.list_mods(
        session=request.db,
        user=request.current_user,
        vehicle_id=request.route["vehicle_id"],
        page=request.query,
    )


@router.operation(
    "POST",
    MODS,
    summary="Add a mod to a vehicle",
    description="409 when the vehicle has MAX_MODS_PER_VEHICLE mods.",
    body=ModCreate,
    response=ModPublic,
    status=201,
    response_headers=("Location",),
    errors=(409,),
)
def create_mod(request: Request) -> Reply:
    mod = garage.create_mod(
        session=request.db,
        user=request.current_user,
        vehicle_id=request.route["vehicle_id"],
        data=request.body,
    )
    return Reply(mod, status=201, headers={"Location": mod_location(mod)})


@router.operation("GET", MOD, summary="One mod of a vehicle", response=ModPublic)
def get_mod(request: Request) -> VehicleMod:
    return garage.get_mod(session=request.db, user=request.current_user, **request.route)


@router.operation(
    "PATCH", MOD, summary="Change some of a mod's fields", body=ModUpdate, response=ModPublic
)
def update_mod(request: Request) -> VehicleMod:
    return garage.update_mod(
        session=request.db,
        user=request.current_user,
        changes=request.body.model_dump(exclude_unset=True),
        **request.route,
    )


@router.operation(
    "PUT",
    MOD,
    summary="Replace a mod's fields (optional ones left out are cleared)",
    body=ModReplace,
    response=ModPublic,
)
def replace_mod(request: Request) -> VehicleMod:
    return garage.update_mod(
        session=request.db,
        user=request.current_user,
        changes=request.body.model_dump(),
        **request.route,
    )


@router.operation("DELETE", MOD, summary="Delete a mod", status=204)
def delete_mod(request: Request) -> None:
    garage.delete_mod(session=request.db, user=request.current_user, **request.route)
