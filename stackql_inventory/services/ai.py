"""The Claude assistant: chat requests, streamed answers, and checks of the StackQL it writes."""

from __future__ import annotations

import inspect
import logging
import math
import re
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Literal

import anthropic
import anyio.to_thread
import httpx2  # the HTTP library under anthropic 2.x; a cut stream raises its errors, not anthropic's
from pydantic import SecretStr

from stackql_inventory.config import Settings, get_settings
from stackql_inventory.services.ai_prompts import (
    INTERPRET_SYSTEM_PROMPT,
    CatalogLookup,
    CatalogView,
    ColumnInfo,
    ProviderInfo,
    ResourceInfo,
    ResultTable,
    ServiceInfo,
    explain_prompt,
    interpret_prompt,
    resource_names,
    result_table,
    write_system_prompt,
)
from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact

__all__ = [
    "AnswerDone", "AnswerFailed", "AnswerPart", "CatalogView", "ChatMessage", "ChatMode", "ChatRequest",
    "ColumnInfo", "ProviderInfo", "ResourceInfo", "ResultTable", "ServiceInfo", "SqlBlock", "StreamEvent",
    "TextDelta", "Usage", "ValidationNote", "build_request", "correction_prompt", "explain_prompt",
    "extract_sql_blocks", "interpret_prompt", "make_key_provider", "result_table", "split_answer",
    "stream_answer", "trim_history", "validate_answer", "validate_sql",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 4096
DEFAULT_HISTORY_BUDGET_TOKENS = 24_000
CHARS_PER_TOKEN = 4                # rough, and on the safe side for English and SQL
DEFAULT_TIMEOUT_S = 60.0           # longest silence tolerated between two streamed chunks
# The chat shows failures with a Retry button at once; SDK retries would wait silently (a 429's
# retry-after can be a minute) while the user stares at an idle spinner.
DEFAULT_MAX_RETRIES = 0


class ChatMode(str, Enum):
    """What the assistant does with the conversation."""

    WRITE = "write"           # writes StackQL, grounded in the catalog
    INTERPRET = "interpret"   # reads the last result as a cloud-infrastructure analyst


@dataclass(frozen=True)
class ChatMessage:
    """One turn of the conversation."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class ChatRequest:
    """Everything one call to the Messages API needs, except the key."""

    mode: ChatMode
    system: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int = DEFAULT_MAX_TOKENS


# --- conversation --------------------------------------------------------------------------------
def trim_history(messages: Sequence[ChatMessage], *,
                 budget_tokens: int = DEFAULT_HISTORY_BUDGET_TOKENS) -> list[ChatMessage]:
    """The latest turns that fit `budget_tokens` (about 4 characters a token), ready for the API.

    Blank turns are dropped and consecutive turns of one role merged, so roles alternate; the
    result starts with a user turn and always keeps the latest turn, even when it alone is over budget.
    """
    merged: list[ChatMessage] = []
    for message in messages:
        if not message.content.strip():
            continue
        if merged and merged[-1].role == message.role:
            merged[-1] = ChatMessage(message.role, merged[-1].content + "\n\n" + message.content)
        else:
            merged.append(message)
    budget_chars = budget_tokens * CHARS_PER_TOKEN
    kept: list[ChatMessage] = []
    used = 0
    for message in reversed(merged):
        if kept and used + len(message.content) > budget_chars:
            break
        kept.append(message)
        used += len(message.content)
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


def build_request(mode: ChatMode, history: Sequence[ChatMessage], *, catalog: CatalogView | None = None,
                  provider: str | None = None, editor_sql: str = "",
                  budget_tokens: int = DEFAULT_HISTORY_BUDGET_TOKENS,
                  max_tokens: int = DEFAULT_MAX_TOKENS) -> ChatRequest:
    """The request for the conversation `history`, whose last turn is the user's new message.

    WRITE grounds the system prompt in `catalog` (the selected `provider`, and the resources named in
    the question or `editor_sql`); it calls the catalog, so run it off the event loop. INTERPRET
    expects the result in the user's message (see `interpret_prompt`).
    """
    messages = trim_history(history, budget_tokens=budget_tokens)
    if not messages or messages[-1].role != "user":
        raise UserFacingError("There is no question to send. Type a message, then press Send.",
                              ErrorKind.VALIDATION)
    if mode == ChatMode.WRITE:
        system = write_system_prompt(catalog, provider=provider, editor_sql=editor_sql,
                                     question=messages[-1].content)
    else:
        system = INTERPRET_SYSTEM_PROMPT
    return ChatRequest(mode=mode, system=system, messages=tuple(messages), max_tokens=max_tokens)


# --- SQL in answers ------------------------------------------------------------------------------
SQL_LANGUAGES = frozenset({"sql", "stackql", "iql"})
# Any indentation: models often nest fences in list items, where CommonMark allows it.
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n`]*$")
_STATEMENT_START = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SqlBlock:
    """A fenced SQL block of an answer."""

    sql: str
    language: str        # the fence's info word, lower-cased ("" when unlabelled)
    terminated: bool     # False when the answer ended inside the block


@dataclass(frozen=True)
class AnswerPart:
    """A stretch of an answer: markdown text, or one SQL block."""

    text: str                     # the markdown (for a SQL block: the SQL, dedented and stripped)
    sql: SqlBlock | None = None   # set when this part is a SQL block


def split_answer(text: str) -> list[AnswerPart]:
    """An answer cut into markdown text and SQL blocks, in order (see `extract_sql_blocks` for what counts as SQL).

    Fences of other languages stay inside the text around them. Text parts are never blank.
    """
    parts: list[AnswerPart] = []
    lines = (text or "").split("\n")
    pending: list[str] = []   # text lines since the last SQL block

    def flush_text() -> None:
        chunk = "\n".join(pending).strip("\n")
        if chunk.strip():
            parts.append(AnswerPart(chunk))
        pending.clear()

    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if not opening:
            pending.append(lines[i])
            i += 1
            continue
        start = i
        fence, language = opening.group(1), opening.group(2).lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            body.append(lines[i])
            i += 1
        terminated = i < len(lines)
        i += 1
        sql = textwrap.dedent("\n".join(body)).strip()
        if sql and (language in SQL_LANGUAGES or (not language and _STATEMENT_START.match(sql))):
            flush_text()
            parts.append(AnswerPart(sql, SqlBlock(sql=sql, language=language, terminated=terminated)))
        else:
            pending.extend(lines[start:i])
    flush_text()
    return parts


def extract_sql_blocks(text: str) -> list[SqlBlock]:
    """The SQL blocks of a markdown answer, in order.

    Takes ```sql (also stackql/iql) fences, and unlabelled fences whose text starts like a query;
    other languages are skipped. A block still open at the end (a cut answer) is kept, marked
    unterminated.
    """
    return [part.sql for part in split_answer(text) if part.sql is not None]


@dataclass(frozen=True)
class ValidationNote:
    """A problem found in the SQL of an answer, shown under it."""

    resource: str        # provider.service.resource, or "" for a problem of the block
    problem: str
    block: int = 0       # index of the SQL block (see extract_sql_blocks)


_NOISE = re.compile(r"'(?:[^']|'')*(?:'|$)|--[^\n]*|/\*.*?(?:\*/|$)", re.DOTALL)
_MUTATING = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "EXEC", "CREATE", "DROP", "ALTER"})
_READS = frozenset({"SELECT", "WITH"})


def _without_literals(sql: str) -> str:
    """SQL with string literals emptied and comments removed: names and parameters are found in code only."""
    return _NOISE.sub(lambda m: "''" if m.group().startswith("'") else " ", sql)


def _binds(param: str, clause: str) -> bool:
    """Whether `clause` constrains `param` with = or IN (optionally alias-qualified or quoted)."""
    pattern = rf'(?<![\w$])(?:[A-Za-z_]\w*\.)?"?{re.escape(param)}"?\s*(?:=|\bIN\b)'
    return re.search(pattern, clause, re.IGNORECASE) is not None


def validate_sql(sql: str, catalog: CatalogView | None, *, block: int = 0) -> list[ValidationNote]:
    """Check one SQL text against the catalog: resources exist, required WHERE parameters are bound.

    A heuristic, not a parser: a parameter counts as bound when `param =` or `param IN` appears
    after FROM. Statements that change resources are flagged, since the assistant writes SELECTs.
    """
    return _check_sql(sql, CatalogLookup(catalog), block)


def _check_sql(sql: str, lookup: CatalogLookup, block: int) -> list[ValidationNote]:
    notes: list[ValidationNote] = []
    for statement in _without_literals(sql).split(";"):
        if not statement.strip():
            continue
        verb = re.match(r"\W*(\w*)", statement).group(1).upper()
        names = resource_names(statement)
        if verb in _MUTATING:
            notes.append(ValidationNote(names[0] if names else "",
                                        f"{verb} changes cloud resources; the assistant should "
                                        "only write read-only queries. Don't run it unless you mean to.", block))
        after_from = re.split(r"\bFROM\b", statement, maxsplit=1, flags=re.IGNORECASE)[-1]
        for fqn in names:
            problem = lookup.resource_problem(fqn)
            if problem:
                notes.append(ValidationNote(fqn, problem, block))
                continue
            if verb not in _READS:
                continue
            required = lookup.required_params(fqn) or []
            missing = [p for p in required if not _binds(p, after_from)]
            if missing:
                notes.append(ValidationNote(
                    fqn, f"required parameter{'s' if len(missing) > 1 else ''} missing from WHERE: "
                         f"{', '.join(missing)}", block))
    return notes


def validate_answer(text: str, catalog: CatalogView | None) -> list[ValidationNote]:
    """Check every SQL block of a finished answer (see `validate_sql`); catalog calls happen here.

    When the catalog can't be read, the notes say so instead of guessing.
    """
    lookup = CatalogLookup(catalog)
    notes: list[ValidationNote] = []
    for index, block in enumerate(extract_sql_blocks(text)):
        if not block.terminated:
            notes.append(ValidationNote("", "this SQL block is not closed; the answer may have been cut off",
                                        index))
        notes += _check_sql(block.sql, lookup, index)
    for problem in dict.fromkeys(lookup.problems):
        notes.append(ValidationNote("", f"not checked against the catalog: {problem}", -1))
    return notes


def correction_prompt(notes: Sequence[ValidationNote]) -> str:
    """A follow-up user message asking the model, once, to fix what `validate_answer` found."""
    if not notes:
        raise ValueError("correction_prompt needs at least one note")
    listed = "\n".join(f"- {n.resource + ': ' if n.resource else ''}{n.problem}" for n in notes)
    return ("Checking your SQL against the installed StackQL catalog found these problems:\n"
            f"{listed}\n\nRewrite the affected queries to fix them, using only resources, columns and "
            "required parameters from the catalog. Put each corrected query in its own ```sql block.")


# --- streaming -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """Tokens billed for one answer."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, in arrival order."""

    text: str


@dataclass(frozen=True)
class AnswerDone:
    """The answer finished; always the last event of a successful stream."""

    text: str
    usage: Usage
    stop_reason: str | None

    @property
    def truncated(self) -> bool:
        """True when the answer stopped at max_tokens."""
        return self.stop_reason == "max_tokens"


@dataclass(frozen=True)
class AnswerFailed:
    """The request failed; always the last event of a failed stream. Carries what had arrived."""

    error: UserFacingError
    partial_text: str = ""
    retryable: bool = False              # True when sending the same request again may work
    retry_after_s: float | None = None   # what a 429 asked to wait

    @property
    def incomplete(self) -> bool:
        """True when part of an answer arrived before the failure (show it, marked, with Retry)."""
        return bool(self.partial_text)

    @property
    def message(self) -> str:
        """The user-facing message."""
        return self.error.message

    @property
    def kind(self) -> ErrorKind:
        """What went wrong."""
        return self.error.kind


StreamEvent = TextDelta | AnswerDone | AnswerFailed
# Returns the key (str or SecretStr), or None when none is configured; may be async.
KeyProvider = Callable[[], str | SecretStr | None | Awaitable[str | SecretStr | None]]
ClientFactory = Callable[[str], anthropic.AsyncAnthropic]


def make_key_provider(read_secret: Callable[[str, str], str | None], settings: Settings | None = None) -> KeyProvider:
    """A key provider reading the secret `<secret_scope>/<ai_secret_key>`, else ANTHROPIC_API_KEY.

    `read_secret(scope, key)` is the secrets service; a missing secret (None, or NOT_FOUND) falls back
    to the environment, and so does any other secrets failure when the environment has a key.
    """
    def provide() -> str | None:
        current = settings or get_settings()
        env_key = current.anthropic_api_key.get_secret_value() if current.anthropic_api_key else None
        try:
            value = read_secret(current.secret_scope, current.ai_secret_key)
        except UserFacingError as e:
            if e.kind != ErrorKind.NOT_FOUND and not env_key:
                raise
            value = None
        return value or env_key

    return provide


def _no_key_error(settings: Settings) -> UserFacingError:
    return UserFacingError(
        "No Anthropic API key is configured. Set ANTHROPIC_API_KEY, or store the key as the secret "
        f"'{settings.secret_scope}/{settings.ai_secret_key}', then retry.", ErrorKind.AUTH)


async def _open_client(api_key_provider: KeyProvider, settings: Settings, client_factory: ClientFactory | None,
                       timeout_s: float, max_retries: int) -> anthropic.AsyncAnthropic:
    """Resolve the key and hand it straight to a client; the key is never kept anywhere else."""
    if inspect.iscoroutinefunction(api_key_provider):
        key = await api_key_provider()
    else:
        # The secrets service may do blocking I/O (Databricks SDK, files).
        key = await anyio.to_thread.run_sync(api_key_provider)
        if inspect.isawaitable(key):
            key = await key
    if isinstance(key, SecretStr):
        key = key.get_secret_value()
    if not key or not key.strip():
        raise _no_key_error(settings)
    if client_factory is not None:
        return client_factory(key.strip())
    return anthropic.AsyncAnthropic(
        api_key=key.strip(), base_url=settings.anthropic_base_url, max_retries=max_retries,
        timeout=anthropic.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
    )


async def stream_answer(request: ChatRequest, *, api_key_provider: KeyProvider, settings: Settings | None = None,
                        client_factory: ClientFactory | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                        max_retries: int = DEFAULT_MAX_RETRIES) -> AsyncIterator[StreamEvent]:
    """Stream Claude's answer: `TextDelta`s as they arrive, then one `AnswerDone` or `AnswerFailed`.

    Failures never raise: they end the stream with `AnswerFailed` (with any partial text). The key
    comes from `api_key_provider` when the request starts and lives only in this call's client.
    To stop, stop iterating and close the generator (`contextlib.aclosing`) or cancel the task:
    the HTTP stream closes with it.
    """
    settings = settings or get_settings()
    try:
        client = await _open_client(api_key_provider, settings, client_factory, timeout_s, max_retries)
    except UserFacingError as e:
        yield _finish_failed(request, settings, AnswerFailed(e), secrets=())
        return
    parts: list[str] = []
    opened = False
    try:
        async with client:
            async with client.messages.stream(
                model=settings.ai_model, max_tokens=request.max_tokens, system=request.system,
                messages=[{"role": m.role, "content": m.content} for m in request.messages],
            ) as stream:
                opened = True
                finished = False
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        parts.append(event.delta.text)
                        yield TextDelta(event.delta.text)
                    elif event.type == "message_stop":
                        finished = True
                message = stream.current_message_snapshot if finished else None
        if message is not None:
            done = AnswerDone(text="".join(parts), stop_reason=message.stop_reason,
                              usage=Usage(message.usage.input_tokens, message.usage.output_tokens))
            log.info("ai answer done mode=%s model=%s input_tokens=%d output_tokens=%d stop_reason=%s",
                     request.mode.value, settings.ai_model, done.usage.input_tokens, done.usage.output_tokens,
                     done.stop_reason)
            yield done
            return
        failure = _cut_failure("".join(parts), "stream ended without message_stop")
    except anthropic.APIStatusError as e:
        failure = _status_failure(e, settings, "".join(parts))
    except (anthropic.APITimeoutError, httpx2.TimeoutException):
        failure = AnswerFailed(UserFacingError(
            f"Anthropic sent nothing for {timeout_s:g} seconds"
            f"{', so the answer is incomplete' if parts else ''}. Retry; if it keeps happening, ask a "
            "shorter question.", ErrorKind.TIMEOUT), "".join(parts), retryable=True)
    except (anthropic.APIConnectionError, httpx2.TransportError) as e:
        if opened:
            failure = _cut_failure("".join(parts), type(e).__name__)
        else:
            failure = AnswerFailed(UserFacingError(
                f"Could not reach the Anthropic API at {_safe_url(str(client.base_url))}. Check the "
                "network and ANTHROPIC_BASE_URL, then retry.", ErrorKind.UPSTREAM, detail=type(e).__name__),
                retryable=True)
    yield _finish_failed(request, settings, failure, secrets=(client.api_key,))


def _cut_failure(partial: str, detail: str) -> AnswerFailed:
    return AnswerFailed(UserFacingError(
        "The connection to Anthropic closed before the answer was complete. Retry to get the whole answer.",
        ErrorKind.UPSTREAM, detail=detail), partial, retryable=True)


def _finish_failed(request: ChatRequest, settings: Settings, failure: AnswerFailed, *,
                   secrets: Sequence[str | None]) -> AnswerFailed:
    """Log the failure (no content, no key) and return it with any secret value scrubbed."""
    log.warning("ai answer failed mode=%s model=%s kind=%s partial_chars=%d", request.mode.value,
                settings.ai_model, failure.kind.value, len(failure.partial_text))
    error = failure.error
    clean = UserFacingError(redact(error.message, secrets), error.kind, detail=redact(error.detail, secrets))
    return replace(failure, error=clean)


def _safe_url(url: str) -> str:
    """The API URL without any user:password part or trailing slash."""
    return re.sub(r"//[^/@]*@", "//", url).rstrip("/")


_TYPE_BY_STATUS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   429: "rate_limit_error", 529: "overloaded_error"}


def _retry_after(response: httpx2.Response | None) -> float | None:
    if response is None:
        return None
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            value = float(response.headers.get(header, "")) / scale
        except ValueError:
            continue
        if value >= 0:
            return value
    return None


def _status_failure(error: anthropic.APIStatusError, settings: Settings, partial: str) -> AnswerFailed:
    """Map an API error (an HTTP status, or an `error` event mid-stream) to what the user reads."""
    status = error.status_code
    error_type = error.type or _TYPE_BY_STATUS.get(status) or ("api_error" if status >= 500 else "")
    api_message = (error.api_message or "")[:300]
    secret_ref = f"'{settings.secret_scope}/{settings.ai_secret_key}'"

    def failed(message: str, kind: ErrorKind, retryable: bool = False, retry_after: float | None = None):
        return AnswerFailed(UserFacingError(message, kind, detail=f"{status} {error_type}: {api_message}"),
                            partial, retryable=retryable, retry_after_s=retry_after)

    if error_type == "authentication_error":
        return failed("Anthropic rejected the API key (401). Set a valid key in ANTHROPIC_API_KEY or in the "
                      f"secret {secret_ref}, then retry.", ErrorKind.AUTH)
    if error_type == "permission_error":
        return failed(f"This Anthropic API key may not use model '{settings.ai_model}'. Use a key with access, "
                      "or set STACKQL_INVENTORY_AI_MODEL to a model it can use.", ErrorKind.PERMISSION)
    if error_type == "not_found_error":
        return failed(f"Anthropic has no model '{settings.ai_model}'. Set STACKQL_INVENTORY_AI_MODEL to a "
                      "current model name, then retry.", ErrorKind.CONFIG)
    if error_type == "billing_error":
        return failed("Anthropic refused the request for billing reasons. Check the account's plan and credit "
                      "balance, then retry.", ErrorKind.CONFIG)
    if error_type == "rate_limit_error":
        wait = _retry_after(error.response)
        seconds = max(1, math.ceil(wait)) if wait is not None else None
        when = f"in {seconds} second{'s' if seconds != 1 else ''}" if seconds else "in a minute"
        return failed(f"Anthropic's rate limit was reached. Retry {when}.", ErrorKind.RATE_LIMIT,
                      retryable=True, retry_after=wait)
    if error_type == "overloaded_error":
        return failed("Anthropic is overloaded; retry in a minute.", ErrorKind.UPSTREAM, retryable=True)
    if error_type == "request_too_large":
        return failed("The conversation is too large for one request. Start a new chat or shorten the "
                      "question.", ErrorKind.VALIDATION)
    if error_type == "invalid_request_error":
        return failed(f"Anthropic rejected the request: {api_message or 'invalid request'}. Start a new chat or "
                      "rephrase the question.", ErrorKind.VALIDATION)
    if status >= 500 or error_type in ("api_error", "timeout_error"):
        return failed(f"Anthropic had an internal error ({error_type}). Retry shortly.", ErrorKind.UPSTREAM,
                      retryable=True)
    return failed(f"Anthropic answered with an unexpected error ({status} {error_type}). Retry; if it keeps "
                  "happening, check the Anthropic status page.", ErrorKind.UPSTREAM, retryable=True)
