"""Who is using the app: identity from Databricks Apps proxy headers, else the local OS user."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stackql_inventory.config import Settings, get_settings, local_user
from stackql_inventory.services.errors import ErrorKind, UserFacingError


@dataclass(frozen=True)
class Identity:
    """The person behind a request."""

    user: str            # stable id recorded as created_by (email when known)
    display_name: str    # shown in the header
    source: str          # "proxy" (X-Forwarded-*) or "local"


def _header(headers: Mapping[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name:
            return (v or "").strip()
    return ""


def from_headers(headers: Mapping[str, str] | None) -> Identity:
    """Identity from `X-Forwarded-Email` / `X-Forwarded-User` (Databricks Apps), else the OS user."""
    headers = headers or {}
    email = _header(headers, "x-forwarded-email")
    user = _header(headers, "x-forwarded-user")
    preferred = _header(headers, "x-forwarded-preferred-username")
    if email or user:
        return Identity(user=email or user, display_name=preferred or email or user, source="proxy")
    name = local_user()
    return Identity(user=name, display_name=name, source="local")


def can_edit(identity: Identity, settings: Settings | None = None) -> bool:
    """Whether this identity may create or change queries, schedules and provider mappings."""
    editors = (settings or get_settings()).editor_set
    if "*" in editors:
        return True
    candidates = {identity.user.lower(), identity.display_name.lower()}
    return bool(candidates & editors)


def require_editor(identity: Identity, action: str, settings: Settings | None = None) -> None:
    """Raise a PERMISSION error unless `identity` may write; `action` says what was refused."""
    if not can_edit(identity, settings):
        raise UserFacingError(
            f"{identity.display_name} has read-only access and cannot {action}. "
            "Ask an administrator to add you to STACKQL_INVENTORY_EDITORS.",
            ErrorKind.PERMISSION,
        )
