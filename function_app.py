"""The Axly API Function App: the only FunctionApp, one blueprint per area."""

import azure.functions as func

from api.routes import AREAS
from api.utils.logs import configure_logging

configure_logging()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for area in AREAS:
    app.register_functions(area.blueprint())
