"""Who is using the app (Databricks Apps proxy headers, else the local OS user) and whether they may write.

Roles: editors (`STACKQL_INVENTORY_EDITORS`, default `*` = everyone) create and change saved queries,
schedules, provider mappings and materialized views; everyone else gets a read-only app (IDE runs,
browsing). Every service function that writes on a user's behalf takes `actor: Identity` and calls
`require_editor(actor, "<what>")` before touching anything, so the rule holds whatever the UI shows.
Entries are user names / e-mails, or `group:<name>` for members of a Databricks workspace group (looked
up through SCIM with the app's own identity and remembered for GROUP_CACHE_TTL_S).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stackql_inventory.config import Settings, get_settings, local_user
from stackql_inventory.services.errors import ErrorKind, UserFacingError

logger = logging.getLogger(__name__)

GROUP_PREFIX = "group:"
EVERYONE = "*"
# Seconds a user's workspace group membership is remembered (a removal takes effect within this time).
GROUP_CACHE_TTL_S = 300.0


@dataclass(frozen=True)
class Identity:
    """The person (or the app itself) behind a request."""

    user: str            # stable id recorded as created_by (email when known)
    display_name: str    # shown in the header
    source: str          # "proxy" (X-Forwarded-*), "local" (OS user) or "system" (scheduler, runner)


def system_identity(name: str = "scheduler") -> Identity:
    """The app acting on its own (scheduled runs, catch-up, start-up recovery): never a user's write."""
    return Identity(user=name, display_name=name, source="system")


def _header(headers: Mapping[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name:
            return (v or "").strip()
    return ""


def from_headers(headers: Mapping[str, str] | None) -> Identity:
    """Identity from `X-Forwarded-Email` / `X-Forwarded-User` (Databricks Apps), else the OS user.

    The e-mail is the stable id (it is the Databricks user name); `X-Forwarded-Preferred-Username`
    only changes what the header shows.
    """
    headers = headers or {}
    email = _header(headers, "x-forwarded-email")
    user = _header(headers, "x-forwarded-user")
    preferred = _header(headers, "x-forwarded-preferred-username")
    if email or user:
        return Identity(user=email or user, display_name=preferred or email or user, source="proxy")
    name = local_user()
    return Identity(user=name, display_name=name, source="local")


@dataclass(frozen=True)
class EditorRule:
    """Who may write, parsed from STACKQL_INVENTORY_EDITORS."""

    everyone: bool
    users: frozenset[str]    # lower-cased user names / e-mails
    groups: frozenset[str]   # lower-cased group display names

    def describe(self) -> str:
        """For messages: who the editors are (group names; named users only counted)."""
        if self.everyone:
            return "everyone"
        parts = [f"group {g}" for g in sorted(self.groups)]
        if self.users:
            parts.append(f"{len(self.users)} named user{'s' if len(self.users) != 1 else ''}")
        return " and ".join(parts) if parts else "nobody"


def editor_rule(settings: Settings | None = None) -> EditorRule:
    """Parse the editor setting (case-insensitive; blank entries ignored; empty means nobody)."""
    entries = (settings or get_settings()).editor_set
    groups = frozenset(e[len(GROUP_PREFIX):].strip() for e in entries if e.startswith(GROUP_PREFIX))
    users = frozenset(e for e in entries if not e.startswith(GROUP_PREFIX) and e != EVERYONE)
    return EditorRule(everyone=EVERYONE in entries, users=users, groups=frozenset(g for g in groups if g))


# --- group membership ---------------------------------------------------------------------------
GroupLookup = Callable[[str], frozenset[str]]

_groups_lock = threading.Lock()
_groups_cache: dict[str, tuple[float, frozenset[str]]] = {}


def databricks_groups(user: str) -> frozenset[str]:
    """The workspace groups (display names, lower-cased) of `user`, through SCIM as the app's identity."""
    from stackql_inventory.services.databricks_client import sdk_error_to_user_facing, workspace_client

    escaped = user.replace("\\", "\\\\").replace('"', '\\"')
    try:
        # User names are unique: stop at the first match instead of paging on (one request, not two).
        found = next(iter(workspace_client().users.list(filter=f'userName eq "{escaped}"',
                                                        attributes="userName,groups")), None)
    except UserFacingError:
        raise
    except Exception as e:  # noqa: BLE001 - every SDK failure becomes a user-facing one
        raise sdk_error_to_user_facing(e, f"the groups of {user}") from None
    if found is None or (found.user_name or "").lower() != user.lower():
        return frozenset()
    return frozenset(g.display.lower() for g in (found.groups or []) if g.display)


def clear_group_cache() -> None:
    """Forget remembered group memberships (tests; after changing editors)."""
    with _groups_lock:
        _groups_cache.clear()


def _groups_of(user: str, lookup: GroupLookup, ttl_s: float) -> frozenset[str]:
    now = time.monotonic()
    key = user.lower()
    with _groups_lock:
        cached = _groups_cache.get(key)
        if cached is not None and now - cached[0] < ttl_s:
            return cached[1]
    groups = lookup(user)  # outside the lock: a slow lookup must not block other users' checks
    with _groups_lock:
        _groups_cache[key] = (now, groups)
    return groups


def can_edit(identity: Identity, settings: Settings | None = None, *,
             group_lookup: GroupLookup | None = None, groups_ttl_s: float = GROUP_CACHE_TTL_S) -> bool:
    """Whether this identity may create or change queries, schedules, provider mappings and views.

    May call Databricks (SCIM) when `group:` editors are configured: call it off the event loop.
    A failed group lookup counts as "not an editor" (logged as a warning) rather than letting a write in.
    """
    settings = settings or get_settings()
    if identity.source == "system":
        return True
    rule = editor_rule(settings)
    if rule.everyone:
        return True
    if {identity.user.lower(), identity.display_name.lower()} & rule.users:
        return True
    if not rule.groups or identity.source != "proxy":
        return False
    try:
        groups = _groups_of(identity.user, group_lookup or databricks_groups, groups_ttl_s)
    except UserFacingError as e:
        logger.warning("editor_group_lookup_failed user=%s reason=%s", identity.user, e.message)
        return False
    return bool(groups & rule.groups)


def require_editor(identity: Identity, action: str, settings: Settings | None = None, *,
                   group_lookup: GroupLookup | None = None) -> None:
    """Raise a PERMISSION error unless `identity` may write; `action` says what was refused ("save queries")."""
    settings = settings or get_settings()
    if can_edit(identity, settings, group_lookup=group_lookup):
        return
    logger.info("write_refused user=%s action=%s", identity.user, action)
    raise UserFacingError(
        f"{identity.display_name} has read-only access and cannot {action}. Editors: "
        f"{editor_rule(settings).describe()}. Ask an administrator to add you to STACKQL_INVENTORY_EDITORS.",
        ErrorKind.PERMISSION,
    )
