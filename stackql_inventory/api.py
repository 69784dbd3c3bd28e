"""HTTP endpoints beside the Reflex app (same port): result windows for the grid, exports, editor completion."""

# Mounted through `rx.App(api_transformer=api.app)`. Plain Starlette, no reflex import: the
# handlers are thin wrappers over services. A result is reachable only through its unguessable
# id (it is sent to the browser session that ran it) and only by the user who ran it.

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stackql_inventory.services import ide_queries, identity, result_store
from stackql_inventory.services.errors import ErrorKind, UserFacingError

log = logging.getLogger(__name__)

_STATUS = {
    ErrorKind.VALIDATION: 400, ErrorKind.NOT_FOUND: 404, ErrorKind.PERMISSION: 403, ErrorKind.CONFLICT: 409,
}
# Largest request body accepted (editor text for completion, grid models).
MAX_BODY = 256 * 1024


def _error(e: UserFacingError) -> JSONResponse:
    return JSONResponse({"error": e.message, "kind": e.kind.value}, status_code=_STATUS.get(e.kind, 500))


async def _json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise UserFacingError("The request is too large.", ErrorKind.VALIDATION)
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        raise UserFacingError("The request body is not JSON.", ErrorKind.VALIDATION) from None
    if not isinstance(data, dict):
        raise UserFacingError("The request body must be a JSON object.", ErrorKind.VALIDATION)
    return data


def _result(request: Request) -> result_store.StoredResult:
    who = identity.from_headers(dict(request.headers))
    return result_store.get(request.path_params["result_id"], owner=who.user)


async def result_rows(request: Request) -> Response:
    """POST {start, end, sort, filter} → {"total": n, "rows": [[...]]} (one window, sorted and filtered)."""
    try:
        body = await _json_body(request)
        stored = _result(request)
        window = await run_in_threadpool(stored.window, body.get("start", 0), body.get("end", 0),
                                         body.get("sort"), body.get("filter"))
    except UserFacingError as e:
        return _error(e)
    return Response(window.payload, media_type="application/json", headers={"Cache-Control": "no-store"})


_FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _filename(stored: result_store.StoredResult, fmt: str) -> str:
    named = next(iter(re.findall(r"\b(\w+\.\w+\.\w+)\b", stored.statement)), "result")
    stamp = datetime.fromtimestamp(stored.created_at, timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{named.replace('.', '_')}-{stamp}.{fmt}"


async def result_export(request: Request) -> Response:
    """GET the whole result as a CSV or JSON download, streamed from the store."""
    fmt = request.path_params["fmt"]
    if fmt not in _FORMATS:
        return JSONResponse({"error": "Export as csv or json."}, status_code=404)
    try:
        stored = _result(request)
    except UserFacingError as e:
        return _error(e)
    body = stored.iter_csv() if fmt == "csv" else stored.iter_json()
    return StreamingResponse(body, media_type=_FORMATS[fmt], headers={
        "Content-Disposition": f'attachment; filename="{_filename(stored, fmt)}"', "Cache-Control": "no-store"})


async def complete(request: Request) -> Response:
    """POST {text, offset} → {"kind": …, "items": [{label, kind, detail, documentation, insert_text}]}."""
    try:
        body = await _json_body(request)
        text, offset = body.get("text", ""), body.get("offset", 0)
        if not isinstance(text, str) or not isinstance(offset, int):
            raise UserFacingError("Send the editor text and the cursor offset.", ErrorKind.VALIDATION)
        found = await run_in_threadpool(ide_queries.completions, text, offset)
    except UserFacingError as e:
        return _error(e)
    return Response(orjson.dumps({
        "kind": found.kind, "error": found.error,
        "items": [{"label": i.label, "kind": i.kind, "detail": i.detail, "documentation": i.documentation,
                   "insert_text": i.insert_text} for i in found.items],
    }), media_type="application/json")


def create_app() -> Starlette:
    """The endpoints as a Starlette app (Reflex mounts itself under it)."""
    return Starlette(routes=[
        Route("/api/ide/results/{result_id}/rows", result_rows, methods=["POST"]),
        Route("/api/ide/results/{result_id}/export.{fmt}", result_export, methods=["GET"]),
        Route("/api/ide/complete", complete, methods=["POST"]),
    ])


app = create_app()
