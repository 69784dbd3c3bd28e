"""The process-wide Databricks WorkspaceClient and the translation of SDK errors into user-facing ones."""

from __future__ import annotations

import logging
import threading

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import (
    BadRequest,
    DatabricksError,
    NotFound,
    PermissionDenied,
    TemporarilyUnavailable,
    TooManyRequests,
    Unauthenticated,
)

from stackql_inventory.config import Settings, get_settings
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact

logger = logging.getLogger(__name__)

_PRODUCT = "stackql-inventory"
_MAX_SERVER_MESSAGE = 300

_lock = threading.Lock()
_client: WorkspaceClient | None = None


def workspace_client(settings: Settings | None = None) -> WorkspaceClient:
    """The app's WorkspaceClient, built on first use and shared by the whole process.

    Tests (or callers holding a client of their own) install one with `set_workspace_client`.
    """
    global _client
    with _lock:
        if _client is None:
            _client = build_workspace_client(settings or get_settings())
        return _client


def set_workspace_client(client: WorkspaceClient | None) -> None:
    """Make `client` the process-wide client; `None` forgets it so the next call builds a new one."""
    global _client
    with _lock:
        _client = client


def build_workspace_client(settings: Settings) -> WorkspaceClient:
    """A new WorkspaceClient from settings: host + token, host + client id/secret, else the SDK's default auth.

    Inside a Databricks App the runtime injects DATABRICKS_HOST/CLIENT_ID/CLIENT_SECRET, so the app's
    service principal is used. The SDK's own retry budget is capped by `databricks_retry_timeout_s`.
    """
    common = {"retry_timeout_seconds": settings.databricks_retry_timeout_s}
    token = settings.databricks_token.get_secret_value() if settings.databricks_token else None
    client_secret = (settings.databricks_client_secret.get_secret_value()
                     if settings.databricks_client_secret else None)
    if settings.databricks_host and token:
        # auth_type="pat" also skips the SDK's "more than one auth method" check inside an App.
        kwargs = {"host": settings.databricks_host, "token": token, "auth_type": "pat"}
    elif settings.databricks_host and settings.databricks_client_id and client_secret:
        kwargs = {"host": settings.databricks_host, "client_id": settings.databricks_client_id,
                  "client_secret": client_secret, "auth_type": "oauth-m2m"}
    else:
        kwargs = {}
    try:
        return WorkspaceClient(config=Config(product=_PRODUCT, **kwargs, **common))
    except ValueError as e:  # the SDK reports missing or conflicting auth as ValueError
        raise UserFacingError(
            "Could not set up the Databricks client. Set DATABRICKS_HOST with DATABRICKS_TOKEN (or "
            "DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET), or run the app as a Databricks App, "
            "then restart the app.",
            ErrorKind.AUTH,
            detail=redact(str(e), [token, client_secret]),
        ) from None


def _root_cause(exc: BaseException) -> BaseException:
    # The SDK retries 429/503 and connection errors, then raises TimeoutError from the last error.
    if isinstance(exc, TimeoutError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _capitalized(what: str) -> str:
    return what[:1].upper() + what[1:]


def _server_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= _MAX_SERVER_MESSAGE else text[:_MAX_SERVER_MESSAGE] + "…"


def is_not_found(exc: BaseException) -> bool:
    """True for the SDK's ways of saying "no such thing".

    Besides 404s, the Jobs API answers POSTs about a missing job or run with 400 INVALID_PARAMETER_VALUE
    "Job 123 does not exist." (the SDK remaps that to ResourceDoesNotExist only for jobs/get and runs/get).
    """
    cause = _root_cause(exc)
    return isinstance(cause, NotFound) or (isinstance(cause, BadRequest) and "does not exist" in str(cause))


def sdk_error_to_user_facing(exc: BaseException, what: str) -> UserFacingError:
    """Translate a databricks-sdk (or transport) error met while working on `what` (e.g. "job 42").

    NotFound/ResourceDoesNotExist -> NOT_FOUND, PermissionDenied -> PERMISSION, Unauthenticated -> AUTH,
    TooManyRequests -> RATE_LIMIT (with Retry-After when known), anything else -> UPSTREAM.
    """
    cause = _root_cause(exc)
    detail = _server_message(cause)
    if isinstance(cause, UserFacingError):
        return cause
    if is_not_found(cause):
        return UserFacingError(
            f"{_capitalized(what)} does not exist in the Databricks workspace. Check the name or id, then retry.",
            ErrorKind.NOT_FOUND, detail=detail)
    if isinstance(cause, PermissionDenied):
        return UserFacingError(
            f"The app's Databricks identity is not allowed to access {what}. Ask a workspace admin to grant it "
            "access, then retry.",
            ErrorKind.PERMISSION, detail=detail)
    if isinstance(cause, Unauthenticated):
        return UserFacingError(
            f"Databricks rejected the app's credentials while accessing {what}. Check DATABRICKS_HOST and the "
            "token (or client id and secret), then retry.",
            ErrorKind.AUTH, detail=detail)
    if isinstance(cause, TooManyRequests):
        wait = getattr(cause, "retry_after_secs", None)
        when = f"Wait {wait} s" if wait else "Wait a minute"
        return UserFacingError(
            f"Databricks is rate-limiting requests for {what}. {when}, then retry.",
            ErrorKind.RATE_LIMIT, detail=detail)
    if isinstance(cause, TemporarilyUnavailable):
        return UserFacingError(
            f"Databricks is temporarily unavailable while accessing {what}. Retry in a few minutes.",
            ErrorKind.UPSTREAM, detail=detail)
    if isinstance(cause, (requests.ConnectionError, requests.Timeout)):
        return UserFacingError(
            f"Could not reach the Databricks workspace while accessing {what}. Check DATABRICKS_HOST and the "
            "network, then retry.",
            ErrorKind.UPSTREAM, detail=detail)
    if isinstance(cause, DatabricksError):
        return UserFacingError(
            f"Databricks refused or failed the request for {what}: {detail.rstrip('.')}. Fix the request if "
            "the message points at it; otherwise retry, and check the workspace status if it keeps failing.",
            ErrorKind.UPSTREAM, detail=detail)
    logger.warning("databricks_call_failed what=%s error_type=%s", what, type(cause).__name__)
    return UserFacingError(
        f"Talking to Databricks about {what} failed unexpectedly. Retry; if it keeps failing, check the app logs.",
        ErrorKind.UPSTREAM, detail=detail)
