"""Helpers for driving the assistant panel in the browser against the app's fake Anthropic API."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.fakes.anthropic_api import FakeAnthropic, RecordedRequest


@pytest.fixture
def chat_api(fake_anthropic_app: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The app's fake Anthropic API, with no scripted reply or recorded request left from another test."""
    fake_anthropic_app.reset()
    yield fake_anthropic_app
    fake_anthropic_app.reset()


def words(text: str) -> list[str]:
    """Text cut into word chunks (with their trailing space), as a streamed answer arrives."""
    return re.findall(r"\S+\s*|\s+", text)


def open_chat(page: Page) -> None:
    """Open the IDE, wait for its editor (see tests/support/ide.py) and for the panel."""
    from tests.support.ide import open_ide

    open_ide(page)
    expect(page.get_by_test_id("chat-input")).to_be_visible()
    expect(page.get_by_test_id("chat-send")).to_be_enabled()


def ask(page: Page, question: str) -> None:
    """Type a question and send it with Enter."""
    box = page.get_by_test_id("chat-input")
    box.fill(question)
    box.press("Enter")


def answers(page: Page) -> Locator:
    """The assistant's messages, oldest first."""
    return page.locator('[data-testid="chat-message"][data-role="assistant"]')


def questions(page: Page) -> Locator:
    """The user's messages, oldest first."""
    return page.locator('[data-testid="chat-message"][data-role="user"]')


def wait_for_request(fake: FakeAnthropic, count: int = 1, timeout_s: float = 15.0) -> RecordedRequest:
    """The `count`-th Messages API request, once it has arrived."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        requests = fake.message_requests
        if len(requests) >= count:
            return requests[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"the fake Anthropic API got {len(fake.message_requests)} request(s), expected {count}")
