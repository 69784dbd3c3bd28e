"""key=value log lines for the runner (logfmt): one event per line, run and schedule ids on every line."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_.:/@+-]+")
_KV_START = re.compile(r"^[a-z_]+=")


def value(v: Any) -> str:
    """One value: bare when safe, else double-quoted with escapes (newlines never split a line)."""
    if v is None:
        return '""'
    if isinstance(v, float):
        v = f"{v:g}"
    text = str(v)
    if text and _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def kv(**fields: Any) -> str:
    """`a=1 b="two words"`; None values are left out."""
    return " ".join(f"{k}={value(v)}" for k, v in fields.items() if v is not None)


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=… logger=… run_id=… schedule_id=… <event fields | msg="…">`."""

    def format(self, record: logging.LogRecord) -> str:
        from runner.run import current_run

        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        head = kv(ts=ts, level=record.levelname.lower(), logger=record.name)
        context = current_run.get()
        message = record.getMessage()
        ids = " ".join(f"{k}={value(v)}" for k, v in context.items()
                       if v is not None and f"{k}=" not in message)
        body = message if _KV_START.match(message) else f"msg={value(message)}"
        line = " ".join(p for p in (head, ids, body) if p)
        if record.exc_info:
            line += " exc=" + value(self.formatException(record.exc_info))
        return line


def configure(level: str = "INFO") -> None:
    """Send every log record to stderr as logfmt lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
