"""Lakebase OAuth logins: a new token per connection through the real SDK, and the connect parameters."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from stackql_inventory.config import Settings
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.lakebase import DEFAULT_DATABASE, LakebaseCredentials, lakebase_connect_params
from tests.fakes.databricks_api import FakeDatabricks

ENDPOINT = "projects/inventory/branches/production/endpoints/primary"
INSTANCE = "inventory-db"


@pytest.fixture
def fake(monkeypatch):
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    with FakeDatabricks(user_name="6f1c-app-sp-client-id") as server:
        server.add_postgres_endpoint(ENDPOINT, host="ep-primary.lakebase.example.com")
        server.add_database_instance(INSTANCE, dns="instance-inv.lakebase.example.com")
        yield server


@pytest.fixture
def w(fake):
    return fake.client()


def _settings(**values) -> Settings:
    base = dict(pghost=None, pgport=5432, pgdatabase=None, pguser=None, pgsslmode="require",
                pgappname="stackql-inventory", lakebase_endpoint=None, lakebase_instance=None)
    return Settings(_env_file=None, **{**base, **values})


# --- minting --------------------------------------------------------------------------------------
def test_endpoint_mints_a_new_token_per_call(fake, w):
    creds = LakebaseCredentials(w, endpoint=ENDPOINT)
    tokens = [creds.password() for _ in range(3)]
    assert len(set(tokens)) == 3 and tokens == fake.minted_tokens
    assert fake.token not in tokens  # never the workspace token
    assert [r.json for r in fake.requests_to("/api/2.0/postgres/credentials")] == [{"endpoint": ENDPOINT}] * 3
    assert fake.requests_to("/api/2.0/database/credentials") == []
    assert 3500 < creds.expires_at - time.time() <= 3600


def test_instance_mints_through_the_provisioned_api(fake, w):
    creds = LakebaseCredentials(w, instance=INSTANCE)
    first, second = creds.password(), creds.password()
    assert first != second and [first, second] == fake.minted_tokens
    bodies = [r.json for r in fake.requests_to("/api/2.0/database/credentials")]
    assert [b["instance_names"] for b in bodies] == [[INSTANCE], [INSTANCE]]
    request_ids = [b["request_id"] for b in bodies]
    assert len(set(request_ids)) == 2 and all(uuid.UUID(r) for r in request_ids)
    assert fake.requests_to("/api/2.0/postgres/credentials") == []
    assert 3500 < creds.expires_at - time.time() <= 3600


def test_endpoint_wins_over_instance(fake, w):
    creds = LakebaseCredentials.from_settings(_settings(lakebase_endpoint=ENDPOINT, lakebase_instance=INSTANCE), w)
    creds.password()
    assert creds.target == f"endpoint '{ENDPOINT}'"
    assert len(fake.requests_to("/api/2.0/postgres/credentials")) == 1
    assert fake.requests_to("/api/2.0/database/credentials") == []


def test_ttl_is_sent_as_a_duration(fake, w):
    creds = LakebaseCredentials(w, endpoint=ENDPOINT, ttl_s=900)
    creds.password()
    assert fake.requests_to("/api/2.0/postgres/credentials")[0].json == {"endpoint": ENDPOINT, "ttl": "900s"}
    assert 800 < creds.expires_at - time.time() <= 900


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(), "Lakebase is not configured"),
        (dict(endpoint="primary"), "is not an endpoint name"),
        (dict(endpoint="projects/p/branches/b"), "is not an endpoint name"),
        (dict(endpoint=ENDPOINT, ttl_s=60), "300-3600"),
    ],
)
def test_bad_configuration_fails_before_any_request(fake, w, kwargs, message):
    with pytest.raises(UserFacingError, match=message) as info:
        LakebaseCredentials(w, **kwargs)
    assert info.value.kind is ErrorKind.CONFIG
    assert fake.requests_to("/api/2.0/postgres") == [] and fake.requests_to("/api/2.0/database") == []


def test_cached_password_reuses_until_the_refresh_margin(fake, w):
    now = [time.time()]
    creds = LakebaseCredentials(w, endpoint=ENDPOINT, refresh_margin_s=300, clock=lambda: now[0])
    first = creds.cached_password()
    assert creds.cached_password() == first and len(fake.minted_tokens) == 1
    now[0] += 3600 - 301  # 301 s left: still fine
    assert creds.cached_password() == first
    now[0] += 2  # 299 s left: inside the margin
    second = creds.cached_password()
    assert second != first and fake.minted_tokens == [first, second]
    assert creds.password() not in (first, second)  # password() always mints


# --- minting failures -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "status", "code", "expected"),
    [
        ("endpoint", 403, "PERMISSION_DENIED", "CAN_CONNECT_AND_CREATE"),
        ("endpoint", 404, "NOT_FOUND", "does not exist. Check LAKEBASE_ENDPOINT"),
        ("endpoint", 401, "UNAUTHENTICATED", "rejected the app's credentials"),
        ("endpoint", 500, "INTERNAL_ERROR", "Could not get a Lakebase login."),
        ("instance", 403, "PERMISSION_DENIED", "CAN_CONNECT_AND_CREATE"),
        ("instance", 404, "RESOURCE_DOES_NOT_EXIST", "does not exist. Check LAKEBASE_INSTANCE"),
    ],
)
def test_minting_failure_is_a_database_error(fake, w, mode, status, code, expected):
    creds = LakebaseCredentials(w, **{mode: ENDPOINT if mode == "endpoint" else INSTANCE})
    path = "/api/2.0/postgres/credentials" if mode == "endpoint" else "/api/2.0/database/credentials"
    fake.fail_next(path, status, code, "injected")
    with pytest.raises(UserFacingError) as info:
        creds.password()
    error = info.value
    assert error.kind is ErrorKind.DATABASE and expected in error.message
    assert (ENDPOINT if mode == "endpoint" else INSTANCE) in error.message
    assert fake.token not in error.message and fake.token not in error.detail
    assert fake.minted_tokens == [] and creds.expires_at is None
    assert creds.password() == fake.minted_tokens[0]  # the next connection gets through


def test_unknown_endpoint_and_instance(fake, w):
    for kwargs, env in ((dict(endpoint="projects/p/branches/b/endpoints/gone"), "LAKEBASE_ENDPOINT"),
                        (dict(instance="gone"), "LAKEBASE_INSTANCE")):
        with pytest.raises(UserFacingError, match=f"does not exist. Check {env}") as info:
            LakebaseCredentials(w, **kwargs).password()
        assert info.value.kind is ErrorKind.DATABASE


def test_repr_names_the_target_not_a_token(fake, w):
    creds = LakebaseCredentials(w, endpoint=ENDPOINT)
    token = creds.password()
    assert token not in repr(creds) and ENDPOINT in repr(creds)


# --- connect parameters ---------------------------------------------------------------------------
def test_connect_params_from_pg_settings(fake, w):
    settings = _settings(pghost="h.example.com", pgport=6543, pgdatabase="inventory", pguser="sp-id",
                         pgappname="inv-app", lakebase_endpoint=ENDPOINT)
    assert lakebase_connect_params(settings, w) == {
        "host": "h.example.com", "port": 6543, "dbname": "inventory", "user": "sp-id", "sslmode": "require",
        "application_name": "inv-app"}
    assert fake.requests_to("/api/2.0/") == []  # nothing to look up


@pytest.mark.parametrize(
    ("values", "host"),
    [
        (dict(lakebase_endpoint=ENDPOINT), "ep-primary.lakebase.example.com"),
        (dict(lakebase_instance=INSTANCE), "instance-inv.lakebase.example.com"),
        (dict(lakebase_endpoint=ENDPOINT, lakebase_instance=INSTANCE), "ep-primary.lakebase.example.com"),
    ],
)
def test_connect_params_look_up_host_and_user(fake, w, values, host):
    params = lakebase_connect_params(_settings(**values), w)
    assert params["host"] == host
    assert params["user"] == "6f1c-app-sp-client-id"  # the app identity's role
    assert params["dbname"] == DEFAULT_DATABASE and params["sslmode"] == "require"
    assert "password" not in params


@pytest.mark.parametrize(("configured", "used"), [("disable", "require"), ("prefer", "require"),
                                                  ("require", "require"), ("verify-full", "verify-full")])
def test_connect_params_never_weaken_tls(w, configured, used):
    settings = _settings(pghost="h", pguser="u", pgsslmode=configured)
    assert lakebase_connect_params(settings, w)["sslmode"] == used


@pytest.mark.parametrize(
    ("values", "fault", "kind", "message"),
    [
        (dict(), None, ErrorKind.CONFIG, "Set PGHOST"),
        (dict(lakebase_endpoint="projects/p/branches/b/endpoints/gone"), None, ErrorKind.DATABASE, "does not exist"),
        (dict(lakebase_instance="gone"), None, ErrorKind.DATABASE, "does not exist"),
        (dict(pghost="h"), ("/api/2.0/preview/scim/v2/Me", 403, "PERMISSION_DENIED"), ErrorKind.DATABASE, "PGUSER"),
    ],
)
def test_connect_params_failures(fake, w, values, fault, kind, message):
    if fault:
        fake.fail_next(*fault, "injected")
    with pytest.raises(UserFacingError, match=message) as info:
        lakebase_connect_params(_settings(**values), w)
    assert info.value.kind is kind
