"""The chat panel's service glue: items, prepared prompts, the key, grounding in the real catalog, relaying streams.

Everything runs through the real `anthropic` SDK against the fake Messages API, and the real catalog
over the stackql stand-in; nothing is patched.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from stackql_inventory.config import Settings
from stackql_inventory.services import ai, assistant, result_store, secrets
from stackql_inventory.services.ai import AnswerDone, AnswerFailed, ChatMessage, ChatMode, ChatRequest
from stackql_inventory.services.assistant import ChatItem, Segment
from stackql_inventory.services.catalog import Catalog
from stackql_inventory.services.engine import Engine
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.fakes.anthropic_api import FakeAnthropic, Reply
from tests.fixtures_engine import fake_download_dir

__all__ = ["fake_download_dir"]  # fixture re-exported for pytest
pytestmark = pytest.mark.timeout(60)

KEY = "sk-ant-api03-CHAT-test-key-51c2e"


@pytest.fixture
def fake():
    with FakeAnthropic(api_keys={KEY, "sk-from-secret-store"}) as server:
        yield server


def settings_for(fake: FakeAnthropic, *, env_key: str | None = KEY, data_dir: Path | None = None) -> Settings:
    extra = {"data_dir": data_dir} if data_dir is not None else {}
    return Settings(anthropic_base_url=fake.base_url, ai_model="claude-test-model",
                    anthropic_api_key=SecretStr(env_key) if env_key else None, secrets_backend_raw="local",
                    _env_file=None, **extra)


@pytest.fixture(scope="module")
def catalog(fake_download_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real catalog answered by an engine running the stackql stand-in."""
    eng = Engine(fake_download_dir, tmp_path_factory.mktemp("approot"))
    yield Catalog(lambda statement: eng.run(statement, None, mode="interactive"))
    eng.close()


def ask(text: str) -> ChatRequest:
    return ChatRequest(mode=ChatMode.WRITE, system="You write StackQL.", messages=(ChatMessage("user", text),))


class Ticks:
    """An on_tick callback recording what it saw; stops after `stop_after` texts (or at the first idle tick)."""

    def __init__(self, stop_after: int | None = None, stop_when_idle: bool = False):
        self.texts: list[str] = []
        self.idle = 0
        self.stop_after, self.stop_when_idle = stop_after, stop_when_idle

    async def __call__(self, text: str | None) -> bool:
        if text is None:
            self.idle += 1
            return not (self.stop_when_idle and self.texts)
        self.texts.append(text)
        return self.stop_after is None or len(self.texts) < self.stop_after


def relay(request: ChatRequest, settings: Settings, ticks: Ticks, **options) -> assistant.Relayed:
    return asyncio.run(assistant.relay(assistant.answer(request, settings), ticks, **options))


# --- answers cut for rendering -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param("Just prose, no SQL.", [Segment("text", "Just prose, no SQL.")], id="none"),
        pytest.param(
            "First:\n```sql\nSELECT 1\n```\nThen:\n\n```SQL\n  SELECT 2\n  FROM x\n```\nDone.",
            [Segment("text", "First:"), Segment("sql", "SELECT 1"), Segment("text", "Then:"),
             Segment("sql", "SELECT 2\nFROM x"), Segment("text", "Done.")],
            id="several"),
        pytest.param("Here:\n```sql\nSELECT name\nFROM aws.ec2.instan",
                     [Segment("text", "Here:"), Segment("sql", "SELECT name\nFROM aws.ec2.instan", closed=False)],
                     id="unterminated"),
        pytest.param("Shell:\n```bash\nstackql shell\n```\nand\n```\nSHOW PROVIDERS\n```",
                     [Segment("text", "Shell:\n```bash\nstackql shell\n```\nand"), Segment("sql", "SHOW PROVIDERS")],
                     id="other-languages-stay-in-the-text"),
        pytest.param("", [], id="empty"),
        pytest.param("```sql\n```\n", [Segment("text", "```sql\n```")], id="empty-sql-block-is-text"),
    ],
)
def test_segments(answer, expected):
    assert assistant.segments(answer) == expected
    assert [s.text for s in expected if s.kind == "sql"] == [b.sql for b in ai.extract_sql_blocks(answer)]


def test_history_sends_prepared_prompts_and_skips_answers_without_text():
    ask_item = assistant.user_item("Explain", ChatMode.WRITE, label="Explain this query")
    failed = ChatItem(id="f", role="assistant", text="", state="failed")
    partial = ChatItem(id="p", role="assistant", text="Partial answer", state="incomplete")
    streaming = ChatItem(id="s", role="assistant", text="", state="streaming")
    turns = assistant.history([ask_item, failed, partial, assistant.user_item("and?", "write"), streaming],
                              {ask_item.id: "the full prompt"})
    assert turns == [ChatMessage("user", "the full prompt"), ChatMessage("assistant", "Partial answer"),
                     ChatMessage("user", "and?")]


# --- prepared prompts ----------------------------------------------------------------------------
def test_explain_needs_sql_and_carries_it():
    with pytest.raises(UserFacingError, match="editor is empty") as raised:
        assistant.explain_turn("  \n")
    assert raised.value.kind is ErrorKind.VALIDATION
    prompt = assistant.explain_turn("SELECT instanceId FROM aws.ec2.instances WHERE region = 'us-east-1'\n")
    assert "```sql\nSELECT instanceId FROM aws.ec2.instances WHERE region = 'us-east-1'\n```" in prompt.api_text
    assert prompt.api_text.startswith("Explain what this StackQL query does")
    assert prompt.display == "```sql\nSELECT instanceId FROM aws.ec2.instances WHERE region = 'us-east-1'\n```"


def test_interpret_carries_the_capped_table_and_says_what_was_left_out():
    columns = [f"col{i}" for i in range(14)]
    rows = [tuple(f"r{r}c{c}" for c in range(14)) for r in range(60)]
    store = result_store.get_store()
    stored = store.put(session="tab-1", owner="ana@example.com", columns=columns, rows=rows,
                       statement="SELECT * FROM aws.ec2.instances WHERE region = 'eu-west-1'", truncated=True)
    sample = assistant.result_sample(stored.id, "ana@example.com")
    assert (len(sample.rows), sample.total_rows, sample.truncated) == (50, 60, True)  # only the head is read
    prompt = assistant.interpret_turn(stored.statement, sample, "Anything public?")
    table = prompt.api_text.split("<result>\n", 1)[1].split("\n</result>", 1)[0]
    lines = table.splitlines()
    assert lines[0] == "| " + " | ".join(columns[:12]) + " |"
    assert len(lines) == 2 + 50 and lines[-1].startswith("| r49c0 |")
    assert "<query>\n```sql\nSELECT * FROM aws.ec2.instances WHERE region = 'eu-west-1'\n```\n</query>" in \
        prompt.api_text
    assert "Showing the first 50 of 60 rows; 10 rows were left out." in prompt.api_text
    assert "Showing 12 of 14 columns; 2 columns were left out: col12, col13." in prompt.api_text
    assert "more than 60 rows" in prompt.api_text
    assert prompt.api_text.rstrip().endswith("Anything public?")
    assert prompt.display.startswith("Anything public?")
    assert "50 of 60 rows, 12 of 14 columns (the query hit its row limit)" in prompt.display
    assert "r0c0" not in prompt.display  # the panel shows a summary, not the data again


def test_a_small_result_is_sent_whole_without_a_note():
    stored = result_store.get_store().put(session="tab-1", owner="ana", columns=["name", "state"],
                                          rows=[("vm-1", "running"), ("vm-2", None)], statement="SELECT 1")
    prompt = assistant.interpret_turn("SELECT 1", assistant.result_sample(stored.id, "ana"))
    assert "| name | state |\n|---|---|\n| vm-1 | running |\n| vm-2 | NULL |" in prompt.api_text
    assert "Note:" not in prompt.api_text
    assert "2 rows, 2 columns" in prompt.display and prompt.label == "Interpret the result"


@pytest.mark.parametrize(
    ("result_id", "owner", "message"),
    [
        pytest.param("", "ana", "There is no result to interpret: run a query", id="none-yet"),
        pytest.param("evicted-or-unknown", "ana", "no longer held on the server", id="evicted"),
        pytest.param(None, "bob", "no longer held on the server", id="another-users"),
    ],
)
def test_interpret_without_a_result_says_to_run_a_query(result_id, owner, message):
    if result_id is None:
        result_id = result_store.get_store().put(session="tab-1", owner="ana", columns=["a"], rows=[("1",)]).id
    with pytest.raises(UserFacingError, match=message):
        assistant.result_sample(result_id, owner)


@pytest.mark.parametrize(
    ("mode", "result_id", "attached", "expected"),
    [
        pytest.param("write", "r1", "", False, id="write-mode-never"),
        pytest.param("interpret", "r1", "", True, id="first-result"),
        pytest.param("interpret", "r1", "r1", False, id="already-sent"),
        pytest.param("interpret", "r2", "r1", True, id="a-new-result"),
        pytest.param("interpret", "", "", True, id="none-yet-so-say-so"),
        pytest.param("interpret", "", "r1", False, id="result-gone-but-sent-earlier"),
    ],
)
def test_a_typed_interpret_question_carries_the_result_once(mode, result_id, attached, expected):
    assert assistant.needs_result(mode, result_id, attached) is expected


@pytest.fixture(autouse=True)
def _fresh_result_store():
    result_store.reset()
    yield
    result_store.reset()


# --- the key -------------------------------------------------------------------------------------
def test_key_from_the_secret_store_wins_over_the_environment(fake, tmp_path):
    settings = settings_for(fake, data_dir=tmp_path)
    secrets.backend_for(settings).put(settings.secret_scope, settings.ai_secret_key, "sk-from-secret-store")
    fake.enqueue(Reply.text(["ok"]))
    result = relay(ask("q"), settings, Ticks())
    assert result.done is not None
    assert fake.last_request.api_key == "sk-from-secret-store"


def test_environment_key_is_used_when_no_secret_is_stored(fake, tmp_path):
    fake.enqueue(Reply.text(["ok"]))
    assert relay(ask("q"), settings_for(fake, data_dir=tmp_path), Ticks()).done is not None
    assert fake.last_request.api_key == KEY


def test_no_key_anywhere_says_what_to_set_and_sends_nothing(fake, tmp_path):
    result = relay(ask("q"), settings_for(fake, env_key=None, data_dir=tmp_path), Ticks())
    assert result.failed is not None and result.failed.kind is ErrorKind.AUTH
    assert "Set ANTHROPIC_API_KEY, or store the key as the secret 'stackql-inventory/anthropic-api-key'" in \
        result.failed.message
    assert not result.failed.retryable
    assert fake.requests == []


# --- grounding in the real catalog ---------------------------------------------------------------
def test_write_request_is_grounded_in_the_catalog(catalog):
    turns = [ChatMessage("user", "Which aws.ec2.instances are running?")]
    request = assistant.prepare("write", turns, provider="aws", editor_sql="SELECT name FROM google.compute.disks",
                                catalog=catalog)
    assert request.mode is ChatMode.WRITE
    system = request.system
    assert "## aws.ec2.instances" in system
    assert "Required WHERE parameters: region" in system
    assert "- instanceType string: The instance type." in system
    assert "## google.compute.disks" in system
    assert "Selected provider: aws" in system
    assert "- aws.ec2: " in system  # the provider's services and their resources
    assert "<editor_sql>\nSELECT name FROM google.compute.disks\n</editor_sql>" in system
    assert "would swallow" not in system  # the engine strips comments now


def test_providers_not_yet_installed_are_grounded_and_checked(catalog):
    # stackql installs a provider on first use: not being in SHOW PROVIDERS yet is no reason to refuse it.
    assert catalog.providers() == []
    request = assistant.prepare("write", [ChatMessage("user", "Count synthetic.bulk.items, see www.example.com")],
                                provider="synthetic", catalog=catalog)
    catalog_text = request.system.split("<catalog>")[1].split("</catalog>")[0]
    assert "Selected provider: synthetic (installed on first use)" in catalog_text
    assert "## synthetic.bulk.items" in catalog_text
    assert "www.example.com" not in catalog_text and "Catalog problems" not in catalog_text
    notes = assistant.check("```sql\nSELECT * FROM amazon.ec2.instances WHERE region = 'x'\n```\n"
                            "```sql\nSELECT * FROM aws.ec2.instances WHERE region = 'x'\n```", catalog)
    assert [(n.resource, n.problem, n.block) for n in notes] == [
        ("amazon.ec2.instances", "provider 'amazon' is not installed; install it with REGISTRY PULL amazon", 0)]


def test_interpret_request_reads_no_catalog():
    request = assistant.prepare("interpret", [ChatMessage("user", "<result>…</result>")],
                                catalog=RaisingCatalog())
    assert request.system == ai.INTERPRET_SYSTEM_PROMPT


class RaisingCatalog:
    """A catalog that must not be used."""

    def __getattr__(self, name):
        raise AssertionError(f"the catalog was read ({name})")


def test_check_flags_unknown_resources_and_missing_parameters(catalog):
    text = ("```sql\nSELECT * FROM aws.ec2.instance WHERE region = 'us-east-1'\n```\n"
            "```sql\nSELECT instanceId FROM aws.ec2.instances\n```")
    notes = assistant.check(text, catalog)
    shown = assistant.note_texts(notes, 2)
    assert shown == [
        "Query 1: aws.ec2.instance — no resource 'instance' in aws.ec2 (did you mean aws.ec2.instances?)",
        "Query 2: aws.ec2.instances — required parameter missing from WHERE: region",
    ]
    assert assistant.correctable(notes) == notes
    assert assistant.check("No SQL here.", RaisingCatalog()) == []


def test_an_unavailable_catalog_is_a_note_not_a_correction(catalog):
    class Down:
        def __getattr__(self, name):
            def fail(*args):
                raise UserFacingError("stackql is not installed.", ErrorKind.CONFIG)
            return fail

    notes = assistant.check("```sql\nSELECT 1 FROM aws.ec2.instances WHERE region = 'x'\n```", Down())
    assert notes and all(n.block == -1 and n.problem.startswith("not checked against the catalog: Could not read")
                         and n.problem.endswith("stackql is not installed.") for n in notes)
    assert assistant.correctable(notes) == []


# --- relaying a stream ---------------------------------------------------------------------------
def test_streamed_text_is_assembled_and_shown_progressively(fake):
    chunks = ["Here ", "is ", "a ", "query:\n", "```sql\n", "SELECT 1\n", "```\n"]
    fake.enqueue(Reply.text(chunks, delays=0.08, input_tokens=321, output_tokens=12))
    ticks = Ticks()
    result = relay(ask("q"), settings_for(fake), ticks)
    assert result.done is not None and result.text == "".join(chunks)
    assert result.done.usage == ai.Usage(321, 12)
    # Each flush shows a longer prefix of the answer; more than a few flushes means tokens appeared as they came.
    assert len(ticks.texts) >= 4
    assert all("".join(chunks).startswith(t) for t in ticks.texts)
    assert all(len(a) < len(b) for a, b in zip(ticks.texts, ticks.texts[1:]))
    item = assistant.finished(assistant.answer_item("write"), result)
    assert (item.state, item.usage, item.state_text) == ("done", "321 in · 12 out tokens", "")
    assert [s.kind for s in item.segments] == ["text", "sql"]


def test_flushes_are_throttled_for_fast_streams(fake):
    chunks = [f"w{i} " for i in range(400)]
    fake.enqueue(Reply.text(chunks, delays=0.001))
    ticks = Ticks()
    started = time.monotonic()
    result = relay(ask("q"), settings_for(fake), ticks, interval_s=0.05)
    elapsed = time.monotonic() - started
    assert result.text == "".join(chunks)
    assert result.flushes == len(ticks.texts)
    # At most one flush per interval (plus the first), far fewer than the 400 chunks.
    assert len(ticks.texts) <= elapsed / 0.05 + 2
    assert len(ticks.texts) < 100


def test_stop_mid_stream_keeps_the_text_and_closes_the_connection(fake):
    fake.enqueue(Reply.text([f"part{i} " for i in range(50)], delays=0.05))
    ticks = Ticks(stop_after=3)
    result = relay(ask("q"), settings_for(fake), ticks)
    assert result.stopped and result.done is None and result.failed is None
    assert result.text.startswith("part0 part1 ")
    assert len(result.text) < len("".join(f"part{i} " for i in range(50)))
    request = fake.last_request
    assert request.finished.wait(5)
    assert request.outcome == "client_closed"
    item = assistant.finished(assistant.answer_item("write"), result)
    assert (item.state, item.state_text, item.usage) == ("stopped", "Stopped.", "")


def test_stop_is_seen_while_the_api_is_silent(fake):
    fake.enqueue(Reply.hang(30, after_events=4, chunks=["thinking…"]))
    ticks = Ticks(stop_when_idle=True)
    started = time.monotonic()
    result = relay(ask("q"), settings_for(fake), ticks, idle_check_s=0.1)
    assert time.monotonic() - started < 3
    assert result.stopped and result.text == "thinking…"
    assert fake.last_request.finished.wait(5)
    assert fake.last_request.outcome == "client_closed"


@pytest.mark.parametrize(
    ("reply", "kind", "in_message", "retryable", "retry_after", "partial"),
    [
        pytest.param(Reply.rate_limited(30), ErrorKind.RATE_LIMIT, "Retry in 30 seconds", True, 30.0, "", id="429"),
        pytest.param(Reply.auth_error(), ErrorKind.AUTH, "rejected the API key (401)", False, None, "", id="401"),
        pytest.param(Reply.overloaded(), ErrorKind.UPSTREAM, "overloaded", True, None, "", id="529"),
        pytest.param(Reply.cut(["Half ", "an ", "answer"], after_events=5), ErrorKind.UPSTREAM,
                     "closed before the answer was complete", True, None, "Half an ", id="cut"),
        pytest.param(Reply.stream_error(["Some ", "text"]), ErrorKind.UPSTREAM, "overloaded", True, None,
                     "Some text", id="error-event"),
    ],
)
def test_failures_end_the_relay_with_what_arrived(fake, reply, kind, in_message, retryable, retry_after, partial):
    fake.enqueue(reply)
    result = relay(ask("q"), settings_for(fake), Ticks())
    failed = result.failed
    assert isinstance(failed, AnswerFailed) and result.done is None and not result.stopped
    assert failed.kind is kind
    assert in_message in failed.message
    assert (failed.retryable, failed.retry_after_s) == (retryable, retry_after)
    assert result.text == partial
    item = assistant.finished(assistant.answer_item("write"), result)
    if partial:
        assert (item.state, item.state_text) == ("incomplete", "Incomplete: the answer was interrupted.")
        assert [s.text for s in item.segments] == [partial]
    else:
        assert item.state == "failed" and item.segments == []


def test_a_timeout_is_a_retryable_failure_with_the_partial_text(fake):
    fake.enqueue(Reply.hang(10, after_events=4, chunks=["Before the silence"]))

    async def run():
        settings = settings_for(fake)
        events = ai.stream_answer(ask("q"), api_key_provider=assistant.key_provider(settings), settings=settings,
                                  timeout_s=0.5)
        return await assistant.relay(events, Ticks())

    result = asyncio.run(run())
    assert result.failed is not None and result.failed.kind is ErrorKind.TIMEOUT and result.failed.retryable
    assert result.text == "Before the silence"


def test_an_answer_cut_at_max_tokens_says_so():
    done = AnswerDone("```sql\nSELECT 1", ai.Usage(10, 4096), "max_tokens")
    item = assistant.finished(assistant.answer_item("write"), assistant.Relayed(done.text, done=done))
    assert item.state == "done" and "length limit" in item.state_text
    assert item.segments == [Segment("sql", "SELECT 1", closed=False)]


def test_finished_numbers_notes_only_when_there_are_several_queries():
    notes = [ai.ValidationNote("aws.ec2.nope", "no resource 'nope' in aws.ec2", 0),
             ai.ValidationNote("", "not checked against the catalog: down", -1)]
    relayed = assistant.Relayed("```sql\nSELECT * FROM aws.ec2.nope\n```",
                                done=AnswerDone("", ai.Usage(1, 1), "end_turn"))
    item = assistant.finished(assistant.answer_item("write"), relayed, notes)
    assert item.notes == ["aws.ec2.nope — no resource 'nope' in aws.ec2", "not checked against the catalog: down"]


def test_a_long_conversation_is_trimmed_to_the_budget(fake, catalog):
    turns = []
    for i in range(30):
        turns += [ChatMessage("user", f"question {i} " + "x" * 2000), ChatMessage("assistant", f"answer {i}")]
    turns.append(ChatMessage("user", "the latest question"))
    request = assistant.prepare("interpret", turns, budget_tokens=3000)
    fake.enqueue(Reply.text(["ok"]))
    assert relay(request, settings_for(fake), Ticks()).done is not None
    sent = fake.last_request.messages
    assert sent[-1] == {"role": "user", "content": "the latest question"}
    assert sent[0]["role"] == "user"
    assert sum(len(m["content"]) for m in sent) <= 3000 * ai.CHARS_PER_TOKEN
    assert len(sent) < len(turns)
