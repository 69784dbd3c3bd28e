"""Schedules page in Chromium: edit an existing schedule (cron, write mode history with key columns) and see the
row and the database change; a failed run's error opens in the run history; a Databricks-backed schedule links
to its job (a second app instance on the Jobs backend, against the fake workspace)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Locator, Page, expect

from tests.fakes.databricks_api import FakeDatabricks
from tests.support.app_server import AppServer, another_app, app_page, embedded_db
from tests.support.scheduling import BULK_QUERY, schedule_row

pytestmark = pytest.mark.browser

QUERY_NAME = "e2e uic scheduled items"
# A slot that does not come during the test: only "Run now" runs it.
FAR_CRON = "30 4 1 1 *"


def _next_far_slot() -> datetime:
    """FAR_CRON's next slot: 1 January, 04:30 UTC."""
    now = datetime.now(UTC)
    slot = datetime(now.year, 1, 1, 4, 30, tzinfo=UTC)
    return slot if slot > now else slot.replace(year=now.year + 1)


def _seed_schedule(engine: sa.Engine, query_id: int, table: str, *, job_id: str | None = None) -> int:
    with engine.begin() as c:
        return c.execute(sa.text(
            "INSERT INTO stackql_app.schedules (query_id, job_id, cron_expression, timezone, target_table, "
            "write_mode, next_run_at) VALUES (:q, :j, :c, 'UTC', :t, 'replace', :n) RETURNING id"),
            {"q": query_id, "j": job_id, "c": FAR_CRON, "t": table, "n": _next_far_slot()}).scalar_one()


def _seed_query(engine: sa.Engine, text: str = BULK_QUERY, name: str = QUERY_NAME) -> int:
    with engine.begin() as c:
        return c.execute(sa.text(
            "INSERT INTO stackql_app.queries (name, query_text, provider, created_by) "
            "VALUES (:n, :t, 'synthetic', 'e2e') RETURNING id"), {"n": name, "t": text}).scalar_one()


def _cleanup(engine: sa.Engine, query_id: int) -> None:
    with engine.begin() as c:
        tables = c.execute(sa.text("SELECT target_table FROM stackql_app.schedules WHERE query_id = :q"),
                           {"q": query_id}).scalars().all()
        c.execute(sa.text("DELETE FROM stackql_app.runs WHERE query_id = :q OR schedule_id IN "
                          "(SELECT id FROM stackql_app.schedules WHERE query_id = :q)"), {"q": query_id})
        c.execute(sa.text("DELETE FROM stackql_app.schedules WHERE query_id = :q"), {"q": query_id})
        c.execute(sa.text("DELETE FROM stackql_app.queries WHERE id = :q"), {"q": query_id})
        for table in tables:
            c.execute(sa.text(f'DROP TABLE IF EXISTS stackql_inventory."{table}"'))


@pytest.fixture
def query_id(app_db: sa.Engine) -> Iterator[int]:
    """A saved query needing no credentials; its schedules, runs and tables are removed afterwards."""
    qid = _seed_query(app_db)
    yield qid
    _cleanup(app_db, qid)


def _row(page: Page, table: str) -> Locator:
    return page.get_by_test_id("schedule-row").filter(has_text=f"stackql_inventory.{table}")


def _fill(page: Page, testid: str, value: str) -> None:
    field = page.get_by_test_id(testid)
    field.fill(value)
    field.blur()  # debounced inputs commit on blur


def _save(page: Page) -> None:
    # `_fill` blurred the field, which sends its value; Reflex handles a tab's events in order, so Save sees it.
    page.get_by_test_id("schedule-save").click()


# ------------------------------------------------------------------ edit dialog


def test_edit_changes_cron_and_switches_to_history_with_key_columns(page: Page, app_db: sa.Engine,
                                                                   query_id: int) -> None:
    sid = _seed_schedule(app_db, query_id, "e2e_uic_edit")
    before = schedule_row(app_db, sid)
    page.goto("/schedules")
    row = _row(page, "e2e_uic_edit")
    expect(row).to_contain_text("replace")
    expect(row).not_to_contain_text("keys:")

    # The dialog opens on the schedule's current values.
    row.get_by_test_id("schedule-edit").click()
    expect(page.get_by_role("dialog")).to_contain_text("Edit schedule")
    expect(page.get_by_test_id("schedule-cron")).to_have_value(FAR_CRON)
    expect(page.get_by_test_id("schedule-target-table")).to_have_value("e2e_uic_edit")
    expect(page.locator("button[data-testid=schedule-query-select]")).to_contain_text(QUERY_NAME)
    expect(page.get_by_test_id("schedule-write-mode")).to_have_text("replace")
    expect(page.get_by_test_id("schedule-key-columns")).to_have_count(0)  # only history mode has keys

    _fill(page, "schedule-cron", "15 3 * * 2")
    expect(page.get_by_test_id("schedule-cron-preview")).to_contain_text("03:15")
    expect(page.get_by_test_id("schedule-cron-preview")).to_contain_text("Tuesday")
    page.get_by_test_id("schedule-write-mode").click()
    page.get_by_role("option", name="history", exact=True).click()
    expect(page.get_by_test_id("schedule-write-mode")).to_have_text("history")
    expect(page.get_by_role("dialog")).to_contain_text("slowly changing history")

    # A key column that is not a column name is refused, and nothing changes.
    _fill(page, "schedule-key-columns", "item_id, item-category")
    _save(page)
    expect(page.get_by_test_id("form-error")).to_contain_text("Key column `item-category` is not a column name")
    expect(page.get_by_test_id("schedule-save")).to_be_visible()
    assert schedule_row(app_db, sid) == before

    _fill(page, "schedule-key-columns", "item_id, category")
    _save(page)
    expect(page.get_by_test_id("schedule-save")).to_have_count(0)  # the dialog closed
    expect(page.get_by_test_id("schedules-notice")).to_contain_text("stackql_inventory.e2e_uic_edit updated")
    expect(row).to_contain_text("15 3 * * 2")
    expect(row).to_contain_text("03:15")
    expect(row).to_contain_text("history")
    expect(row).to_contain_text("keys: item_id, category")
    expect(row).not_to_contain_text(FAR_CRON)

    after = schedule_row(app_db, sid)
    assert after["cron_expression"] == "15 3 * * 2"
    assert after["write_mode"] == "history"
    assert after["key_columns"] == ["item_id", "category"]
    assert (after["target_table"], after["timezone"], after["query_id"]) == ("e2e_uic_edit", "UTC", query_id)
    # The next run follows the new cron (03:15 UTC on a Tuesday), no longer the yearly slot.
    nxt = after["next_run_at"].astimezone(UTC)
    assert (nxt.hour, nxt.minute, nxt.isoweekday()) == (3, 15, 2), nxt
    assert nxt > datetime.now(UTC) and nxt != before["next_run_at"]

    # Reopened, the dialog shows what was saved.
    page.reload()
    _row(page, "e2e_uic_edit").get_by_test_id("schedule-edit").click()
    expect(page.get_by_test_id("schedule-cron")).to_have_value("15 3 * * 2")
    expect(page.get_by_test_id("schedule-write-mode")).to_have_text("history")
    expect(page.get_by_test_id("schedule-key-columns")).to_have_value("item_id, category")


# ------------------------------------------------------------------ a failed run's error


@pytest.fixture
def failing_query_id(app_db: sa.Engine) -> Iterator[int]:
    """A saved query stackql rejects when it runs (a syntax error it only finds at run time)."""
    qid = _seed_query(app_db, "SELEC item_id FROM synthetic.bulk.items WHERE count = 3", QUERY_NAME + " broken")
    yield qid
    _cleanup(app_db, qid)


def test_a_failed_runs_error_opens_in_the_run_history(page: Page, app_db: sa.Engine,
                                                     failing_query_id: int) -> None:
    sid = _seed_schedule(app_db, failing_query_id, "e2e_uic_failing")
    page.goto("/schedules")
    row = _row(page, "e2e_uic_failing")
    row.get_by_test_id("schedule-run-now").click()
    expect(row.get_by_test_id("schedule-status")).to_have_text("failed", timeout=90_000)
    with app_db.connect() as c:
        message = c.execute(sa.text("SELECT error_message FROM stackql_app.runs WHERE schedule_id = :s"),
                            {"s": sid}).scalar_one()
    assert "syntax error" in message, message

    row.get_by_test_id("schedule-history").click()
    runs = page.get_by_test_id("schedule-runs")
    run = runs.get_by_test_id("schedule-run")
    expect(run).to_have_count(1)
    expect(run.get_by_test_id("schedule-run-status")).to_have_text("failed")
    error = run.get_by_test_id("schedule-run-error")
    expect(error).to_be_hidden()  # folded: the summary names the error class
    run.locator("summary").click()
    expect(error).to_be_visible()
    expect(error).to_contain_text("syntax error")
    assert error.inner_text().strip() == message.strip()


# ------------------------------------------------------------------ Databricks job link


@pytest.fixture(scope="module")
def workspace() -> Iterator[FakeDatabricks]:
    with FakeDatabricks() as fake:
        yield fake


@pytest.fixture(scope="module")
def jobs_app(workspace: FakeDatabricks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, Path]]:
    """The app with STACKQL_INVENTORY_JOBS_BACKEND=databricks against the fake workspace (its own data dir)."""
    env = {"STACKQL_INVENTORY_JOBS_BACKEND": "databricks", "DATABRICKS_HOST": workspace.url,
           "DATABRICKS_TOKEN": workspace.token}
    with another_app(tmp_path_factory.mktemp("jobs-app"), env,
                     what="the Jobs-backed app") as app:
        yield app


@pytest.fixture
def jobs_page(browser: Browser, jobs_app: tuple[AppServer, Path]) -> Iterator[Page]:
    with app_page(browser, jobs_app[0].url) as page:
        yield page


@pytest.fixture
def jobs_db(jobs_app: tuple[AppServer, Path]) -> Iterator[sa.Engine]:
    with embedded_db(jobs_app[1] / "data") as engine:
        yield engine


def test_a_databricks_backed_schedule_links_to_its_job_and_shows_its_failed_run(
        jobs_page: Page, jobs_db: sa.Engine, workspace: FakeDatabricks) -> None:
    page = jobs_page
    job_id = workspace.client().jobs.create(name="stackql-inventory: e2e uic job").job_id
    run_id = workspace.trigger_run(job_id)
    workspace.start_run(run_id)
    workspace.finish_run(run_id, "FAILED", "Task run_inventory failed: PERMISSION_DENIED on stackql_inventory")
    qid = _seed_query(jobs_db)
    _seed_schedule(jobs_db, qid, "e2e_uic_job", job_id=str(job_id))

    page.goto("/schedules")
    row = _row(page, "e2e_uic_job")
    link = row.get_by_test_id("schedule-job-link")
    expect(link).to_have_text(str(job_id))
    expect(link).to_have_attribute("href", f"{workspace.url.rstrip('/')}/jobs/{job_id}")
    expect(link).to_have_attribute("target", "_blank")
    expect(row.get_by_test_id("schedule-status")).to_have_text("failed")

    # Its run history comes from the Jobs API: the run links to its page, its error opens.
    row.get_by_test_id("schedule-history").click()
    run = page.get_by_test_id("schedule-runs").get_by_test_id("schedule-run")
    expect(run).to_have_count(1)
    expect(run.get_by_role("link", name=str(run_id))).to_have_attribute(
        "href", re.compile(rf"#job/{job_id}/run/{run_id}$"))
    run.locator("summary").click()
    expect(run.get_by_test_id("schedule-run-error")).to_have_text(
        "Task run_inventory failed: PERMISSION_DENIED on stackql_inventory")
