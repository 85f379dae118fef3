"""The benchmark's database and data: `axly_bench` on the server of DB_URI (else the
embedded one), and garages of vehicles with mods."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.models import User

MODS_PER_VEHICLE = 5


def use_bench_database() -> str:
    """Point DB_URI at `axly_bench` on the configured server (or the embedded one), directly
    (DB_POOLER none), and return it."""
    from devhost.database import Server, embedded_server, ensure_database

    uri = os.environ.get("DB_URI")
    server = Server.from_uri(uri) if uri else embedded_server()
    os.environ["DB_URI"] = ensure_database(server, "axly_bench")
    os.environ["DB_POOLER"] = "none"
    return os.environ["DB_URI"]


def garage_owner(session: Session, vehicles: int) -> User:
    """A new user with `vehicles` vehicles of MODS_PER_VEHICLE mods each."""
    from api.models import User, Vehicle, VehicleMod

    user = User(email=f"bench-{uuid.uuid4().hex[:8]}@example.com", password_hash="!")
    session.add(user)
    session.flush()
    for n in range(vehicles):
        vehicle = Vehicle(user_id=user.id, make="Mazda", model="3", year=str(2000 + n % 25))
        session.add(vehicle)
        session.flush()
        session.add_all(
            VehicleMod(vehicle_id=vehicle.id, name=f"Mod {m}") for m in range(MODS_PER_VEHICLE)
        )
    session.commit()
    return user
