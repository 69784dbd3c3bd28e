"""IDE in Chromium against the app on the stackql stand-in: JSON export of a whole result, catalog completion in
Monaco (services after `aws.`, a resource's columns once it is named), StackQL keywords highlighted as
keywords, and the query library listing the saved queries."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Locator, Page, expect

from tests.support.app_server import AppServer, another_app
from tests.support.ide import editor_value, open_ide, type_sql

pytestmark = pytest.mark.browser

SUGGESTIONS = ".suggest-widget.visible .monaco-list-row"


def test_json_export_downloads_the_whole_result_as_json(page: Page, tmp_path) -> None:
    # More rows than the grid ever holds and than one export chunk (2,000 rows).
    open_ide(page)
    type_sql(page, "SELECT item_id, quantity, attributes FROM synthetic.bulk.items WHERE count = 4321")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("ide-row-count")).to_have_text("4,321 rows", timeout=60_000)
    expect(page.get_by_test_id("ide-export-json")).to_be_enabled()
    with page.expect_download() as download:
        page.get_by_test_id("ide-export-json").click()
    assert download.value.suggested_filename.startswith("synthetic_bulk_items-")
    assert download.value.suggested_filename.endswith(".json")
    path = tmp_path / "out.json"
    download.value.save_as(path)
    rows = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(rows, list) and len(rows) == 4321
    assert all(list(r) == ["item_id", "quantity", "attributes"] for r in rows)
    assert [r["item_id"] for r in rows[:2]] == ["item-0000000", "item-0000001"]
    assert rows[-1]["item_id"] == "item-0004320"
    assert len({r["item_id"] for r in rows}) == 4321  # no row twice (chunk seams)
    # Values as stackql gives them (numbers as strings, as in its own JSON output); JSON cells come as JSON,
    # not as strings holding JSON.
    assert all(isinstance(r["quantity"], str) and r["quantity"].isdigit() for r in rows)
    assert isinstance(rows[0]["attributes"], dict) and rows[0]["attributes"]["zone"] == "zone-0"


# ------------------------------------------------------------------ completion


def _suggestion_labels(page: Page) -> list[str]:
    return page.locator(SUGGESTIONS + " .label-name").all_inner_texts()


def _expect_suggestions(page: Page, *labels: str) -> None:
    """Wait until the suggestion list shows all `labels` (it fills once the app's catalog answers)."""
    widget = page.locator(".suggest-widget.visible")
    try:
        expect(widget).to_be_visible(timeout=30_000)
        for label in labels:
            expect(widget.locator(".monaco-list-row .label-name", has_text=label).first).to_be_visible(
                timeout=30_000)
    except AssertionError as e:
        # What the editor held, what the widget showed, and what the endpoint answers for that text now.
        text = editor_value(page)
        shown = page.locator(".suggest-widget").all_inner_texts()
        answer = page.evaluate(
            "async (text) => { const r = await fetch(window.__stackqlApiUrl('/api/ide/complete'), {method: 'POST',"
            " headers: {'Content-Type': 'application/json'}, body: JSON.stringify({text, offset: text.length})});"
            " return [r.status, await r.text()]; }", text)
        raise AssertionError(f"suggestions {labels} not shown; editor {text!r}; widget {shown!r}; "
                             f"/api/ide/complete at the end answers {answer!r}") from e


def _focus_editor(page: Page, clear: bool = True) -> None:
    page.locator("[data-testid=ide-editor] .monaco-editor").click()
    page.wait_for_function("() => document.activeElement && document.activeElement.closest('.monaco-editor')")
    if clear:
        page.keyboard.press("Control+a")
        page.keyboard.press("Delete")


def test_completion_offers_services_after_the_provider_and_columns_of_a_named_resource(page: Page) -> None:
    open_ide(page)
    _focus_editor(page)
    page.keyboard.type("SELECT * FROM ")
    page.keyboard.type("aws.")
    _expect_suggestions(page, "ec2", "s3", "iam")
    # Exactly the aws provider's services from the catalog (SHOW SERVICES IN aws), not words from the text.
    expect(page.locator(SUGGESTIONS)).to_have_count(3)
    assert sorted(_suggestion_labels(page)) == ["ec2", "iam", "s3"]

    page.keyboard.type("ec2.")
    _expect_suggestions(page, "instances", "volumes", "security_groups")
    page.keyboard.type("instances")
    page.keyboard.press("Escape")
    expect(page.locator(".suggest-widget.visible")).to_have_count(0)
    page.wait_for_function("() => window.__stackqlIde.value() === 'SELECT * FROM aws.ec2.instances'")

    # Back in the SELECT list: the named resource's columns are offered, with their type and resource.
    page.keyboard.press("Home")
    for _ in range(len("SELECT ")):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Delete")  # the *
    page.keyboard.type("vpc")
    _expect_suggestions(page, "vpcId")
    page.keyboard.press("Control+Space")  # open the details of the focused suggestion
    expect(page.locator(".suggest-widget.visible")).to_contain_text("string · aws.ec2.instances")
    page.keyboard.press("Enter")  # accept
    page.wait_for_function("() => window.__stackqlIde.value() === 'SELECT vpcId FROM aws.ec2.instances'")

    # Elsewhere in the statement too, narrowed by what is typed.
    page.keyboard.press("End")
    page.keyboard.type(" WHERE inst")
    _expect_suggestions(page, "instanceId", "instanceType", "instanceState")
    page.keyboard.press("Escape")
    assert editor_value(page).endswith("WHERE inst")


# ------------------------------------------------------------------ highlighting

STACKQL_WORDS = ["SHOW", "DESCRIBE", "REGISTRY", "PULL", "EXTENDED", "METHODS"]
# Class of each token span whose text is `word` (Monaco renders a token per span, classed by its colour).
_TOKEN_CLASSES_JS = """
    (words) => {
        const spans = [...document.querySelectorAll('[data-testid=ide-editor] .view-lines .view-line span span')];
        const out = {};
        for (const w of words) {
            const hit = spans.find(s => s.textContent.replace(/\\u00a0/g, ' ').trim() === w);
            out[w] = hit ? hit.className : null;
        }
        return out;
    }"""


def test_stackql_keywords_are_highlighted_as_keywords(page: Page) -> None:
    open_ide(page)
    # One word per line beside a plain identifier; SELECT (a SQL keyword) is the reference.
    text = "\n".join(f"{w} plainname{i}" for i, w in enumerate(["SELECT", *STACKQL_WORDS]))
    type_sql(page, text)
    words = ["SELECT", "plainname0", *STACKQL_WORDS]
    page.wait_for_function(f"() => Object.values(({_TOKEN_CLASSES_JS})({json.dumps(words)}))"
                           ".every(c => c !== null)")
    classes = page.evaluate(_TOKEN_CLASSES_JS, words)
    keyword = classes["SELECT"]
    assert keyword != classes["plainname0"], classes  # keywords and identifiers are told apart
    assert {w: classes[w] for w in STACKQL_WORDS} == {w: keyword for w in STACKQL_WORDS}, classes
    # The keyword colour of the theme, not merely some class.
    colours = page.evaluate(
        "(words) => { const spans = [...document.querySelectorAll('[data-testid=ide-editor] .view-line span span')];"
        " return words.map(w => getComputedStyle(spans.find(s => s.textContent.trim() === w)).color); }",
        ["SELECT", "SHOW", "plainname0"])
    assert colours[0] == colours[1] != colours[2], colours


# ------------------------------------------------------------------ library


@pytest.fixture
def saved(app_db: sa.Engine) -> Iterator[list[str]]:
    """Three saved queries by different people, updated at different times; removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    now = datetime.now(UTC)
    names = []
    with app_db.begin() as c:
        for i, (who, provider) in enumerate([("ana", "aws"), ("bo", "github"), ("cy", "")]):
            name = f"uic library {tag} {i}"
            names.append(name)
            c.execute(sa.text(
                "INSERT INTO stackql_app.queries (name, description, query_text, provider, created_by, created_at, "
                "updated_at) VALUES (:n, :d, 'SELECT 1', :p, :u, :t, :t)"),
                {"n": name, "d": f"about {i}", "p": provider, "u": who, "t": now - timedelta(minutes=10 - i)})
    yield names
    with app_db.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_app.queries WHERE name = ANY(:n)"), {"n": names})


def _item(library: Locator, name: str) -> Locator:
    return library.get_by_test_id("query-library-item").filter(
        has=library.page.get_by_test_id("query-library-name").get_by_text(name, exact=True))


def test_query_library_lists_every_saved_query_newest_first(page: Page, app_db: sa.Engine,
                                                           saved: list[str]) -> None:
    open_ide(page)
    library = page.get_by_test_id("query-library")
    expect(library).to_be_visible()
    with app_db.connect() as c:
        expected = c.execute(sa.text("SELECT name FROM stackql_app.queries ORDER BY updated_at DESC, id DESC")
                             ).scalars().all()
    expect(library.get_by_test_id("query-library-name")).to_have_text(expected)
    assert [n for n in expected if n in saved] == saved[::-1]
    for i, (name, who, provider) in enumerate(zip(saved, ["ana", "bo", "cy"], ["aws", "github", ""])):
        item = _item(library, name)
        expect(item).to_have_count(1)
        expect(item).to_contain_text(f"about {i}")
        expect(item).to_contain_text(f"{provider} · {who}" if provider else who)


# ------------------------------------------------------------------ an export of a result the server let go


@pytest.fixture(scope="module")
def small_cache_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app with the smallest result cache (16 MB): one large result evicts every other session's results."""
    with another_app(tmp_path_factory.mktemp("small-cache-app"), {"STACKQL_INVENTORY_RESULT_CACHE_MB": "16"},
                     what="the small-cache app") as (server, _):
        yield server


def _tab(browser: Browser, url: str) -> Page:
    page = browser.new_context(base_url=url).new_page()
    page.set_default_timeout(20_000)
    return page


def test_exporting_a_result_the_server_no_longer_holds_says_so_and_stays_on_the_page(
        browser: Browser, small_cache_app: AppServer) -> None:
    """Results live in a memory-capped store shared by every session; another user's large result can evict
    yours. Export used to navigate the tab to the endpoint's raw JSON error, leaving the app."""
    mine, theirs = _tab(browser, small_cache_app.url), _tab(browser, small_cache_app.url)
    try:
        open_ide(mine)
        type_sql(mine, "SELECT item_id, name FROM synthetic.bulk.items WHERE count = 5")
        mine.keyboard.press("Control+Enter")
        expect(mine.get_by_test_id("ide-row-count")).to_have_text("5 rows", timeout=60_000)

        open_ide(theirs)
        type_sql(theirs, "SELECT * FROM synthetic.bulk.items WHERE count = 100000")
        theirs.keyboard.press("Control+Enter")
        expect(theirs.get_by_test_id("ide-row-count")).to_have_text("100,000 rows", timeout=120_000)

        mine.get_by_test_id("ide-export-json").click()
        expect(mine.locator("[data-sonner-toast]")).to_contain_text("This result is no longer held on the server")
        expect(mine).to_have_url(re.compile(r"/ide/?$"))
        expect(mine.get_by_test_id("ide-editor")).to_be_visible()
        # The other session's result is still there and downloads.
        with theirs.expect_download() as download:
            theirs.get_by_test_id("ide-export-csv").click()
        assert download.value.suggested_filename.endswith(".csv")
    finally:
        mine.context.close()
        theirs.context.close()
