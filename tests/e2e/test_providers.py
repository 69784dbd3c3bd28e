"""Providers page in the browser (local secrets backend): map from a preset, set values, validate, test on the
stackql stand-in, form errors, duplicates, edit, delete with confirmation, and no value leaking anywhere."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Locator, Page, expect

from tests.fakes.install import read_invocations
from tests.support.app_server import AppServer
from tests.support.providers import dump_app_schema

pytestmark = pytest.mark.browser

AWS_ID = "AKIA-E2E-pl4nted-0001"
AWS_SECRET = "e2e-Pl4nted-S3cret/Value+0002"


@pytest.fixture
def clean(app_db: sa.Engine) -> Iterator[sa.Engine]:
    """No mappings before or after the test (other browser tests expect an empty Providers page)."""
    with app_db.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_app.provider_config"))
    yield app_db
    with app_db.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_app.provider_config"))


def _mappings(db: sa.Engine) -> list[tuple]:
    with db.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(
            "SELECT provider, env_var_name, secret_scope, secret_key FROM stackql_app.provider_config "
            "ORDER BY provider, env_var_name"))]


def _card(page: Page, provider: str) -> Locator:
    return page.get_by_test_id("provider-card").and_(page.locator(f'[data-provider="{provider}"]'))


def _row(page: Page, env_var: str) -> Locator:
    return page.get_by_test_id("provider-row").filter(has_text=env_var)


def _add_from_preset(page: Page, provider: str) -> None:
    page.get_by_test_id("provider-new").click()
    page.get_by_test_id("provider-preset").click()
    page.get_by_test_id(f"provider-preset-{provider}").click()
    expect(page.get_by_test_id("provider-name")).to_have_value(provider)
    page.get_by_test_id("provider-save").click()
    expect(page.get_by_test_id("provider-save")).to_have_count(0)


def _set_value(page: Page, env_var: str, value: str) -> None:
    _row(page, env_var).get_by_test_id("provider-set-value").click()
    expect(page.get_by_test_id("provider-value-target")).to_contain_text(env_var)
    page.get_by_test_id("provider-secret-value").fill(value)
    page.get_by_test_id("provider-value-save").click()
    expect(page.get_by_test_id("provider-secret-value")).to_have_count(0)
    expect(_row(page, env_var).get_by_test_id("provider-status")).to_have_attribute("data-state", "ok")


def test_map_aws_from_a_preset_set_values_validate_and_test(page: Page, clean: sa.Engine, app_server: AppServer,
                                                            app_env: dict[str, str], app_stackql_dir: Path) -> None:
    received: list[str] = []
    sent: list[str] = []
    page.on("websocket", lambda ws: (ws.on("framereceived", lambda f: received.append(str(f))),
                                     ws.on("framesent", lambda f: sent.append(str(f)))))
    calls_before = len(read_invocations(app_stackql_dir))
    page.goto("/providers")
    expect(page.get_by_test_id("providers-empty")).to_be_visible()

    page.get_by_test_id("provider-new").click()
    page.get_by_test_id("provider-preset").click()
    page.get_by_test_id("provider-preset-aws").click()
    expect(page.get_by_test_id("provider-env-var")).to_have_count(2)
    expect(page.get_by_test_id("provider-env-var").nth(0)).to_have_value("AWS_ACCESS_KEY_ID")
    expect(page.get_by_test_id("provider-env-var").nth(1)).to_have_value("AWS_SECRET_ACCESS_KEY")
    expect(page.get_by_test_id("provider-secret-scope").nth(0)).to_have_value("stackql-inventory")
    expect(page.get_by_test_id("provider-secret-key").nth(1)).to_have_value("aws-secret-access-key")
    page.get_by_test_id("provider-save").click()

    expect(page.get_by_test_id("provider-row")).to_have_count(2)
    assert _mappings(clean) == [("aws", "AWS_ACCESS_KEY_ID", "stackql-inventory", "aws-access-key-id"),
                                ("aws", "AWS_SECRET_ACCESS_KEY", "stackql-inventory", "aws-secret-access-key")]
    for status in page.get_by_test_id("provider-status").all():
        expect(status).to_have_attribute("data-state", "missing")

    _set_value(page, "AWS_ACCESS_KEY_ID", AWS_ID)
    _set_value(page, "AWS_SECRET_ACCESS_KEY", AWS_SECRET)

    card = _card(page, "aws")
    card.get_by_test_id("provider-validate").click()
    expect(card.get_by_test_id("provider-status")).to_have_text(["OK", "OK"])
    expect(page.get_by_test_id("provider-status-message").first).to_contain_text(
        "Secret 'aws-access-key-id' is set in scope 'stackql-inventory'")

    expect(card.get_by_test_id("provider-test-param")).to_have_value("us-east-1")
    card.get_by_test_id("provider-test").click()
    result = card.get_by_test_id("provider-test-result")
    expect(result).to_have_attribute("data-state", "ok", timeout=30_000)
    expect(result).to_contain_text("3 services; 4 IAM users (alice, bob, ci-deployer, …)")

    # The stand-in received exactly the two aws variables, with the values typed into the page.
    queries = [c for c in read_invocations(app_stackql_dir)[calls_before:] if c["argv"][:1] == ["exec"]]
    assert [c["argv"][1] for c in queries] == ["SHOW SERVICES IN aws",
                                               "SELECT UserName FROM aws.iam.users WHERE region = 'us-east-1'"]
    for call in queries:
        assert call["credential_sha256"] == {"AWS_ACCESS_KEY_ID": hashlib.sha256(AWS_ID.encode()).hexdigest(),
                                             "AWS_SECRET_ACCESS_KEY": hashlib.sha256(AWS_SECRET.encode()).hexdigest()}

    # Local files, 0600, holding exactly the values.
    secret_file = Path(app_env["STACKQL_INVENTORY_DATA_DIR"]) / "secrets" / "stackql-inventory" / "aws-access-key-id"
    assert secret_file.read_text() == AWS_ID and stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    # Each value went up once (in its form submit) and never came back: not in a state delta, the app's
    # log, any table of the app's database.
    page.reload()
    expect(page.get_by_test_id("provider-row")).to_have_count(2)
    assert any("AWS_SECRET_ACCESS_KEY" in f for f in received), "no state frames captured"
    for value in (AWS_ID, AWS_SECRET):
        assert sum(json.dumps(value)[1:-1] in f for f in sent) == 1
        assert not [f for f in received if value in f or json.dumps(value)[1:-1] in f]
        assert value not in app_server.log_text()
        assert value not in dump_app_schema(clean)


def test_an_invalid_variable_name_is_a_form_error_and_nothing_is_saved(page: Page, clean: sa.Engine) -> None:
    page.goto("/providers")
    page.get_by_test_id("provider-new").click()
    page.get_by_test_id("provider-name").fill("okta")
    page.get_by_test_id("provider-env-var").fill("okta-api-token")
    page.get_by_test_id("provider-secret-key").fill("okta-token")
    page.get_by_test_id("provider-save").click()
    expect(page.get_by_test_id("form-error")).to_contain_text(
        "'okta-api-token' is not a valid environment variable name")
    assert _mappings(clean) == []
    # The form kept what was typed: fixing the name is enough.
    expect(page.get_by_test_id("provider-secret-key")).to_have_value("okta-token")
    page.get_by_test_id("provider-env-var").fill("OKTA_API_TOKEN")
    page.get_by_test_id("provider-save").click()
    expect(page.get_by_test_id("provider-row")).to_have_count(1)
    assert _mappings(clean) == [("okta", "OKTA_API_TOKEN", "stackql-inventory", "okta-token")]


def test_a_duplicate_variable_is_refused(page: Page, clean: sa.Engine) -> None:
    page.goto("/providers")
    _add_from_preset(page, "cloudflare")
    expect(page.get_by_test_id("provider-row")).to_have_count(1)
    page.get_by_test_id("provider-new").click()
    page.get_by_test_id("provider-name").fill("cloudflare")
    page.get_by_test_id("provider-env-var").fill("CLOUDFLARE_API_TOKEN")
    page.get_by_test_id("provider-secret-key").fill("another-key")
    page.get_by_test_id("provider-save").click()
    expect(page.get_by_test_id("form-error")).to_contain_text(
        "CLOUDFLARE_API_TOKEN is already mapped for cloudflare (to stackql-inventory/cloudflare-api-token)")
    assert _mappings(clean) == [("cloudflare", "CLOUDFLARE_API_TOKEN", "stackql-inventory", "cloudflare-api-token")]


def test_edit_then_delete_with_confirmation(page: Page, clean: sa.Engine, app_env: dict[str, str]) -> None:
    page.goto("/providers")
    _add_from_preset(page, "okta")
    _set_value(page, "OKTA_API_TOKEN", "00okta-e2e-token")

    _row(page, "OKTA_API_TOKEN").get_by_test_id("provider-edit").click()
    expect(page.get_by_test_id("provider-secret-key")).to_have_value("okta-api-token")
    page.get_by_test_id("provider-secret-key").fill("okta-other")
    page.get_by_test_id("provider-save").click()
    expect(_row(page, "OKTA_API_TOKEN")).to_contain_text("stackql-inventory/okta-other")
    expect(_row(page, "OKTA_API_TOKEN").get_by_test_id("provider-status")).to_have_attribute("data-state", "missing")

    _row(page, "OKTA_API_TOKEN").get_by_test_id("provider-delete").click()
    page.get_by_test_id("provider-delete-cancel").click()
    expect(page.get_by_test_id("provider-row")).to_have_count(1)
    assert len(_mappings(clean)) == 1

    _row(page, "OKTA_API_TOKEN").get_by_test_id("provider-delete").click()
    page.get_by_test_id("provider-delete-confirm").click()
    expect(page.get_by_test_id("providers-empty")).to_be_visible()
    expect(page.get_by_test_id("provider-notice")).to_contain_text(
        "Removed OKTA_API_TOKEN of okta. The secret stackql-inventory/okta-other was kept.")
    assert _mappings(clean) == []
    kept = Path(app_env["STACKQL_INVENTORY_DATA_DIR"]) / "secrets" / "stackql-inventory" / "okta-api-token"
    assert kept.read_text() == "00okta-e2e-token"


def test_failures_show_what_to_do_and_stackqls_error(page: Page, clean: sa.Engine) -> None:
    page.goto("/providers")
    _add_from_preset(page, "github")
    card = _card(page, "github")
    # No values yet: the test stops before stackql and names the secret.
    card.get_by_test_id("provider-test").click()
    result = card.get_by_test_id("provider-test-result")
    expect(result).to_have_attribute("data-state", "failed")
    expect(result).to_contain_text("STACKQL_GITHUB_PASSWORD of provider 'github' cannot be read from secret "
                                   "'stackql-inventory/stackql-github-password'")

    # Only the user name: stackql answers 401, shown as it said it.
    _set_value(page, "STACKQL_GITHUB_USERNAME", "octocat")
    _row(page, "STACKQL_GITHUB_PASSWORD").get_by_test_id("provider-delete").click()
    page.get_by_test_id("provider-delete-confirm").click()
    expect(page.get_by_test_id("provider-row")).to_have_count(1)
    card.get_by_test_id("provider-test").click()
    expect(result).to_have_attribute("data-state", "failed")
    expect(result).to_contain_text("http response status code: 401")
    expect(result).to_contain_text("environment variable STACKQL_GITHUB_PASSWORD is not set")
    expect(result).to_contain_text("Not mapped yet: STACKQL_GITHUB_PASSWORD.")

    # A probe needing a parameter asks for it.
    _add_from_preset(page, "okta")
    _set_value(page, "OKTA_API_TOKEN", "00okta-token-e2e")
    okta = _card(page, "okta")
    okta.get_by_test_id("provider-test").click()
    expect(okta.get_by_test_id("provider-test-result")).to_contain_text("Enter the okta subdomain to test okta")
    okta.get_by_test_id("provider-test-param").fill("dev-123456")
    okta.get_by_test_id("provider-test").click()
    expect(okta.get_by_test_id("provider-test-result")).to_have_attribute("data-state", "ok")
    expect(okta.get_by_test_id("provider-test-result")).to_contain_text("3 services; 4 users (")
