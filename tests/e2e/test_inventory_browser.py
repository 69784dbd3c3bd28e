"""The inventory browser in Chromium: list → select → preview (page forward/back, export) → refresh a matview → changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.support import inventory as fx

pytestmark = pytest.mark.browser

HISTORY = "e2e_inv_ec2"
BUCKETS = "e2e_inv_buckets"
VIEW = "e2e_inv_by_region"


@pytest.fixture
def seeded(app_db: sa.Engine) -> Iterator[dict[str, list[int]]]:
    """Three inventory tables and a materialized view in the app's database; everything removed afterwards."""
    now = datetime.now(UTC)
    with app_db.begin() as c:
        runs = fx.seed_history(c, HISTORY)
        qid = fx.add_query(c, f"{BUCKETS} query", "aws")
        sid = fx.add_schedule(c, qid, BUCKETS, cron="0 * * * *")
        fx.create_table(c, BUCKETS, "bucket text, region text, policy text")
        fx.insert_rows(c, BUCKETS, [
            {"bucket": f"bucket-{i:03d}", "region": ("us-east-1", "eu-west-1")[i % 2],
             "policy": '{"Statement": [{"Effect": "Allow", "Principal": "*"}]}'} for i in range(1, 121)], 1, now)
        fx.add_run(c, BUCKETS, started_at=now - timedelta(minutes=20), rows=120, schedule_id=sid, query_id=qid)
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW stackql_inventory.{VIEW} AS "
                          f"SELECT region, count(*) AS buckets FROM stackql_inventory.{BUCKETS} GROUP BY region"))
    try:
        yield {"history_runs": runs}
    finally:
        with app_db.begin() as c:
            for name in (VIEW,):
                c.execute(sa.text(f"DROP MATERIALIZED VIEW IF EXISTS stackql_inventory.{name}"))
            for name in (HISTORY, BUCKETS):
                c.execute(sa.text(f"DROP TABLE IF EXISTS stackql_inventory.{name} CASCADE"))
            c.execute(sa.text("DELETE FROM stackql_app.runs WHERE target_table LIKE 'e2e_inv_%'"))
            c.execute(sa.text("DELETE FROM stackql_app.schedules WHERE target_table LIKE 'e2e_inv_%'"))
            c.execute(sa.text("DELETE FROM stackql_app.queries WHERE name LIKE 'e2e_inv_%'"))


def _row(page: Page, name: str):
    return page.locator(f'[data-testid="inventory-table-row"][data-name="{name}"]')


def test_list_select_preview_refresh_and_changes(page: Page, seeded: dict, app_db: sa.Engine) -> None:
    page.goto("/inventory")

    # The catalogue: every table and the view, with counts, freshness and the summary.
    expect(page.get_by_test_id("inventory-table-row")).to_have_count(3)
    expect(page.get_by_test_id("inventory-metrics")).to_contain_text("Tables")
    expect(page.get_by_test_id("inventory-metric-tables")).to_contain_text("3")
    expect(_row(page, BUCKETS)).to_contain_text("120")
    expect(_row(page, BUCKETS).get_by_test_id("inventory-freshness")).to_have_text("fresh")
    expect(_row(page, HISTORY).get_by_test_id("inventory-freshness")).to_have_text("expired")
    expect(_row(page, VIEW).get_by_test_id("inventory-freshness")).to_have_text("manual")
    expect(_row(page, HISTORY)).to_contain_text("history")

    # Search narrows the list.
    page.get_by_test_id("inventory-search").fill("E2E_INV_B")
    expect(page.get_by_test_id("inventory-table-row")).to_have_count(2)
    page.get_by_test_id("inventory-search").fill("")
    expect(page.get_by_test_id("inventory-table-row")).to_have_count(3)

    # Select → preview, paged forward and back (50 rows a page, keyset cursors).
    _row(page, BUCKETS).click()
    preview = page.get_by_test_id("inventory-preview")
    expect(page.get_by_test_id("inventory-selected")).to_have_text(BUCKETS)
    expect(preview.get_by_test_id("inventory-preview-row")).to_have_count(50)
    expect(page.get_by_test_id("inventory-preview-page")).to_have_text("Page 1 · rows 1–50")
    expect(preview.get_by_test_id("inventory-preview-row").first).to_contain_text("bucket-001")
    page.get_by_test_id("inventory-preview-next").click()
    expect(page.get_by_test_id("inventory-preview-page")).to_have_text("Page 2 · rows 51–100")
    expect(preview.get_by_test_id("inventory-preview-row").first).to_contain_text("bucket-051")
    page.get_by_test_id("inventory-preview-next").click()
    expect(page.get_by_test_id("inventory-preview-page")).to_have_text("Page 3 · rows 101–120")
    expect(preview.get_by_test_id("inventory-preview-row")).to_have_count(20)
    expect(page.get_by_test_id("inventory-preview-next")).to_be_disabled()
    page.get_by_test_id("inventory-preview-prev").click()
    expect(page.get_by_test_id("inventory-preview-page")).to_have_text("Page 2 · rows 51–100")
    expect(preview.get_by_test_id("inventory-preview-row").first).to_contain_text("bucket-051")

    # A JSON cell opens indented.
    preview.get_by_test_id("inventory-preview-row").first.get_by_test_id("inventory-cell").nth(2).click()
    expect(page.get_by_test_id("inventory-cell-detail")).to_contain_text('"Statement": [')
    page.keyboard.press("Escape")

    # CSV export streams the whole table.
    with page.expect_download() as download:
        page.get_by_test_id("inventory-export-csv").click()
    body = open(download.value.path(), encoding="utf-8").read()
    assert body.startswith("bucket,region,policy,_stackql_run_id,_stackql_collected_at")
    assert body.count("\nbucket-") == 120

    # Refresh the materialized view (plain: it has no unique index yet); the ledger records it.
    with app_db.begin() as c:
        c.execute(sa.text(f"INSERT INTO stackql_inventory.{BUCKETS} (bucket, region, policy, _stackql_run_id, "
                          "_stackql_collected_at) VALUES ('late', 'ap-south-1', '{}', 2, now())"))
    page.get_by_test_id("inventory-tab-views").click()
    card = page.locator(f'[data-testid="inventory-mv-row"][data-name="{VIEW}"]')
    expect(card).to_contain_text("GROUP BY")
    card.get_by_test_id("inventory-refresh-mv").click()
    expect(page.get_by_test_id("inventory-mv-status")).to_contain_text(f"Refreshed {VIEW}")
    expect(page.get_by_test_id("inventory-mv-status")).to_contain_text("3 rows")
    expect(card.get_by_test_id("inventory-mv-refreshed")).not_to_contain_text("unknown")
    with app_db.connect() as c:
        ledger = c.execute(sa.text("SELECT status, backend, rows_written FROM stackql_app.runs "
                                   "WHERE target_table = :t"), {"t": VIEW}).all()
    assert [tuple(r) for r in ledger] == [("success", "postgres", 3)]

    # The creator refuses a write and says why; nothing is created.
    page.get_by_test_id("inventory-mv-name").fill("e2e_inv_bad")
    page.get_by_test_id("inventory-mv-sql").fill(f"DELETE FROM {BUCKETS}")
    page.get_by_test_id("inventory-mv-sql").blur()
    page.get_by_test_id("inventory-mv-create").click()
    expect(page.get_by_test_id("inventory-mv-error")).to_contain_text("Only a read-only SELECT is allowed")

    # Changes between the last two runs of the history table, changed cells highlighted.
    page.get_by_test_id("inventory-tab-tables").click()
    _row(page, HISTORY).click()
    expect(page.get_by_test_id("inventory-selected")).to_have_text(HISTORY)
    page.get_by_test_id("inventory-subtab-changes").click()
    summary = page.get_by_test_id("inventory-diff-summary")
    expect(summary).to_contain_text("0 added")
    expect(summary).to_contain_text("1 removed")
    expect(summary).to_contain_text("2 changed")
    rows = page.get_by_test_id("inventory-diff-row")
    expect(rows).to_have_count(3)
    changed = page.get_by_test_id("inventory-diff-changed")
    expect(changed).to_have_count(2)
    expect(changed.first).to_have_text("pending → running")
    expect(page.locator('[data-testid="inventory-diff-row"][data-kind="removed"]')).to_contain_text("i-2")
    expect(page.get_by_test_id("inventory-diff-from")).to_contain_text(f"run {seeded['history_runs'][1]}")
    expect(page.get_by_test_id("inventory-diff-to")).to_contain_text(re.compile(rf"run {seeded['history_runs'][2]}\b"))


def test_runs_ledger_filters_by_status(page: Page, seeded: dict, app_db: sa.Engine) -> None:
    with app_db.begin() as c:
        fx.add_run(c, BUCKETS, status="failed", started_at=datetime.now(UTC), error="AccessDenied: s3:ListBuckets")
    page.goto("/inventory")
    expect(_row(page, BUCKETS).get_by_test_id("inventory-freshness")).to_have_text("failing")
    expect(page.get_by_test_id("inventory-metric-failed-last-runs")).to_contain_text("1")
    page.get_by_test_id("inventory-tab-runs").click()
    expect(page.get_by_test_id("inventory-run-row")).to_have_count(5)
    page.get_by_test_id("inventory-runs-status").click()
    page.get_by_role("option", name="failed", exact=True).click()
    expect(page.get_by_test_id("inventory-run-row")).to_have_count(1)
    expect(page.get_by_test_id("inventory-run-row")).to_contain_text("AccessDenied")
