"""The fake Anthropic API behaves as Anthropic documents it, as seen through the real SDK."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx2
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, Reply

pytestmark = pytest.mark.timeout(20)

KEY = "sk-ant-test-fake-0001"
USER = [{"role": "user", "content": "List aws.ec2.instances"}]


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


def client(fake: FakeAnthropic, **options) -> anthropic.Anthropic:
    options.setdefault("max_retries", 0)
    return anthropic.Anthropic(api_key=KEY, base_url=fake.base_url, **options)


def async_client(fake: FakeAnthropic, **options) -> anthropic.AsyncAnthropic:
    options.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.base_url, **options)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_sync_stream_delivers_chunks_in_order_with_usage_and_records_the_request(fake):
    fake.enqueue(Reply.text(["SELECT ", "* FROM ", "aws.ec2.instances"], input_tokens=42, output_tokens=7))
    with client(fake).messages.stream(model="claude-test", max_tokens=100, system="be terse",
                                      messages=USER) as stream:
        pieces = list(stream.text_stream)
        message = stream.get_final_message()
    assert pieces == ["SELECT ", "* FROM ", "aws.ec2.instances"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (42, 7)
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-test"
    recorded = fake.last_request
    assert recorded.path == "/v1/messages"
    assert recorded.body["stream"] is True
    assert recorded.system == "be terse"
    assert recorded.messages == USER
    assert recorded.api_key == KEY
    assert recorded.headers["anthropic-version"]
    assert recorded.outcome == "ok"


def test_async_stream_delivers_chunks_in_order_with_usage(fake):
    fake.enqueue(Reply.text(["a", "b", "c"], delays=[0.01, 0.05, 0.01], input_tokens=3, output_tokens=2,
                            stop_reason="max_tokens"))

    async def run():
        async with async_client(fake) as c:
            async with c.messages.stream(model="claude-test", max_tokens=5, messages=USER) as stream:
                pieces = [text async for text in stream.text_stream]
                return pieces, await stream.get_final_message()

    pieces, message = asyncio.run(run())
    assert pieces == ["a", "b", "c"]
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3, 2)


def test_non_streaming_create_returns_one_json_message(fake):
    fake.enqueue(Reply.text(["Hello ", "there"], input_tokens=9, output_tokens=2))
    message = client(fake).messages.create(model="claude-test", max_tokens=10, messages=USER)
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello there"
    assert message.id.startswith("msg_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 2)


def test_wire_format_is_documented_sse_sequence_with_ping(fake):
    fake.enqueue(Reply.text(["x", "y"]))
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": USER}
    with httpx2.Client() as http, http.stream("POST", fake.base_url + "/v1/messages", headers=headers,
                                              json=body) as response:
        raw = response.read().decode()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    events = [block.split("\n") for block in raw.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    payloads = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert [p["type"] for p in payloads] == names
    assert payloads[3]["delta"] == {"type": "text_delta", "text": "x"}
    assert payloads[6]["delta"]["stop_reason"] == "end_turn"
    assert payloads[6]["usage"]["output_tokens"] >= 1


@pytest.mark.parametrize(
    ("reply", "error_class", "status", "error_type"),
    [
        (Reply.auth_error(), anthropic.AuthenticationError, 401, "authentication_error"),
        (Reply.rate_limited(7), anthropic.RateLimitError, 429, "rate_limit_error"),
        (Reply.overloaded(), anthropic.OverloadedError, 529, "overloaded_error"),
        (Reply.api_error(), anthropic.InternalServerError, 500, "api_error"),
        (Reply.error(400, message="prompt is too long"), anthropic.BadRequestError, 400, "invalid_request_error"),
    ],
)
def test_error_replies_map_to_the_sdk_exceptions(fake, reply, error_class, status, error_type):
    fake.enqueue(reply)
    with pytest.raises(error_class) as caught:
        client(fake).messages.create(model="m", max_tokens=5, messages=USER)
    error = caught.value
    assert isinstance(error, anthropic.APIStatusError)
    assert error.status_code == status
    assert error.type == error_type
    assert error.body["type"] == "error"
    assert error.body["error"]["message"]
    assert error.request_id and error.request_id.startswith("req_")


def test_overloaded_is_an_api_status_error_with_status_529(fake):
    fake.enqueue(Reply.overloaded())
    with pytest.raises(anthropic.APIStatusError) as caught:
        client(fake).messages.create(model="m", max_tokens=5, messages=USER)
    assert caught.value.status_code == 529
    assert isinstance(caught.value, anthropic.InternalServerError)


def test_rate_limit_exposes_retry_after_header(fake):
    fake.enqueue(Reply.rate_limited(12))
    with pytest.raises(anthropic.RateLimitError) as caught:
        client(fake).messages.create(model="m", max_tokens=5, messages=USER)
    assert caught.value.response.headers["retry-after"] == "12"


def test_stream_request_errors_raise_when_the_stream_opens(fake):
    fake.enqueue(Reply.overloaded())

    async def run():
        async with async_client(fake) as c:
            async with c.messages.stream(model="m", max_tokens=5, messages=USER) as stream:
                return [t async for t in stream.text_stream]

    with pytest.raises(anthropic.OverloadedError):
        asyncio.run(run())


def test_sdk_retries_honour_retry_after_and_count_attempts(fake):
    fake.enqueue(Reply.rate_limited(0.4), Reply.text(["ok"]))
    started = time.monotonic()
    message = client(fake, max_retries=1).messages.create(model="m", max_tokens=5, messages=USER)
    assert message.content[0].text == "ok"
    assert time.monotonic() - started >= 0.4
    assert [r.headers["x-stainless-retry-count"] for r in fake.message_requests] == ["0", "1"]


@pytest.mark.parametrize(
    ("api_keys", "sent_key", "headers", "status", "message"),
    [
        ({"right-key"}, "wrong-key", {}, 401, "invalid x-api-key"),
        (None, None, {}, 401, "x-api-key header is required"),
        (None, KEY, {"anthropic-version": None}, 400, "anthropic-version: header is required"),
    ],
)
def test_auth_and_version_headers_are_checked_before_the_script(api_keys, sent_key, headers, status, message):
    with FakeAnthropic(api_keys=api_keys) as fake:
        fake.enqueue(Reply.text(["scripted"]))
        request_headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        if sent_key:
            request_headers["x-api-key"] = sent_key
        request_headers.update(headers)
        request_headers = {k: v for k, v in request_headers.items() if v is not None}
        response = httpx2.post(fake.base_url + "/v1/messages", headers=request_headers,
                               json={"model": "m", "max_tokens": 5, "messages": USER})
        assert response.status_code == status
        assert response.json()["error"]["message"] == message
        assert fake.pending() == 1


def test_a_valid_key_in_x_api_key_or_bearer_is_accepted():
    with FakeAnthropic(api_keys={KEY}) as fake:
        for header in ({"x-api-key": KEY}, {"authorization": f"Bearer {KEY}"}):
            response = httpx2.post(fake.base_url + "/v1/messages",
                                   headers={"anthropic-version": "2023-06-01", **header},
                                   json={"model": "m", "max_tokens": 5, "messages": USER})
            assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 5, "messages": USER}, "model: Field required"),
        ({"model": "m", "messages": USER}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages: at least one message is required"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
         "messages.0.role: Input should be 'user' or 'assistant'"),
    ],
)
def test_malformed_bodies_get_invalid_request_error(fake, body, message):
    response = httpx2.post(fake.base_url + "/v1/messages",
                           headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}, json=body)
    assert response.status_code == 400
    assert response.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": message},
                               "request_id": response.json()["request_id"]}


def test_cut_stream_surfaces_as_httpx2_remote_protocol_error_after_partial_text(fake):
    # events: message_start, content_block_start, ping, delta "a", delta "b" | cut
    fake.enqueue(Reply.cut(["a", "b", "c"], after_events=5))
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):
        with client(fake).messages.stream(model="m", max_tokens=5, messages=USER) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert received == ["a", "b"]
    assert fake.last_request.outcome == "cut"


def test_clean_cut_ends_the_body_without_message_stop(fake):
    fake.enqueue(Reply.cut(["a", "b"], after_events=5, clean=True))
    with client(fake).messages.stream(model="m", max_tokens=5, messages=USER) as stream:
        events = [event.type for event in stream]
        snapshot = stream.current_message_snapshot
    assert "message_stop" not in events
    assert snapshot.stop_reason is None


def test_error_event_mid_stream_raises_api_status_error_with_its_type(fake):
    fake.enqueue(Reply.stream_error(["partial "], error_type="overloaded_error"))
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client(fake).messages.stream(model="m", max_tokens=5, messages=USER) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert received == ["partial "]
    assert caught.value.type == "overloaded_error"
    assert caught.value.body["error"]["message"] == "Overloaded"


def test_hang_before_response_trips_the_client_timeout(fake):
    fake.enqueue(Reply.hang(10))
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client(fake, timeout=0.3).messages.create(model="m", max_tokens=5, messages=USER)
    assert time.monotonic() - started < 3
    assert wait_for(lambda: fake.last_request.finished.is_set())
    assert fake.last_request.outcome == "client_closed"


def test_hang_mid_stream_trips_the_read_timeout(fake):
    fake.enqueue(Reply.hang(10, after_events=4, chunks=["first", "never"]))
    received = []
    with pytest.raises(httpx2.ReadTimeout):
        with client(fake, timeout=0.3).messages.stream(model="m", max_tokens=5, messages=USER) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert received == ["first"]


def test_client_closing_early_is_recorded(fake):
    fake.enqueue(Reply.text([f"w{i} " for i in range(50)], delays=0.05))
    with client(fake).messages.stream(model="m", max_tokens=5, messages=USER) as stream:
        first = next(iter(stream.text_stream))
    assert first == "w0 "
    assert wait_for(lambda: fake.last_request.finished.is_set())
    assert fake.last_request.outcome == "client_closed"
    assert fake.last_request.events_sent < 10


@pytest.mark.parametrize(
    ("question", "fqn", "where"),
    [
        ("show me google.compute.instances", "google.compute.instances", "project = 'my-project' AND zone"),
        ("count azure.compute.virtual_machines", "azure.compute.virtual_machines", "subscriptionId ="),
        ("hello", "aws.ec2.instances", "region = 'us-east-1'"),
    ],
)
def test_unscripted_requests_get_a_sql_answer_about_a_named_resource(fake, question, fqn, where):
    with client(fake).messages.stream(model="m", max_tokens=50,
                                      messages=[{"role": "user", "content": question}]) as stream:
        pieces = list(stream.text_stream)
    answer = "".join(pieces)
    assert len(pieces) > 3  # it streams
    assert f"```sql\nSELECT *\nFROM {fqn}" in answer
    assert where in answer


def test_count_tokens_answers_without_using_the_script(fake):
    fake.enqueue(Reply.text(["kept"]))
    count = client(fake).messages.count_tokens(model="m", messages=[{"role": "user", "content": "x" * 400}])
    assert count.input_tokens == 100
    assert fake.pending() == 1


def test_http_scripting_controls_the_next_replies(fake):
    control = httpx2.Client(base_url=fake.base_url)
    response = control.post("/_fake/script", json={"replies": [
        {"chunks": ["via ", "http"], "output_tokens": 2},
        {"status": 429, "retry_after": 5},
    ]})
    assert response.json() == {"scripted": 2}
    sdk = client(fake)
    with sdk.messages.stream(model="m", max_tokens=5, messages=USER) as stream:
        assert "".join(stream.text_stream) == "via http"
    with pytest.raises(anthropic.RateLimitError):
        sdk.messages.create(model="m", max_tokens=5, messages=USER)
    recorded = control.get("/_fake/requests").json()
    assert [r["outcome"] for r in recorded] == ["ok", "error"]
    assert recorded[0]["body"]["messages"] == USER
    bad = control.post("/_fake/script", json={"chunks": ["x"], "colour": "red"})
    assert bad.status_code == 400 and "colour" in bad.json()["error"]["message"]
    assert control.post("/_fake/reset").json() == {"scripted": 0}
    assert control.get("/_fake/requests").json() == []


def test_command_line_fake_serves_and_accepts_http_scripts():
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-m", "tests.fakes.anthropic_api", "--port", "0"], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("FAKE_ANTHROPIC_URL="), (
            f"fake did not start; stdout={line!r} stderr={process.stderr.read() if process.poll() is not None else ''}")
        url = line.split("=", 1)[1]
        httpx2.post(url + "/_fake/script", json={"chunks": ["from ", "a process"]}).raise_for_status()
        sdk = anthropic.Anthropic(api_key=KEY, base_url=url, max_retries=0)
        with sdk.messages.stream(model="m", max_tokens=5, messages=USER) as stream:
            assert "".join(stream.text_stream) == "from a process"
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert process.returncode == 0, process.stderr.read()
