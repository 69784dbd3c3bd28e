"""Inventory write throughput: the runner's writer vs `DataFrame.to_sql` vs a raw `COPY FROM STDIN`.

Data: 200,000 rows x 12 columns (strings, integers, decimals, booleans, ISO timestamps, JSON text)
from the stackql stand-in (`synthetic.bulk.items`), generated once with `--output jsonl` into a
file, i.e. exactly the JSON Lines stackql prints for the runner (keys sorted, every value a string
or null). Generation is not timed.

What each contender is timed for (one process run, methods interleaved, median of 5 rounds; a
`CHECKPOINT` before every timed step and a `VACUUM` of the writer's table before its runs, as
autovacuum does between scheduled runs, so WAL flushes and dead rows of one method don't bill the
next; and no timed step starts while an autovacuum worker runs):

- writer (replace): the production path end to end: `open_target` (advisory lock), then
  `engine.stream` running a "stackql" that replays the JSONL file (`cat`), its blocks of JSON
  Lines turned into COPY text by pyarrow (the writer's `JsonLinesToCopy`), and `TargetSession.write` in
  replace mode (DELETE + COPY of the 12 columns plus `_stackql_run_id`/`_stackql_collected_at` in
  one transaction, provenance comment, commit), into
  the table created by an untimed first run (the steady state of a schedule). The runner's
  after-commit steps (ANALYZE, refreshing dependent materialized views; none exist here) are not
  part of the write and not timed.
- copy (the practical limit): the same rows pre-serialised to CSV in memory, `COPY … FROM STDIN
  (FORMAT csv)` into an empty table with the same 12 column types, commit. Its TRUNCATE is not
  timed.
- to_sql default / to_sql multi: `DataFrame.to_sql(if_exists="replace", index=False)` of the same
  rows as a typed DataFrame (built untimed with the engine's `to_dataframe`), SQLAlchemy engine,
  psycopg2; `method="multi"` with `chunksize=1000` (without a chunk size pandas builds one
  2.4-million-parameter statement).
- history: `TargetSession.write` in history mode keyed on `item_id`, each round on a result where
  1% of the rows (2,000, a different block each round) changed since the previous round.
- writer SQL only (a diagnostic, not a contender): the server's share of the writer's work, i.e.
  the writer's own statements (DELETE, then COPY of the same 14 columns in the text format
  the writer sends, pre-encoded by its CopySource, commit) into a table like the writer's. No stackql,
  no parsing, no encoding: the writer cannot be faster than this on the same server.

Also printed: the machine's CPU count and load average before and after, and the CPU time the
writer's own process used per round (reading and converting stackql's output; the server and
stackql are separate processes). On a machine with few cores the writer's Python work and the server's COPY compete for
the same CPUs, while the raw COPY has next to no client work.

Last line (machine-readable): `writer/copy=<copy time / writer time>` (throughput ratio, higher is
faster; target >= 0.8), `writer/to_sql=<faster to_sql time / writer time>` (target >= 10) and
`history/replace=<history time / writer replace time>` (a time ratio).

Run: `.venv/bin/python benchmarks/write_throughput.py [--rows N] [--rounds N] [--database-url URL]`
(default: a throwaway embedded PostgreSQL 16 under a temp dir).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import orjson
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stackql_inventory.db import engine as db_engine  # noqa: E402
from stackql_inventory.services import copy_source  # noqa: E402
from stackql_inventory.services import engine as stackql_engine  # noqa: E402
from stackql_inventory.services import inventory_writer  # noqa: E402

COLUMNS = ["item_id", "name", "category", "quantity", "price", "weight_kg", "is_active", "in_stock",
           "created_at", "updated_at", "attributes", "tags"]
SCHEMA = "stackql_inventory"
REPLAY_BINARY = """#!/bin/sh
# A "stackql" that prints a pre-generated result: JSON Lines from $STACKQL_BENCH_JSONL.
case "$1" in
  --version) printf 'stackql v0.10.0 linux (replay1)\\nBuildDate: 2026-01-01\\nhttps://stackql.io\\n' ;;
  exec) exec cat "$STACKQL_BENCH_JSONL" ;;
  *) echo "replay stackql: unsupported command $1" >&2; exit 1 ;;
esac
"""


def generate_jsonl(work: Path, rows: int) -> Path:
    """The stand-in's JSON Lines for `rows` synthetic items (not timed)."""
    from tests.fakes.install import install_fake_stackql

    binary = install_fake_stackql(work / "fake-bin")
    query = f"SELECT {', '.join(COLUMNS)} FROM synthetic.bulk.items WHERE count = {rows}"
    out = work / "base.jsonl"
    with out.open("wb") as f:
        subprocess.run([str(binary), "exec", query, "--output", "jsonl"], stdout=f, check=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    return out


def changed_variants(base: Path, rounds: int, block: int) -> list[Path]:
    """Round r's result: blocks 0..r of the rows renamed (so each round changes one new block)."""
    lines = base.read_bytes().splitlines()
    objs = [orjson.loads(line) for line in lines]
    variants = []
    for r in range(rounds):
        for obj in objs[r * block:(r + 1) * block]:
            obj["name"] = obj["name"] + f" (changed in round {r})"
        path = base.with_name(f"history-{r}.jsonl")
        path.write_bytes(b"\n".join(orjson.dumps(o, option=orjson.OPT_SORT_KEYS) for o in objs) + b"\n")
        variants.append(path)
    return variants


def parse_rows(path: Path) -> list[tuple]:
    return [tuple(map(orjson.loads(line).get, COLUMNS)) for line in path.read_bytes().splitlines()]


def to_csv(rows: list[tuple]) -> str:
    """PostgreSQL CSV: NULL unquoted and empty, every other value quoted."""
    buf = io.StringIO()
    quote = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="")
    lines = []
    for row in rows:
        cells = []
        for v in row:
            if v is None:
                cells.append("")
            else:
                buf.seek(0)
                buf.truncate()
                quote.writerow([v])
                cells.append(buf.getvalue())
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


class Bench:
    def __init__(self, url: str, replay_dir: Path, approot: Path):
        self.engine = sa.create_engine(url)
        db_engine.set_engine(self.engine)
        self.stackql = stackql_engine.Engine(replay_dir, approot)
        self.query = f"SELECT {', '.join(COLUMNS)} FROM synthetic.bulk.items WHERE count = 200000"
        self.run_id = 0
        self.waited_s = 0.0  # time spent waiting for autovacuum before timed steps

    def sql(self, statement: str, autocommit: bool = False) -> None:
        opts = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        with self.engine.connect().execution_options(**opts) as c:
            c.execute(sa.text(statement))
            if not autocommit:
                c.commit()

    def quiesce(self, vacuum: str | None = None) -> None:
        if vacuum:
            self.sql(f"VACUUM {vacuum}", autocommit=True)
        self.settle()
        self.sql("CHECKPOINT", autocommit=True)

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait until no autovacuum worker runs (the previous method's tables trigger them; one
        running during a timed step takes CPU from whichever method happens to be measured)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.engine.connect() as c:
                busy = c.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")).scalar()
            if not busy:
                return
            self.waited_s += 0.05
            time.sleep(0.05)

    def writer(self, table: str, jsonl: Path, mode: str = "replace") -> float:
        self.run_id += 1
        t0 = time.perf_counter()
        with inventory_writer.open_target(SCHEMA, table) as target:
            with self.stackql.stream(self.query, {"STACKQL_BENCH_JSONL": str(jsonl)}) as stream:
                result = target.write(stream.columns, stream, mode=mode, run_id=self.run_id,
                                      collected_at=datetime.now(timezone.utc),
                                      key_columns=("item_id",) if mode == "history" else ())
        elapsed = time.perf_counter() - t0
        assert result.rows_written > 0
        return elapsed

    def writer_cpu(self, table: str, jsonl: Path) -> tuple[float, float]:
        """(wall seconds, this process's CPU seconds) of a replace write."""
        cpu = time.process_time()
        wall = self.writer(table, jsonl)
        return wall, time.process_time() - cpu

    def writer_sql(self, table: str, copy_text: bytes, columns: list[str]) -> float:
        """The writer's statements alone: DELETE + COPY (text format, pre-encoded) + commit."""
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            t0 = time.perf_counter()
            cur.execute(f"DELETE FROM {SCHEMA}.{table}")
            cur.copy_expert(f'COPY {SCHEMA}.{table} ({", ".join(columns)}) FROM STDIN',
                            io.BytesIO(copy_text), size=1 << 20)
            raw.commit()
            return time.perf_counter() - t0
        finally:
            raw.close()

    def raw_copy(self, table: str, csv_text: str) -> float:
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            t0 = time.perf_counter()
            cur.copy_expert(f'COPY {SCHEMA}.{table} ({", ".join(COLUMNS)}) FROM STDIN (FORMAT csv)',
                            io.StringIO(csv_text), size=1 << 20)
            raw.commit()
            return time.perf_counter() - t0
        finally:
            raw.close()

    def to_sql(self, frame, table: str, **kwargs) -> float:
        t0 = time.perf_counter()
        frame.to_sql(table, self.engine, schema=SCHEMA, if_exists="replace", index=False, **kwargs)
        return time.perf_counter() - t0


def writer_copy_text(rows: list[tuple], run_id: int) -> bytes:
    """The COPY text the writer sends for these rows (its CopySource, with its two bookkeeping columns)."""
    source = copy_source.CopySource.from_rows(rows, COLUMNS, (str(run_id), datetime.now(timezone.utc).isoformat()))
    text = b"".join(iter(source.read, b""))
    source.join()
    return text


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cpus={os.cpu_count()} load(1/5/15 min)={load}"


def start_postgres(work: Path) -> tuple[str, Callable[[], None]]:
    import pgserver

    server = pgserver.get_server(work / "pg", cleanup_mode="delete")
    return server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1), server.cleanup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--database-url", help="SQLAlchemy URL of a PostgreSQL to use instead of a throwaway one")
    args = ap.parse_args()

    print(f"machine at start: {machine()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="write-bench-"))
    stop = None
    try:
        url = args.database_url
        if not url:
            url, stop = start_postgres(work)
        print(f"generating {args.rows} rows of stackql JSON Lines …", flush=True)
        base = generate_jsonl(work, args.rows)
        block = max(1, args.rows // 100)
        variants = changed_variants(base, args.rounds, block)
        rows = parse_rows(base)
        csv_text = to_csv(rows)
        frame = stackql_engine.to_dataframe(COLUMNS, rows)
        print(f"input: {base.stat().st_size / 1e6:.1f} MB JSON Lines, {len(csv_text) / 1e6:.1f} MB CSV", flush=True)

        replay = work / "replay-bin"
        replay.mkdir()
        (replay / "stackql").write_text(REPLAY_BINARY)
        (replay / "stackql").chmod(0o755)
        bench = Bench(url, replay, work / "approot")
        bench.sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")

        # Untimed set-up: the writer creates its tables (types inferred from the data); the raw COPY
        # target gets the very same column types.
        bench.writer("bench_writer", base)
        bench.writer("bench_history", base, mode="history")
        with bench.engine.connect() as c:
            types = dict(c.execute(sa.text(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                f"'{SCHEMA}.bench_writer'::regclass AND attnum > 0")).all())
        bench.sql(f"CREATE TABLE {SCHEMA}.bench_copy ({', '.join(f'{c} {types[c]}' for c in COLUMNS)})")
        bench.sql(f"CREATE TABLE {SCHEMA}.bench_writer_sql (LIKE {SCHEMA}.bench_writer)")
        copy_text = writer_copy_text(rows, 1)
        sql_columns = [*COLUMNS, "_stackql_run_id", "_stackql_collected_at"]
        bench.writer_sql("bench_writer_sql", copy_text, sql_columns)

        times: dict[str, list[float]] = {
            k: [] for k in ("copy", "writer", "writer_sql", "to_sql", "to_sql_multi", "history")}
        writer_cpu: list[float] = []
        for r in range(args.rounds):
            bench.sql(f"TRUNCATE {SCHEMA}.bench_copy")
            bench.quiesce()
            times["copy"].append(bench.raw_copy("bench_copy", csv_text))
            bench.quiesce(vacuum=f"{SCHEMA}.bench_writer")
            wall, cpu = bench.writer_cpu("bench_writer", base)
            times["writer"].append(wall)
            writer_cpu.append(cpu)
            bench.quiesce(vacuum=f"{SCHEMA}.bench_writer_sql")
            times["writer_sql"].append(bench.writer_sql("bench_writer_sql", copy_text, sql_columns))
            bench.quiesce()
            times["to_sql"].append(bench.to_sql(frame, "bench_to_sql"))
            bench.quiesce()
            times["to_sql_multi"].append(bench.to_sql(frame, "bench_to_sql_multi", method="multi", chunksize=1000))
            bench.quiesce(vacuum=f"{SCHEMA}.bench_history")
            times["history"].append(bench.writer("bench_history", variants[r], mode="history"))
            print(f"round {r + 1}: " + " ".join(f"{k}={v[-1]:.3f}s" for k, v in times.items()), flush=True)

        with bench.engine.connect() as c:
            changed = c.execute(sa.text(
                f"SELECT count(*) FROM {SCHEMA}.bench_history WHERE _valid_to IS NOT NULL")).scalar()
            assert changed == args.rounds * block, changed  # each round closed exactly its 1%
            assert c.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.bench_writer")).scalar() == args.rows

        med = {k: statistics.median(v) for k, v in times.items()}
        print()
        print(f"{'method':<34}{'median s':>10}{'min s':>9}{'max s':>9}{'rows/s':>12}")
        labels = {"copy": "raw COPY FROM STDIN (CSV)", "writer": "writer, replace (JSONL → COPY)",
                  "writer_sql": "writer's SQL only (diagnostic)",
                  "to_sql": "DataFrame.to_sql (default)", "to_sql_multi": "DataFrame.to_sql (method=multi)",
                  "history": "writer, history (1% changed)"}
        for key, label in labels.items():
            v = times[key]
            print(f"{label:<34}{med[key]:>10.3f}{min(v):>9.3f}{max(v):>9.3f}{args.rows / med[key]:>12,.0f}")
        best_to_sql = min(med["to_sql"], med["to_sql_multi"])
        print()
        print(f"writer's own CPU per round (read + convert, this process): median "
              f"{statistics.median(writer_cpu):.3f}s ({statistics.median(writer_cpu) / args.rows * 1e6:.2f} µs/row); "
              f"server-side bound writer_sql/copy: copy/writer_sql={med['copy'] / med['writer_sql']:.2f}")
        print(f"waited {bench.waited_s:.1f}s in all for autovacuum workers to finish before timed steps")
        print(f"machine at end: {machine()}")
        print()
        print(f"writer/copy={med['copy'] / med['writer']:.2f} writer/to_sql={best_to_sql / med['writer']:.1f} "
              f"history/replace={med['history'] / med['writer']:.2f}")
    finally:
        db_engine.set_engine(None)
        if stop is not None:
            stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
