"""A read-only user (not in STACKQL_INVENTORY_EDITORS) on every page: write controls are hidden or disabled,
reading still works. A second app instance on the main test app's database; the services refuse writes
anyway (tests/test_roles.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.support.app_server import AppServer, start_app
from tests.support.scheduling import BULK_QUERY

pytestmark = pytest.mark.browser

QUERY_NAME = "read-only e2e query"
TABLE = "read_only_e2e_items"


@pytest.fixture(scope="module")
def reader_app(app_server: AppServer, app_env: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app again, on the same database, where the local user is not an editor."""
    import pgserver

    uri = pgserver.get_server(Path(app_env["STACKQL_INVENTORY_DATA_DIR"]) / "pg", cleanup_mode=None).get_uri()
    env = {**app_env, "STACKQL_INVENTORY_DATA_DIR": str(tmp_path_factory.mktemp("reader-data")),
           "DATABASE_URL": uri, "STACKQL_INVENTORY_EDITORS": "someone-else@example.com"}
    server = start_app(env, tmp_path_factory.mktemp("reader-log") / "app.log")
    yield server
    server.stop()
    assert "Traceback" not in server.log_text()


@pytest.fixture
def seeded(app_db: sa.Engine) -> Iterator[int]:
    """A saved query, its schedule, a credential mapping and a materialized view, written by an editor."""
    with app_db.begin() as c:
        qid = c.execute(sa.text(
            "INSERT INTO stackql_app.queries (name, query_text, provider, created_by) "
            "VALUES (:n, :t, 'synthetic', 'editor@example.com') RETURNING id"),
            {"n": QUERY_NAME, "t": BULK_QUERY}).scalar()
        c.execute(sa.text(
            "INSERT INTO stackql_app.schedules (query_id, cron_expression, timezone, target_schema, target_table, "
            "write_mode, key_columns, is_active, consecutive_failures, created_by) VALUES (:q, '30 4 1 1 *', 'UTC', "
            "'stackql_inventory', :t, 'replace', '{}', true, 0, 'editor@example.com')"), {"q": qid, "t": TABLE})
        c.execute(sa.text("INSERT INTO stackql_app.provider_config (provider, env_var_name, secret_scope, secret_key) "
                          "VALUES ('okta', 'OKTA_API_TOKEN', 'inv', 'okta-token')"))
        c.execute(sa.text(f"CREATE TABLE stackql_inventory.{TABLE} (item_id text)"))
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW stackql_inventory.{TABLE}_mv AS SELECT * FROM "
                          f"stackql_inventory.{TABLE}"))
    yield qid
    with app_db.begin() as c:
        c.execute(sa.text(f"DROP MATERIALIZED VIEW IF EXISTS stackql_inventory.{TABLE}_mv"))
        c.execute(sa.text(f"DROP TABLE IF EXISTS stackql_inventory.{TABLE}"))
        c.execute(sa.text("DELETE FROM stackql_app.provider_config WHERE provider = 'okta'"))
        c.execute(sa.text("DELETE FROM stackql_app.schedules WHERE target_table = :t"), {"t": TABLE})
        c.execute(sa.text("DELETE FROM stackql_app.queries WHERE name = :n"), {"n": QUERY_NAME})


def test_every_page_hides_or_disables_its_write_controls(page: Page, reader_app: AppServer, seeded: int) -> None:
    base = reader_app.url
    # IDE: running is allowed; saving, scheduling, duplicating and deleting are not.
    page.goto(base + "/ide")
    expect(page.get_by_test_id("header-readonly")).to_be_visible()
    page.wait_for_selector("[data-testid=ide-editor] .monaco-editor .view-lines", timeout=60_000)
    expect(page.get_by_test_id("ide-run")).to_be_enabled()
    expect(page.get_by_test_id("ide-save")).to_be_disabled()
    item = page.get_by_test_id("query-library-item").filter(has_text=QUERY_NAME)
    item.get_by_test_id("query-library-open").click()
    expect(page.get_by_test_id("ide-loaded-query")).to_have_text(QUERY_NAME)
    expect(page.get_by_test_id("ide-schedule")).to_be_disabled()
    item.get_by_test_id("query-library-menu").click()
    expect(page.get_by_role("menuitem", name="Open")).to_be_visible()
    expect(page.get_by_test_id("query-library-duplicate")).to_have_count(0)
    expect(page.get_by_test_id("query-library-delete")).to_have_count(0)
    page.keyboard.press("Escape")

    # Schedules: the list and its run history are readable; every change is disabled.
    page.goto(base + "/schedules")
    row = page.get_by_test_id("schedule-row").filter(has_text=f"stackql_inventory.{TABLE}")
    expect(row).to_have_count(1)
    expect(page.get_by_test_id("schedule-new")).to_be_disabled()
    for testid in ("schedule-run-now", "schedule-pause", "schedule-edit", "schedule-delete"):
        expect(row.get_by_test_id(testid)).to_be_disabled()
    row.get_by_test_id("schedule-history").click()
    expect(page.get_by_test_id("schedule-runs")).to_contain_text("No runs yet.")
    page.goto(base + f"/schedules?new={seeded}")  # a link meant for editors opens no dialog
    expect(page.get_by_test_id("schedules-error")).to_contain_text("Read-only access")
    expect(page.get_by_test_id("schedule-save")).to_have_count(0)

    # Inventory: previews and refresh figures are readable; creating and refreshing views are not.
    page.goto(base + "/inventory")
    expect(page.locator(f'[data-testid=inventory-table-row][data-name="{TABLE}"]')).to_be_visible()
    page.get_by_test_id("inventory-tab-views").click()
    view = page.locator(f'[data-testid=inventory-mv-row][data-name="{TABLE}_mv"]')
    expect(view).to_be_visible()
    expect(view.get_by_test_id("inventory-refresh-mv")).to_be_disabled()
    expect(view.get_by_test_id("inventory-mv-index-create")).to_be_disabled()
    expect(page.get_by_test_id("inventory-mv-create")).to_be_disabled()

    # Providers: statuses can be checked; mappings and values cannot be changed.
    page.goto(base + "/providers")
    mapping = page.get_by_test_id("provider-row").filter(has_text="OKTA_API_TOKEN")
    expect(mapping).to_have_count(1)
    expect(page.get_by_test_id("provider-new")).to_be_disabled()
    for testid in ("provider-set-value", "provider-edit", "provider-delete"):
        expect(mapping.get_by_test_id(testid)).to_be_disabled()
    expect(page.get_by_test_id("provider-validate")).to_be_enabled()


def test_registry_pull_is_disabled_for_read_only_users(page: Page, reader_app: AppServer) -> None:
    """Pulling a provider installs it for everyone: the schema browser offered it to read-only users too
    (the service refuses it now as well: tests/test_ide_queries.py)."""
    page.goto(reader_app.url + "/ide")
    expect(page.get_by_test_id("header-readonly")).to_be_visible()
    page.get_by_test_id("ide-tab-schema").click()
    browser = page.get_by_test_id("schema-browser")
    browser.get_by_text("Available in the registry").click()
    items = browser.get_by_test_id("schema-registry-item")
    expect(items.first).to_be_visible(timeout=30_000)
    expect(browser.get_by_test_id("schema-pull-readonly")).to_be_visible()
    buttons = browser.get_by_test_id("schema-pull")
    assert buttons.count() == items.count() > 0
    for button in buttons.all():
        expect(button).to_be_disabled()
