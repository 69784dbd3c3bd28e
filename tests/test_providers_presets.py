"""Provider presets: the variables of stackql's default auth (reference §3) and safe probe queries."""

from __future__ import annotations

import pytest

from stackql_inventory.services import provider_presets
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.sql_text import statements

# Reference stackql.md §3: provider → the variables its default auth reads (required ones).
EXPECTED = {
    "aws": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    "google": ["GOOGLE_CREDENTIALS"],
    "azure": ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"],
    "databricks_workspace": ["DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_ACCOUNT_ID"],
    "databricks_account": ["DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_ACCOUNT_ID"],
    "github": ["STACKQL_GITHUB_USERNAME", "STACKQL_GITHUB_PASSWORD"],
    "okta": ["OKTA_API_TOKEN"],
    "cloudflare": ["CLOUDFLARE_API_TOKEN"],
}


def test_every_listed_provider_has_a_preset_with_the_reference_variables() -> None:
    assert set(provider_presets.PRESETS) == set(EXPECTED)
    for name, variables in EXPECTED.items():
        p = provider_presets.preset(name)
        assert p is not None and p.provider == name
        assert [v.name for v in p.required_variables] == variables
        assert all(v.description for v in p.variables)


def test_aws_session_token_is_offered_as_optional() -> None:
    p = provider_presets.preset("aws")
    assert [v.name for v in p.optional_variables] == ["AWS_SESSION_TOKEN"]


def test_unknown_provider_has_no_preset() -> None:
    assert provider_presets.preset("digitalocean") is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_is_one_select_on_the_provider_with_defaults_or_typed_params(name: str) -> None:
    p = provider_presets.preset(name)
    params = {param.name: param.default or "value-1" for param in p.probe.params}
    query = provider_presets.probe_query(p, params)
    assert len(statements(query)) == 1
    assert query.upper().startswith("SELECT ") and f" FROM {name}." in query
    assert "{" not in query


def test_probe_uses_the_default_for_a_blank_param() -> None:
    p = provider_presets.preset("aws")
    assert provider_presets.probe_query(p, {}) == "SELECT UserName FROM aws.iam.users WHERE region = 'us-east-1'"
    assert provider_presets.probe_query(p, {"region": " eu-west-1 "}).endswith("region = 'eu-west-1'")


def test_probe_without_a_required_param_says_what_to_enter() -> None:
    with pytest.raises(UserFacingError) as err:
        provider_presets.probe_query(provider_presets.preset("okta"), {"subdomain": "  "})
    assert err.value.kind is ErrorKind.VALIDATION
    assert "Enter the okta subdomain to test okta" in err.value.message


@pytest.mark.parametrize("value", ["x' OR '1'='1", "a b", "-leading", "proj;DROP", "é"])
def test_probe_refuses_param_values_that_could_change_the_query(value: str) -> None:
    with pytest.raises(UserFacingError) as err:
        provider_presets.probe_query(provider_presets.preset("google"), {"project": value})
    assert err.value.kind is ErrorKind.VALIDATION and "is not valid" in err.value.message


def test_default_secret_key_is_the_variable_in_kebab_case() -> None:
    assert provider_presets.default_secret_key("AWS_ACCESS_KEY_ID") == "aws-access-key-id"


@pytest.mark.parametrize("bad", ["", "AWS", "aws;", "aws services", "1aws"])
def test_services_query_refuses_odd_provider_names(bad: str) -> None:
    with pytest.raises(UserFacingError):
        provider_presets.services_query(bad)
    assert provider_presets.services_query("databricks_workspace") == "SHOW SERVICES IN databricks_workspace"
