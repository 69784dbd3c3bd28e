"""The app in production mode: every route answers, every page opens through the navigation."""

from __future__ import annotations

import urllib.request

import pytest
from playwright.sync_api import Page, expect

from tests.support.app_server import AppServer

pytestmark = pytest.mark.browser

PAGES = [
    # nav test id, heading, empty-state test id
    ("nav-ide", "Query IDE", "query-library-empty"),
    ("nav-schedules", "Schedules", "schedules-empty"),
    ("nav-inventory", "Inventory", "inventory-empty"),
    ("nav-providers", "Providers", "providers-empty"),
]


@pytest.mark.parametrize("route", ["/", "/ide", "/schedules", "/inventory", "/providers"])
def test_every_route_answers_200(app_server: AppServer, route: str) -> None:
    with urllib.request.urlopen(app_server.url + route, timeout=10) as r:
        assert r.status == 200
        assert "<html" in r.read(2000).decode(errors="replace").lower()


def test_navigation_opens_every_page_with_its_empty_state(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_test_id("page-heading")).to_have_text("Query IDE")
    for nav, heading, empty in PAGES:
        page.get_by_test_id(nav).click()
        expect(page.get_by_test_id("page-heading")).to_have_text(heading)
        expect(page.get_by_test_id(empty)).to_be_visible()
    expect(page.get_by_test_id("db-banner")).to_have_count(0)


def test_header_shows_the_local_user(page: Page) -> None:
    from stackql_inventory.config import local_user

    page.goto("/inventory")
    expect(page.get_by_test_id("header-user")).to_have_text(local_user())


def test_header_shows_the_forwarded_identity(browser, base_url: str) -> None:
    context = browser.new_context(base_url=base_url,
                                  extra_http_headers={"X-Forwarded-Email": "ana@example.com",
                                                      "X-Forwarded-User": "4242@1234"})
    try:
        page = context.new_page()
        page.goto("/providers")
        expect(page.get_by_test_id("header-user")).to_have_text("ana@example.com", timeout=20_000)
    finally:
        context.close()


def test_pages_show_real_rows(page: Page, app_db) -> None:
    import sqlalchemy as sa

    with app_db.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_app.provider_config (provider, env_var_name, secret_scope, secret_key)"
                          " VALUES ('github', 'STACKQL_GITHUB_PASSWORD', 'inv', 'gh-pat')"))
    try:
        page.goto("/providers")
        expect(page.get_by_test_id("provider-row")).to_have_count(1)
        expect(page.get_by_test_id("provider-row")).to_contain_text("STACKQL_GITHUB_PASSWORD")
    finally:
        with app_db.begin() as c:
            c.execute(sa.text("DELETE FROM stackql_app.provider_config WHERE secret_key = 'gh-pat'"))
