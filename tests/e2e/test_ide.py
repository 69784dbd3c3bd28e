"""The IDE in Chromium against the app on the stackql stand-in: run, errors, cancel, library, history, schema
browser, exports, a 100,000-row result, navigation."""

from __future__ import annotations

import csv
import re
import time
import uuid

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.support.ide import AWS_VALUES, app_data_dir, editor_value, map_provider, open_ide, type_sql, unmap_all

pytestmark = pytest.mark.browser

FIRST_CELL = ("() => { const c = document.querySelector('[data-testid=ide-results] .ag-row[row-index=\"0\"] .ag-cell');"
              " return c !== null && c.textContent.trim().length > 0; }")


def grid_column(page: Page, col: int, rows: int) -> list[str]:
    return page.evaluate("""([col, n]) => [...Array(n).keys()].map(i => {
        const r = document.querySelector(`[data-testid=ide-results] .ag-row[row-index="${i}"]`);
        const c = r && r.querySelectorAll('.ag-cell')[col];
        return c ? c.textContent.trim() : null; })""", [col, rows])


@pytest.fixture
def aws_mapped(app_db, app_env):
    """AWS credentials mapped for the app under test (removed afterwards: other tests expect none)."""
    unmap_all(app_db)
    map_provider(app_db, app_data_dir(app_env), "aws", AWS_VALUES)
    yield
    unmap_all(app_db)


@pytest.fixture
def saved_names(app_db):
    """Names of queries a test saves; deleted afterwards (the navigation test expects an empty library)."""
    names: list[str] = []
    yield names
    with app_db.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_app.queries WHERE name LIKE ANY(:n)"),
                  {"n": [f"{n}%" for n in names] or ["-"]})


def test_ctrl_enter_runs_the_statement_under_the_cursor(page: Page) -> None:
    open_ide(page)
    type_sql(page, "SELECT item_id, name FROM synthetic.bulk.items WHERE count = 25;\n"
                   "SELECT item_id FROM synthetic.bulk.items WHERE count = 3")
    page.keyboard.press("Control+Enter")  # the cursor is in the second statement
    expect(page.get_by_test_id("ide-row-count")).to_have_text("3 rows")
    expect(page.get_by_test_id("ide-elapsed")).not_to_be_empty()
    page.keyboard.press("Control+Home")  # now in the first
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-row-count")).to_have_text("25 rows")
    page.wait_for_function(FIRST_CELL)
    assert grid_column(page, 0, 2) == ["item-0000000", "item-0000001"]
    assert grid_column(page, 1, 1) == ["Item 0 A"]
    expect(page.get_by_test_id("chat-panel")).to_be_attached()  # the assistant column sits beside the editor


def test_run_button_runs_the_selection(page: Page) -> None:
    open_ide(page)
    type_sql(page, "SELECT 1 AS one, 2 AS two")
    page.keyboard.press("Home")
    page.keyboard.press("Shift+End")  # select the whole line…
    for _ in range(len(", 2 AS two")):
        page.keyboard.press("Shift+ArrowLeft")  # …then shrink it to "SELECT 1 AS one"
    page.get_by_test_id("ide-run").click()
    expect(page.get_by_test_id("ide-row-count")).to_have_text("1 row")
    expect(page.locator("[data-testid=ide-results] .ag-header-cell-text")).to_have_text(["one"])


def test_stackql_errors_are_shown_verbatim_with_the_statement_and_parameters_offered(page: Page, aws_mapped) -> None:
    open_ide(page)
    type_sql(page, "SELECT instanceId FROM aws.ec2.instances")
    page.keyboard.press("Control+Enter")
    error = page.get_by_test_id("ide-error")
    expect(error).to_contain_text("cannot find matching operation, possible causes include missing required "
                                  "parameters", timeout=30_000)
    expect(page.get_by_test_id("ide-error-statement")).to_contain_text("SELECT instanceId FROM aws.ec2.instances")
    expect(page.get_by_test_id("ide-row-count")).to_have_count(0)
    hint = page.get_by_test_id("ide-param-hint")
    expect(hint).to_have_text("WHERE region = ''")
    hint.click()
    page.wait_for_function("() => window.__stackqlIde.value().includes(\"WHERE region = ''\")")
    expect(hint).to_have_count(0)
    # Fill the value in and run again: the error goes, rows come.
    type_sql(page, "SELECT instanceId FROM aws.ec2.instances\nWHERE region = 'us-east-1'")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-error")).to_have_count(0)
    expect(page.get_by_test_id("ide-row-count")).to_contain_text("row")


def test_an_empty_result_then_a_syntax_error(page: Page) -> None:
    open_ide(page)
    type_sql(page, "SELECT item_id FROM synthetic.bulk.items WHERE count = 0")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-empty-result")).to_have_text("The query returned no rows.")
    expect(page.get_by_test_id("ide-row-count")).to_have_text("0 rows")
    expect(page.get_by_test_id("ide-error")).to_have_count(0)
    type_sql(page, "SELEC 1")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-error")).to_contain_text("stackql: syntax error")
    expect(page.get_by_test_id("ide-error-statement")).to_have_text("SELEC 1")
    expect(page.get_by_test_id("ide-row-count")).to_have_count(0)  # the failed run replaced the last result
    expect(page.get_by_test_id("ide-empty-result")).to_have_count(0)


def test_cancel_stops_a_long_query(page: Page) -> None:
    open_ide(page)
    type_sql(page, "SELECT seconds FROM synthetic.timing.sleep WHERE seconds = 30")
    expect(page.get_by_test_id("ide-cancel")).to_be_disabled()
    page.keyboard.press("Control+Enter")
    running = page.get_by_test_id("ide-running")
    expect(running).to_be_visible()
    expect(running).to_contain_text("s", timeout=5_000)
    first = running.inner_text()
    page.wait_for_timeout(1200)
    assert running.inner_text() != first  # the elapsed counter is live
    started = time.monotonic()
    page.get_by_test_id("ide-cancel").click()
    expect(page.get_by_test_id("ide-error")).to_contain_text("The query was cancelled.", timeout=10_000)
    assert time.monotonic() - started < 10
    expect(running).to_have_count(0)
    type_sql(page, "SELECT 7 AS seven")  # the engine is still usable
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-row-count")).to_have_text("1 row")


def test_save_appears_in_the_library_and_reopens(page: Page, saved_names, app_db) -> None:
    name = f"Bulk items {uuid.uuid4().hex[:8]}"
    saved_names.append(name)
    sql = "SELECT item_id, category FROM synthetic.bulk.items WHERE count = 5"
    open_ide(page)
    type_sql(page, sql)
    page.get_by_test_id("ide-save").click()
    page.get_by_test_id("save-name").fill(name)
    page.get_by_test_id("save-description").fill("five items")
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("save-name")).to_have_count(0)  # the dialog closed
    item = page.get_by_test_id("query-library-item").filter(has_text=name)
    expect(item).to_have_count(1)
    expect(item).to_contain_text("five items")
    with app_db.connect() as c:
        assert c.execute(sa.text("SELECT query_text FROM stackql_app.queries WHERE name = :n"),
                         {"n": name}).scalar_one() == sql
    # A clash is a clear message, and nothing is written.
    page.get_by_test_id("ide-save").click()
    expect(page.get_by_test_id("save-mode")).to_be_visible()
    page.get_by_role("radio", name="Save as new").click()
    page.get_by_test_id("save-name").fill(name)
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("form-error")).to_contain_text(f"You already have a query named '{name}'")
    page.keyboard.press("Escape")
    # Reopen: a fresh editor, then the library item loads the text.
    type_sql(page, "SELECT 1")
    item.get_by_test_id("query-library-open").click()
    page.wait_for_function("(t) => window.__stackqlIde.value().trim() === t", arg=sql)
    expect(page.get_by_test_id("ide-loaded-query")).to_have_text(name)
    # Update in place.
    type_sql(page, sql + " AND seed = 2")
    page.get_by_test_id("ide-save").click()
    expect(page.get_by_test_id("save-confirm")).to_have_text("Update")
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("save-name")).to_have_count(0)
    with app_db.connect() as c:
        assert c.execute(sa.text("SELECT query_text FROM stackql_app.queries WHERE name = :n"),
                         {"n": name}).scalar_one() == sql + " AND seed = 2"


def test_library_duplicate_and_delete_with_confirmation(page: Page, saved_names, app_db) -> None:
    name = f"Dup me {uuid.uuid4().hex[:8]}"
    saved_names.append(name)
    open_ide(page)
    type_sql(page, "SHOW PROVIDERS")
    page.get_by_test_id("ide-save").click()
    page.get_by_test_id("save-name").fill(name)
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("save-name")).to_have_count(0)
    page.get_by_test_id("query-library-search").fill(name)
    items = page.get_by_test_id("query-library-item")
    expect(items).to_have_count(1)
    items.get_by_test_id("query-library-menu").click()
    page.get_by_test_id("query-library-duplicate").click()
    expect(items).to_have_count(2)
    expect(page.get_by_role("menu")).to_have_count(0)  # the first menu has closed
    copy = items.filter(has_text=f"{name} (copy)")
    expect(copy).to_have_count(1)
    copy.get_by_test_id("query-library-menu").click()
    page.get_by_test_id("query-library-delete").click()
    page.get_by_test_id("query-library-delete-confirm").click()
    expect(items).to_have_count(1)
    with app_db.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM stackql_app.queries WHERE name LIKE :n"),
                         {"n": f"{name}%"}).scalar_one() == 1


def test_history_lists_runs_and_reopens_them(page: Page) -> None:
    marker = uuid.uuid4().hex[:8]
    sql = f"SELECT '{marker}' AS marker"
    open_ide(page)
    type_sql(page, sql)
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-row-count")).to_have_text("1 row")
    type_sql(page, "SELEC broken")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-error")).to_be_visible()
    page.get_by_test_id("ide-tab-history").click()
    entries = page.get_by_test_id("ide-history-item")
    expect(entries.first).to_contain_text("SELEC broken")
    expect(entries.first.get_by_test_id("ide-history-status")).to_have_text("error")
    ours = entries.filter(has_text=marker)
    expect(ours.get_by_test_id("ide-history-status")).to_have_text("success")
    expect(ours).to_contain_text("1 row")
    ours.click()
    page.wait_for_function("(t) => window.__stackqlIde.value().trim() === t", arg=sql)


def test_schema_browser_pulls_expands_and_inserts(page: Page) -> None:
    open_ide(page)
    type_sql(page, "")
    page.get_by_test_id("ide-tab-schema").click()
    browser = page.get_by_test_id("schema-browser")
    github = browser.locator('[data-testid=schema-node][data-path="github"]')
    if github.count() == 0:  # not installed yet: pull it from the registry
        browser.get_by_text("Available in the registry").click()
        browser.get_by_test_id("schema-registry-item").filter(has_text="github").get_by_test_id("schema-pull").click()
    expect(github).to_be_visible(timeout=30_000)
    github.get_by_test_id("schema-node-toggle").click()
    repos_service = browser.locator('[data-testid=schema-node][data-path="github.repos"]')
    repos_service.get_by_test_id("schema-node-toggle").click()
    resource = browser.locator('[data-testid=schema-node][data-path="github.repos.repos"]')
    expect(resource).to_be_visible()
    resource.get_by_test_id("schema-node-toggle").click()
    expect(resource).to_contain_text("needs org")
    expect(browser.locator('[data-testid=schema-node][data-path="github.repos.repos.name"]')).to_contain_text("string")
    resource.get_by_test_id("schema-node-label").click()
    page.wait_for_function("() => window.__stackqlIde.value() === 'github.repos.repos'")
    type_sql(page, "")
    resource.get_by_test_id("schema-node-select").click()
    page.wait_for_function("() => window.__stackqlIde.value().includes(\"FROM github.repos.repos\\nWHERE org = ''\")")
    assert editor_value(page).startswith("SELECT\n  ")
    # Search finds what is loaded.
    browser.get_by_test_id("schema-search").fill("repos")
    expect(browser.get_by_test_id("schema-search-hit").filter(has_text="github.repos.repos")).to_have_count(1)


def test_csv_export_downloads_the_whole_result(page: Page, tmp_path) -> None:
    open_ide(page)
    type_sql(page, "SELECT item_id, quantity, attributes FROM synthetic.bulk.items WHERE count = 1500")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-row-count")).to_have_text("1,500 rows")
    with page.expect_download() as download:
        page.get_by_test_id("ide-export-csv").click()
    path = tmp_path / "out.csv"
    download.value.save_as(path)
    assert download.value.suggested_filename.startswith("synthetic_bulk_items-")
    rows = list(csv.reader(path.open(newline="")))
    assert rows[0] == ["item_id", "quantity", "attributes"]
    assert len(rows) == 1501 and rows[1500][0] == "item-0001499"
    assert rows[1][2].startswith('{"labels":') or rows[1][2].startswith('{"zone":')


def test_the_row_badge_counts_what_the_grid_filters_leave_and_exports_stay_whole(page: Page, tmp_path) -> None:
    """With a filter set the badge used to keep saying "1,500 rows" over 100 visible ones."""
    open_ide(page)
    type_sql(page, "SELECT item_id, quantity FROM synthetic.bulk.items WHERE count = 1500")
    page.keyboard.press("Control+Enter")
    badge = page.get_by_test_id("ide-row-count")
    expect(badge).to_have_text("1,500 rows")
    page.wait_for_function(FIRST_CELL)
    header = page.locator("[data-testid=ide-results] .ag-header-cell[col-id='0']")
    header.hover()
    header.locator(".ag-header-cell-filter-button").click()
    page.locator(".ag-filter input.ag-input-field-input").first.fill("item-00001")  # item-0000100 … 199
    expect(badge).to_have_text("100 of 1,500 rows")
    expect(badge).to_have_attribute("title", re.compile("exports contain the whole result", re.I))
    expect(page.get_by_test_id("ide-export-csv")).to_have_attribute("title", re.compile(r"all 1,500 rows"))
    page.keyboard.press("Escape")
    with page.expect_download() as download:
        page.get_by_test_id("ide-export-csv").click()
    path = tmp_path / "filtered.csv"
    download.value.save_as(path)
    assert len(list(csv.reader(path.open(newline="")))) == 1501  # the whole result, not the 100 shown
    header.hover()
    header.locator(".ag-header-cell-filter-button").click()
    page.locator(".ag-filter").get_by_role("button", name="Reset").click()
    expect(badge).to_have_text("1,500 rows")
    expect(page.get_by_test_id("ide-export-csv")).to_have_attribute("title", "Download the whole result as CSV")


def test_100k_rows_arrive_a_window_at_a_time(page: Page) -> None:
    received = {"ws": 0, "http": 0, "requests": 0}

    def on_ws(ws) -> None:
        ws.on("framereceived", lambda frame: received.__setitem__("ws", received["ws"] + len(frame)))

    def on_finished(request) -> None:
        if "/api/ide/results/" in request.url:
            received["http"] += request.sizes()["responseBodySize"]
            received["requests"] += 1

    page.on("websocket", on_ws)
    open_ide(page)
    page.on("requestfinished", on_finished)
    # One row more than the app's row limit (100,000): the result is cut, and the page says so.
    type_sql(page, "SELECT * FROM synthetic.bulk.items WHERE count = 100001")
    before = dict(received)
    page.keyboard.press("Control+Enter")
    page.wait_for_function(FIRST_CELL, timeout=120_000)
    visible_at = page.evaluate("() => Date.now()")
    engine_done = int(page.get_by_test_id("ide-results").get_attribute("data-engine-done"))
    expect(page.get_by_test_id("ide-row-count")).to_have_text("100,000 rows")
    expect(page.get_by_test_id("ide-truncated")).to_contain_text("Only the first 100,000 rows are shown")
    # The target is 1 s (benchmarks/ide_results.py measures it); the test allows for a loaded CI machine.
    assert visible_at - engine_done < 3000, f"first rows {visible_at - engine_done} ms after the engine returned"
    ws_bytes, http_bytes = received["ws"] - before["ws"], received["http"] - before["http"]
    assert ws_bytes < 100_000, ws_bytes  # the state update carries no rows
    assert http_bytes < 400_000, http_bytes  # one or two blocks of 200 rows, not 100,000
    rendered = page.locator("[data-testid=ide-results] .ag-row").count()
    assert 0 < rendered < 100
    # Scroll to the end: the last rows come, the DOM stays small, the page answers.
    page.evaluate("() => { const v = document.querySelector('[data-testid=ide-results] "
                  ".ag-body-vertical-scroll-viewport'); v.scrollTop = v.scrollHeight; }")
    page.wait_for_function("() => !!document.querySelector('[data-testid=ide-results] .ag-row[row-index=\"99999\"]"
                           " .ag-cell') && document.querySelector('[data-testid=ide-results] .ag-row[row-index="
                           "\"99999\"] .ag-cell').textContent.includes('item-0099999')", timeout=20_000)
    assert page.locator("[data-testid=ide-results] .ag-row").count() < 100
    assert received["http"] - before["http"] < 1_500_000
    started = time.monotonic()
    page.evaluate("() => 1")
    assert time.monotonic() - started < 1  # the main thread is free
    # Sort on the server: quantity descending puts 999 first.
    page.evaluate("() => { const v = document.querySelector('[data-testid=ide-results] "
                  ".ag-body-vertical-scroll-viewport'); v.scrollTop = 0; }")
    header = page.locator("[data-testid=ide-results] .ag-header-cell[col-id='3'] .ag-header-cell-label")
    header.click()
    header.click()
    page.wait_for_function("() => { const c = document.querySelector('[data-testid=ide-results] "
                           ".ag-row[row-index=\"0\"] .ag-cell[col-id=\"3\"]'); return c && c.textContent.trim() === "
                           "'999'; }", timeout=20_000)


def test_json_cells_are_compact_and_open_formatted(page: Page) -> None:
    open_ide(page)
    type_sql(page, "SELECT item_id, attributes, tags FROM synthetic.bulk.items WHERE count = 5")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(FIRST_CELL)
    assert grid_column(page, 1, 1)[0].endswith('{"zone":"zone-0","rank":0,"labels":["a","b0"]}')
    page.locator("[data-testid=ide-results] [data-testid=ide-json-open]").first.click()
    view = page.get_by_test_id("ide-json-view")
    expect(view).to_contain_text('"zone": "zone-0",\n  "rank": 0,')
    page.get_by_test_id("ide-json-close").click()
    expect(view).to_have_count(0)


def test_editor_content_survives_navigation(page: Page) -> None:
    open_ide(page)
    text = f"SELECT 'kept {uuid.uuid4().hex[:6]}' AS x"
    type_sql(page, text)
    page.get_by_test_id("nav-providers").click()  # immediately: the last keystrokes must not be lost
    expect(page.get_by_test_id("page-heading")).to_have_text("Providers")
    page.get_by_test_id("nav-ide").click()
    page.wait_for_selector("[data-testid=ide-editor] .monaco-editor .view-lines")
    page.wait_for_function("(t) => window.__stackqlIde && window.__stackqlIde.value().trim() === t", arg=text)


def test_provider_selector_lists_configured_providers(page: Page, aws_mapped) -> None:
    open_ide(page)
    select = page.get_by_test_id("ide-provider-select")
    expect(select).to_have_text("aws")  # the only configured provider is chosen
    select.click()
    expect(page.get_by_role("option")).to_have_text(["No provider", "aws"])
    page.get_by_role("option", name="No provider").click()
    expect(select).to_have_text("No provider")


def test_a_link_opens_a_saved_query_and_schedule_leads_to_the_prefilled_dialog(page: Page, app_db,
                                                                              saved_names) -> None:
    """The Inventory list links to `/ide?query=<id>`; "Schedule…" leads on to the Schedules dialog."""
    name = f"linked query {uuid.uuid4().hex[:6]}"
    saved_names.append(name)
    text = "SELECT item_id, name FROM synthetic.bulk.items WHERE count = 4"
    with app_db.begin() as c:
        qid = c.execute(sa.text("INSERT INTO stackql_app.queries (name, query_text, provider, created_by) "
                                "VALUES (:n, :t, '', 'someone') RETURNING id"), {"n": name, "t": text}).scalar()
    open_ide(page)
    expect(page.get_by_test_id("ide-schedule")).to_be_disabled()  # nothing saved is open
    page.goto(f"/ide?query={qid}")
    expect(page.get_by_test_id("ide-loaded-query")).to_have_text(name)
    page.wait_for_function("(t) => (window.__stackqlIde && window.__stackqlIde.value() || '').includes(t)", arg=text)
    schedule = page.get_by_test_id("ide-schedule")
    expect(schedule).to_be_enabled()
    schedule.click()
    expect(page).to_have_url(re.compile(r"/schedules"))
    expect(page.get_by_test_id("schedule-save")).to_be_visible()
    expect(page.locator("button[data-testid=schedule-query-select]")).to_contain_text(name)
    expect(page.get_by_test_id("schedule-target-table")).to_have_value(name.replace(" ", "_"))
    page.get_by_test_id("schedule-cancel").click()

    # Back in the IDE the query is still open; once edited it must be saved before it can be scheduled.
    page.get_by_test_id("nav-ide").click()
    expect(page.get_by_test_id("ide-loaded-query")).to_have_text(name)
    page.wait_for_selector("[data-testid=ide-editor] .monaco-editor .view-lines")
    page.locator("[data-testid=ide-editor] .monaco-editor").click()
    page.keyboard.press("Control+End")
    page.keyboard.type(" -- edited")
    page.wait_for_function("() => window.__stackqlIde.value().includes('-- edited')")
    page.get_by_test_id("page-heading").click()  # blur: the editor commits its text
    expect(schedule).to_be_disabled()
    expect(schedule).to_have_attribute("title", re.compile("Save your changes first"))
    page.goto("/ide?query=notanumber")
    expect(page.get_by_text("which is not a query id")).to_be_visible()


def test_at_1280_by_800_nothing_overflows_or_hides_under_the_assistant(page: Page, app_db, saved_names) -> None:
    name = f"a rather long saved query name {uuid.uuid4().hex[:6]} for the badge"
    saved_names.append(name)
    with app_db.begin() as c:
        qid = c.execute(sa.text("INSERT INTO stackql_app.queries (name, query_text, provider, created_by) VALUES "
                                "(:n, 'SELECT item_id, name FROM synthetic.bulk.items WHERE count = 30', '', 'x') "
                                "RETURNING id"), {"n": name}).scalar()
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"/ide?query={qid}")
    page.wait_for_selector("[data-testid=ide-editor] .monaco-editor .view-lines", timeout=60_000)
    expect(page.get_by_test_id("ide-loaded-query")).to_be_visible()
    page.get_by_test_id("ide-run").click()
    expect(page.get_by_test_id("ide-row-count")).to_have_text("30 rows")
    page.wait_for_function(FIRST_CELL)
    width = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways: {width}"
    chat_left = page.get_by_test_id("chat-panel").bounding_box()["x"]
    for testid in ("ide-run", "ide-save", "ide-schedule", "ide-loaded-query", "ide-results", "ide-export-csv",
                   "ide-editor"):
        box = page.get_by_test_id(testid).bounding_box()
        assert box["x"] + box["width"] <= chat_left, f"{testid} runs under the assistant panel"
    page.get_by_test_id("ide-save").click()
    dialog = page.get_by_role("dialog").bounding_box()
    assert dialog["y"] >= 0 and dialog["y"] + dialog["height"] <= 800 and dialog["x"] + dialog["width"] <= 1280


def test_a_new_query_after_a_saved_one_is_saved_as_new_not_over_it(page: Page, app_db, saved_names) -> None:
    """Emptying the editor, or × on the saved query's badge, starts a new query: Save must not default to
    updating the query that was open (it silently replaced that query's text and name)."""
    first = f"first {uuid.uuid4().hex[:6]}"
    saved_names.append(first)
    open_ide(page)
    type_sql(page, "SELECT item_id FROM synthetic.bulk.items WHERE count = 2")
    page.get_by_test_id("ide-save").click()
    page.get_by_test_id("save-name").fill(first)
    page.get_by_test_id("save-confirm").click()
    expect(page.get_by_test_id("ide-loaded-query")).to_have_text(first)

    # Clear the editor (and pause, as a person does): the badge goes, Save offers a new query.
    page.locator("[data-testid=ide-editor] .monaco-editor").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    expect(page.get_by_test_id("ide-loaded-query")).to_have_count(0)
    type_sql(page, "SELECT item_id FROM synthetic.bulk.items WHERE count = 3")
    page.get_by_test_id("ide-save").click()
    expect(page.get_by_test_id("save-confirm")).to_have_text("Save")
    expect(page.get_by_test_id("save-mode")).to_have_count(0)
    expect(page.get_by_test_id("save-name")).to_have_value("")
    page.keyboard.press("Escape")

    # × on the badge keeps the text but detaches it from the saved query.
    page.get_by_test_id("ide-tab-library").click()
    page.get_by_test_id("query-library-item").filter(has_text=first).get_by_test_id("query-library-open").click()
    expect(page.get_by_test_id("ide-loaded-query")).to_have_text(first)
    page.get_by_test_id("ide-detach-query").click()
    expect(page.get_by_test_id("ide-loaded-query")).to_have_count(0)
    assert "count = 2" in editor_value(page)
    page.get_by_test_id("ide-save").click()
    expect(page.get_by_test_id("save-confirm")).to_have_text("Save")
    with app_db.connect() as c:
        assert c.execute(sa.text("SELECT query_text FROM stackql_app.queries WHERE name = :n"),
                         {"n": first}).scalar_one() == "SELECT item_id FROM synthetic.bulk.items WHERE count = 2"
