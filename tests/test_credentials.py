"""Provider credentials are resolved from mappings + secrets, per provider, with clear errors."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stackql_inventory.services import credentials, secrets
from stackql_inventory.services.errors import ErrorKind, UserFacingError


@pytest.fixture
def mapped(db: sa.Engine) -> secrets.SecretsBackend:
    with db.begin() as c:
        c.execute(sa.text(
            "INSERT INTO stackql_app.provider_config (provider, env_var_name, secret_scope, secret_key) VALUES "
            "('aws', 'AWS_ACCESS_KEY_ID', 'inv', 'aws-id'), ('aws', 'AWS_SECRET_ACCESS_KEY', 'inv', 'aws-secret'),"
            "('github', 'STACKQL_GITHUB_PASSWORD', 'inv', 'gh')"))
    backend = secrets.backend_for()
    backend.put("inv", "aws-id", "AKIA-test")
    backend.put("inv", "aws-secret", "s3cr3t '$HOME' `x` {\"j\": 1}")
    backend.put("inv", "gh", "ghp_token")
    return backend


def test_env_for_one_provider_has_exactly_its_variables(mapped) -> None:
    env = credentials.env_for_providers(["aws"])
    assert env == {"AWS_ACCESS_KEY_ID": "AKIA-test", "AWS_SECRET_ACCESS_KEY": "s3cr3t '$HOME' `x` {\"j\": 1}"}


def test_env_for_all_providers(mapped) -> None:
    assert set(credentials.env_for_all_providers()) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                        "STACKQL_GITHUB_PASSWORD"}


def test_unmapped_provider_gets_nothing(mapped) -> None:
    assert credentials.env_for_providers(["okta"]) == {}


def test_missing_secret_names_the_variable_without_values(mapped) -> None:
    mapped.delete("inv", "aws-secret")
    with pytest.raises(UserFacingError) as err:
        credentials.env_for_providers(["aws"])
    assert err.value.kind is ErrorKind.AUTH
    assert "AWS_SECRET_ACCESS_KEY" in err.value.message and "inv/aws-secret" in err.value.message
    assert "AKIA-test" not in err.value.message


def test_fingerprint_changes_with_values_only() -> None:
    a = credentials.fingerprint({"A": "1", "B": "2"})
    assert a == credentials.fingerprint({"B": "2", "A": "1"})
    assert a != credentials.fingerprint({"A": "1", "B": "3"})


def test_resolve_available_skips_missing_secrets(mapped) -> None:
    mapped.delete("inv", "gh")
    env, problems = credentials.resolve_available(credentials.mappings())
    assert set(env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert [p.mapping.env_var for p in problems] == ["STACKQL_GITHUB_PASSWORD"]
    assert "inv/gh" in problems[0].message
