"""Identity from proxy headers and the editor role: parsing, users, groups via SCIM, refusal messages, and the
contract that every service writing on a user's behalf checks the role before it writes."""

from __future__ import annotations

import ast
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackql_inventory.config import Settings, local_user
from stackql_inventory.services import identity
from stackql_inventory.services.databricks_client import set_workspace_client
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from tests.support.platform import ScimFakeDatabricks

SERVICES = Path(__file__).resolve().parents[1] / "stackql_inventory" / "services"


def _settings(editors: str) -> Settings:
    return Settings(_env_file=None, STACKQL_INVENTORY_EDITORS=editors)


def _proxy(user: str, display: str | None = None) -> Identity:
    return Identity(user=user, display_name=display or user, source="proxy")


@pytest.fixture(autouse=True)
def _fresh_group_cache() -> Iterator[None]:
    identity.clear_group_cache()
    yield
    identity.clear_group_cache()


# --- headers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "user", "display", "source"),
    [
        # What Databricks Apps' proxy sends: e-mail and user id; the e-mail is the stable id.
        ({"x-forwarded-email": "ana@example.com", "x-forwarded-user": "4242@1234567890"}, "ana@example.com",
         "ana@example.com", "proxy"),
        ({"X-Forwarded-Email": "ana@example.com", "X-Forwarded-Preferred-Username": "Ana Lima"},
         "ana@example.com", "Ana Lima", "proxy"),
        ({"X-FORWARDED-EMAIL": "  ana@example.com  "}, "ana@example.com", "ana@example.com", "proxy"),
        ({"x-forwarded-user": "4242@1234567890"}, "4242@1234567890", "4242@1234567890", "proxy"),
        ({"x-forwarded-preferred-username": "Ana"}, local_user(), local_user(), "local"),  # no id: not trusted
        ({"x-forwarded-email": "", "x-forwarded-user": " "}, local_user(), local_user(), "local"),
        ({"x-forwarded-email": None}, local_user(), local_user(), "local"),
        ({"authorization": "Bearer x"}, local_user(), local_user(), "local"),
        ({}, local_user(), local_user(), "local"),
        (None, local_user(), local_user(), "local"),
    ],
)
def test_identity_from_headers(headers, user: str, display: str, source: str) -> None:
    who = identity.from_headers(headers)
    assert (who.user, who.display_name, who.source) == (user, display, source)


def test_system_identity_is_never_refused() -> None:
    who = identity.system_identity("runner")
    assert who.source == "system" and who.user == "runner"
    identity.require_editor(who, "record a run", _settings(""))


# --- the editor setting -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("editors", "everyone", "users", "groups", "described"),
    [
        ("*", True, set(), set(), "everyone"),
        ("ana@example.com, *", True, {"ana@example.com"}, set(), "everyone"),
        ("Ana@Example.com, bo@example.com", False, {"ana@example.com", "bo@example.com"}, set(), "2 named users"),
        ("group:Inventory-Admins, ana@example.com", False, {"ana@example.com"}, {"inventory-admins"},
         "group inventory-admins and 1 named user"),
        ("group:a,group:b", False, set(), {"a", "b"}, "group a and group b"),
        (" , ,", False, set(), set(), "nobody"),
        ("", False, set(), set(), "nobody"),
        ("group:", False, set(), set(), "nobody"),
    ],
)
def test_editor_rule_parsing(editors: str, everyone: bool, users: set, groups: set, described: str) -> None:
    rule = identity.editor_rule(_settings(editors))
    assert (rule.everyone, set(rule.users), set(rule.groups)) == (everyone, users, groups)
    assert rule.describe() == described


@pytest.mark.parametrize(
    ("editors", "who", "allowed"),
    [
        ("*", _proxy("anyone@example.com"), True),
        ("*", Identity("me", "me", "local"), True),  # the default: a laptop user edits
        ("ana@example.com, bo@example.com", _proxy("ANA@example.com"), True),
        ("ana@example.com", _proxy("eve@example.com"), False),
        ("Ana Lima", _proxy("ana@example.com", "Ana Lima"), True),  # matched by the displayed name too
        ("ana", _proxy("ana@example.com"), False),  # no prefix matching
        ("", _proxy("ana@example.com"), False),
        ("group:admins", Identity("ana", "ana", "local"), False),  # groups need a proxy identity
    ],
)
def test_can_edit_and_require_editor(editors: str, who: Identity, allowed: bool) -> None:
    settings = _settings(editors)
    assert identity.can_edit(who, settings) is allowed
    if allowed:
        identity.require_editor(who, "save queries", settings)
    else:
        with pytest.raises(UserFacingError) as err:
            identity.require_editor(who, "save queries", settings)
        assert err.value.kind is ErrorKind.PERMISSION
        assert f"{who.display_name} has read-only access and cannot save queries" in err.value.message
        assert "STACKQL_INVENTORY_EDITORS" in err.value.message
        assert "eve@example.com" not in err.value.message.replace(who.display_name, "")  # no editor list leak


# --- groups through SCIM (real SDK, local fake) -------------------------------------------------
@pytest.fixture
def scim(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScimFakeDatabricks]:
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    with ScimFakeDatabricks(user_name="app-sp-client-id") as fake:
        fake.add_user("tok-ana", "ana@example.com", groups=("Inventory-Admins", "users"))
        fake.add_user("tok-bo", "bo@example.com", groups=("users",))
        fake.add_user("tok-quote", 'o"neil@example.com', groups=("inventory-admins",))
        set_workspace_client(fake.client())
        yield fake
        set_workspace_client(None)


@pytest.mark.parametrize(
    ("user", "allowed"),
    [("ana@example.com", True), ("ANA@EXAMPLE.COM", True), ("bo@example.com", False),
     ("ghost@example.com", False), ('o"neil@example.com', True)],
)
def test_group_editors_are_resolved_through_scim(scim: ScimFakeDatabricks, user: str, allowed: bool) -> None:
    settings = _settings("group:inventory-admins")
    assert identity.can_edit(_proxy(user), settings) is allowed
    requests = scim.requests_to("/api/2.0/preview/scim/v2/Users")
    assert len(requests) == 1 and requests[0].principal == "app-sp-client-id"  # as the app, not the user
    assert requests[0].query["filter"].startswith("userName eq ")


def test_group_membership_is_remembered_for_the_ttl(scim: ScimFakeDatabricks) -> None:
    settings = _settings("group:inventory-admins")
    who = _proxy("bo@example.com")
    assert not identity.can_edit(who, settings, groups_ttl_s=0.5)
    with scim.lock:  # bo joins the group in the workspace
        scim.user("tok-bo")["groups"].append({"display": "inventory-admins", "value": "g-inventory-admins"})
    assert not identity.can_edit(who, settings, groups_ttl_s=0.5)  # remembered
    assert len(scim.requests_to("/api/2.0/preview/scim/v2/Users")) == 1
    time.sleep(0.6)
    assert identity.can_edit(who, settings, groups_ttl_s=0.5)  # looked up again after the TTL
    assert len(scim.requests_to("/api/2.0/preview/scim/v2/Users")) == 2


def test_named_users_need_no_lookup(scim: ScimFakeDatabricks) -> None:
    settings = _settings("group:inventory-admins, bo@example.com")
    assert identity.can_edit(_proxy("bo@example.com"), settings)
    assert identity.can_edit(_proxy("x@example.com"), _settings("*"))
    assert scim.requests_to("/api/2.0/preview/scim/v2/Users") == []


def test_a_failed_group_lookup_refuses_the_write(scim: ScimFakeDatabricks, caplog: pytest.LogCaptureFixture) -> None:
    scim.fail_next("/api/2.0/preview/scim/v2/Users", 403, "PERMISSION_DENIED", "no SCIM for you")
    settings = _settings("group:inventory-admins")
    with caplog.at_level(logging.WARNING):
        with pytest.raises(UserFacingError) as err:
            identity.require_editor(_proxy("ana@example.com"), "create schedules", settings)
    assert err.value.kind is ErrorKind.PERMISSION and "group inventory-admins" in err.value.message
    assert "editor_group_lookup_failed" in caplog.text
    # A failure is not remembered: the next check asks again and lets the editor in.
    assert identity.can_edit(_proxy("ana@example.com"), settings)


def test_an_injected_lookup_replaces_scim() -> None:
    calls: list[str] = []

    def lookup(user: str) -> frozenset[str]:
        calls.append(user)
        return frozenset({"inventory-admins"})

    assert identity.can_edit(_proxy("ana@example.com"), _settings("group:inventory-admins"), group_lookup=lookup)
    assert calls == ["ana@example.com"]


# --- the contract with the write services -------------------------------------------------------
# Service functions that take `actor` but only record who did something (no write a read-only user must be
# kept from). Each entry is a decision: add one only for reads / run history / ad-hoc IDE runs.
ACTOR_WITHOUT_EDITOR_CHECK: set[str] = {
    "ide_queries.run",  # an ad-hoc IDE run: read-only users may run queries (REGISTRY PULL is checked)
    "ide_queries.record",  # the run history of that run
}


def _functions_with_actor() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted(SERVICES.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                args = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
                if "actor" in args and path.stem != "identity":
                    found.append((f"{path.stem}.{node.name}", node))
    return found


def _calls_require_editor(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            fn = sub.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name == "require_editor":
                return True
    return False


def test_every_service_acting_for_a_user_checks_the_editor_role() -> None:
    """A public service function with an `actor` parameter calls `require_editor` (or is listed above)."""
    missing = [name for name, node in _functions_with_actor()
               if name not in ACTOR_WITHOUT_EDITOR_CHECK and not _calls_require_editor(node)]
    assert missing == [], f"these take an actor but never call identity.require_editor: {missing}"
    stale = ACTOR_WITHOUT_EDITOR_CHECK - {name for name, _ in _functions_with_actor()}
    assert stale == set(), f"listed as exempt but not found: {stale}"


def test_the_contract_check_sees_a_violation(tmp_path: Path) -> None:
    source = ("def save(actor, name):\n    return name\n\n"
              "def delete(actor, id):\n    identity.require_editor(actor, 'delete')\n")
    tree = ast.parse(source)
    verdicts = {n.name: _calls_require_editor(n) for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert verdicts == {"save": False, "delete": True}
