"""The assistant panel's state: one conversation per browser session, streamed answers, Explain / Interpret."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import reflex as rx

from stackql_inventory.services import ai, assistant
from stackql_inventory.services.ai import ChatMode
from stackql_inventory.services.assistant import ChatItem, Prompt
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.state.app_state import current_identity

# The question box (an uncontrolled textarea: read on submit, cleared by id once the question is taken).
INPUT_ID = "chat-input-box"
CORRECTION_LABEL = "Correction"
# Sticks the conversation to its newest message (see chat.py: the scroll container installs __chatPin).
PIN_SCRIPT = "window.__chatPin && window.__chatPin()"


@dataclass(frozen=True)
class _Context:
    """What a request is grounded in, read from the IDE when it starts."""

    provider: str = ""
    editor_sql: str = ""


async def _ide(state: rx.State):
    """The IDE's state (imported here: pages/ide.py imports this package)."""
    from stackql_inventory.pages.ide import IdeState

    return await state.get_state(IdeState)


def _owner(state: rx.State) -> str:
    """Who is asking (results are read only by the user who ran them)."""
    return current_identity(state).user


class ChatState(rx.State):
    """The conversation of this browser session."""

    # write | interpret: what the next question asks for (switching keeps the history).
    mode: str = ChatMode.WRITE.value
    # Finished messages, oldest first.
    messages: list[ChatItem] = []
    # The answer being streamed (shown while `streaming`).
    live: ChatItem = ChatItem(role="assistant", state="streaming")
    # True from sending a question until its answer ended.
    streaming: bool = False
    # What the assistant is doing before the first token ("Reading the catalog…"); "" once text flows.
    status: str = ""
    # The last failure, as the user reads it ("" when none).
    error: str = ""
    # Whether sending the same request again may work (Retry button).
    can_retry: bool = False
    # Seconds Anthropic asked to wait before retrying ("" when it did not say).
    retry_after: str = ""

    # Set by Stop; the streaming task checks it between chunks.
    _stop: bool = False
    # Bumped by Clear: a task from an older conversation discards its results.
    _generation: int = 0
    # Text the API got for a message when it differs from what is shown (prepared prompts), by message id.
    _api_texts: dict[str, str] = {}
    # Id of the IDE result already sent in Interpret mode (sent again only when it changes).
    _attached_result_id: str = ""

    # --- small, synchronous events ------------------------------------------------------------
    @rx.event
    def set_mode(self, mode: str):
        """Switch between Write Query and Interpret Results; the conversation stays."""
        if mode in (ChatMode.WRITE.value, ChatMode.INTERPRET.value):
            self.mode = mode

    @rx.event
    def stop(self):
        """Stop the answer being generated (the stream closes within a fraction of a second)."""
        if self.streaming:
            self._stop = True

    @rx.event
    def clear(self):
        """Start a new conversation (an answer still streaming is stopped and dropped)."""
        self._generation += 1
        self._stop = True
        self.messages = []
        self.live = ChatItem(role="assistant", state="streaming")
        self.streaming = False
        self.status = ""
        self._api_texts = {}
        self._attached_result_id = ""
        self._clear_error()

    @rx.event
    def dismiss_error(self):
        """Hide the error message."""
        self._clear_error()

    def _clear_error(self) -> None:
        self.error, self.can_retry, self.retry_after = "", False, ""

    # --- asking -------------------------------------------------------------------------------
    @rx.event(background=True)
    async def send(self, form_data: dict):
        """Send the typed question (the form's `question` field) and stream the answer."""
        question = str(form_data.get("question") or "").strip()
        if not question:
            return
        async with self:
            if self.streaming:
                return
            mode = ChatMode(self.mode)
            ide = await _ide(self)
            context = _Context(ide.provider, ide.sql)
            result_id, result_sql, owner = ide.result_id, ide.result_sql, _owner(self)
            attach = assistant.needs_result(mode, result_id, self._attached_result_id)
        try:
            if attach:
                sample = await rx.run_in_thread(partial(assistant.result_sample, result_id, owner))
                prompt = assistant.interpret_turn(result_sql, sample, question)
            else:
                prompt = assistant.question_turn(question)
        except UserFacingError as e:
            async with self:
                self._fail(e.message)
            return
        async with self:
            generation = self._begin(prompt, mode)
            if generation is None:
                return
            if attach:
                self._attached_result_id = result_id
        yield rx.set_value(INPUT_ID, "")
        yield rx.call_script(PIN_SCRIPT)
        await self._converse(generation, context, correct=True)

    @rx.event(background=True)
    async def explain(self):
        """The IDE's Explain button: ask, in Write mode, what the editor's query does."""
        async with self:
            if self.streaming:
                return
            ide = await _ide(self)
            context = _Context(ide.provider, ide.sql)
        try:
            prompt = assistant.explain_turn(context.editor_sql)
        except UserFacingError as e:
            async with self:
                self._fail(e.message)
            return
        async with self:
            self.mode = ChatMode.WRITE.value
            generation = self._begin(prompt, ChatMode.WRITE)
        if generation is None:
            return
        yield rx.call_script(PIN_SCRIPT)
        await self._converse(generation, context, correct=False)

    @rx.event(background=True)
    async def interpret(self):
        """The IDE's Interpret button: send the last result (as a capped table) for an analyst's reading."""
        async with self:
            if self.streaming:
                return
            ide = await _ide(self)
            context = _Context(ide.provider, ide.sql)
            result_id, result_sql, owner = ide.result_id, ide.result_sql, _owner(self)
        try:
            sample = await rx.run_in_thread(partial(assistant.result_sample, result_id, owner))
            prompt = assistant.interpret_turn(result_sql, sample)
        except UserFacingError as e:
            async with self:
                self._fail(e.message)
            return
        async with self:
            self.mode = ChatMode.INTERPRET.value
            generation = self._begin(prompt, ChatMode.INTERPRET)
            if generation is not None:
                self._attached_result_id = result_id
        if generation is None:
            return
        yield rx.call_script(PIN_SCRIPT)
        await self._converse(generation, context, correct=False)

    @rx.event(background=True)
    async def retry(self):
        """Ask again for the last question whose answer failed (an incomplete answer is replaced)."""
        async with self:
            if self.streaming or not self.can_retry:
                return
            if self.messages and self.messages[-1].role == "assistant" and self.messages[-1].state != "done":
                self.messages.pop()
            if not self.messages or self.messages[-1].role != "user":
                self._fail("There is no question to retry. Type one, then press Send.")
                return
            correct = self.messages[-1].label != CORRECTION_LABEL
            ide = await _ide(self)
            context = _Context(ide.provider, ide.sql)
            self._clear_error()
            self._stop = False
            self.streaming = True
            generation = self._generation
        yield rx.call_script(PIN_SCRIPT)
        await self._converse(generation, context, correct=correct)

    # --- the streaming task (helpers: names starting with _ are not events) --------------------
    def _fail(self, message: str, *, retryable: bool = False, retry_after_s: float | None = None) -> None:
        self.error, self.can_retry = message, retryable
        self.retry_after = str(max(1, math.ceil(retry_after_s))) if retry_after_s is not None else ""

    def _begin(self, prompt: Prompt, mode: ChatMode) -> int | None:
        """Append the user's message and mark an answer under way (call inside `async with self`)."""
        if self.streaming:
            return None
        item = assistant.user_item(prompt.display, mode, label=prompt.label)
        if prompt.api_text != prompt.display:
            self._api_texts[item.id] = prompt.api_text
        self.messages.append(item)
        self._clear_error()
        self._stop = False
        self.streaming = True
        return self._generation

    async def _converse(self, generation: int, context: _Context, *, correct: bool) -> None:
        """Answer the conversation's last user message; with `correct`, one automatic correction round."""
        while True:
            async with self:
                if self._generation != generation:
                    return
                mode = ChatMode(self.messages[-1].mode)
                turns = assistant.history(self.messages, self._api_texts)
                live = assistant.answer_item(mode)
                self.live = live
                self.status = "Reading the catalog…" if mode == ChatMode.WRITE else "Waiting for Claude…"
            try:
                request = await rx.run_in_thread(partial(
                    assistant.prepare, mode, turns, provider=context.provider, editor_sql=context.editor_sql))
            except UserFacingError as e:
                async with self:
                    if self._generation == generation:
                        self._fail(e.message)
                        self.streaming, self.status = False, ""
                return
            async with self:
                if self._generation != generation:
                    return
                self.status = "Waiting for Claude…"

            async def on_tick(text: str | None) -> bool:
                async with self:
                    if self._generation != generation:
                        return False
                    if text is not None:
                        self.live = replace(live, segments=assistant.segments(text))
                        self.status = ""
                    return not self._stop

            relayed = await assistant.relay(assistant.answer(request), on_tick)
            notes: list[ai.ValidationNote] = []
            if relayed.done is not None and mode == ChatMode.WRITE:
                async with self:
                    if self._generation != generation:
                        return
                    self.status = "Checking the SQL against the catalog…"
                try:
                    notes = await rx.run_in_thread(partial(assistant.check, relayed.text))
                except UserFacingError as e:
                    notes = [ai.ValidationNote("", f"not checked against the catalog: {e.message}", -1)]
            item = assistant.finished(live, relayed, notes)
            fix = assistant.correctable(notes) if correct and relayed.done and not relayed.done.truncated else []
            async with self:
                if self._generation != generation:
                    return
                if relayed.failed is None or relayed.failed.incomplete:
                    self.messages.append(item)
                self.live = assistant.answer_item(mode)
                if relayed.failed is not None:
                    failed = relayed.failed
                    self._fail(failed.message, retryable=failed.retryable, retry_after_s=failed.retry_after_s)
                if not fix or self._stop:
                    self.streaming, self.status = False, ""
                    return
                # One automatic round: show what was wrong, and ask Claude to fix it.
                shown = "Checking the SQL against the catalog found:\n\n" + "\n".join(
                    f"- {text}" for text in assistant.note_texts(fix, len(ai.extract_sql_blocks(relayed.text))))
                correction = assistant.user_item(shown, mode, label=CORRECTION_LABEL)
                self._api_texts[correction.id] = ai.correction_prompt(fix)
                self.messages.append(correction)
            correct = False
