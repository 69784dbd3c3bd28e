"""Benchmark: the engine's warm interactive path vs a bare `stackql exec`, and credential isolation of batch runs.

Run from the repository root:  .venv/bin/python benchmarks/engine_overhead.py [--queries 50] [--threads 20]

By default it drives the stackql stand-in (tests/fakes); `--download-dir DIR` points it at a folder holding a
real `stackql` instead (the isolation check then needs the stand-in's synthetic provider and is skipped).
The last line is machine-readable: `interactive/exec=<ratio of median per-query times> isolation=<ok|FAIL>`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stackql_inventory import config  # noqa: E402
from stackql_inventory.services.engine import Engine, QueryLimits  # noqa: E402
from tests.fakes.install import install_fake_stackql, read_invocations  # noqa: E402

QUERY = "SELECT instanceId, instanceType, region FROM aws.ec2.instances WHERE region = 'us-east-1'"
LITERAL_QUERY = "SELECT 'i-0abc' AS instanceId, 't3.micro' AS instanceType, 'us-east-1' AS region"
CREDENTIALS_QUERY = ("SELECT env_var, sha256 FROM synthetic.env.credentials "
                     "WHERE names = 'AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,GOOGLE_CREDENTIALS'")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def overhead(eng: Engine, query: str, env: dict[str, str], n: int) -> dict[str, float]:
    """Median seconds per query: interactive (warm srv), batch (engine exec), bare `stackql exec`."""
    binary = eng.binary()
    argv = [binary.path, "exec", query, "--output", "json", "--approot", str(eng.app_root)]
    child_env = {**config.child_base_env(), **env}
    eng.run(query, env)  # start the warm server (not part of the per-query figure)
    subprocess.run(argv, env=child_env, capture_output=True, check=True)  # providers installed, caches warm

    def bare() -> None:
        proc = subprocess.run(argv, env=child_env, capture_output=True, text=True, check=True)
        if not proc.stdout.startswith("["):
            raise SystemExit(f"bare exec failed: {proc.stderr}")

    interactive = [timed(lambda: eng.run(query, env)) for _ in range(n)]
    batch = [timed(lambda: eng.run(query, env, mode="batch")) for _ in range(n)]
    exec_times = [timed(bare) for _ in range(n)]
    return {"interactive": statistics.median(interactive), "batch": statistics.median(batch),
            "exec": statistics.median(exec_times)}


def isolation(eng: Engine, threads: int, recorded: Path | None) -> tuple[bool, list[str], float]:
    """`threads` concurrent batch runs with different credentials; each child must see exactly its own."""
    environ_before = dict(os.environ)
    envs = [{
        "AWS_ACCESS_KEY_ID": f"AKIA{n:016d}",
        "AWS_SECRET_ACCESS_KEY": f"secret-{n}-'$HOME'-`id`-\"q\"",
        "GOOGLE_CREDENTIALS": f'{{"type": "service_account", "private_key_id": "key-{n}", "n": {n}}}',
    } for n in range(threads)]
    results: dict[int, object] = {}

    def work(n: int) -> None:
        try:
            results[n] = eng.run(CREDENTIALS_QUERY, envs[n], QueryLimits(timeout_s=120), mode="batch")
        except Exception as exc:  # reported below
            results[n] = exc

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - started

    problems = []
    for n, env in enumerate(envs):
        res = results.get(n)
        if isinstance(res, Exception) or res is None:
            problems.append(f"thread {n}: {res!r}")
            continue
        seen = dict(res.rows)
        if seen != {k: sha(v) for k, v in env.items()}:
            problems.append(f"thread {n} saw other credentials")
    if recorded is not None:
        wanted = sorted(tuple(sorted((k, sha(v)) for k, v in env.items())) for env in envs)
        execs = [r for r in read_invocations(recorded) if r["argv"][:2] == ["exec", CREDENTIALS_QUERY]]
        got = sorted(tuple(sorted((k, h) for k, h in r["credential_sha256"].items() if k in envs[0]))
                     for r in execs)
        if got != wanted:
            problems.append("the invocation record does not show one child per credential set")
        values = [v for env in envs for v in env.values()]
        if any(v in " ".join(r["argv"]) for r in execs for v in values):
            problems.append("a credential value appeared on a command line")
    if dict(os.environ) != environ_before or any(k in os.environ for k in envs[0]):
        problems.append("the app process environment changed")
    return not problems, problems, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--download-dir", type=Path, help="folder holding a real stackql (default: the stand-in)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stackql-bench-") as tmp:
        root = Path(tmp)
        fake = args.download_dir is None
        download_dir = root / "bin" if fake else args.download_dir
        if fake:
            install_fake_stackql(download_dir, record=True)
        eng = Engine(download_dir, root / "approot")
        try:
            binary = eng.binary()
            print(f"stackql {binary.version} ({'stand-in' if fake else binary.path}), {os.cpu_count()} cpus")
            query, env = (QUERY, {"AWS_ACCESS_KEY_ID": "AKIABENCH", "AWS_SECRET_ACCESS_KEY": "bench"}) if fake \
                else (LITERAL_QUERY, {})
            medians = overhead(eng, query, env, args.queries)
            ratio = medians["interactive"] / medians["exec"]
            print(f"median per query over {args.queries}: interactive {medians['interactive'] * 1000:.2f} ms, "
                  f"batch (engine exec) {medians['batch'] * 1000:.2f} ms, bare stackql exec "
                  f"{medians['exec'] * 1000:.2f} ms")
            if fake:
                ok, problems, wall = isolation(eng, args.threads, download_dir)
                print(f"{args.threads} concurrent batch runs with distinct credentials: {wall:.2f} s wall, "
                      f"{'each child saw exactly its own values' if ok else '; '.join(problems)}")
                verdict = "ok" if ok else "FAIL"
            else:
                verdict = "FAIL"
                print("isolation check needs the stand-in's synthetic provider: not run")
        finally:
            eng.close()
    print(f"interactive/exec={ratio:.3f} isolation={verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
