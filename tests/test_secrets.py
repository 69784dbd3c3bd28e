"""Secrets service: the local file backend and the Databricks backend (real SDK against the fake)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from stackql_inventory.config import Backend, Settings
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.secrets import (
    DatabricksSecrets,
    LocalSecrets,
    SecretState,
    backend_for,
    validate_name,
)
from tests.fakes.databricks_api import FakeDatabricks

PLANTED = "pl4nted-S3CRET-value-0xdeadbeef"


@pytest.fixture
def local(tmp_path) -> LocalSecrets:
    return LocalSecrets(tmp_path / "data" / "secrets")


@pytest.fixture
def fake(monkeypatch):
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    with FakeDatabricks() as server:
        server.add_scope("inv")
        yield server


@pytest.fixture
def remote(fake) -> DatabricksSecrets:
    return DatabricksSecrets(fake.client())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _settings(tmp_path, backend: Backend) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, secrets_backend_raw=backend)


# --- backend selection ----------------------------------------------------------------------------
def test_backend_for_local_uses_the_data_dir(tmp_path):
    backend = backend_for(_settings(tmp_path, Backend.LOCAL))
    assert isinstance(backend, LocalSecrets) and backend.root == tmp_path / "secrets"


def test_backend_for_databricks_uses_the_given_client(tmp_path, fake):
    fake.put_secret("inv", "k", "v")
    backend = backend_for(_settings(tmp_path, Backend.DATABRICKS), client=fake.client())
    assert isinstance(backend, DatabricksSecrets) and backend.list_keys("inv") == ["k"]


# --- local backend --------------------------------------------------------------------------------
def test_local_round_trip(local):
    local.put("aws", "AWS_SECRET_ACCESS_KEY", "wJalr/K7MDENG+bPxRfiCY")
    local.put("aws", "unicode", "pässwörd ✓")
    assert local.get("aws", "AWS_SECRET_ACCESS_KEY") == "wJalr/K7MDENG+bPxRfiCY"
    assert local.get("aws", "unicode") == "pässwörd ✓"
    local.put("aws", "unicode", "replaced")
    assert local.get("aws", "unicode") == "replaced"


def test_local_keys_are_case_insensitive(local):
    local.put("aws", "Api-Key", "v1")
    assert local.exists("aws", "API-KEY") and local.get("aws", "api-key") == "v1"
    local.put("aws", "API-key", "v2")
    assert local.list_keys("aws") == ["api-key"] and local.get("aws", "Api-Key") == "v2"


def test_local_files_are_0600_in_0700_folders_whatever_the_umask(local):
    old = os.umask(0o022)
    try:
        local.root.mkdir(parents=True, mode=0o755)  # a folder someone made too open
        os.chmod(local.root, 0o755)
        local.put("gh", "token", "ghp_x")
    finally:
        os.umask(old)
    assert _mode(local.root) == 0o700
    assert _mode(local.root / "gh") == 0o700
    assert _mode(local.root / "gh" / "token") == 0o600
    assert os.listdir(local.root / "gh") == ["token"]  # no temp file left behind


def test_local_list_keys_ignores_junk(local):
    local.put("gh", "b", "1")
    local.put("gh", "a", "2")
    (local.root / "gh" / "sub").mkdir()
    (local.root / "gh" / "~tmp~half-written").write_text("x")
    assert local.list_keys("gh") == ["a", "b"]


def test_local_missing_scope_and_key(local):
    assert local.exists("nope", "k") is False
    with pytest.raises(UserFacingError, match="Secret scope 'nope' does not exist") as info:
        local.list_keys("nope")
    assert info.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(UserFacingError, match="Secret scope 'nope' does not exist"):
        local.get("nope", "k")
    assert local.status("nope", "k").state is SecretState.MISSING
    local.put("gh", "token", "x")
    with pytest.raises(UserFacingError, match="Secret 'other' does not exist in scope 'gh'") as info:
        local.get("gh", "other")
    assert info.value.kind is ErrorKind.NOT_FOUND
    status = local.status("gh", "other")
    assert status.state is SecretState.MISSING and "'other'" in status.message
    assert local.status("gh", "token").state is SecretState.OK and local.status("gh", "token").ok


def test_local_delete(local):
    local.put("gh", "token", "x")
    assert local.delete("gh", "TOKEN") is True
    assert local.delete("gh", "token") is False
    assert not local.exists("gh", "token")


def test_local_value_limits(local):
    with pytest.raises(UserFacingError, match="128 KB") as info:
        local.put("gh", "big", "x" * (128 * 1024 + 1))
    assert info.value.kind is ErrorKind.VALIDATION
    with pytest.raises(UserFacingError, match="must be text"):
        local.put("gh", "k", b"bytes")  # type: ignore[arg-type]
    (local.root / "gh").mkdir(parents=True)
    (local.root / "gh" / "binary").write_bytes(b"\xff\xfe")
    with pytest.raises(UserFacingError, match="not UTF-8"):
        local.get("gh", "binary")


BAD_NAMES = ["../x", "a/b", "..", ".", "/etc/passwd", "/tmp", "x\x00y", "a" * 129, "ключ", "", " a", "a b",
             "a\\b", "~tmp~x", "..\\..\\x", "a/../../b"]


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize("position", ["scope", "key"])
def test_local_rejects_names_that_could_escape(tmp_path, local, bad, position):
    scope, key = (bad, "k") if position == "scope" else ("s", bad)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for call in (lambda: local.put(scope, key, PLANTED), lambda: local.get(scope, key),
                 lambda: local.exists(scope, key), lambda: local.delete(scope, key)):
        with pytest.raises(UserFacingError) as info:
            call()
        assert info.value.kind is ErrorKind.VALIDATION and "not valid" in info.value.message
        assert PLANTED not in info.value.message
    status = local.status(scope, key)
    assert status.state is SecretState.ERROR and "not valid" in status.message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_local_refuses_a_scope_symlinked_outside(tmp_path, local):
    outside = tmp_path / "outside"
    outside.mkdir()
    local.root.mkdir(parents=True)
    (local.root / "evil").symlink_to(outside)
    with pytest.raises(UserFacingError, match="outside the secrets folder") as info:
        local.put("evil", "k", PLANTED)
    assert info.value.kind is ErrorKind.VALIDATION
    assert list(outside.iterdir()) == []
    assert local.status("evil", "k").state is SecretState.ERROR


def test_local_refuses_a_key_symlinked_outside(tmp_path, local):
    target = tmp_path / "target.txt"
    target.write_text("not a secret")
    local.put("gh", "k", "x")
    (local.root / "gh" / "link").symlink_to(target)
    with pytest.raises(UserFacingError, match="outside the secrets folder"):
        local.get("gh", "link")
    with pytest.raises(UserFacingError, match="outside the secrets folder"):
        local.put("gh", "link", PLANTED)
    assert target.read_text() == "not a secret"


@pytest.mark.parametrize(("name", "ok"), [("a", True), ("A-b_c.9", True), ("a" * 128, True), ("...", True),
                                          ("a" * 129, False), (".", False), ("..", False), (None, False)])
def test_validate_name(name, ok):
    if ok:
        assert validate_name(name) == name
    else:
        with pytest.raises(UserFacingError, match="not valid"):
            validate_name(name)


# --- databricks backend ---------------------------------------------------------------------------
def test_databricks_reads_listed_keys_and_values(fake, remote):
    fake.put_secret("inv", "Anthropic-Api-Key", PLANTED)
    assert remote.list_keys("inv") == ["Anthropic-Api-Key"]
    assert remote.exists("inv", "anthropic-api-key") is True
    assert remote.exists("inv", "other") is False
    assert remote.status("inv", "ANTHROPIC-API-KEY").state is SecretState.OK
    # Validation only lists keys; the value is fetched by get() alone.
    assert fake.requests_to("/api/2.0/secrets/get") == []
    assert remote.get("inv", "anthropic-api-key") == PLANTED
    assert [r.query for r in fake.requests_to("/api/2.0/secrets/get")] == [
        {"scope": "inv", "key": "anthropic-api-key"}]


def test_databricks_missing_scope(fake, remote):
    assert remote.exists("nope", "k") is False
    status = remote.status("nope", "k")
    assert status.state is SecretState.MISSING
    expected = "Secret scope 'nope' does not exist. Create it with `databricks secrets create-scope nope`, then retry."
    assert status.message == expected
    for call in (lambda: remote.list_keys("nope"), lambda: remote.get("nope", "k")):
        with pytest.raises(UserFacingError) as info:
            call()
        assert info.value.kind is ErrorKind.NOT_FOUND and info.value.message == expected


def test_databricks_missing_key(fake, remote):
    status = remote.status("inv", "gh-token")
    assert status.state is SecretState.MISSING and "databricks secrets put-secret inv gh-token" in status.message
    with pytest.raises(UserFacingError, match="Secret 'gh-token' does not exist in scope 'inv'") as info:
        remote.get("inv", "gh-token")
    assert info.value.kind is ErrorKind.NOT_FOUND


def test_databricks_permission_denied(fake):
    fake.put_secret("inv", "k", PLANTED)
    reader = DatabricksSecrets(fake.client(token=fake.add_user("dapi-no-acl", "other-sp")))
    status = reader.status("inv", "k")
    assert status.state is SecretState.NO_PERMISSION and "put-acl inv" in status.message
    for call in (lambda: reader.list_keys("inv"), lambda: reader.exists("inv", "k"), lambda: reader.get("inv", "k")):
        with pytest.raises(UserFacingError, match="cannot read secret scope 'inv'") as info:
            call()
        assert info.value.kind is ErrorKind.PERMISSION


@pytest.mark.parametrize(
    ("status", "code", "state", "kind"),
    [
        (401, "UNAUTHENTICATED", SecretState.ERROR, ErrorKind.AUTH),
        (500, "INTERNAL_ERROR", SecretState.ERROR, ErrorKind.UPSTREAM),
    ],
)
def test_databricks_other_failures(fake, remote, status, code, state, kind):
    fake.fail_next("/api/2.0/secrets/list", status, code, "boom", times=2)
    assert remote.status("inv", "k").state is state
    with pytest.raises(UserFacingError) as info:
        remote.list_keys("inv")
    assert info.value.kind is kind and "scope 'inv'" in info.value.message


def test_databricks_backend_does_not_write(fake, remote):
    for call, command in ((lambda: remote.put("inv", "k", PLANTED), "databricks secrets put-secret inv k"),
                          (lambda: remote.delete("inv", "k"), "databricks secrets delete-secret inv k")):
        with pytest.raises(UserFacingError, match=command) as info:
            call()
        assert info.value.kind is ErrorKind.CONFIG and PLANTED not in info.value.message
    assert fake.requests_to("/api/2.0/secrets/put") == [] and fake.state.scopes["inv"]["secrets"] == {}


@pytest.mark.parametrize("bad", ["../x", "a/b", "x\x00y", "a" * 129, ""])
def test_databricks_validates_names_before_calling(fake, remote, bad):
    with pytest.raises(UserFacingError, match="not valid"):
        remote.get("inv", bad)
    assert remote.status(bad, "k").state is SecretState.ERROR
    assert fake.requests_to("/api/2.0/secrets/") == []


def test_databricks_non_utf8_value(fake, remote):
    fake.put_secret("inv", "bin", b"\xff\xfe" + PLANTED.encode())
    with pytest.raises(UserFacingError, match="not UTF-8") as info:
        remote.get("inv", "bin")
    assert PLANTED not in repr(info.value) and info.value.__cause__ is None


# --- a planted value never leaks ------------------------------------------------------------------
def _exercise(backend, scope: str, key: str) -> list[UserFacingError]:
    """Every operation, successful or not; returns the errors raised."""
    raised = []
    calls = [lambda: backend.put(scope, key, PLANTED), lambda: backend.get(scope, key),
             lambda: backend.exists(scope, key), lambda: backend.status(scope, key), lambda: backend.list_keys(scope),
             lambda: backend.get(scope, "missing"), lambda: backend.get("missing-scope", key),
             lambda: backend.put(scope, "big", PLANTED * 10_000), lambda: backend.put(scope, "../x", PLANTED),
             lambda: backend.delete(scope, key)]
    for call in calls:
        try:
            result = call()
        except UserFacingError as e:
            raised.append(e)
        else:
            if call is not calls[1]:
                assert PLANTED not in repr(result)
    return raised


def _assert_no_leak(errors_raised, caplog, backend):
    assert errors_raised, "the exercise should have hit error paths"
    encoded = __import__("base64").b64encode(PLANTED.encode()).decode()
    for e in errors_raised:
        for text in (e.message, e.detail, repr(e), str(e)):
            assert PLANTED not in text and encoded not in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "logging should have been captured"
    assert PLANTED not in logged and encoded not in logged
    assert PLANTED not in repr(backend)


def test_local_never_leaks_the_value(local, caplog):
    caplog.set_level(logging.DEBUG)
    raised = _exercise(local, "gh", "token")
    _assert_no_leak(raised, caplog, local)


def test_databricks_never_leaks_the_value(fake, remote, caplog):
    caplog.set_level(logging.DEBUG)  # includes the SDK's request/response debug log
    fake.put_secret("inv", "token", PLANTED)
    raised = _exercise(remote, "inv", "token")
    assert remote.get("inv", "token") == PLANTED
    reader = DatabricksSecrets(fake.client(token=fake.add_user("dapi-no-acl", "other-sp")))
    raised += _exercise(reader, "inv", "token")
    _assert_no_leak(raised, caplog, remote)
