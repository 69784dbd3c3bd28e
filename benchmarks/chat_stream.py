"""Benchmark: what throttling the chat's UI updates saves on a long streamed answer, and how fast Stop closes a stream.

Run from the repository root:  .venv/bin/python benchmarks/chat_stream.py [--runs 3] [--kb 12] [--delay 0.002]

A long answer (markdown with SQL blocks, cut into word chunks) streams from the fake Anthropic API through the real
SDK and `assistant.relay`. Each UI update is simulated as the chat state does it: cut the text into segments and
serialise them as the state delta sent to the browser. Compared: one update per chunk (interval 0) against the
panel's throttle (FLUSH_INTERVAL_S). Stop latency: from the update that asks to stop until the fake API sees its
HTTP stream closed. The last line is machine-readable:
`updates_ratio=<per-chunk/throttled> bytes_ratio=<per-chunk/throttled> stop_ms=<median>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import SecretStr  # noqa: E402

from stackql_inventory.config import Settings  # noqa: E402
from stackql_inventory.services import assistant  # noqa: E402
from stackql_inventory.services.ai import ChatMessage, ChatMode, ChatRequest  # noqa: E402
from tests.fakes.anthropic_api import FakeAnthropic, Reply  # noqa: E402
from tests.support.chat import words  # noqa: E402

KEY = "sk-bench"
SECTION = ("Running instances by type in each region:\n\n```sql\nSELECT region, instanceType, COUNT(*) AS n\n"
           "FROM aws.ec2.instances\nWHERE region IN ('us-east-1', 'eu-west-1')\nGROUP BY region, instanceType;\n```\n\n"
           "- `instanceState` is JSON: read its name with `json_extract(instanceState, '$.Name')`.\n"
           "- Stopped instances still cost money for their EBS volumes; list them with the next query.\n\n")


def answer_text(kb: int) -> str:
    text = ""
    while len(text) < kb * 1024:
        text += SECTION
    return text


def settings(fake: FakeAnthropic) -> Settings:
    return Settings(anthropic_base_url=fake.base_url, anthropic_api_key=SecretStr(KEY), ai_model="bench",
                    secrets_backend_raw="local", data_dir=Path("/nonexistent-bench-dir"), _env_file=None)


REQUEST = ChatRequest(ChatMode.WRITE, "You write StackQL.", (ChatMessage("user", "inventory report"),))


def run_once(fake: FakeAnthropic, text: str, delay: float, interval_s: float) -> dict[str, float]:
    """One streamed answer; returns updates, bytes serialised and CPU seconds spent in updates."""
    fake.enqueue(Reply.text(words(text), delays=delay))
    stats = {"updates": 0, "bytes": 0, "update_s": 0.0}

    async def on_tick(partial: str | None) -> bool:
        if partial is not None:
            started = time.perf_counter()
            delta = json.dumps({"live": {"segments": [asdict(s) for s in assistant.segments(partial)]}})
            stats["update_s"] += time.perf_counter() - started
            stats["updates"] += 1
            stats["bytes"] += len(delta)
        return True

    started = time.perf_counter()
    relayed = asyncio.run(assistant.relay(assistant.answer(REQUEST, settings(fake)), on_tick, interval_s=interval_s))
    stats["wall_s"] = time.perf_counter() - started
    assert relayed.done is not None and relayed.text == text, "the answer did not arrive whole"
    return stats


def stop_latency(fake: FakeAnthropic) -> float:
    """Seconds from asking to stop until the fake API sees the connection closed."""
    fake.enqueue(Reply.text([f"w{i} " for i in range(2000)], delays=0.01))
    asked: list[float] = []

    async def on_tick(partial: str | None) -> bool:
        if partial is not None and len(partial) > 40:
            asked.append(time.perf_counter())
            return False
        return True

    asyncio.run(assistant.relay(assistant.answer(REQUEST, settings(fake)), on_tick))
    request = fake.last_request
    assert request.finished.wait(10), "the stream was not closed"
    return time.perf_counter() - asked[0] if request.outcome == "client_closed" else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kb", type=int, default=12, help="answer size in KiB")
    parser.add_argument("--delay", type=float, default=0.002, help="seconds between chunks")
    args = parser.parse_args()
    text = answer_text(args.kb)
    chunks = len(words(text))
    results: dict[str, list[dict[str, float]]] = {"per-chunk": [], "throttled": []}
    with FakeAnthropic(api_keys={KEY}) as fake:
        for _ in range(args.runs):
            results["per-chunk"].append(run_once(fake, text, args.delay, 0.0))
            results["throttled"].append(run_once(fake, text, args.delay, assistant.FLUSH_INTERVAL_S))
        stops = [stop_latency(fake) for _ in range(5)]
    print(f"answer: {len(text):,} chars in {chunks:,} chunks, {args.delay * 1000:g} ms apart; "
          f"median of {args.runs} runs")
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    for name, m in med.items():
        print(f"{name:>10}: {m['updates']:,.0f} UI updates, {m['bytes'] / 1e6:.2f} MB of state deltas, "
              f"{m['update_s'] * 1000:.0f} ms building them, {m['wall_s']:.2f} s wall")
    stop_ms = statistics.median(stops) * 1000
    print(f"stop: median {stop_ms:.1f} ms from the stop request to the HTTP stream closed (5 runs)")
    updates_ratio = med["per-chunk"]["updates"] / med["throttled"]["updates"]
    bytes_ratio = med["per-chunk"]["bytes"] / med["throttled"]["bytes"]
    print(f"updates_ratio={updates_ratio:.1f} bytes_ratio={bytes_ratio:.1f} stop_ms={stop_ms:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
