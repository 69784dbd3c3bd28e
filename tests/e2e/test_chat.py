"""The assistant panel in Chromium: streamed answers, stop, failures with Retry, modes, notes and Clear."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.fakes.anthropic_api import FakeAnthropic, Reply
from tests.support.chat import answers, ask, chat_api, open_chat, questions, wait_for_request, words
from tests.support.ide import editor_value, type_sql

__all__ = ["chat_api"]  # fixture re-exported for pytest
pytestmark = pytest.mark.browser

ANSWER = ("Here are your instances:\n\n```sql\nSELECT instanceId, instanceType\nFROM aws.ec2.instances\n"
          "WHERE region = 'us-east-1';\n```\n\nAnd their count:\n\n```sql\nSELECT COUNT(*) AS n FROM aws.ec2.instances "
          "WHERE region = 'us-east-1';\n```\n\nBoth need the region parameter.")


def test_answer_streams_in_then_shows_sql_blocks_and_usage(page: Page, chat_api: FakeAnthropic) -> None:
    chunks = words(ANSWER)
    chat_api.enqueue(Reply.text(chunks, delays=0.08, input_tokens=1234, output_tokens=56))
    open_chat(page)
    expect(page.get_by_test_id("chat-empty")).to_be_visible()
    ask(page, "List my aws.ec2.instances in us-east-1")

    expect(questions(page)).to_have_text(["List my aws.ec2.instances in us-east-1"])
    expect(page.get_by_test_id("chat-input")).to_have_value("")
    expect(page.get_by_test_id("chat-stop")).to_be_visible()
    answer = answers(page).first
    # Tokens appear as they arrive: the start of the answer is on screen while its end is not yet.
    expect(answer).to_contain_text("Here are your instances")
    assert "Both need the region parameter." not in answer.inner_text()
    expect(answer).to_contain_text("Both need the region parameter.")
    expect(answer.get_by_test_id("chat-usage")).to_have_text("1,234 in · 56 out tokens")
    expect(answer.get_by_test_id("chat-insert-sql")).to_have_count(2)
    expect(answer.get_by_test_id("chat-notes")).to_have_count(0)  # both queries pass the catalog check
    expect(page.get_by_test_id("chat-send")).to_be_visible()

    request = wait_for_request(chat_api)
    assert request.messages == [{"role": "user", "content": "List my aws.ec2.instances in us-east-1"}]
    assert "## aws.ec2.instances" in request.system
    assert "Required WHERE parameters: region" in request.system
    assert request.api_key == "sk-ant-app-under-test"


def test_stop_ends_the_answer_and_keeps_what_arrived(page: Page, chat_api: FakeAnthropic) -> None:
    chat_api.enqueue(Reply.text([f"word{i} " for i in range(400)], delays=0.05))
    open_chat(page)
    ask(page, "Tell me everything about my cloud")
    answer = answers(page).first
    expect(answer).to_contain_text("word3")
    page.get_by_test_id("chat-stop").click()
    expect(answer.get_by_test_id("chat-state")).to_have_text("Stopped.")
    expect(page.get_by_test_id("chat-send")).to_be_visible()
    request = wait_for_request(chat_api)
    assert request.finished.wait(10)
    assert request.outcome == "client_closed"  # the HTTP stream was closed, not left running
    assert "word399" not in answer.inner_text()
    expect(page.get_by_test_id("chat-error")).to_have_count(0)

    # The conversation carries on; the stopped answer is part of it.
    chat_api.enqueue(Reply.text(["Go on."]))
    ask(page, "Shorter, please")
    expect(answers(page)).to_have_count(2)
    expect(answers(page).nth(1)).to_contain_text("Go on.")
    sent = wait_for_request(chat_api, 2).messages
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"].startswith("word0 word1 word2 word3")


def test_rate_limit_shows_the_retry_after_and_retry_answers(page: Page, chat_api: FakeAnthropic) -> None:
    chat_api.enqueue(Reply.rate_limited(30))
    open_chat(page)
    ask(page, "How many buckets?")
    error = page.get_by_test_id("chat-error")
    expect(error).to_contain_text("Anthropic's rate limit was reached. Retry in 30 seconds.")
    expect(page.get_by_test_id("chat-retry-after")).to_contain_text("30 s")
    expect(answers(page)).to_have_count(0)  # nothing arrived: no empty bubble

    chat_api.enqueue(Reply.text(words("You have 3 buckets.")))
    page.get_by_test_id("chat-retry").click()
    expect(answers(page).first).to_contain_text("You have 3 buckets.")
    expect(error).to_have_count(0)
    assert len(wait_for_request(chat_api, 2).messages) == 1  # the same question, sent again


def test_cut_stream_keeps_the_partial_answer_and_retry_replaces_it(page: Page, chat_api: FakeAnthropic) -> None:
    chat_api.enqueue(Reply.cut(words("The first half of an answer that never ends"), after_events=7))
    open_chat(page)
    ask(page, "Explain IAM roles")
    answer = answers(page).first
    expect(answer.get_by_test_id("chat-state")).to_have_text("Incomplete: the answer was interrupted.")
    expect(answer).to_contain_text("The first half")
    expect(page.get_by_test_id("chat-error")).to_contain_text("closed before the answer was complete")

    chat_api.enqueue(Reply.text(words("The whole answer.")))
    page.get_by_test_id("chat-retry").click()
    expect(answers(page)).to_have_count(1)
    expect(answers(page).first).to_contain_text("The whole answer.")
    expect(answers(page).first.get_by_test_id("chat-state")).to_have_count(0)
    expect(page.get_by_test_id("chat-error")).to_have_count(0)
    assert [m["role"] for m in wait_for_request(chat_api, 2).messages] == ["user"]


@pytest.mark.parametrize(
    ("reply", "message", "retryable"),
    [
        pytest.param(Reply.auth_error(), "Anthropic rejected the API key (401)", False, id="401"),
        pytest.param(Reply.overloaded(), "Anthropic is overloaded; retry in a minute.", True, id="529"),
    ],
)
def test_api_failures_are_messages(page: Page, chat_api: FakeAnthropic, reply: Reply, message: str,
                                   retryable: bool) -> None:
    chat_api.enqueue(reply)
    open_chat(page)
    ask(page, "Anything")
    expect(page.get_by_test_id("chat-error")).to_contain_text(message)
    expect(page.get_by_test_id("chat-retry")).to_have_count(1 if retryable else 0)
    page.get_by_test_id("chat-dismiss-error").click()
    expect(page.get_by_test_id("chat-error")).to_have_count(0)


def test_unknown_resources_are_flagged_and_corrected_once(page: Page, chat_api: FakeAnthropic) -> None:
    chat_api.enqueue(
        Reply.text(words("Try:\n\n```sql\nSELECT name FROM aws.ec2.instance WHERE region = 'eu-west-1';\n```\n")),
        Reply.text(words("Fixed:\n\n```sql\nSELECT instanceId FROM aws.ec2.instances WHERE region = 'eu-west-1';\n"
                         "```\n")),
    )
    open_chat(page)
    ask(page, "instances in eu-west-1")
    expect(answers(page)).to_have_count(2)
    first, second = answers(page).nth(0), answers(page).nth(1)
    expect(first.get_by_test_id("chat-notes")).to_contain_text(
        "aws.ec2.instance — no resource 'instance' in aws.ec2 (did you mean aws.ec2.instances?)")
    correction = questions(page).nth(1)
    expect(correction).to_contain_text("Correction")
    expect(second).to_contain_text("Fixed:")
    expect(second.get_by_test_id("chat-notes")).to_have_count(0)
    expect(page.get_by_test_id("chat-send")).to_be_visible()
    sent = wait_for_request(chat_api, 2).messages
    assert sent[-1]["role"] == "user"
    assert sent[-1]["content"].startswith("Checking your SQL against the installed StackQL catalog found")
    assert "aws.ec2.instance: no resource 'instance' in aws.ec2" in sent[-1]["content"]
    assert len(chat_api.message_requests) == 2  # one correction round, not more


def test_modes_keep_the_history_and_clear_starts_over(page: Page, chat_api: FakeAnthropic) -> None:
    chat_api.enqueue(Reply.text(["First answer."]))
    open_chat(page)
    ask(page, "first question")
    expect(answers(page).first).to_contain_text("First answer.")

    page.get_by_test_id("chat-mode-interpret").click()
    expect(page.get_by_test_id("chat-mode-interpret")).to_have_attribute("aria-pressed", "true")
    expect(questions(page)).to_have_count(1)  # switching keeps the conversation
    # Interpret needs a result: without one the question is refused and stays in the box.
    ask(page, "what stands out?")
    expect(page.get_by_test_id("chat-error")).to_contain_text("There is no result to interpret")
    expect(page.get_by_test_id("chat-input")).to_have_value("what stands out?")
    assert len(chat_api.message_requests) == 1

    page.get_by_test_id("chat-mode-write").click()
    expect(page.get_by_test_id("chat-mode-write")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("chat-clear").click()
    expect(page.get_by_test_id("chat-message")).to_have_count(0)
    expect(page.get_by_test_id("chat-empty")).to_be_visible()
    expect(page.get_by_test_id("chat-error")).to_have_count(0)

    chat_api.enqueue(Reply.text(["Fresh start."]))
    ask(page, "second question")
    expect(answers(page).first).to_contain_text("Fresh start.")
    assert wait_for_request(chat_api, 2).messages == [{"role": "user", "content": "second question"}]


def test_example_questions_fill_the_box(page: Page, chat_api: FakeAnthropic) -> None:
    open_chat(page)
    example = page.get_by_test_id("chat-example").first
    text = example.inner_text().strip()
    example.click()
    expect(page.get_by_test_id("chat-input")).to_have_value(text)
    expect(page.get_by_test_id("chat-input")).to_be_focused()


# --- with the IDE: insert into the editor, run, Explain and Interpret --------------------------------
def test_streamed_answer_is_inserted_into_the_editor_and_runs(page: Page, chat_api: FakeAnthropic) -> None:
    chat_api.enqueue(Reply.text(words("Seven generated rows:\n\n```sql\nSELECT item_id, name FROM synthetic.bulk.items "
                                      "WHERE count = 7;\n```\n\nRun it to see them."), delays=0.05))
    open_chat(page)
    expect(page.get_by_test_id("ide-interpret")).to_be_disabled()  # nothing to interpret yet
    ask(page, "Give me seven synthetic.bulk.items")
    answer = answers(page).first
    expect(answer).to_contain_text("Seven generated rows")
    assert "Run it to see them." not in answer.inner_text()  # still streaming
    expect(answer).to_contain_text("Run it to see them.")
    expect(answer.get_by_test_id("chat-notes")).to_have_count(0)

    answer.get_by_test_id("chat-insert-sql").click()
    expect(page.get_by_test_id("ide-editor").locator(".view-lines")).to_contain_text("synthetic.bulk.items")
    assert editor_value(page) == "SELECT item_id, name FROM synthetic.bulk.items WHERE count = 7;\n"
    page.get_by_test_id("ide-run").click()
    expect(page.get_by_test_id("ide-row-count")).to_have_text("7 rows")
    expect(page.get_by_test_id("ide-interpret")).to_be_enabled()


def test_interpret_sends_the_result_as_a_capped_markdown_table(page: Page, chat_api: FakeAnthropic) -> None:
    open_chat(page)
    type_sql(page, "SELECT * FROM synthetic.bulk.items WHERE count = 60")
    page.get_by_test_id("ide-run").click()
    expect(page.get_by_test_id("ide-row-count")).to_have_text("60 rows")

    chat_api.enqueue(Reply.text(words("60 items, none stands out."), delays=0.02))
    page.get_by_test_id("ide-interpret").click()
    expect(page.get_by_test_id("chat-mode-interpret")).to_have_attribute("aria-pressed", "true")
    expect(questions(page).first).to_contain_text("Interpret the result")
    expect(questions(page).first).to_contain_text("50 of 60 rows, 12 of 15 columns")
    expect(answers(page).first).to_contain_text("60 items, none stands out.")
    sent = wait_for_request(chat_api).messages[-1]["content"]
    assert "<query>\n```sql\nSELECT * FROM synthetic.bulk.items WHERE count = 60\n```\n</query>" in sent
    table = sent.split("<result>\n", 1)[1].split("\n</result>", 1)[0].splitlines()
    assert table[0].startswith("| item_id | name | category |") and table[1].startswith("|---|---|")
    assert len(table) == 2 + 50 and table[2].startswith("| item-0000000 | Item 0 A |")
    assert "Note: Showing the first 50 of 60 rows; 10 rows were left out. Showing 12 of 15 columns;" in sent
    assert wait_for_request(chat_api).system.startswith("You are a cloud infrastructure analyst")

    # A follow-up in Interpret mode does not send the same result again.
    chat_api.enqueue(Reply.text(["Mostly compute."]))
    ask(page, "Which category is most common?")
    expect(answers(page).nth(1)).to_contain_text("Mostly compute.")
    follow_up = wait_for_request(chat_api, 2).messages
    assert follow_up[-1] == {"role": "user", "content": "Which category is most common?"}
    assert follow_up[0]["content"] == sent  # the table is still in the conversation


def test_explain_posts_the_editor_query_in_write_mode(page: Page, chat_api: FakeAnthropic) -> None:
    open_chat(page)
    page.get_by_test_id("chat-mode-interpret").click()
    type_sql(page, "SELECT instanceId FROM aws.ec2.instances LIMIT 5")
    chat_api.enqueue(Reply.text(words("It lists the EC2 instance ids of us-east-1."), delays=0.02))
    page.get_by_test_id("ide-explain").click()
    expect(page.get_by_test_id("chat-mode-write")).to_have_attribute("aria-pressed", "true")
    expect(questions(page).first).to_contain_text("Explain this query")
    expect(answers(page).first).to_contain_text("It lists the EC2 instance ids of us-east-1.")
    request = wait_for_request(chat_api)
    sent = request.messages[-1]["content"]
    assert sent.startswith("Explain what this StackQL query does")
    assert "```sql\nSELECT instanceId FROM aws.ec2.instances LIMIT 5\n```" in sent
    assert "## aws.ec2.instances" in request.system  # grounded in the resource it names
    assert "<editor_sql>" in request.system


def test_explain_with_an_empty_editor_says_what_to_do(page: Page, chat_api: FakeAnthropic) -> None:
    open_chat(page)
    page.get_by_test_id("ide-explain").click()
    expect(page.get_by_test_id("chat-error")).to_contain_text("The editor is empty")
    expect(page.get_by_test_id("chat-message")).to_have_count(0)
    assert chat_api.message_requests == []
