"""The assistant as the chat panel uses it: conversation items, the key, catalog grounding, relaying a stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from stackql_inventory.config import Settings, get_settings
from stackql_inventory.services import ai, ai_prompts
from stackql_inventory.services.ai import (
    AnswerDone,
    AnswerFailed,
    CatalogView,
    ChatMessage,
    ChatMode,
    ChatRequest,
    StreamEvent,
    TextDelta,
    ValidationNote,
)
from stackql_inventory.services.errors import ErrorKind, UserFacingError

# UI updates while an answer streams: at most one every FLUSH_INTERVAL_S (smooth, and cheap on the
# websocket); with nothing new, the stop flag is still looked at every IDLE_CHECK_S.
FLUSH_INTERVAL_S = 0.05
IDLE_CHECK_S = 0.2


# --- conversation items (what the panel renders; plain dataclasses, JSON-able) --------------------
@dataclass
class Segment:
    """A stretch of an answer as rendered: markdown, or a SQL block with its Insert button."""

    kind: str = "text"       # text | sql
    text: str = ""
    closed: bool = True      # False for a SQL block the answer has not closed (yet)


@dataclass
class ChatItem:
    """One message of the conversation, as the panel shows it."""

    id: str = ""
    role: str = "user"       # user | assistant
    mode: str = ChatMode.WRITE.value
    label: str = ""          # a prepared prompt's title (Explain, Interpret results, Correction), else ""
    text: str = ""           # markdown shown (an answer's raw text)
    segments: list[Segment] = field(default_factory=list)   # an answer cut for rendering
    state: str = "done"      # streaming | done | stopped | incomplete | failed
    state_text: str = ""     # what the state means, shown under the answer ("" when done)
    notes: list[str] = field(default_factory=list)          # catalog checks of the answer's SQL
    usage: str = ""          # tokens billed, e.g. "1,204 in · 310 out tokens"


def new_id() -> str:
    """A fresh message id."""
    return uuid.uuid4().hex[:12]


def user_item(text: str, mode: ChatMode | str, *, label: str = "") -> ChatItem:
    """A user message showing `text` (markdown)."""
    return ChatItem(id=new_id(), role="user", mode=ChatMode(mode).value, label=label, text=text)


def answer_item(mode: ChatMode | str) -> ChatItem:
    """An empty answer, about to stream."""
    return ChatItem(id=new_id(), role="assistant", mode=ChatMode(mode).value, state="streaming")


def segments(text: str) -> list[Segment]:
    """`text` cut into markdown and SQL segments (see `ai.split_answer`)."""
    return [Segment("sql", p.text, p.sql.terminated) if p.sql is not None else Segment("text", p.text)
            for p in ai.split_answer(text)]


def history(items: Sequence[ChatItem], api_texts: Mapping[str, str] | None = None) -> list[ChatMessage]:
    """The conversation as the API gets it: each item's text, or what was sent in its place.

    `api_texts` maps an item id to the text the API got when it differs from what is shown (a
    prepared Explain / Interpret prompt). Answers that failed before any text arrived are left out.
    """
    api_texts = api_texts or {}
    turns: list[ChatMessage] = []
    for item in items:
        text = api_texts.get(item.id, item.text)
        if item.role == "assistant" and (item.state == "streaming" or not text.strip()):
            continue
        turns.append(ChatMessage("assistant" if item.role == "assistant" else "user", text))
    return turns


# --- prepared prompts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    """A user turn: what the API gets, what the panel shows, and the title of a prepared prompt."""

    api_text: str
    display: str
    label: str = ""


@dataclass(frozen=True)
class ResultSample:
    """What Interpret sends of a result: its columns, its first rows, and how big it is."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]   # the first rows only (a result may hold 100,000)
    total_rows: int
    truncated: bool               # the query stopped at its row limit


def needs_result(mode: ChatMode | str, result_id: str, attached_id: str) -> bool:
    """Whether a typed question must carry the IDE's last result: Interpret mode, and that result has not been sent
    yet (with none at all, yes too, so `result_sample` says to run a query first)."""
    if ChatMode(mode) != ChatMode.INTERPRET:
        return False
    return result_id != attached_id if result_id else not attached_id


def result_sample(result_id: str, owner: str | None = None) -> ResultSample:
    """The start of the IDE's result `result_id` from the result store (NOT_FOUND once evicted)."""
    if not result_id:
        raise UserFacingError("There is no result to interpret: run a query, then press Interpret (or ask again).",
                              ErrorKind.VALIDATION)
    from stackql_inventory.services import result_store

    stored = result_store.get(result_id, owner=owner)
    return ResultSample(tuple(stored.columns), stored.head(ai_prompts.MAX_TABLE_ROWS), stored.row_count,
                        stored.truncated)


def explain_turn(editor_sql: str) -> Prompt:
    """The Explain button's message for the editor's SQL; refuses an empty editor."""
    sql = (editor_sql or "").strip()
    if not sql:
        raise UserFacingError("The editor is empty: write or open a query, then press Explain.", ErrorKind.VALIDATION)
    return Prompt(ai.explain_prompt(sql), f"```sql\n{_unfence(sql)}\n```", "Explain this query")


def interpret_turn(result_sql: str, result: ResultSample, question: str = "") -> Prompt:
    """The message carrying the last result (capped markdown table + note) and an optional question."""
    table = ai.result_table(result.columns, result.rows, more_rows_exist=result.truncated,
                            total_rows=result.total_rows)
    api_text = ai.interpret_prompt(result_sql or "", result.columns, result.rows, question=question,
                                   more_rows_exist=result.truncated, total_rows=result.total_rows)
    sent = (f"{table.rows_shown} of {table.rows_total} rows" if table.rows_shown < table.rows_total
            else f"{table.rows_total} row{'s' if table.rows_total != 1 else ''}")
    cols = (f"{table.columns_shown} of {table.columns_total} columns" if table.columns_shown < table.columns_total
            else f"{table.columns_total} column{'s' if table.columns_total != 1 else ''}")
    lines = [f"```sql\n{_unfence((result_sql or '').strip())}\n```",
             f"_Result sent as a table: {sent}, {cols}{' (the query hit its row limit)' if result.truncated else ''}._"]
    question = question.strip()
    if question:
        return Prompt(api_text, question + "\n\n" + "\n\n".join(lines), "With the last result")
    return Prompt(api_text, "\n\n".join(lines), "Interpret the result")


def question_turn(question: str) -> Prompt:
    """A typed question, sent as typed."""
    return Prompt(question, question)


def _unfence(sql: str) -> str:
    """SQL that can sit inside a ``` fence without closing it."""
    return sql.replace("```", "'''")


# --- key, grounding and checks ------------------------------------------------------------------
def key_provider(settings: Settings | None = None) -> ai.KeyProvider:
    """The Anthropic key, read when a request starts: the secret `<scope>/<ai key>` first, else ANTHROPIC_API_KEY.

    Blocking (secrets backend I/O): `ai.stream_answer` calls it in a worker thread. Nothing keeps the value.
    """
    from stackql_inventory.services import secrets

    current = settings or get_settings()

    def read_secret(scope: str, key: str) -> str | None:
        return secrets.backend_for(current).get(scope, key)

    return ai.make_key_provider(read_secret, current)


def _catalog(catalog: CatalogView | None) -> CatalogView:
    if catalog is not None:
        return catalog
    from stackql_inventory.services.catalog import get_catalog

    return get_catalog()


def prepare(mode: ChatMode | str, turns: Sequence[ChatMessage], *, provider: str = "", editor_sql: str = "",
            catalog: CatalogView | None = None,
            budget_tokens: int = ai.DEFAULT_HISTORY_BUDGET_TOKENS) -> ChatRequest:
    """The request for `turns` (trimmed to `budget_tokens`); WRITE reads the catalog, so call it in a thread."""
    mode = ChatMode(mode)
    return ai.build_request(mode, turns, catalog=_catalog(catalog) if mode == ChatMode.WRITE else None,
                            provider=provider or None, editor_sql=editor_sql, budget_tokens=budget_tokens)


def check(text: str, catalog: CatalogView | None = None) -> list[ValidationNote]:
    """Catalog checks of an answer's SQL blocks (blocking: call it in a thread)."""
    if not ai.extract_sql_blocks(text):
        return []
    return ai.validate_answer(text, _catalog(catalog))


def correctable(notes: Sequence[ValidationNote]) -> list[ValidationNote]:
    """The notes worth one automatic correction round: problems of a named resource in a SQL block."""
    return [n for n in notes if n.block >= 0 and n.resource]


def note_texts(notes: Sequence[ValidationNote], blocks: int) -> list[str]:
    """Notes as shown under an answer; with several SQL blocks each says which one."""
    shown = []
    for note in notes:
        where = f"Query {note.block + 1}: " if blocks > 1 and note.block >= 0 else ""
        shown.append(f"{where}{note.resource + ' — ' if note.resource else ''}{note.problem}")
    return list(dict.fromkeys(shown))


def usage_text(usage: ai.Usage) -> str:
    """Tokens billed, for the discreet line under an answer."""
    return f"{usage.input_tokens:,} in · {usage.output_tokens:,} out tokens"


def answer(request: ChatRequest, settings: Settings | None = None) -> AsyncIterator[StreamEvent]:
    """Claude's streamed answer to `request` (see `ai.stream_answer`); the key is read when it starts."""
    return ai.stream_answer(request, api_key_provider=key_provider(settings), settings=settings)


# --- relaying a stream to the UI ----------------------------------------------------------------
@dataclass(frozen=True)
class Relayed:
    """How a relayed answer ended."""

    text: str
    done: AnswerDone | None = None
    failed: AnswerFailed | None = None
    stopped: bool = False
    flushes: int = 0         # on_tick calls that carried new text


# Called with the answer so far (None when nothing new arrived); returns False to stop the answer.
OnTick = Callable[[str | None], Awaitable[bool]]


async def relay(events: AsyncIterator[StreamEvent], on_tick: OnTick, *, interval_s: float = FLUSH_INTERVAL_S,
                idle_check_s: float = IDLE_CHECK_S) -> Relayed:
    """Consume a streamed answer, handing the text so far to `on_tick` at most every `interval_s`.

    `on_tick` also runs every `idle_check_s` while nothing arrives, so a stop request is seen even
    when the API is silent. When it returns False the stream is closed (the HTTP request with it)
    and the result says `stopped`. Never raises for API failures: they come back as `failed`.
    """
    parts: list[str] = []
    final: list[AnswerDone | AnswerFailed] = []
    changed = asyncio.Event()

    async def pump() -> None:
        try:
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                    else:
                        final.append(event)
                    changed.set()
        finally:
            changed.set()

    task = asyncio.create_task(pump())
    shown = 0            # how many parts on_tick has seen
    flushes = 0
    last_tick = -float("inf")
    stopped = False
    try:
        while True:
            changed.clear()
            if final or task.done():
                break
            now = time.monotonic()
            if len(parts) > shown:
                wait = last_tick + interval_s - now
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                shown = len(parts)
                flushes += 1
                last_tick = now
                if not await on_tick("".join(parts[:shown])):
                    stopped = True
                    break
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=max(0.0, last_tick + idle_check_s - now))
            if len(parts) == shown and not final and not task.done() and time.monotonic() - last_tick >= idle_check_s:
                last_tick = time.monotonic()
                if not await on_tick(None):
                    stopped = True
                    break
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if stopped:
        return Relayed("".join(parts), stopped=True, flushes=flushes)
    if final and isinstance(final[0], AnswerDone):
        return Relayed(final[0].text, done=final[0], flushes=flushes)
    if final:
        failed = final[0]
        return Relayed(failed.partial_text or "".join(parts), failed=failed, flushes=flushes)
    # stream_answer always ends with AnswerDone or AnswerFailed; anything else is a cut stream.
    failed = AnswerFailed(UserFacingError("The answer ended unexpectedly. Retry.", ErrorKind.UPSTREAM),
                          "".join(parts), retryable=True)
    return Relayed(failed.partial_text, failed=failed, flushes=flushes)


def finished(item: ChatItem, relayed: Relayed, notes: Sequence[ValidationNote] = ()) -> ChatItem:
    """The answer item once its stream ended: text, segments, state, notes and usage."""
    text = relayed.text
    blocks = len(ai.extract_sql_blocks(text))
    state, state_text, usage = "done", "", ""
    if relayed.stopped:
        state, state_text = "stopped", "Stopped." if text.strip() else "Stopped before the answer began."
    elif relayed.failed is not None:
        state = "incomplete" if relayed.failed.incomplete else "failed"
        state_text = "Incomplete: the answer was interrupted." if relayed.failed.incomplete else ""
    elif relayed.done is not None:
        usage = usage_text(relayed.done.usage)
        if relayed.done.truncated:
            state_text = "The answer reached its length limit and was cut; ask for the rest if you need it."
    return replace(item, text=text, segments=segments(text), state=state, state_text=state_text,
                   usage=usage, notes=note_texts(notes, blocks))
