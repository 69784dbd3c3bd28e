"""Identity from Databricks Apps proxy headers, the local user otherwise, and the editor role."""

from __future__ import annotations

import pytest

from stackql_inventory.config import Settings, local_user
from stackql_inventory.services import identity
from stackql_inventory.services.errors import ErrorKind, UserFacingError


@pytest.mark.parametrize(
    ("headers", "user", "display", "source"),
    [
        ({"x-forwarded-email": "ana@example.com", "x-forwarded-user": "123@456"}, "ana@example.com",
         "ana@example.com", "proxy"),
        ({"X-Forwarded-Email": "ana@example.com", "X-Forwarded-Preferred-Username": "Ana"}, "ana@example.com",
         "Ana", "proxy"),
        ({"x-forwarded-user": "123@456"}, "123@456", "123@456", "proxy"),
        ({"x-forwarded-email": "  "}, local_user(), local_user(), "local"),
        ({}, local_user(), local_user(), "local"),
        (None, local_user(), local_user(), "local"),
    ],
)
def test_from_headers(headers, user: str, display: str, source: str) -> None:
    who = identity.from_headers(headers)
    assert (who.user, who.display_name, who.source) == (user, display, source)


@pytest.mark.parametrize(
    ("editors", "user", "allowed"),
    [
        ("*", "anyone@example.com", True),
        ("ana@example.com, bo@example.com", "ANA@example.com", True),
        ("ana@example.com", "eve@example.com", False),
        ("", "eve@example.com", False),
    ],
)
def test_editor_role(editors: str, user: str, allowed: bool) -> None:
    settings = Settings(_env_file=None, STACKQL_INVENTORY_EDITORS=editors)
    who = identity.Identity(user=user, display_name=user, source="proxy")
    assert identity.can_edit(who, settings) is allowed
    if allowed:
        identity.require_editor(who, "save queries", settings)
    else:
        with pytest.raises(UserFacingError) as err:
            identity.require_editor(who, "save queries", settings)
        assert err.value.kind is ErrorKind.PERMISSION
        assert "read-only" in err.value.message
