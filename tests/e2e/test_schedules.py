"""The Schedules page in Chromium against the real app (local scheduler, runner, stackql stand-in): create a
schedule with its cron preview, run it now until it succeeds and its table exists; every invalid input shows
`form-error` and creates nothing; pause, resume, and delete with or without the table."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.support.scheduling import BULK_QUERY

pytestmark = pytest.mark.browser

QUERY_NAME = "e2e bulk items"


@pytest.fixture
def saved_query(app_db: sa.Engine) -> Iterator[int]:
    """A saved query needing no credentials; the schedules, runs and tables the test made are removed after."""
    with app_db.begin() as c:
        qid = c.execute(sa.text(
            "INSERT INTO stackql_app.queries (name, query_text, provider, created_by) "
            "VALUES (:n, :t, 'synthetic', 'e2e') RETURNING id"), {"n": QUERY_NAME, "t": BULK_QUERY}).scalar()
    yield qid
    with app_db.begin() as c:
        tables = c.execute(sa.text("SELECT target_table FROM stackql_app.schedules WHERE query_id = :q"),
                           {"q": qid}).scalars().all()
        c.execute(sa.text("DELETE FROM stackql_app.runs WHERE query_id = :q OR schedule_id IN "
                          "(SELECT id FROM stackql_app.schedules WHERE query_id = :q)"), {"q": qid})
        c.execute(sa.text("DELETE FROM stackql_app.schedules WHERE query_id = :q"), {"q": qid})
        c.execute(sa.text("DELETE FROM stackql_app.queries WHERE id = :q"), {"q": qid})
        for table in tables:
            c.execute(sa.text(f'DROP TABLE IF EXISTS stackql_inventory."{table}"'))


def _count(app_db: sa.Engine) -> int:
    with app_db.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM stackql_app.schedules")).scalar()


def _table_exists(app_db: sa.Engine, table: str) -> bool:
    with app_db.connect() as c:
        return c.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"stackql_inventory.{table}"}).scalar() is not None


def _fill(page: Page, testid: str, value: str) -> None:
    field = page.get_by_test_id(testid)
    field.fill(value)
    field.blur()  # debounced inputs commit on blur


def _open_new(page: Page, query: str | None = QUERY_NAME) -> None:
    page.goto("/schedules")
    expect(page.get_by_test_id("page-heading")).to_have_text("Schedules")
    page.get_by_test_id("schedule-new").click()
    expect(page.get_by_test_id("schedule-save")).to_be_visible()
    if query:
        page.get_by_test_id("schedule-query-select").click()
        page.get_by_role("option", name=query).click()


def _save(page: Page) -> None:
    page.wait_for_timeout(300)  # let the last debounced value reach the server
    page.get_by_test_id("schedule-save").click()


def _row(page: Page, table: str):
    return page.get_by_test_id("schedule-row").filter(has_text=f"stackql_inventory.{table}")


def test_create_preview_save_run_now_until_success(page: Page, app_db: sa.Engine, saved_query: int) -> None:
    _open_new(page)
    _fill(page, "schedule-cron", "*/5 * * * *")
    expect(page.get_by_test_id("schedule-cron-preview")).to_have_text("Every 5 minutes")
    _fill(page, "schedule-timezone", "Europe/Berlin")
    next_runs = page.get_by_test_id("schedule-next-runs")
    expect(next_runs).to_contain_text("CET")
    assert next_runs.inner_text().count("CET") == 5
    page.get_by_test_id("schedule-preset").filter(has_text="Every hour").click()
    expect(page.get_by_test_id("schedule-cron")).to_have_value("0 * * * *")
    expect(page.get_by_test_id("schedule-cron-preview")).to_have_text("Every hour")
    # A slot that does not come during the test: only "run now" runs it.
    _fill(page, "schedule-cron", "30 4 1 1 *")
    expect(page.get_by_test_id("schedule-cron-preview")).to_contain_text("04:30")
    _fill(page, "schedule-target-table", "e2e_bulk_items")
    _save(page)

    row = _row(page, "e2e_bulk_items")
    expect(row).to_have_count(1)
    expect(page.get_by_test_id("form-error")).to_have_count(0)
    expect(row).to_contain_text(QUERY_NAME)
    expect(row).to_contain_text("At 04:30")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row.get_by_test_id("schedule-status")).to_have_text("never run")

    row.get_by_test_id("schedule-run-now").click()
    expect(row.get_by_test_id("schedule-status")).to_have_text("success", timeout=90_000)
    assert _table_exists(app_db, "e2e_bulk_items")
    with app_db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM stackql_inventory.e2e_bulk_items")).scalar() == 25

    row.get_by_test_id("schedule-history").click()
    runs = page.get_by_test_id("schedule-runs")
    expect(runs.get_by_test_id("schedule-run")).to_have_count(1)
    expect(runs.get_by_test_id("schedule-run")).to_contain_text("manual")
    expect(runs.get_by_test_id("schedule-run")).to_contain_text("25")
    expect(runs.get_by_test_id("schedule-run-status")).to_have_text("success")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("schedule-cron", "61 * * * *", "out of range"),
    ("schedule-cron", "0 12 1 * 1", "Databricks (Quartz) cannot express"),
    ("schedule-cron", "every hour", "Cron needs 5 fields"),
    ("schedule-timezone", "Mars/Olympus", "Unknown time zone"),
    ("schedule-target-table", "Bad-Name", "not a valid table name"),
    ("schedule-target-table", "taken_by_other", "already written"),
    ("schedule-target-table", "", "Enter the inventory table"),
    ("schedule-query-select", "", "Pick the saved query"),
])
def test_invalid_input_shows_form_error_and_creates_nothing(page: Page, app_db: sa.Engine, saved_query: int,
                                                           field: str, value: str, message: str) -> None:
    with app_db.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_app.schedules (query_id, cron_expression, target_table, is_active) "
                          "VALUES (:q, '0 0 1 1 *', 'taken_by_other', false)"), {"q": saved_query})
    before = _count(app_db)
    _open_new(page, query=None if field == "schedule-query-select" else QUERY_NAME)
    _fill(page, "schedule-target-table", "valid_table_name")
    if field != "schedule-query-select":
        _fill(page, field, value)
    _save(page)
    error = page.get_by_test_id("form-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(message)
    expect(page.get_by_test_id("schedule-save")).to_be_visible()  # the dialog stays open
    assert _count(app_db) == before
    assert not _table_exists(app_db, "valid_table_name")


def test_pause_resume_and_delete_keeping_or_dropping_the_table(page: Page, app_db: sa.Engine,
                                                               saved_query: int) -> None:
    with app_db.begin() as c:
        for table in ("e2e_keep", "e2e_drop"):
            c.execute(sa.text("INSERT INTO stackql_app.schedules (query_id, cron_expression, target_table, "
                              "next_run_at) VALUES (:q, '0 0 1 1 *', :t, now() + interval '30 days')"),
                      {"q": saved_query, "t": table})
            c.execute(sa.text(f"CREATE TABLE stackql_inventory.{table} (_stackql_run_id bigint, id text)"))
    page.goto("/schedules")
    keep = _row(page, "e2e_keep")
    expect(keep).to_contain_text("active")
    keep.get_by_test_id("schedule-pause").click()
    expect(keep.get_by_test_id("schedule-resume")).to_be_visible()
    expect(keep).to_contain_text("paused")
    keep.get_by_test_id("schedule-resume").click()
    expect(keep.get_by_test_id("schedule-pause")).to_be_visible()

    keep.get_by_test_id("schedule-delete").click()
    page.get_by_test_id("schedule-delete-confirm").click()
    expect(_row(page, "e2e_keep")).to_have_count(0)
    expect(page.get_by_test_id("schedules-notice")).to_contain_text("kept")
    assert _table_exists(app_db, "e2e_keep")

    _row(page, "e2e_drop").get_by_test_id("schedule-delete").click()
    page.get_by_test_id("schedule-delete-drop-table").click()
    page.get_by_test_id("schedule-delete-confirm").click()
    expect(_row(page, "e2e_drop")).to_have_count(0)
    expect(page.get_by_test_id("schedules-notice")).to_contain_text("dropped")
    assert not _table_exists(app_db, "e2e_drop")
    assert _table_exists(app_db, "e2e_keep")


def test_run_now_status_turns_live_while_the_next_slot_is_minutes_away(page: Page, app_db: sa.Engine,
                                                                        saved_query: int) -> None:
    """The poller sleeps until a slot due within ten minutes; Run now must wake it. (It used to keep
    showing 'queued' until that slot, so a schedule every 5 minutes never showed its run finish.)"""
    minute = (datetime.now(UTC) + timedelta(minutes=8)).minute  # due in ~8 minutes: well within the poll horizon
    _open_new(page)
    _fill(page, "schedule-cron", f"{minute} * * * *")
    _fill(page, "schedule-target-table", "e2e_live_status")
    _save(page)
    expect(_row(page, "e2e_live_status")).to_have_count(1)
    page.reload()  # a fresh page: its poller starts and goes to sleep until the slot
    row = _row(page, "e2e_live_status")
    expect(row.get_by_test_id("schedule-status")).to_have_text("never run")
    page.wait_for_timeout(2_000)
    row.get_by_test_id("schedule-run-now").click()
    expect(row.get_by_test_id("schedule-status")).to_have_text("success", timeout=60_000)


def test_links_prefill_a_new_schedule_and_point_at_an_existing_one(page: Page, app_db: sa.Engine,
                                                                   saved_query: int) -> None:
    # The IDE's "Schedule…" leads here: the dialog opens on that query with a table named after it.
    page.goto(f"/schedules?new={saved_query}")
    expect(page.get_by_test_id("schedule-save")).to_be_visible()
    expect(page.locator("button[data-testid=schedule-query-select]")).to_contain_text(QUERY_NAME)
    expect(page.get_by_test_id("schedule-target-table")).to_have_value("e2e_bulk_items")
    page.wait_for_function("() => !location.search.includes('new=')")  # a reload does not reopen it
    _save(page)
    row = _row(page, "e2e_bulk_items")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-highlighted", "false")
    schedule_id = row.get_attribute("data-schedule-id")

    # The Inventory list links to its table's schedule: highlighted, with its run history open.
    page.goto(f"/schedules?schedule={schedule_id}")
    expect(_row(page, "e2e_bulk_items")).to_have_attribute("data-highlighted", "true")
    expect(page.get_by_test_id("schedule-runs")).to_contain_text("No runs yet.")

    # Stale links say what happened instead of showing nothing.
    page.goto("/schedules?schedule=987654")
    expect(page.get_by_test_id("schedules-error")).to_contain_text("Schedule #987654 no longer exists")
    page.goto("/schedules?new=987654")
    expect(page.get_by_test_id("schedules-error")).to_contain_text("Saved query #987654 no longer exists")
    expect(page.get_by_test_id("schedule-save")).to_have_count(0)


def test_a_query_of_two_statements_cannot_be_scheduled(page: Page, app_db: sa.Engine, saved_query: int) -> None:
    with app_db.begin() as c:
        c.execute(sa.text("UPDATE stackql_app.queries SET query_text = :t WHERE id = :q"),
                  {"t": BULK_QUERY + ";\n\n" + BULK_QUERY, "q": saved_query})
    before = _count(app_db)
    page.goto(f"/schedules?new={saved_query}")
    _save(page)
    expect(page.get_by_test_id("form-error")).to_contain_text("holds 2 statements")
    assert _count(app_db) == before


def test_run_now_notice_turns_into_the_outcome_and_a_failed_manual_run_delays_nothing(
        page: Page, app_db: sa.Engine, saved_query: int) -> None:
    """"Run queued" used to stay on screen after the run had finished; and a failed manual run (which leaves
    the plan alone) made the list say "delayed after 1 failed run" under a next run that was on its slot."""
    from stackql_inventory.services import cron

    next_slot = cron.next_run_after("30 4 1 1 *", "UTC", datetime.now(UTC))
    with app_db.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_app.schedules (query_id, cron_expression, target_table, next_run_at) "
                          "VALUES (:q, '30 4 1 1 *', 'e2e_notice', :n)"), {"q": saved_query, "n": next_slot})
    page.goto("/schedules")
    row = _row(page, "e2e_notice")
    notice = page.get_by_test_id("schedules-notice")
    row.get_by_test_id("schedule-run-now").click()
    expect(notice).to_contain_text("Run queued")
    expect(row.get_by_test_id("schedule-status")).to_have_text("success", timeout=90_000)
    expect(notice).to_have_text("The run of stackql_inventory.e2e_notice finished: success.")

    with app_db.begin() as c:  # the next run fails: stackql refuses the parameter
        c.execute(sa.text("UPDATE stackql_app.queries SET query_text = :t WHERE id = :q"),
                  {"t": "SELECT * FROM synthetic.bulk.items WHERE count = 'many'", "q": saved_query})
    row.get_by_test_id("schedule-run-now").click()
    expect(row.get_by_test_id("schedule-status")).to_have_text("failed", timeout=90_000)
    expect(page.get_by_test_id("schedules-error")).to_contain_text("The run of stackql_inventory.e2e_notice failed")
    expect(notice).to_have_count(0)
    page.reload()  # the list as loaded afresh: one failure, and the next run still on its slot
    row = _row(page, "e2e_notice")
    expect(row.get_by_test_id("schedule-status")).to_have_text("failed")
    expect(row).to_contain_text(next_slot.strftime("%Y-%m-%d %H:%M"))
    expect(row).not_to_contain_text("delayed")


def test_a_long_table_name_keeps_the_row_actions_on_a_1280_px_screen(page: Page, app_db: sa.Engine,
                                                                        saved_query: int) -> None:
    """A 63-character table name (the longest allowed) used to widen the table past the window, pushing the
    row's Pause, Edit, History and Delete buttons out of sight."""
    table = "github_repositories_with_default_branch_protection_all_orgs_abc"
    assert len(table) == 63
    with app_db.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_app.schedules (query_id, cron_expression, timezone, target_table, "
                          "write_mode, key_columns, next_run_at) VALUES (:q, '15 9 * * 1-5', "
                          "'America/Argentina/Buenos_Aires', :t, 'history', "
                          "'{organisation_name,repository_full_name}', now() + interval '2 days')"),
                  {"q": saved_query, "t": table})
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto("/schedules")
    row = _row(page, table)
    expect(row).to_have_count(1)
    for testid in ("schedule-run-now", "schedule-pause", "schedule-edit", "schedule-history", "schedule-delete"):
        box = row.get_by_test_id(testid).bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280, (testid, box)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
