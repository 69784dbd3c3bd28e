"""A local HTTP server speaking Anthropic's Messages API, scriptable from tests and over HTTP."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import select
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The error type Anthropic documents for each HTTP status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES: dict[str, str] = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "The requested resource could not be found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out.",
    "overloaded_error": "Overloaded",
}
_RESOURCE = re.compile(r"\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\b")


@dataclass
class Reply:
    """One scripted answer to the next `POST /v1/messages` (JSON-able field by field).

    status 200 sends `chunks` (None: the default answer) as text deltas, waiting `delays` seconds
    before each (a number, or one per chunk, the last repeating). Any other status sends an error
    body of `error_type` (default: Anthropic's type for the status). `cut_after_events` closes the
    socket after that many SSE events (`cut_clean` ends the HTTP body properly instead, so only
    `message_stop` is missing); `hang_s` stalls before the response (or after `hang_after_events`
    events); `error_event` sends an SSE `error` event of that type after the deltas.
    """

    chunks: list[str] | None = None
    delays: float | list[float] = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason: str = "end_turn"
    status: int = 200
    error_type: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cut_after_events: int | None = None
    cut_clean: bool = False
    hang_s: float | None = None
    hang_after_events: int | None = None
    error_event: str | None = None

    # --- constructors for the common cases -----------------------------------------------------
    @classmethod
    def text(cls, chunks: list[str] | str, *, delays: float | list[float] = 0.0,
             input_tokens: int | None = None, output_tokens: int | None = None,
             stop_reason: str = "end_turn") -> Reply:
        """A streamed (or plain JSON) text answer split into `chunks`."""
        return cls(chunks=[chunks] if isinstance(chunks, str) else list(chunks), delays=delays,
                   input_tokens=input_tokens, output_tokens=output_tokens, stop_reason=stop_reason)

    @classmethod
    def error(cls, status: int, *, error_type: str | None = None, message: str | None = None,
              retry_after: float | None = None) -> Reply:
        """An HTTP error response with Anthropic's error body."""
        return cls(status=status, error_type=error_type, error_message=message, retry_after=retry_after)

    @classmethod
    def auth_error(cls) -> Reply:
        """401 authentication_error."""
        return cls.error(401)

    @classmethod
    def rate_limited(cls, retry_after: float = 30) -> Reply:
        """429 rate_limit_error with a `retry-after` header (seconds)."""
        return cls.error(429, retry_after=retry_after)

    @classmethod
    def overloaded(cls) -> Reply:
        """529 overloaded_error."""
        return cls.error(529)

    @classmethod
    def api_error(cls) -> Reply:
        """500 api_error."""
        return cls.error(500)

    @classmethod
    def cut(cls, chunks: list[str], *, after_events: int, clean: bool = False,
            delays: float | list[float] = 0.0) -> Reply:
        """A stream whose connection closes after `after_events` SSE events."""
        return cls(chunks=list(chunks), cut_after_events=after_events, cut_clean=clean, delays=delays)

    @classmethod
    def hang(cls, seconds: float = 30.0, *, after_events: int | None = None,
             chunks: list[str] | None = None) -> Reply:
        """Send nothing for `seconds` (before the response, or after `after_events` events)."""
        return cls(chunks=chunks, hang_s=seconds, hang_after_events=after_events)

    @classmethod
    def stream_error(cls, chunks: list[str], *, error_type: str = "overloaded_error",
                     message: str | None = None) -> Reply:
        """A 200 stream that sends `chunks`, then an SSE `error` event."""
        return cls(chunks=list(chunks), error_event=error_type, error_message=message)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        """A reply from its JSON form (the dataclass fields); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown reply field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass
class RecordedRequest:
    """One request the fake received, as sent."""

    method: str
    path: str
    headers: dict[str, str]      # lower-cased names
    body: Any                    # parsed JSON, or the raw text when it was not JSON
    outcome: str = "pending"     # ok | error | cut | hang | client_closed | rejected
    events_sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def api_key(self) -> str | None:
        """The key sent as `x-api-key` or as `Authorization: Bearer …`."""
        if self.headers.get("x-api-key"):
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None

    @property
    def system(self) -> str:
        """The system prompt as one string (text blocks joined)."""
        system = self.body.get("system", "") if isinstance(self.body, dict) else ""
        if isinstance(system, list):
            return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
        return system or ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The `messages` array of the request body."""
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by `GET /_fake/requests`."""
        return {"method": self.method, "path": self.path, "headers": self.headers, "body": self.body,
                "outcome": self.outcome, "events_sent": self.events_sent}


def message_text(message: dict[str, Any]) -> str:
    """The text of one message param (a string, or text blocks)."""
    content = message.get("content", "")
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


def estimate_tokens(text: str) -> int:
    """Roughly four characters per token, at least one."""
    return max(1, len(text) // 4)


def default_answer(body: dict[str, Any]) -> str:
    """The answer when nothing is scripted: a ```sql block over a resource named in the request."""
    messages = body.get("messages") or []
    last_user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    system = body.get("system", "")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    found = _RESOURCE.search(last_user.lower()) or _RESOURCE.search(str(system).lower())
    provider, service, resource = found.groups() if found else ("aws", "ec2", "instances")
    where = {
        "aws": "\nWHERE region = 'us-east-1'",
        "google": "\nWHERE project = 'my-project'" + (" AND zone = 'us-central1-a'" if service == "compute" else ""),
        "azure": "\nWHERE subscriptionId = '00000000-0000-0000-0000-000000000000'",
    }.get(provider, "")
    fqn = f"{provider}.{service}.{resource}"
    return f"Here is a query over `{fqn}`:\n\n```sql\nSELECT *\nFROM {fqn}{where};\n```\n"


class _ClientGone(Exception):
    """The client closed its connection."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # idle keep-alive connections end after a minute

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        return

    # --- plumbing --------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", self.server.fake.next_request_id())
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, error_type: str | None = None, message: str | None = None,
                    headers: dict[str, str] | None = None) -> None:
        error_type = error_type or ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": error_type,
                                           "message": message or _DEFAULT_MESSAGES.get(error_type, "Error")},
                "request_id": self.server.fake.next_request_id()}
        self._send_json(status, body, headers)

    def _wait(self, seconds: float) -> None:
        """Sleep, noticing a closed client or a stopping server."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.server.fake.stopping.is_set():
                raise _ClientGone()
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    peeked = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    raise _ClientGone() from None
                if not peeked:
                    raise _ClientGone()
                time.sleep(min(left, 0.05))  # pipelined bytes: nothing to do but wait

    def _chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            raise _ClientGone() from None

    def _drop_connection(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- routes ----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        fake = self.server.fake
        if self.path == "/_fake/requests":
            self._send_json(200, [r.to_json() for r in fake.requests])
        elif self.path == "/_fake/health":
            self._send_json(200, {"ok": True, "scripted": fake.pending()})
        else:
            self._send_error(404, message=f"Not found: {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server.fake
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = self.path.split("?", 1)[0]
        if path.startswith("/_fake/"):
            self._control(path, body)
            return
        record = RecordedRequest("POST", path, {k.lower(): v for k, v in self.headers.items()}, body)
        fake.record(record)
        try:
            if path not in ("/v1/messages", "/v1/messages/count_tokens"):
                record.outcome = "rejected"
                self._send_error(404, message=f"Not found: {path}")
                return
            problem = self._check(record)
            if problem:
                record.outcome = "rejected"
                self._send_error(*problem)
                return
            if path == "/v1/messages/count_tokens":
                record.outcome = "ok"
                self._send_json(200, {"input_tokens": _input_tokens(body)})
                return
            self._answer(record, fake.take_reply())
        except (_ClientGone, OSError):
            record.outcome = "client_closed"
            self._drop_connection()
        finally:
            record.finished.set()

    def _check(self, record: RecordedRequest) -> tuple[int, str, str] | None:
        """What Anthropic would reject before looking at the script (auth, version, body shape)."""
        fake = self.server.fake
        key = record.api_key
        if not key:
            return 401, "authentication_error", "x-api-key header is required"
        if fake.api_keys is not None and key not in fake.api_keys:
            return 401, "authentication_error", "invalid x-api-key"
        if not record.headers.get("anthropic-version"):
            return 400, "invalid_request_error", "anthropic-version: header is required"
        body = record.body
        if not isinstance(body, dict):
            return 400, "invalid_request_error", "The request body is not valid JSON."
        if not isinstance(body.get("model"), str):
            return 400, "invalid_request_error", "model: Field required"
        if record.path == "/v1/messages" and not isinstance(body.get("max_tokens"), int):
            return 400, "invalid_request_error", "max_tokens: Field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "invalid_request_error", "messages: at least one message is required"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return 400, "invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'"
        return None

    def _answer(self, record: RecordedRequest, reply: Reply) -> None:
        body = record.body
        if reply.hang_s is not None and reply.hang_after_events is None:
            record.outcome = "hang"
            self._wait(reply.hang_s)
            self._drop_connection()
            return
        if reply.status != 200:
            record.outcome = "error"
            headers = dict(reply.headers)
            if reply.retry_after is not None:
                ra = reply.retry_after
                headers["retry-after"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            self._send_error(reply.status, reply.error_type, reply.error_message, headers)
            return
        chunks = reply.chunks if reply.chunks is not None else _word_chunks(default_answer(body))
        delays = reply.delays if reply.chunks is not None or reply.delays else self.server.fake.default_delay_s
        text = "".join(chunks)
        usage_in = reply.input_tokens if reply.input_tokens is not None else _input_tokens(body)
        usage_out = reply.output_tokens if reply.output_tokens is not None else estimate_tokens(text)
        message_id = self.server.fake.next_message_id()
        if not body.get("stream"):
            if reply.cut_after_events is not None:
                record.outcome = "cut"
                self._drop_connection()
                return
            record.outcome = "ok"
            self._send_json(200, {
                "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "text", "text": text}], "stop_reason": reply.stop_reason,
                "stop_sequence": None, "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
            }, reply.headers)
            return
        self._stream(record, reply, chunks, delays, message_id, usage_in, usage_out)

    def _stream(self, record: RecordedRequest, reply: Reply, chunks: list[str], delays: float | list[float],
                message_id: str, usage_in: int, usage_out: int) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", self.server.fake.next_request_id())
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()

        def before_event() -> bool:
            """Apply a scripted cut or hang at this point; False when the stream must end."""
            if reply.hang_s is not None and record.events_sent == reply.hang_after_events:
                record.outcome = "hang"
                self._wait(reply.hang_s)
                self._drop_connection()
                return False
            if reply.cut_after_events is not None and record.events_sent >= reply.cut_after_events:
                record.outcome = "cut"
                if reply.cut_clean:
                    self._chunk(b"")  # a complete HTTP body that simply lacks message_stop
                else:
                    self._drop_connection()
                return False
            return True

        def send(event: str, data: dict[str, Any]) -> bool:
            if not before_event():
                return False
            self._chunk(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            record.events_sent += 1
            return True

        model = record.body["model"]
        start = {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage_in, "output_tokens": 1}}}
        if not (send("message_start", start)
                and send("content_block_start", {"type": "content_block_start", "index": 0,
                                                 "content_block": {"type": "text", "text": ""}})
                and send("ping", {"type": "ping"})):
            return
        for i, chunk in enumerate(chunks):
            delay = delays if isinstance(delays, (int, float)) else (delays[min(i, len(delays) - 1)] if delays else 0)
            if delay:
                self._wait(float(delay))
            if not send("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": chunk}}):
                return
        if reply.error_event:
            error_type = reply.error_event
            message = reply.error_message or _DEFAULT_MESSAGES.get(error_type, "Error")
            if send("error", {"type": "error", "error": {"type": error_type, "message": message}}):
                record.outcome = "error"
                self._chunk(b"")
            return
        if (send("content_block_stop", {"type": "content_block_stop", "index": 0})
                and send("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                                           "usage": {"output_tokens": usage_out}})
                and send("message_stop", {"type": "message_stop"})):
            record.outcome = "ok"
            self._chunk(b"")

    def _control(self, path: str, body: Any) -> None:
        fake = self.server.fake
        if path == "/_fake/script":
            items = body.get("replies", [body]) if isinstance(body, dict) else body
            try:
                replies = [Reply.from_json(item) for item in (items or [])]
            except (TypeError, ValueError) as e:
                self._send_error(400, message=f"bad script: {e}")
                return
            for reply in replies:
                fake.enqueue(reply)
            self._send_json(200, {"scripted": fake.pending()})
        elif path == "/_fake/reset":
            fake.reset()
            self._send_json(200, {"scripted": 0})
        else:
            self._send_error(404, message=f"Not found: {path}")


def _input_tokens(body: Any) -> int:
    if not isinstance(body, dict):
        return 1
    system = body.get("system", "")
    text = json.dumps(system) if isinstance(system, list) else str(system)
    return estimate_tokens(text + "".join(message_text(m) for m in body.get("messages") or []
                                          if isinstance(m, dict)))


def _word_chunks(text: str) -> list[str]:
    """Split text into small chunks (words with their trailing space) so it visibly streams."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeAnthropic

    def process_request(self, request: Any, client_address: Any) -> None:
        self.fake.track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.fake.untrack(request)
        super().shutdown_request(request)


class FakeAnthropic:
    """A threaded local Anthropic Messages API; use as a context manager.

    `base_url` goes to the SDK's `base_url`; `requests` lists what arrived; `enqueue(Reply…)`
    scripts the next answers (first in, first out); unscripted requests get `default_answer`.
    `api_keys`, when given, is the set of keys accepted (others get 401).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, api_keys: set[str] | None = None,
                 default_delay_s: float = 0.01) -> None:
        self.host, self.port = host, port
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.default_delay_s = default_delay_s
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._sockets: set[socket.socket] = set()
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeAnthropic:
        """Bind and serve in a background thread."""
        self._server = _Server((self.host, self.port), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        # A short poll interval keeps `stop()` (and so every test using the fake) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every open connection (hanging replies end at once)."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            with self._lock:
                open_sockets = list(self._sockets)
            for sock in open_sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The URL to hand to the SDK (`base_url=`) or to ANTHROPIC_BASE_URL."""
        return f"http://{self.host}:{self.port}"

    # --- scripting -------------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        """Script the next answers, in order."""
        with self._lock:
            self._replies.extend(replies)

    def pending(self) -> int:
        """How many scripted replies are still unused."""
        with self._lock:
            return len(self._replies)

    def reset(self) -> None:
        """Forget scripted replies and recorded requests."""
        with self._lock:
            self._replies.clear()
            self._requests.clear()

    def take_reply(self) -> Reply:
        """The next scripted reply, or the default answer."""
        with self._lock:
            return self._replies.popleft() if self._replies else Reply()

    # --- recording -------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received (API and unknown paths; not `/_fake/*`), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Only the `POST /v1/messages` requests."""
        return [r for r in self.requests if r.path == "/v1/messages"]

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (fails loudly when there is none)."""
        requests = self.requests
        assert requests, "the fake Anthropic API received no request"
        return requests[-1]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def next_request_id(self) -> str:
        return f"req_fake_{next(self._ids):06d}"

    def next_message_id(self) -> str:
        return f"msg_fake_{next(self._ids):06d}"

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


def main(argv: list[str] | None = None) -> None:
    """Run the fake until SIGINT/SIGTERM, printing `FAKE_ANTHROPIC_URL=<url>` once it listens."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", action="append", help="accept only these keys (repeatable)")
    parser.add_argument("--delay", type=float, default=0.01, help="seconds between default-answer chunks")
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with FakeAnthropic(host=args.host, port=args.port, default_delay_s=args.delay,
                       api_keys=set(args.api_key) if args.api_key else None) as fake:
        print(f"FAKE_ANTHROPIC_URL={fake.base_url}", flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
