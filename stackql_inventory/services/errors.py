"""Typed, user-facing errors and secret redaction shared by every service."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from enum import Enum


class ErrorKind(str, Enum):
    """What went wrong, so callers (UI, runner) can react without parsing messages."""

    CONFIG = "config"                  # missing or invalid configuration
    DATABASE = "database"              # database unreachable or misbehaving
    BINARY = "binary"                  # stackql binary missing or cannot be provisioned
    QUERY = "query"                    # stackql reported an error for the query
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    VALIDATION = "validation"          # bad user input
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"              # duplicate name, target in use, concurrent run
    PERMISSION = "permission"          # not allowed (role, secret ACL, API 403)
    AUTH = "auth"                      # credentials missing or rejected
    RATE_LIMIT = "rate_limit"
    UPSTREAM = "upstream"              # a remote API failed (5xx, overloaded, cut stream)
    SCHEMA = "schema"                  # a result no longer fits its inventory table
    INTERNAL = "internal"


class UserFacingError(Exception):
    """An error whose message is written for the person using the app.

    The message says what happened and what to do next; it never carries a secret value.
    """

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.INTERNAL, *, detail: str = ""):
        super().__init__(message)
        self.message = message
        self.kind = kind
        # Extra technical text (e.g. stackql's stderr), already redacted, shown on demand.
        self.detail = detail

    def __repr__(self) -> str:
        return f"UserFacingError({self.kind.value}: {self.message!r})"


REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret value (len >= 4) in `text` with a marker.

    Longer secrets are replaced first so a secret containing another is fully hidden.
    """
    if not text:
        return text
    values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    if not values:
        return text
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return pattern.sub(REDACTED, text)


def secret_values(env: Mapping[str, str] | None) -> list[str]:
    """Every value to hide for `redact`: each credential in `env` (name -> value), plus the pieces a
    message could quote on their own: the lines of multi-line values and the strings inside JSON
    credentials (service-account files, PEM keys written with `\\n`), and the encodings an HTTP
    client puts on the wire and an error can echo: percent-encoded, JSON-escaped, base64, and the
    base64 of `user:password` pairs (Basic auth, as stackql sends GitHub and Okta credentials).
    """
    found = _plain_values(env)
    values = [v for v in (env or {}).values() if v]
    encoded: list[str] = []
    for value in found:
        if len(value) >= 8:
            encoded += [urllib.parse.quote(value, safe=""), json.dumps(value)[1:-1],
                        base64.b64encode(value.encode()).decode().rstrip("=")]
    if len(values) <= 16:
        encoded += [base64.b64encode(f"{a}:{b}".encode()).decode().rstrip("=")
                    for a in values for b in values if a is not b and len(a) + len(b) >= 8]
    return found + [e for e in encoded if e not in found]


def _plain_values(env: Mapping[str, str] | None) -> list[str]:
    found: list[str] = []
    for value in (env or {}).values():
        found.append(value)
        found.extend(_lines(value))
        try:
            stack = [json.loads(value)]
        except ValueError:
            continue
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
            elif isinstance(node, str) and len(node) >= 8:
                found.append(node)
                found.extend(_lines(node))
    return found


def _lines(text: str) -> list[str]:
    """The lines of `text` of 8 characters or more, also where they are separated by a written `\\n`."""
    return [part.strip() for part in re.split(r"\\n|\r\n|\n|\r", text) if len(part.strip()) >= 8]
