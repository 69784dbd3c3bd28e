"""Benchmark: validating provider mappings on the Databricks backend, one `list_secrets` call at a time vs in parallel.

Run from the repository root:  .venv/bin/python benchmarks/provider_validate.py [--mappings 24] [--latency-ms 40]

The Providers page validates every mapping when it opens. Each check is one `list_secrets` request (metadata
only), so the wall time is dominated by the workspace's round-trip time; the fake workspace (tests/fakes) is
given an artificial per-request latency to stand for it. Real databricks-sdk, no database needed (mappings
are passed in). The last line is machine-readable: `sequential_s=<median> parallel_s=<median> speedup=<ratio>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stackql_inventory.services import providers  # noqa: E402
from stackql_inventory.services.secrets import DatabricksSecrets  # noqa: E402
from tests.fakes.databricks_api import FakeDatabricks  # noqa: E402


class SlowWorkspace(FakeDatabricks):
    """The fake workspace, answering each request after `latency_s` (a stand-in for the network)."""

    latency_s = 0.0

    def _handle(self, *args, **kwargs):  # noqa: ANN002, ANN003
        time.sleep(self.latency_s)
        return super()._handle(*args, **kwargs)


def mappings(n: int) -> list[providers.MappingView]:
    """n mappings over two scopes; every third secret is missing."""
    return [providers.MappingView(i + 1, f"p{i % 4}", f"VAR_{i}", f"scope-{i % 2}", f"key-{i}", "bench")
            for i in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mappings", type=int, default=24)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    items = mappings(args.mappings)
    with SlowWorkspace() as fake:
        for scope in ("scope-0", "scope-1"):
            fake.add_scope(scope)
        for m in items:
            if m.id % 3:
                fake.put_secret(m.secret_scope, m.secret_key, "x")
        backend = DatabricksSecrets(fake.client())
        backend.list_keys("scope-0")  # connect and resolve the host config before timing
        fake.latency_s = args.latency_ms / 1000
        expected = None
        times: dict[str, list[float]] = {"sequential": [], "parallel": []}
        for _ in range(args.runs):
            for name, workers in (("sequential", 1), ("parallel", 8)):
                started = time.perf_counter()
                statuses = providers.validate(backend=backend, items=items, workers=workers)
                times[name].append(time.perf_counter() - started)
                states = [s.state for s in statuses]
                if expected is None:
                    expected = states
                if states != expected:
                    raise SystemExit(f"{name} validation disagrees with the first run")
    seq, par = statistics.median(times["sequential"]), statistics.median(times["parallel"])
    ok = sum(s == "ok" for s in expected or [])
    print(f"{args.mappings} mappings ({ok} ok, {args.mappings - ok} missing), {args.latency_ms:.0f} ms per request, "
          f"median of {args.runs}: sequential {seq:.3f} s, parallel (8 workers) {par:.3f} s")
    print(f"sequential_s={seq:.3f} parallel_s={par:.3f} speedup={seq / par:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
