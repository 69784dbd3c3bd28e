"""With the database unreachable, pages still render with a banner saying what is wrong and what to set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support.app_server import AppServer, start_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def broken_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    env = {
        "STACKQL_INVENTORY_DATA_DIR": str(tmp_path_factory.mktemp("broken-data")),
        # Nothing listens on port 1; the password must never reach the page.
        "DATABASE_URL": "postgresql://inventory:hunter2-secret@127.0.0.1:1/inventory",
    }
    server = start_app(env, tmp_path_factory.mktemp("broken-log") / "app.log")
    yield server
    server.stop()
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("route", ["/", "/schedules", "/inventory", "/providers"])
def test_banner_on_every_page(page: Page, broken_app: AppServer, route: str) -> None:
    page.goto(broken_app.url + route)
    banner = page.get_by_test_id("db-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Cannot reach the database")
    expect(banner).to_contain_text("DATABASE_URL")
    expect(page.get_by_test_id("page-heading")).to_be_visible()
    assert "hunter2" not in page.content()


@pytest.mark.parametrize(("route", "placeholder"), [
    ("/ide", "query-library-empty"), ("/schedules", "schedules-empty"), ("/inventory", "inventory-empty"),
    ("/providers", "providers-empty"),
])
def test_lists_say_they_are_unavailable_not_empty(page: Page, broken_app: AppServer, route: str,
                                                  placeholder: str) -> None:
    """An unreachable database is not an empty library: no "No … yet, create your first" invitation."""
    page.goto(broken_app.url + route)
    expect(page.get_by_test_id("db-banner")).to_be_visible()
    empty = page.get_by_test_id(placeholder)
    expect(empty).to_contain_text("Not available while the database is unreachable")
    expect(empty).not_to_contain_text("yet")
