"""stackql's stderr as messages and user-facing errors (its exit code is 0 even when a query fails)."""

from __future__ import annotations

import re

from stackql_inventory.services.errors import ErrorKind, UserFacingError, redact

_BENIGN = re.compile(
    r"^(OK|mutating statement queued|The operation was despatched successfully|DDL Execution Completed"
    r"|.*\bsuccessfully (installed|pulled|deleted|created|updated)\b.*|warning\b.*)$",
    re.I,
)
_HINTS: tuple[tuple[re.Pattern[str], ErrorKind, str], ...] = (
    (re.compile(r"http response status code: 401"), ErrorKind.AUTH,
     "The provider rejected or did not get credentials: check its variables on the Providers page, then retry."),
    (re.compile(r"http response status code: 403"), ErrorKind.PERMISSION,
     "The credentials lack permission for this resource: grant it, or map other credentials, then retry."),
    (re.compile(r"http response status code: 429"), ErrorKind.RATE_LIMIT,
     "The provider is rate-limiting requests: wait a minute, then retry."),
    (re.compile(r"http response status code: 5\d\d"), ErrorKind.UPSTREAM,
     "The provider's API failed: retry later."),
    (re.compile(r"http response status code: 404"), ErrorKind.NOT_FOUND,
     "The provider found nothing there: check the values in the WHERE clause (project, region, …)."),
    (re.compile(r"cannot find matching operation"), ErrorKind.VALIDATION,
     "Add the resource's required parameters to the WHERE clause ({methods} lists them), then run it again."),
    (re.compile(r"could not locate (table|provider|service)"), ErrorKind.NOT_FOUND,
     "Check the name in the schema browser, or pull the provider (REGISTRY PULL <provider>), then retry."),
    (re.compile(r"syntax error", re.I), ErrorKind.VALIDATION,
     "Fix the SQL near the position shown, then run it again."),
    (re.compile(r"context deadline exceeded|i/o timeout|connection refused|no such host", re.I), ErrorKind.UPSTREAM,
     "stackql could not reach the provider's API: check the network or proxy, then retry."),
)


def split_stderr(text: str) -> tuple[list[str], list[str]]:
    """stackql's stderr as (error lines, message lines); messages are its non-error notes ("OK", …)."""
    errors, messages = [], []
    for line in text.splitlines():
        line = line.strip()
        if line:
            (messages if _BENIGN.match(line) else errors).append(line)
    return errors, messages


def query_error(lines: list[str], secrets: list[str]) -> UserFacingError:
    """A UserFacingError carrying stackql's own message (redacted) and what to do next."""
    text = redact("\n".join(lines), secrets).strip()
    first = text.splitlines()[0] if text else "stackql reported an error without a message"
    if first.startswith("query returns error: "):
        first = first[len("query returns error: "):]
    for pattern, kind, hint in _HINTS:
        if pattern.search(text):
            fqn = re.search(r"SHOW METHODS IN (\S+?):", text)
            hint = hint.format(methods=f"SHOW METHODS IN {fqn.group(1)}" if fqn else "SHOW METHODS IN <resource>")
            break
    else:
        kind, hint = ErrorKind.QUERY, "Fix the query, then run it again."
    if len(first) > 600:
        first = first[:600] + "…"
    return UserFacingError(f"stackql: {first} — {hint}", kind, detail=text)
