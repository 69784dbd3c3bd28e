"""Provider mappings: add/edit/delete with validation, status per mapping without values, setting values."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest
import sqlalchemy as sa

from stackql_inventory import config
from stackql_inventory.config import Backend, Settings
from stackql_inventory.services import providers, secrets
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.providers import MappingInput
from tests.fakes.databricks_api import FakeDatabricks
from tests.support.providers import EDITOR, READER, setenv, world  # noqa: F401 - fixtures

PLANTED = "pl4nted-Pr0vider-S3CRET-0xfeedface"


def _rows(db: sa.Engine) -> list[tuple]:
    with db.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(
            "SELECT provider, env_var_name, secret_scope, secret_key, created_by FROM stackql_app.provider_config "
            "ORDER BY provider, env_var_name"))]


def _aws_lines(scope: str = "inv") -> list[MappingInput]:
    return [MappingInput("AWS_ACCESS_KEY_ID", scope, "aws-id"), MappingInput("AWS_SECRET_ACCESS_KEY", scope, "aws-key")]


# --- add ------------------------------------------------------------------------------------------
def test_preset_draft_fills_the_expected_variables_in_the_default_scope(db) -> None:
    lines = providers.draft_from_preset("azure")
    assert lines == [MappingInput("AZURE_TENANT_ID", "stackql-inventory", "azure-tenant-id"),
                     MappingInput("AZURE_CLIENT_ID", "stackql-inventory", "azure-client-id"),
                     MappingInput("AZURE_CLIENT_SECRET", "stackql-inventory", "azure-client-secret")]
    assert providers.draft_from_preset("something_else") == []


def test_add_a_preset_saves_every_line_with_its_author(db, world) -> None:
    views = providers.add_mappings(EDITOR, "aws", providers.draft_from_preset("aws"))
    assert [v.env_var_name for v in views] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert all(v.id > 0 for v in views)
    assert _rows(db) == [
        ("aws", "AWS_ACCESS_KEY_ID", "stackql-inventory", "aws-access-key-id", "ed@example.com"),
        ("aws", "AWS_SECRET_ACCESS_KEY", "stackql-inventory", "aws-secret-access-key", "ed@example.com"),
    ]
    assert providers.list_mappings() == views


def test_a_custom_provider_and_variable_can_be_typed(db) -> None:
    (view,) = providers.add_mappings(EDITOR, " digitalocean ", [MappingInput(" DIGITALOCEAN_TOKEN ", "inv", "do")])
    assert (view.provider, view.env_var_name) == ("digitalocean", "DIGITALOCEAN_TOKEN")


@pytest.mark.parametrize(("name", "says"), [
    ("aws_access_key_id", "not a valid environment variable name"),
    ("1AWS", "not a valid environment variable name"),
    ("AWS-KEY", "not a valid environment variable name"),
    ("AWS KEY", "not a valid environment variable name"),
    ("ÄWS", "not a valid environment variable name"),
    ("", "Enter the environment variable name"),
    ("PATH", "the app sets it for stackql itself"),
    ("LD_PRELOAD", "the app sets it for stackql itself"),
    ("A" * 129, "not a valid environment variable name"),
])
def test_invalid_env_var_names_are_refused_and_nothing_is_saved(db, name: str, says: str) -> None:
    with pytest.raises(UserFacingError) as err:
        providers.add_mappings(EDITOR, "aws", [MappingInput("AWS_ACCESS_KEY_ID", "inv", "a"),
                                               MappingInput(name, "inv", "b")])
    assert err.value.kind is ErrorKind.VALIDATION
    assert err.value.message.startswith("Variable 2: ") and says in err.value.message
    assert _rows(db) == []


@pytest.mark.parametrize("name", sorted({n.upper() for n in config.CHILD_ENV_PASSTHROUGH}))
def test_every_variable_the_app_passes_to_stackql_is_reserved(db, name: str) -> None:
    """One list (config.CHILD_ENV_PASSTHROUGH) says what children inherit and what a mapping may not name."""
    with pytest.raises(UserFacingError) as err:
        providers.add_mappings(EDITOR, "aws", [MappingInput(name, "inv", "a")])
    assert "the app sets it for stackql itself" in err.value.message
    assert _rows(db) == []


@pytest.mark.parametrize(("scope", "key", "says"), [
    ("../etc", "k", "secret scope name '../etc' is not valid"),
    ("inv", "a/b", "secret key name 'a/b' is not valid"),
    ("inv", "..", "secret key name '..' is not valid"),
    ("", "k", "Enter the secret scope for AWS_ACCESS_KEY_ID"),
    ("inv", " ", "Enter the secret key for AWS_ACCESS_KEY_ID"),
])
def test_invalid_scope_or_key_names_are_refused(db, scope: str, key: str, says: str) -> None:
    with pytest.raises(UserFacingError) as err:
        providers.add_mappings(EDITOR, "aws", [MappingInput("AWS_ACCESS_KEY_ID", scope, key)])
    assert err.value.kind is ErrorKind.VALIDATION and says in err.value.message
    assert _rows(db) == []


@pytest.mark.parametrize(("provider", "says"), [
    ("", "Enter the provider name"), ("AWS", "not a valid provider name"), ("my provider", "not a valid provider"),
])
def test_invalid_provider_names_are_refused(db, provider: str, says: str) -> None:
    with pytest.raises(UserFacingError) as err:
        providers.add_mappings(EDITOR, provider, _aws_lines())
    assert err.value.kind is ErrorKind.VALIDATION and says in err.value.message
    assert _rows(db) == []


def test_an_empty_form_is_refused(db) -> None:
    with pytest.raises(UserFacingError, match="Add at least one variable"):
        providers.add_mappings(EDITOR, "aws", [])


def test_a_variable_twice_in_one_form_is_refused(db) -> None:
    with pytest.raises(UserFacingError) as err:
        providers.add_mappings(EDITOR, "aws", [*_aws_lines(), MappingInput("AWS_ACCESS_KEY_ID", "inv", "other")])
    assert err.value.message == ("Variable 3: AWS_ACCESS_KEY_ID appears twice in this form. Remove one of them, "
                                 "then save.")
    assert _rows(db) == []


def test_a_duplicate_of_a_saved_mapping_is_refused_and_nothing_else_is_saved(db) -> None:
    providers.add_mappings(EDITOR, "aws", [MappingInput("AWS_SECRET_ACCESS_KEY", "inv", "aws-key")])
    with pytest.raises(UserFacingError) as err:
        providers.add_mappings(EDITOR, "aws", _aws_lines())
    assert err.value.kind is ErrorKind.CONFLICT
    assert ("Variable 2: AWS_SECRET_ACCESS_KEY is already mapped for aws (to inv/aws-key). Edit that mapping "
            "instead") in err.value.message
    assert [r[1] for r in _rows(db)] == ["AWS_SECRET_ACCESS_KEY"]


def test_the_same_variable_may_be_mapped_for_two_providers(db) -> None:
    shared = [MappingInput("DATABRICKS_CLIENT_ID", "inv", "dbx-id")]
    providers.add_mappings(EDITOR, "databricks_workspace", shared)
    providers.add_mappings(EDITOR, "databricks_account", shared)
    assert len(_rows(db)) == 2


def test_a_concurrent_duplicate_becomes_a_conflict_not_a_crash(db) -> None:
    """Another session inserts the same variable after our duplicate check: the unique index decides."""
    other = db.connect()
    tx = other.begin()
    other.execute(sa.text("INSERT INTO stackql_app.provider_config (provider, env_var_name, secret_scope, secret_key)"
                          " VALUES ('okta', 'OKTA_API_TOKEN', 'inv', 'first')"))
    outcome: dict[str, object] = {}

    def save() -> None:
        try:
            outcome["views"] = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "2nd")])
        except UserFacingError as e:
            outcome["error"] = e

    t = threading.Thread(target=save)
    t.start()
    time.sleep(0.5)  # our insert now waits on the uncommitted row's unique index entry
    assert t.is_alive()
    tx.commit()
    other.close()
    t.join(10)
    err = outcome.get("error")
    assert isinstance(err, UserFacingError) and err.kind is ErrorKind.CONFLICT
    assert "just mapped for okta by someone else" in err.message
    assert [r[3] for r in _rows(db)] == ["first"]


# --- edit and delete -------------------------------------------------------------------------------
def test_edit_changes_names_and_refuses_a_duplicate(db) -> None:
    a, b = providers.add_mappings(EDITOR, "aws", _aws_lines())
    changed = providers.update_mapping(EDITOR, a.id, "aws", MappingInput("AWS_ACCESS_KEY_ID", "prod", "aws-id-2"))
    assert (changed.id, changed.secret_scope, changed.secret_key) == (a.id, "prod", "aws-id-2")
    with pytest.raises(UserFacingError) as err:
        providers.update_mapping(EDITOR, a.id, "aws", MappingInput("AWS_SECRET_ACCESS_KEY", "prod", "x"))
    assert err.value.kind is ErrorKind.CONFLICT and "already mapped for aws" in err.value.message
    with pytest.raises(UserFacingError, match="not a valid environment variable name"):
        providers.update_mapping(EDITOR, a.id, "aws", MappingInput("lower", "prod", "x"))
    assert sorted(r[2:4] for r in _rows(db)) == [("inv", "aws-key"), ("prod", "aws-id-2")]


def test_edit_may_keep_its_own_variable_name(db) -> None:
    (a,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta")])
    changed = providers.update_mapping(EDITOR, a.id, "okta", MappingInput("OKTA_API_TOKEN", "inv", "o2"))
    assert changed.secret_key == "o2"


def test_delete_removes_the_mapping_and_keeps_the_secret(db, world) -> None:
    a, _ = providers.add_mappings(EDITOR, "aws", _aws_lines())
    providers.set_value(EDITOR, a.id, "AKIA-keep-me")
    deleted = providers.delete_mapping(EDITOR, a.id)
    assert deleted.env_var_name == "AWS_ACCESS_KEY_ID"
    assert [r[1] for r in _rows(db)] == ["AWS_SECRET_ACCESS_KEY"]
    assert secrets.backend_for().exists("inv", "aws-id")


@pytest.mark.parametrize("action", ["update", "delete", "set_value"])
def test_a_vanished_mapping_says_so(db, world, action: str) -> None:
    call = {
        "update": lambda: providers.update_mapping(EDITOR, 999, "aws", MappingInput("AWS_X", "inv", "k")),
        "delete": lambda: providers.delete_mapping(EDITOR, 999),
        "set_value": lambda: providers.set_value(EDITOR, 999, "v"),
    }[action]
    with pytest.raises(UserFacingError) as err:
        call()
    assert err.value.kind is ErrorKind.NOT_FOUND and "Mapping 999 no longer exists" in err.value.message


def test_readers_cannot_write_anything(db, world, setenv) -> None:
    (a,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta")])
    setenv("STACKQL_INVENTORY_EDITORS", "ed@example.com")
    attempts = [
        lambda: providers.add_mappings(READER, "aws", _aws_lines()),
        lambda: providers.update_mapping(READER, a.id, "okta", MappingInput("OKTA_API_TOKEN", "inv", "x")),
        lambda: providers.delete_mapping(READER, a.id),
        lambda: providers.set_value(READER, a.id, PLANTED),
    ]
    for attempt in attempts:
        with pytest.raises(UserFacingError) as err:
            attempt()
        assert err.value.kind is ErrorKind.PERMISSION and "Rita Reader has read-only access" in err.value.message
    assert _rows(db) == [("okta", "OKTA_API_TOKEN", "inv", "okta", "ed@example.com")]
    assert not secrets.backend_for().exists("inv", "okta")
    # Validation reads no value and changes nothing: readers may run it.
    assert [s.state for s in providers.validate()] == ["missing"]


# --- values and status (local backend) ------------------------------------------------------------------
def test_status_goes_from_missing_to_ok_when_the_value_is_set(db, world) -> None:
    a, b = providers.add_mappings(EDITOR, "aws", _aws_lines())
    before = providers.validate("aws")
    assert [(s.env_var_name, s.state, s.label) for s in before] == [
        ("AWS_ACCESS_KEY_ID", "missing", "missing"), ("AWS_SECRET_ACCESS_KEY", "missing", "missing")]
    assert "Save a secret in it on the Providers page" in before[0].message
    status = providers.set_value(EDITOR, a.id, "  AKIA-new\n")
    assert (status.mapping_id, status.state, status.label) == (a.id, "ok", "OK")
    after = {s.env_var_name: s for s in providers.validate()}
    assert after["AWS_ACCESS_KEY_ID"].state == "ok"
    assert after["AWS_SECRET_ACCESS_KEY"].state == "missing"
    assert after["AWS_SECRET_ACCESS_KEY"].message == (
        "Secret 'aws-key' is not set in scope 'inv'. Save it on the Providers page, "
        "then retry.")
    assert secrets.backend_for().get("inv", "aws-id") == "AKIA-new"  # surrounding whitespace dropped


def test_set_value_writes_a_0600_file_in_a_0700_folder(db, world) -> None:
    (a,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta-token")])
    providers.set_value(EDITOR, a.id, PLANTED)
    path = world.secrets_dir / "inv" / "okta-token"
    assert path.read_text() == PLANTED
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(world.secrets_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize(("value", "says"), [
    ("", "Enter the value of OKTA_API_TOKEN"), ("  \n", "Enter the value of OKTA_API_TOKEN"),
    ("a\x00b", "contains a NUL character"), ("x" * (128 * 1024 + 1), "larger than 128 KB"),
])
def test_bad_values_are_refused_and_the_old_value_stays(db, world, value: str, says: str) -> None:
    (a,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta-token")])
    providers.set_value(EDITOR, a.id, "old-value")
    with pytest.raises(UserFacingError) as err:
        providers.set_value(EDITOR, a.id, value)
    assert err.value.kind is ErrorKind.VALIDATION and says in err.value.message
    assert secrets.backend_for().get("inv", "okta-token") == "old-value"


def test_a_symlinked_scope_cannot_lead_outside_the_secrets_folder(db, world, tmp_path) -> None:
    (a,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "evil", "okta-token")])
    outside = tmp_path / "outside"
    outside.mkdir()
    world.secrets_dir.mkdir(parents=True)
    os.symlink(outside, world.secrets_dir / "evil")
    with pytest.raises(UserFacingError, match="leads outside the secrets folder"):
        providers.set_value(EDITOR, a.id, PLANTED)
    assert list(outside.iterdir()) == []
    (status,) = providers.validate()
    assert status.state == "error" and "leads outside the secrets folder" in status.message


def test_validate_reads_no_value(db, world) -> None:
    """A secret file the app cannot decode still validates as present: validation never opens it."""
    (a,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta-token")])
    providers.set_value(EDITOR, a.id, "placeholder")
    (world.secrets_dir / "inv" / "okta-token").write_bytes(b"\xff\xfe not utf-8")
    assert [s.state for s in providers.validate()] == ["ok"]


# --- Databricks backend ------------------------------------------------------------------------------
@pytest.fixture
def dbx(monkeypatch, tmp_path):
    """The Databricks secrets backend (real SDK) against the fake workspace."""
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    with FakeDatabricks() as fake:
        fake.add_scope("inv")
        settings = Settings(_env_file=None, data_dir=tmp_path, secrets_backend_raw=Backend.DATABRICKS)
        yield fake, secrets.backend_for(settings, client=fake.client())


def test_databricks_status_per_mapping_from_list_secrets_only(db, dbx) -> None:
    fake, backend = dbx
    fake.put_secret("inv", "aws-id", PLANTED)
    fake.add_scope("locked", acls={"someone-else@example.com": "MANAGE"})
    providers.add_mappings(EDITOR, "aws", [MappingInput("AWS_ACCESS_KEY_ID", "inv", "AWS-ID"),
                                           MappingInput("AWS_SECRET_ACCESS_KEY", "inv", "aws-key")])
    providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "nope", "okta")])
    providers.add_mappings(EDITOR, "github", [MappingInput("STACKQL_GITHUB_PASSWORD", "locked", "gh")])
    providers.add_mappings(EDITOR, "cloudflare", [MappingInput("CLOUDFLARE_API_TOKEN", "flaky", "cf")])
    fake.add_scope("flaky")
    fake.fail_next("/api/2.0/secrets/list", 500, "INTERNAL_ERROR", "backend exploded", times=None)
    statuses = {s.env_var_name: s for s in providers.validate(backend=backend)}
    # The fault applies to every list call: check the 500 case first, then the rest without it.
    assert statuses["CLOUDFLARE_API_TOKEN"].state == "error"
    assert "Databricks refused or failed the request" in statuses["CLOUDFLARE_API_TOKEN"].message
    fake.clear_faults()
    statuses = {s.env_var_name: s for s in providers.validate(backend=backend)}
    assert {k: s.state for k, s in statuses.items()} == {
        "AWS_ACCESS_KEY_ID": "ok",  # keys compare case-insensitively
        "AWS_SECRET_ACCESS_KEY": "missing",
        "OKTA_API_TOKEN": "missing",
        "STACKQL_GITHUB_PASSWORD": "no_permission",
        "CLOUDFLARE_API_TOKEN": "missing",
    }
    assert "databricks secrets put-secret inv aws-key" in statuses["AWS_SECRET_ACCESS_KEY"].message
    assert "databricks secrets create-scope nope" in statuses["OKTA_API_TOKEN"].message
    assert statuses["STACKQL_GITHUB_PASSWORD"].label == "no permission"
    assert "databricks secrets put-acl locked" in statuses["STACKQL_GITHUB_PASSWORD"].message
    assert fake.requests_to("/api/2.0/secrets/get") == []
    assert all(PLANTED not in repr(s) for s in statuses.values())


def test_databricks_backend_does_not_take_values_and_names_the_cli_command(db, dbx) -> None:
    fake, backend = dbx
    (a,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta-token")])
    with pytest.raises(UserFacingError) as err:
        providers.set_value(EDITOR, a.id, PLANTED, backend=backend)
    assert err.value.kind is ErrorKind.CONFIG
    assert "databricks secrets put-secret inv okta-token" in err.value.message
    assert PLANTED not in err.value.message
    assert fake.requests_to("/api/2.0/secrets/put") == []
    assert providers.cli_put_command("inv", "okta-token") == "databricks secrets put-secret inv okta-token"


def test_backend_kind_follows_the_setting(setenv) -> None:
    assert providers.backend_kind() == "local"
    setenv("STACKQL_INVENTORY_SECRETS_BACKEND", "databricks")
    assert providers.backend_kind() == "databricks"


def test_parallel_and_sequential_validation_agree_in_order(dbx) -> None:
    """Checks run on several threads (one list call each) and come back in the mappings' order."""
    fake, backend = dbx
    items = [providers.MappingView(i, "p", f"VAR_{i}", "inv", f"k{i}", "t") for i in range(1, 13)]
    for m in items[::2]:
        fake.put_secret("inv", m.secret_key, "x")
    parallel = providers.validate(backend=backend, items=items)
    sequential = providers.validate(backend=backend, items=items, workers=1)
    assert parallel == sequential
    assert [s.state for s in parallel] == ["ok", "missing"] * 6
    assert [s.mapping_id for s in parallel] == list(range(1, 13))
    assert [s.mapping_id for s in providers.validate("q", backend=backend, items=items)] == []
