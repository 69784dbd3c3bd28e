"""Inventory page in Chromium: the charts draw the seeded figures (rows per run of the selected table, resources
per provider) and sorting the table list by a column reorders it.

The charts are recharts SVGs: the tests read the drawn dots and bars and compare their heights with the
seeded figures (the value axes start at 0, so a mark's height is proportional to its value)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import Locator, Page, expect

from tests.support import inventory as fx

pytestmark = pytest.mark.browser

X_TICKS = ".recharts-xAxis-tick-labels .recharts-cartesian-axis-tick-value"
DOTS = ".recharts-line-dots .recharts-dot"
BARS = ".recharts-bar-rectangle path.recharts-rectangle"

PREFIX = "e2e_uic_"
# table -> (provider of its saved query, rows in the table, rows_written by each successful run, oldest first)
TABLES = {
    "e2e_uic_alpha": ("uicprov_x", 7, [10, 40, 25, 55]),
    "e2e_uic_beta": ("uicprov_y", 30, [30]),
    "e2e_uic_gamma": ("uicprov_x", 2, [5, 20]),
    "e2e_uic_delta": ("uicprov_z", 12, [12]),
}
# Resources per provider: the rows each table's LAST successful run collected, summed by provider.
PROVIDER_TOTALS = {"uicprov_x": 55 + 20, "uicprov_y": 30, "uicprov_z": 12}


@pytest.fixture
def seeded(app_db: sa.Engine) -> Iterator[None]:
    """Four tables with runs (and one failed run that the rows-per-run chart must leave out); removed after."""
    now = datetime.now(UTC)
    with app_db.begin() as c:
        for i, (table, (provider, rows, written)) in enumerate(TABLES.items()):
            qid = fx.add_query(c, f"{table} query", provider)
            sid = fx.add_schedule(c, qid, table, cron="0 * * * *")
            fx.create_table(c, table, "id text, n int")
            fx.insert_rows(c, table, [{"id": f"{table}-{k}", "n": k} for k in range(rows)], 1, now)
            # Refreshed at different times: delta (i=3) newest, alpha oldest.
            base = now - timedelta(hours=10 - i)
            for j, count in enumerate(written):
                fx.add_run(c, table, started_at=base - timedelta(hours=len(written) - j), rows=count,
                           schedule_id=sid, query_id=qid)
            if table == "e2e_uic_alpha":
                fx.add_run(c, table, status="failed", started_at=base - timedelta(minutes=30), schedule_id=sid,
                           query_id=qid, error="AccessDenied")
    try:
        yield
    finally:
        with app_db.begin() as c:
            for table in TABLES:
                c.execute(sa.text(f'DROP TABLE IF EXISTS stackql_inventory."{table}"'))
            c.execute(sa.text("DELETE FROM stackql_app.runs WHERE target_table LIKE :p"), {"p": PREFIX + "%"})
            c.execute(sa.text("DELETE FROM stackql_app.schedules WHERE target_table LIKE :p"), {"p": PREFIX + "%"})
            c.execute(sa.text("DELETE FROM stackql_app.queries WHERE name LIKE :p"), {"p": PREFIX + "%"})


def _names(page: Page) -> list[str]:
    return page.get_by_test_id("inventory-table-row").evaluate_all("rows => rows.map(r => r.dataset.name)")


def _expect_order(page: Page, expected: list[str]) -> None:
    page.wait_for_function(
        "(want) => JSON.stringify([...document.querySelectorAll('[data-testid=inventory-table-row]')]"
        ".map(r => r.dataset.name)) === JSON.stringify(want)", arg=expected, timeout=15_000)


def _sort_by(page: Page, label: str) -> None:
    page.get_by_test_id("inventory-sort").click()
    page.get_by_role("option", name=f"Sort by {label}", exact=True).click()
    expect(page.get_by_test_id("inventory-sort")).to_have_text(f"Sort by {label}")


def test_sorting_the_table_list_by_a_column_changes_its_order(page: Page, seeded: None) -> None:
    page.goto("/inventory")
    page.get_by_test_id("inventory-search").fill(PREFIX)
    expect(page.get_by_test_id("inventory-count")).to_have_text(re.compile(r"^4 (of [\d,]+ )?tables$"))
    by_name = sorted(TABLES)
    _expect_order(page, by_name)

    by_rows = sorted(TABLES, key=lambda t: TABLES[t][1])  # gamma 2, alpha 7, delta 12, beta 30
    _sort_by(page, "rows")
    _expect_order(page, by_rows)
    assert by_rows != by_name
    page.get_by_test_id("inventory-sort-direction").click()
    _expect_order(page, by_rows[::-1])

    # Last refresh, still descending: the table seeded last refreshed most recently.
    _sort_by(page, "last refresh")
    _expect_order(page, ["e2e_uic_delta", "e2e_uic_gamma", "e2e_uic_beta", "e2e_uic_alpha"])
    page.get_by_test_id("inventory-sort-direction").click()
    _expect_order(page, ["e2e_uic_alpha", "e2e_uic_beta", "e2e_uic_gamma", "e2e_uic_delta"])

    _sort_by(page, "name")
    _expect_order(page, by_name)
    assert _names(page) == by_name


_HEIGHTS_JS = """
    ([sel, marks, top]) => {
        const el = document.querySelector(sel);
        const axis = el && el.querySelector('.recharts-xAxis line.recharts-cartesian-axis-line');
        if (!axis) return [];
        const base = parseFloat(axis.getAttribute('y1'));
        return [...el.querySelectorAll(marks)]
          .map(m => ({x: parseFloat(m.getAttribute(top === 'cy' ? 'cx' : 'x')), y: parseFloat(m.getAttribute(top))}))
          .sort((a, b) => a.x - b.x).map(p => base - p.y);
    }"""
# True once the marks' heights are proportional to `values` (within 2 px).
_PROPORTIONAL_JS = f"""
    ([sel, marks, top, values]) => {{
        const heights = ({_HEIGHTS_JS})([sel, marks, top]);
        if (heights.length !== values.length) return false;
        const max = Math.max(...values);
        const scale = heights[values.indexOf(max)] / max;
        return scale > 0 && heights.every((h, i) => Math.abs(h - values[i] * scale) <= 2);
    }}"""


def _ticks(chart: Locator, axis: str) -> list[str]:
    return chart.evaluate(
        "(el, axis) => [...el.querySelectorAll(`.recharts-${axis}-tick-labels .recharts-cartesian-axis-tick-value`)]"
        ".map(t => t.textContent)", axis)


def _expect_marks_proportional(page: Page, testid: str, marks: str, top: str, values: list[int]) -> None:
    """Wait until the marks, left to right, stand as high as `values` say, to scale; the charts animate from
    the previous series first."""
    sel = f'[data-testid="{testid}"]'
    try:
        page.wait_for_function(_PROPORTIONAL_JS, arg=[sel, marks, top, values], timeout=15_000)
    except Exception as e:
        heights = page.evaluate(_HEIGHTS_JS, [sel, marks, top])
        raise AssertionError(f"{testid}: mark heights {heights} are not proportional to {values}") from e


def test_rows_per_run_chart_plots_each_successful_run_of_the_selected_table(page: Page, seeded: None) -> None:
    page.goto("/inventory")
    page.locator('[data-testid="inventory-table-row"][data-name="e2e_uic_alpha"]').click()
    expect(page.get_by_test_id("inventory-selected")).to_have_text("e2e_uic_alpha")
    page.get_by_test_id("inventory-subtab-chart").click()
    chart = page.get_by_test_id("inventory-chart-runs")
    dots = chart.locator(DOTS)
    written = TABLES["e2e_uic_alpha"][2]
    expect(dots).to_have_count(len(written))  # the failed run is not a point
    expect(chart.locator(X_TICKS)).to_have_count(len(written))
    _expect_marks_proportional(page, "inventory-chart-runs", DOTS, "cy", written)

    # Another table: the series follows the selection.
    page.locator('[data-testid="inventory-table-row"][data-name="e2e_uic_gamma"]').click()
    expect(page.get_by_test_id("inventory-selected")).to_have_text("e2e_uic_gamma")
    page.get_by_test_id("inventory-subtab-chart").click()
    expect(dots).to_have_count(2)
    _expect_marks_proportional(page, "inventory-chart-runs", DOTS, "cy", TABLES["e2e_uic_gamma"][2])


# Per x-axis label of a bar chart, the height of the bar standing on it (0 when none is drawn: a zero value).
_BAR_PER_LABEL_JS = """
    (el) => {
        const ticks = [...el.querySelectorAll('.recharts-xAxis-tick-labels .recharts-cartesian-axis-tick-value')]
          .map(t => ({label: t.textContent, x: parseFloat(t.getAttribute('x'))}));
        const bars = [...el.querySelectorAll('.recharts-bar-rectangle path.recharts-rectangle')]
          .map(b => ({centre: parseFloat(b.getAttribute('x')) + parseFloat(b.getAttribute('width')) / 2,
                      height: parseFloat(b.getAttribute('height'))}));
        const orphans = bars.filter(b => !ticks.some(t => Math.abs(t.x - b.centre) < 1)).length;
        return {orphans, bars: ticks.map(t => [t.label,
                (bars.find(b => Math.abs(t.x - b.centre) < 1) || {height: 0}).height])};
    }"""


def test_resources_per_provider_chart_has_a_bar_per_provider_sized_by_its_last_runs(page: Page,
                                                                                  seeded: None) -> None:
    page.goto("/inventory")
    expect(page.locator('[data-testid="inventory-table-row"][data-name="e2e_uic_alpha"]')).to_be_visible()
    page.get_by_test_id("inventory-tab-charts").click()
    chart = page.get_by_test_id("inventory-chart-providers")
    expect(chart.locator(X_TICKS).filter(has_text="uicprov_")).to_have_count(len(PROVIDER_TOTALS))
    labels = _ticks(chart, "xAxis")
    # Other tests' leftovers may add providers of their own; ours come largest first.
    ours = [label for label in labels if label.startswith("uicprov_")]
    assert ours == sorted(PROVIDER_TOTALS, key=lambda p: -PROVIDER_TOTALS[p]), labels
    # The bars grow in (animated): wait until ours stand as high as their totals say, to scale.
    values = [PROVIDER_TOTALS[p] for p in ours]
    try:
        page.wait_for_function(
            f"""([ours, values]) => {{
                const el = document.querySelector('[data-testid="inventory-chart-providers"]');
                const heights = new Map(({_BAR_PER_LABEL_JS})(el).bars);
                const h = ours.map(p => heights.get(p) || 0), max = Math.max(...values);
                const scale = h[values.indexOf(max)] / max;
                return scale > 0 && h.every((x, i) => Math.abs(x - values[i] * scale) <= 2);
            }}""", arg=[ours, values], timeout=15_000)
    except Exception as e:
        raise AssertionError(f"bar heights {chart.evaluate(_BAR_PER_LABEL_JS)} not proportional to "
                             f"{dict(zip(ours, values))}") from e
    drawn = chart.evaluate(_BAR_PER_LABEL_JS)
    assert drawn["orphans"] == 0, drawn  # every bar stands on a provider's label
    heights = dict(drawn["bars"])
    assert all(heights[p] > 0 for p in ours), drawn

    # The tooltip names the figure.
    chart.locator(BARS).nth(_bar_indexes(chart, ["uicprov_x"])[0]).hover()
    expect(chart.locator(".recharts-tooltip-wrapper")).to_contain_text("uicprov_x")
    expect(chart.locator(".recharts-tooltip-wrapper")).to_contain_text("resources : 75")


def _bar_indexes(chart: Locator, labels: list[str]) -> list[int]:
    """Left-to-right indexes, among the drawn bars, of the bars standing on `labels`."""
    drawn = [label for label, height in chart.evaluate(_BAR_PER_LABEL_JS)["bars"] if height > 0]
    return [drawn.index(label) for label in labels]
