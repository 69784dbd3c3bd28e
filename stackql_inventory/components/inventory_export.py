"""HTTP route streaming an inventory table as CSV (`GET /api/inventory/export/<ticket>`), added to the app's backend.

The preview's Export button asks the service for a short-lived ticket (table + filter, checked then) and
downloads this URL; the response streams PostgreSQL's COPY output chunk by chunk, so a
5-million-row table never sits in memory.
"""

from __future__ import annotations

import reflex as rx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from stackql_inventory.services import inventory_preview
from stackql_inventory.services.errors import UserFacingError


async def export_csv(request: Request) -> Response:
    """Stream the ticket's table as CSV, or 404 with a readable message when the ticket expired."""
    try:
        ticket = inventory_preview.redeem_export(request.path_params["token"])
    except UserFacingError as e:
        return PlainTextResponse(e.message, status_code=404)
    return StreamingResponse(
        inventory_preview.stream_csv(ticket),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{ticket.filename}"', "Cache-Control": "no-store"},
    )


def routes() -> list[Route]:
    return [Route(f"{inventory_preview.EXPORT_ROUTE}/{{token}}", export_csv, methods=["GET"])]


def register(app: rx.App) -> None:
    """Serve the export route from the app's backend (alongside any other API transformer)."""
    api = Starlette(routes=routes())
    existing = app.api_transformer
    if existing is None:
        app.api_transformer = api
    elif isinstance(existing, list | tuple):
        app.api_transformer = [*existing, api]
    else:
        app.api_transformer = [existing, api]
