"""The areas of the API; function_app.py registers one blueprint per router listed here."""

from api.routes import auth, diagnose, health, vehicles

ROUTERS = (health.router, auth.router, vehicles.router, diagnose.router)
BLUEPRINTS = [router.blueprint() for router in ROUTERS]
