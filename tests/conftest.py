"""Shared fixtures: one real PostgreSQL per session, a fresh database per test, the app in prod mode, Chromium."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from stackql_inventory.config import get_settings
from tests.support.app_server import AppServer, embedded_db, start_app
from tests.support.postgres import PgHarness

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
# Variables of the app's configuration contract; tests start from none of them set.
_APP_ENV_PREFIXES = ("STACKQL_INVENTORY_", "STACKQL_DOWNLOAD_DIR", "DATABASE_URL", "PGHOST", "PGPORT", "PGDATABASE",
                     "PGUSER", "LAKEBASE_", "DATABRICKS_", "ANTHROPIC_")

_browser_passed = 0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-browser", action="store_true",
                     help="fail the run unless at least one browser (Playwright) test passed")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the real app in Chromium through Playwright")
    if config.option.basetemp is None:
        # Our own temp root: pytest re-privatises /tmp/pytest-of-<user> at every session start, which
        # locks out the embedded PostgreSQL (it runs as the `pgserver` user when we are root).
        import tempfile

        config.option.basetemp = tempfile.mkdtemp(prefix="stackql-inventory-tests-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop in the main thread."""
    items.sort(key=lambda item: "browser" in item.keywords)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _browser_passed
    if report.when == "call" and report.passed and "browser" in report.keywords:
        _browser_passed += 1


def pytest_unconfigure(config: pytest.Config) -> None:
    basetemp = Path(str(config.option.basetemp or ""))
    if basetemp.name.startswith("stackql-inventory-tests-") and getattr(config, "_inventory_passed", False):
        shutil.rmtree(basetemp, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.getoption("--require-browser") and _browser_passed == 0 and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nFAILED: no browser test ran and passed; a run that skips them is not green.")
    session.config._inventory_passed = session.exitstatus == 0  # type: ignore[attr-defined]


@pytest.fixture(scope="session", autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the app's settings at a throwaway data dir; no developer configuration leaks in."""
    data_dir = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith(_APP_ENV_PREFIXES):
            mp.delenv(name)
    mp.setenv("STACKQL_INVENTORY_DATA_DIR", str(data_dir))
    mp.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    get_settings.cache_clear()
    yield data_dir
    mp.undo()
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _fail_on_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A test that logs an ERROR fails (assert on expected errors, then `caplog.clear()`)."""
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail("ERROR logged during the test:\n" + "\n".join(r.getMessage() for r in errors), pytrace=False)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgHarness]:
    """The session's PostgreSQL 16 with a migrated template database."""
    server = PgHarness(tmp_path_factory.mktemp("pg")).start()
    yield server
    server.stop()


@pytest.fixture
def db(pg: PgHarness) -> Iterator[sa.Engine]:
    """A fresh migrated database for this test, installed as the app's engine."""
    from stackql_inventory.db import engine as db_engine

    name = pg.create_database()
    engine = sa.create_engine(pg.url(name))
    engine.info_database_name = name  # type: ignore[attr-defined]
    db_engine.set_engine(engine)
    yield engine
    db_engine.set_engine(None)
    pg.drop_database(name)


@pytest.fixture
def db_uri(db: sa.Engine, pg: PgHarness) -> str:
    """libpq URI of this test's database (for child processes: DATABASE_URL)."""
    return pg.uri(db.info_database_name)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ browser tests
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium: Playwright cannot download its own browsers here."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def fake_anthropic_app() -> Iterator[object]:
    """A fake Anthropic Messages API for the app under test (scripted over HTTP or in-process)."""
    from tests.fakes.anthropic_api import FakeAnthropic

    with FakeAnthropic(api_keys={APP_ANTHROPIC_KEY}) as fake:
        yield fake


APP_ANTHROPIC_KEY = "sk-ant-app-under-test"


@pytest.fixture(scope="session")
def app_stackql_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The download dir holding the stackql stand-in the app under test runs (records invocations)."""
    from tests.fakes.install import install_fake_stackql

    directory = tmp_path_factory.mktemp("app-stackql")
    install_fake_stackql(directory, record=True)
    return directory


@pytest.fixture(scope="session")
def app_env(tmp_path_factory: pytest.TempPathFactory, app_stackql_dir: Path, fake_anthropic_app) -> dict[str, str]:
    """Environment of the app under test: embedded PostgreSQL in its own data dir, the stackql
    stand-in, and the fake Anthropic API."""
    return {
        "STACKQL_INVENTORY_DATA_DIR": str(tmp_path_factory.mktemp("app-data")),
        "STACKQL_DOWNLOAD_DIR": str(app_stackql_dir),
        "ANTHROPIC_BASE_URL": fake_anthropic_app.base_url,
        "ANTHROPIC_API_KEY": APP_ANTHROPIC_KEY,
    }


@pytest.fixture(scope="session")
def app_server(app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app in production mode on a free port, for the whole session."""
    log_path = tmp_path_factory.mktemp("app-log") / "app.log"
    server = start_app(app_env, log_path)
    yield server
    server.stop()
    bad = server.logged_errors()
    if bad:
        pytest.fail("the app logged errors during the session:\n" + "\n".join(bad[:40]), pytrace=False)


@pytest.fixture(scope="session")
def base_url(app_server: AppServer) -> str:
    return app_server.url


@pytest.fixture
def app_db(app_server: AppServer, app_env: dict[str, str]) -> Iterator[sa.Engine]:
    """An engine on the app's own (embedded) database, to seed rows and check effects."""
    with embedded_db(Path(app_env["STACKQL_INVENTORY_DATA_DIR"])) as engine:
        yield engine


@pytest.fixture
def page(page):  # noqa: F811 - extends pytest-playwright's fixture
    """pytest-playwright's page with app-sized timeouts."""
    page.set_default_timeout(20_000)
    return page


def _expect_timeout() -> None:
    """`expect(...)` waits up to 15 s: a loaded 2-core CI machine can take seconds per round trip."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)


_expect_timeout()
