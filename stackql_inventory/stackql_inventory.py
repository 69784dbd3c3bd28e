"""The Reflex app: pages, exception handling and lifespan tasks."""

import logging

import reflex as rx
from reflex.event import EventSpec

from stackql_inventory import api, lifespan, routes
from stackql_inventory.config import get_settings
from stackql_inventory.pages import ide, inventory, providers, schedules
from stackql_inventory.state.app_state import AppState

log = logging.getLogger("stackql_inventory")


def _backend_exception_handler(exception: Exception) -> EventSpec:
    """Log the traceback; show the user a generic message (never the exception text)."""
    log.error("unhandled error in an event handler", exc_info=exception)
    return rx.toast.error("Something went wrong on the server. The details are in the app log.")


logging.basicConfig(level=get_settings().log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
logging.getLogger("pgserver").setLevel(logging.WARNING)

# api.app: result windows for the grid, exports and editor completion, on the same port as the UI.
app = rx.App(backend_exception_handler=_backend_exception_handler, api_transformer=api.app)

app.add_page(ide.page, route=routes.HOME, title="IDE · StackQL Cloud Inventory", on_load=[AppState.load, *ide.on_load()])
app.add_page(ide.page, route=routes.IDE, title="IDE · StackQL Cloud Inventory", on_load=[AppState.load, *ide.on_load()])
app.add_page(schedules.page, route=routes.SCHEDULES, title="Schedules · StackQL Cloud Inventory",
             on_load=[AppState.load, schedules.SchedulesState.load])
app.add_page(inventory.page, route=routes.INVENTORY, title="Inventory · StackQL Cloud Inventory",
             on_load=[AppState.load, inventory.InventoryState.load])
app.add_page(providers.page, route=routes.PROVIDERS, title="Providers · StackQL Cloud Inventory",
             on_load=[AppState.load, providers.ProvidersState.load])

app.register_lifespan_task(lifespan.migrate_on_startup)
