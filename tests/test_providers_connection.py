"""Test connection through the engine (batch path, exactly one provider's variables), the warm interactive
engine picking up changed credentials, and no secret value in logs, the database or returned objects."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from stackql_inventory.services import credentials, engine, provider_presets, providers
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.providers import MappingInput
from tests.support.providers import EDITOR, dump_app_schema, sha256, world  # noqa: F401 - fixture

AWS_ID = "AKIAFAKE00EXAMPLE01"
AWS_SECRET = "wJalr'XUtn\"FEMI/K7MDENG+bPx$HOME`id`RfiCYEXAMPLEKEY"
GITHUB_PAT = "ghp_pl4nted0000000000000000000000000000"

# Parameters the stand-in's fixture data answers to (tests/fakes/stackql_catalogue.json).
PARAMS = {
    "google": {"project": "stackql-demo"},
    "azure": {"subscriptionId": "00000000-aaaa-bbbb-cccc-000000000001"},
    "databricks_workspace": {"deployment_name": "dbc-a1b2c3d4-e5f6"},
    "databricks_account": {"account_id": "0d9a1c1e-acc0-4b1d-9e55-000000000001"},
    "okta": {"subdomain": "dev-123456"},
}


def _map(provider: str, values: dict[str, str]) -> None:
    """Map each variable to `inv/<kebab>` and store its value."""
    views = providers.add_mappings(
        EDITOR, provider, [MappingInput(n, "inv", provider_presets.default_secret_key(n)) for n in values])
    for v in views:
        providers.set_value(EDITOR, v.id, values[v.env_var_name])


@pytest.fixture
def aws_and_github(db, world) -> None:
    _map("aws", {"AWS_ACCESS_KEY_ID": AWS_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET})
    _map("github", {"STACKQL_GITHUB_USERNAME": "octocat", "STACKQL_GITHUB_PASSWORD": GITHUB_PAT})


def test_aws_test_reports_what_it_found_and_stackql_got_exactly_the_aws_variables(aws_and_github, world) -> None:
    result = providers.test_connection("aws")
    assert result.ok, result
    assert result.summary == "3 services; 4 IAM users (alice, bob, ci-deployer, …)"
    assert [(c.label, c.ok, c.rows) for c in result.checks] == [("Services", True, 3), ("Test query", True, 4)]
    assert result.checks[1].query == "SELECT UserName FROM aws.iam.users WHERE region = 'us-east-1'"
    calls = world.queries()
    assert [c["argv"][:2] for c in calls] == [["exec", "SHOW SERVICES IN aws"],
                                              ["exec", "SELECT UserName FROM aws.iam.users WHERE region = 'us-east-1'"]]
    for call in calls:
        assert call["credential_sha256"] == {"AWS_ACCESS_KEY_ID": sha256(AWS_ID),
                                             "AWS_SECRET_ACCESS_KEY": sha256(AWS_SECRET)}
        assert not {"STACKQL_GITHUB_USERNAME", "STACKQL_GITHUB_PASSWORD"} & set(call["env_names"])


@pytest.mark.parametrize("name", sorted(provider_presets.PRESETS))
def test_every_preset_passes_on_the_stand_in_with_its_variables(db, world, name: str) -> None:
    p = provider_presets.preset(name)
    _map(name, {v.name: f"value-of-{v.name.lower()}" for v in p.required_variables})
    result = providers.test_connection(name, PARAMS.get(name, {}))
    assert result.ok, result.summary
    services = result.checks[0].rows
    assert result.summary.startswith(f"{services} service{'' if services == 1 else 's'}; ")
    assert p.probe.noun in result.summary and result.checks[1].rows > 0
    for call in world.queries():
        assert set(call["credential_sha256"]) == {v.name for v in p.required_variables}


def test_a_failing_query_shows_stackqls_error_verbatim(db, world) -> None:
    """A provider stackql does not know (a typo in a custom mapping): stackql's own message comes back."""
    _map("acme_cloud", {"ACME_TOKEN": "x-acme"})
    result = providers.test_connection("acme_cloud")
    assert not result.ok
    assert [c.ok for c in result.checks] == [False]
    assert "could not locate provider 'acme_cloud'" in result.summary
    assert result.summary.startswith("stackql: ")
    assert result.detail == ""  # stackql said one line: the summary already holds it


def test_the_databricks_account_preset_needs_the_account_id_variable(db, world) -> None:
    """DATABRICKS_ACCOUNT_ID is part of the OAuth token URL: without it stackql cannot authenticate."""
    _map("databricks_account", {"DATABRICKS_CLIENT_ID": "sp-id", "DATABRICKS_CLIENT_SECRET": "sp-secret"})
    result = providers.test_connection("databricks_account", PARAMS["databricks_account"])
    assert not result.ok and [c.ok for c in result.checks] == [True, False]
    assert "environment variable DATABRICKS_ACCOUNT_ID is not set" in result.summary
    assert result.summary.endswith("(Not mapped yet: DATABRICKS_ACCOUNT_ID.)")
    _map("databricks_account", {"DATABRICKS_ACCOUNT_ID": PARAMS["databricks_account"]["account_id"]})
    result = providers.test_connection("databricks_account", PARAMS["databricks_account"])
    assert result.ok, result.summary
    assert result.summary == "1 service; 3 workspaces (analytics-prod, ml-research, sandbox-eu)"


def test_a_missing_variable_shows_the_401_and_what_is_not_mapped(db, world) -> None:
    _map("aws", {"AWS_ACCESS_KEY_ID": AWS_ID})
    result = providers.test_connection("aws")
    assert not result.ok
    assert "http response status code: 401" in result.summary
    assert "environment variable AWS_SECRET_ACCESS_KEY is not set" in result.summary
    assert result.summary.endswith("(Not mapped yet: AWS_SECRET_ACCESS_KEY.)")
    assert AWS_ID not in result.summary + result.detail


def test_a_secret_without_a_value_stops_the_test_before_stackql_runs(db, world) -> None:
    providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta-token")])
    with pytest.raises(UserFacingError) as err:
        providers.test_connection("okta", PARAMS["okta"])
    assert err.value.kind is ErrorKind.AUTH
    assert "OKTA_API_TOKEN of provider 'okta'" in err.value.message and "inv/okta-token" in err.value.message
    assert world.queries() == []


def test_a_missing_probe_parameter_is_asked_for_before_stackql_runs(db, world) -> None:
    _map("okta", {"OKTA_API_TOKEN": "00abc-token"})
    with pytest.raises(UserFacingError, match="Enter the okta subdomain"):
        providers.test_connection("okta", {})
    assert world.queries() == []


def test_a_provider_without_preset_runs_show_services_and_says_so(db, world) -> None:
    result = providers.test_connection("synthetic")
    assert result.ok
    assert result.summary.startswith("3 services. No authenticated test query is defined for synthetic")
    assert len(result.checks) == 1


def test_an_unknown_provider_fails_with_stackqls_message(db, world) -> None:
    result = providers.test_connection("nosuchcloud")
    assert not result.ok and "could not locate provider 'nosuchcloud'" in result.summary


def test_stackqls_error_is_shown_with_credential_values_redacted(db, world) -> None:
    """stackql echoes the provider name in its error; here that name is also the credential's value."""
    _map("leakycloud", {"LEAKY_TOKEN": "leakycloud"})
    result = providers.test_connection("leakycloud")
    assert not result.ok
    assert result.summary == ("stackql: could not locate provider '[REDACTED]' — Check the name in the schema "
                              "browser, or pull the provider (REGISTRY PULL <provider>), then retry.")
    assert world.queries()[0]["credential_sha256"] == {"LEAKY_TOKEN": sha256("leakycloud")}


# --- the warm interactive engine ------------------------------------------------------------------------
_CRED_QUERY = "SELECT env_var, present, sha256 FROM synthetic.env.credentials WHERE names = '{}'"


def _interactive(query: str) -> list[tuple]:
    """What the IDE does on each run: every provider's available credentials, interactive mode."""
    env, _problems = credentials.resolve_available(credentials.mappings())
    return engine.run(query, env, mode=engine.Mode.INTERACTIVE).rows


def _srv_pid() -> str:
    return _interactive("SELECT pid FROM synthetic.env.process")[0][0]


def test_the_warm_engine_restarts_with_a_changed_value_or_mapping(db, world) -> None:
    (okta,) = providers.add_mappings(EDITOR, "okta", [MappingInput("OKTA_API_TOKEN", "inv", "okta-a")])
    providers.set_value(EDITOR, okta.id, "value-A-0001")
    assert _interactive(_CRED_QUERY.format("OKTA_API_TOKEN")) == [
        ("OKTA_API_TOKEN", "true", sha256("value-A-0001"))]
    pid_a = _srv_pid()
    assert _srv_pid() == pid_a  # unchanged credentials: the same warm server answers

    providers.set_value(EDITOR, okta.id, "value-B-0002")
    assert _interactive(_CRED_QUERY.format("OKTA_API_TOKEN"))[0][2] == sha256("value-B-0002")
    pid_b = _srv_pid()
    assert pid_b != pid_a

    # Re-pointing the mapping at another secret is a change too.
    providers.add_mappings(EDITOR, "cloudflare", [MappingInput("CLOUDFLARE_API_TOKEN", "inv", "cf")])
    providers.set_value(EDITOR, providers.list_mappings()[0].id, "cf-token-0003")
    rows = _interactive(_CRED_QUERY.format("OKTA_API_TOKEN,CLOUDFLARE_API_TOKEN"))
    assert [r[:2] for r in rows] == [("OKTA_API_TOKEN", "true"), ("CLOUDFLARE_API_TOKEN", "true")]
    providers.update_mapping(EDITOR, okta.id, "okta", MappingInput("OKTA_API_TOKEN", "inv", "cf"))
    assert _interactive(_CRED_QUERY.format("OKTA_API_TOKEN"))[0][2] == sha256("cf-token-0003")

    # A deleted mapping's variable is gone from the warm server.
    providers.delete_mapping(EDITOR, okta.id)
    assert _interactive(_CRED_QUERY.format("OKTA_API_TOKEN")) == [("OKTA_API_TOKEN", "false", None)]


# --- no value anywhere ----------------------------------------------------------------------------------
def test_a_planted_secret_appears_in_no_log_row_or_returned_object(db, world, caplog) -> None:
    planted = "pl4nted-S3CRET-VALUE-0xC0FFEE42"
    caplog.set_level(logging.DEBUG)
    (key_id,) = providers.add_mappings(EDITOR, "aws", [MappingInput("AWS_ACCESS_KEY_ID", "inv", "aws-id")])
    returned: list[object] = [key_id]
    returned.append(providers.set_value(EDITOR, key_id.id, planted))
    returned += providers.validate()
    returned.append(providers.test_connection("aws"))  # fails: the secret key is not mapped yet
    (secret,) = providers.add_mappings(EDITOR, "aws", [MappingInput("AWS_SECRET_ACCESS_KEY", "inv", "aws-key")])
    returned.append(providers.set_value(EDITOR, secret.id, planted + "-2"))
    returned.append(providers.test_connection("aws"))
    returned += providers.list_mappings()
    assert _interactive(_CRED_QUERY.format("AWS_ACCESS_KEY_ID"))[0][2] == sha256(planted)
    assert returned[3].ok is False and returned[-3].ok is True  # both paths ran

    assert planted not in caplog.text
    assert planted not in repr(returned)
    assert planted not in dump_app_schema(db)
    with db.connect() as c:  # and not in any other schema of the database either
        for schema, table in c.execute(sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")):
            text = repr(c.execute(sa.text(f'SELECT * FROM "{schema}"."{table}"')).all())
            assert planted not in text, f"{schema}.{table}"
