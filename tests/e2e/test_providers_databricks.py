"""Providers page on the Databricks secrets backend: a second app instance (real SDK) against the fake workspace.

No value field: the page names the `databricks secrets put-secret` command; validation lists keys only; the
value is read (get_secret) only when the connection test runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Locator, Page, expect

from tests.fakes.databricks_api import FakeDatabricks
from tests.fakes.install import read_invocations
from tests.support.app_server import AppServer, another_app, app_page, embedded_db
from tests.support.providers import dump_app_schema

pytestmark = pytest.mark.browser

OKTA_TOKEN = "00dbx-pl4nted-okta-token-0003"


@pytest.fixture(scope="module")
def workspace() -> Iterator[FakeDatabricks]:
    with FakeDatabricks() as fake:
        yield fake


@pytest.fixture(scope="module")
def dbx_app(workspace: FakeDatabricks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, Path]]:
    """The app with STACKQL_INVENTORY_SECRETS_BACKEND=databricks, its own data dir and stackql stand-in."""
    env = {"STACKQL_INVENTORY_SECRETS_BACKEND": "databricks", "DATABRICKS_HOST": workspace.url,
           "DATABRICKS_TOKEN": workspace.token}
    with another_app(tmp_path_factory.mktemp("dbx-app"), env,
                     what="the Databricks-backed app", record_stackql=True) as app:
        yield app


@pytest.fixture
def dbx_page(browser: Browser, dbx_app: tuple[AppServer, Path]) -> Iterator[Page]:
    with app_page(browser, dbx_app[0].url) as page:
        yield page


@pytest.fixture
def dbx_db(dbx_app: tuple[AppServer, Path]) -> Iterator[sa.Engine]:
    with embedded_db(dbx_app[1] / "data") as engine:
        yield engine


def _row(page: Page, env_var: str) -> Locator:
    return page.get_by_test_id("provider-row").filter(has_text=env_var)


def _status(page: Page, env_var: str) -> Locator:
    return _row(page, env_var).get_by_test_id("provider-status")


def test_databricks_backend_explains_the_cli_validates_by_listing_and_reads_only_to_test(
        dbx_page: Page, dbx_app: tuple[AppServer, Path], dbx_db: sa.Engine, workspace: FakeDatabricks) -> None:
    page = dbx_page
    page.goto("/providers")
    expect(page.get_by_test_id("provider-databricks-help")).to_contain_text(
        "databricks secrets put-secret <scope> <key>")

    page.get_by_test_id("provider-new").click()
    page.get_by_test_id("provider-preset").click()
    page.get_by_test_id("provider-preset-okta").click()
    page.get_by_test_id("provider-save").click()
    expect(page.get_by_test_id("provider-row")).to_have_count(1)

    # No value field on this backend: the exact CLI command instead.
    expect(page.get_by_test_id("provider-set-value")).to_have_count(0)
    expect(_row(page, "OKTA_API_TOKEN").get_by_test_id("provider-cli-command")).to_have_text(
        "databricks secrets put-secret stackql-inventory okta-api-token")
    expect(_status(page, "OKTA_API_TOKEN")).to_have_attribute("data-state", "missing")
    expect(_row(page, "OKTA_API_TOKEN")).to_contain_text("databricks secrets create-scope stackql-inventory")

    # Someone runs the CLI: the scope, then the secret.
    workspace.add_scope("stackql-inventory")
    page.get_by_test_id("provider-validate").click()
    expect(_row(page, "OKTA_API_TOKEN")).to_contain_text(
        "Add it with `databricks secrets put-secret stackql-inventory okta-api-token`")
    workspace.put_secret("stackql-inventory", "okta-api-token", OKTA_TOKEN)
    page.get_by_test_id("provider-validate").click()
    expect(_status(page, "OKTA_API_TOKEN")).to_have_attribute("data-state", "ok")
    assert workspace.requests_to("/api/2.0/secrets/list")
    assert workspace.requests_to("/api/2.0/secrets/get") == []  # validation never reads a value

    # A scope the app's identity may not read.
    workspace.add_scope("locked", acls={"someone-else@example.com": "MANAGE"})
    page.get_by_test_id("provider-new").click()
    page.get_by_test_id("provider-name").fill("cloudflare")
    page.get_by_test_id("provider-env-var").fill("CLOUDFLARE_API_TOKEN")
    page.get_by_test_id("provider-secret-scope").fill("locked")
    page.get_by_test_id("provider-secret-key").fill("cf")
    page.get_by_test_id("provider-save").click()
    expect(page.get_by_test_id("provider-row")).to_have_count(2)
    expect(_status(page, "CLOUDFLARE_API_TOKEN")).to_have_text("no permission")
    expect(_row(page, "CLOUDFLARE_API_TOKEN")).to_contain_text("databricks secrets put-acl locked")

    # The test reads the value now, and only okta's variable reaches stackql.
    okta = page.get_by_test_id("provider-card").and_(page.locator('[data-provider="okta"]'))
    okta.get_by_test_id("provider-test-param").fill("dev-123456")
    okta.get_by_test_id("provider-test").click()
    expect(okta.get_by_test_id("provider-test-result")).to_have_attribute("data-state", "ok", timeout=30_000)
    expect(okta.get_by_test_id("provider-test-result")).to_contain_text("4 users")
    assert len(workspace.requests_to("/api/2.0/secrets/get")) == 1
    queries = [c for c in read_invocations(dbx_app[1] / "stackql") if c["argv"][:1] == ["exec"]]
    assert queries and all(c["credential_sha256"] == {"OKTA_API_TOKEN": hashlib.sha256(OKTA_TOKEN.encode())
                                                      .hexdigest()} for c in queries)

    assert OKTA_TOKEN not in dbx_app[0].log_text()
    assert OKTA_TOKEN not in dump_app_schema(dbx_db)
