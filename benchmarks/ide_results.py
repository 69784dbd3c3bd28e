"""Benchmark: IDE results of 10k and 100k rows — time from the engine's result to the first rows visible in
Chromium, bytes sent to the browser, and Python memory held per session.

Run from the repository root:  .venv/bin/python benchmarks/ide_results.py [--runs 5]

It starts the app in production mode on the stackql stand-in (tests/fakes), as the browser tests do, and
drives it with Playwright and the system Chromium. Each figure is the median of `--runs` runs.
- first rows: browser clock when row 0's first cell has text, minus the server's clock when the engine
  returned (the grid's `data-engine-done`); same machine, same clock.
- bytes to the browser: websocket frames received + HTTP bodies of /api/ide/results requests, from Run
  until 1 s after the first rows show. Baseline: the whole result as JSON (what shipping it in state costs).
- memory per session: the result store's rows after compaction (tracemalloc, in this process, on the same
  engine and query), against the engine's rows as tuples (keeping the QueryResult).
The last line is machine-readable: `first_rows_100k_s=<seconds> bytes_to_browser_100k=<bytes>`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from stackql_inventory.services.engine import Engine, QueryLimits  # noqa: E402
from stackql_inventory.services.result_store import ResultStore  # noqa: E402
from tests.fakes.install import install_fake_stackql  # noqa: E402
from tests.support.app_server import start_app  # noqa: E402
from tests.support.ide import open_ide, type_sql  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SIZES = (10_000, 100_000)
FIRST_CELL = ("() => { const c = document.querySelector('[data-testid=ide-results] .ag-row[row-index=\"0\"] .ag-cell');"
              " return c !== null && c.textContent.trim().length > 0; }")


def query(n: int, seed: int) -> str:
    return f"SELECT * FROM synthetic.bulk.items WHERE count = {n} AND seed = {seed}"


def browser_runs(url: str, runs: int) -> dict[int, dict[str, float]]:
    """Median first-rows seconds and bytes to the browser per size."""
    out: dict[int, dict[str, float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(base_url=url, viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(120_000)
        received = {"ws": 0, "http": 0}
        page.on("websocket", lambda ws: ws.on(
            "framereceived", lambda f: received.__setitem__("ws", received["ws"] + len(f))))
        page.on("requestfinished", lambda r: received.__setitem__(
            "http", received["http"] + r.sizes()["responseBodySize"]) if "/api/ide/results/" in r.url else None)
        open_ide(page)
        type_sql(page, "SELECT item_id FROM synthetic.bulk.items WHERE count = 10")  # warm the server
        page.keyboard.press("Control+Enter")
        page.wait_for_function(FIRST_CELL)
        for n in SIZES:
            firsts, sent = [], []
            for run in range(runs):
                type_sql(page, query(n, run + 1))
                page.wait_for_timeout(400)  # the debounced text has reached the server
                before = received["ws"] + received["http"]
                previous = page.get_by_test_id("ide-results").get_attribute("data-engine-done")
                page.keyboard.press("Control+Enter")
                # Checked every animation frame: a new result (its engine time changed) with row 0 drawn.
                visible = page.wait_for_function(
                    "(prev) => { const g = document.querySelector('[data-testid=ide-results]');"
                    " if (!g || g.getAttribute('data-engine-done') === prev) return false;"
                    " const c = g.querySelector('.ag-row[row-index=\"0\"] .ag-cell');"
                    " return c !== null && c.textContent.trim().length > 0 ? Date.now() : false; }",
                    arg=previous, polling="raf").json_value()
                done = int(page.get_by_test_id("ide-results").get_attribute("data-engine-done"))
                assert page.get_by_test_id("ide-row-count").inner_text() == f"{n:,} rows"
                page.wait_for_timeout(1000)
                firsts.append((visible - done) / 1000)
                sent.append(received["ws"] + received["http"] - before)
                print(f"  {n:>7,} rows run {run + 1}: first rows {firsts[-1]:.3f} s, {sent[-1]:,} bytes", flush=True)
            out[n] = {"first_s": statistics.median(firsts), "bytes": statistics.median(sent)}
        browser.close()
    return out


def memory_per_session(download_dir: Path, work: Path) -> dict[int, dict[str, float]]:
    """Bytes Python holds for one result: compacted store rows vs the engine's tuples; and the full JSON size."""
    eng = Engine(download_dir, work / "approot-mem")
    out: dict[int, dict[str, float]] = {}
    try:
        eng.run(query(10, 1), {})  # the server, its connections and caches exist before measuring
        for n in SIZES:
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            result = eng.run(query(n, 1), {}, QueryLimits(row_limit=n, timeout_s=300))
            gc.collect()
            tuples = tracemalloc.get_traced_memory()[0] - base  # what keeping the QueryResult holds
            full_json = len(orjson.dumps([dict(zip(result.columns, r)) for r in result.rows]))
            store = ResultStore(max_bytes=1 << 34, per_session=3, compact_delay_s=None)
            stored = store.put(session="bench", owner="bench", columns=result.columns, rows=result.rows)
            del result
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            out[n] = {"store_bytes": held, "tuple_bytes": tuples, "accounted": stored.nbytes, "full_json": full_json}
            del stored, store
            gc.collect()
    finally:
        eng.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ide-bench-"))
    download_dir = work / "stackql"
    install_fake_stackql(download_dir)

    print("memory per session (this process, tracemalloc)…", flush=True)
    memory = memory_per_session(download_dir, work)

    print("starting the app (production build)…", flush=True)
    server = start_app({"STACKQL_INVENTORY_DATA_DIR": str(work / "data"), "STACKQL_DOWNLOAD_DIR": str(download_dir)},
                       work / "app.log")
    try:
        timing = browser_runs(server.url, args.runs)
    finally:
        server.stop()

    print()
    print(f"{'rows':>8} | {'first rows (median)':>19} | {'bytes to browser':>16} | {'whole result as JSON':>20} | "
          f"{'held per session':>16} | {'engine tuples':>13}")
    for n in SIZES:
        t, m = timing[n], memory[n]
        print(f"{n:>8,} | {t['first_s']:>17.3f} s | {int(t['bytes']):>16,} | {m['full_json']:>20,} | "
              f"{m['store_bytes'] / 2**20:>13.1f} MiB | {m['tuple_bytes'] / 2**20:>9.1f} MiB")
    big_t, big_m = timing[100_000], memory[100_000]
    print(f"bytes to browser / whole result (100k): {big_t['bytes'] / big_m['full_json']:.4f}; "
          f"memory held / engine tuples (100k): {big_m['store_bytes'] / big_m['tuple_bytes']:.2f}")
    print(f"first_rows_100k_s={big_t['first_s']:.3f} bytes_to_browser_100k={int(big_t['bytes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
