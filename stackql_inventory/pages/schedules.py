"""Schedules page: saved queries run on a cron into inventory tables (list, new/edit, run now, pause, delete,
run history), with live status while runs are queued or running."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

import reflex as rx

from stackql_inventory import formatting, routes
from stackql_inventory.components.layout import empty_state, error_text, notice_text, page_frame
from stackql_inventory.components.schedule_form import delete_dialog, schedule_dialog
from stackql_inventory.components.schedule_table import schedule_table
from stackql_inventory.services import identity, library, schedules
from stackql_inventory.services.errors import UserFacingError
from stackql_inventory.services.jobs import RunInfo
from stackql_inventory.services.schedules import ScheduleForm, ScheduleView
from stackql_inventory.state.app_state import AppState, current_identity, list_error

# Seconds between status refreshes while a run is queued or running.
POLL_ACTIVE_S = 1.5
# With nothing running, the poller also wakes for a run due within this many seconds; beyond, it stops.
POLL_AHEAD_S = 600.0
# A poller stops after this long; loading the page or any action starts it again.
POLL_MAX_S = 3600.0
DEFAULT_TIMEZONE = "UTC"


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except Exception:  # a zone this host does not know: show UTC
        return None


def _when(dt: datetime | None, tz: str) -> str:
    return formatting.timestamp(dt, tz=_zone(tz)) if dt else ""


def _row(v: ScheduleView) -> dict[str, str]:
    return {
        "id": str(v.id), "query_id": str(v.query_id), "query": v.query_name, "cron": v.cron_expression,
        "description": v.cron_description,
        "timezone": v.timezone, "next_run": _when(v.next_run_at, v.timezone) if v.is_active else "paused",
        "next_run_ts": str(v.next_run_at.timestamp()) if v.next_run_at else "",
        "backoff": v.backoff_note,
        "target": v.target, "schema": v.target_schema, "table": v.target_table, "mode": v.write_mode, "keys": ", ".join(v.key_columns),
        "active": "active" if v.is_active else "paused", "is_active": "1" if v.is_active else "",
        "last_run": _when(v.last_run_at, v.timezone), "status": v.status, "in_flight": "1" if v.in_flight else "",
        "last_run_ts": str(v.last_run_at.timestamp()) if v.last_run_at else "",
        "problem": v.problem, "job_id": v.job_id, "job_url": v.job_url,
    }


def _run_row(r: RunInfo, tz: str) -> dict[str, str]:
    return {
        "id": r.run_id, "trigger": r.trigger, "started": _when(r.started_at, tz), "status": r.status,
        "duration": formatting.duration(r.duration_s), "rows": formatting.count(r.rows_written) or "—",
        "error_class": r.error_class, "error": r.error_message, "url": r.url,
    }


class SchedulesState(rx.State):
    """The schedule list, the new/edit dialog, the delete confirmation and one schedule's run history."""

    # One dict per schedule, as the table shows it.
    rows: list[dict[str, str]] = []
    # Why the list could not be loaded ('' when fine; database problems go to the banner).
    load_error: str = ""
    # What the last action did (e.g. "Run queued"); '' when there is nothing to say.
    notice: str = ""
    # Why the last row action failed ('' when fine).
    action_error: str = ""
    # Saved queries for the picker: id and name.
    queries: list[dict[str, str]] = []
    # Id of the schedule a row action is working on ('' when idle).
    busy_id: str = ""
    # Id of the schedule a link pointed at (`?schedule=<id>`): its row is highlighted ('' for none).
    highlight_id: str = ""

    # Whether the new/edit dialog is open.
    dialog_open: bool = False
    # Id of the schedule being edited ('' for a new one).
    editing_id: str = ""
    # The dialog's fields, as typed.
    form_query_id: str = ""
    form_cron: str = "0 * * * *"
    form_timezone: str = DEFAULT_TIMEZONE
    form_table: str = ""
    form_mode: str = "replace"
    form_keys: str = ""
    # Instant cron feedback: description, next five runs, or why the cron is invalid.
    cron_preview: str = ""
    cron_error: str = ""
    next_runs: list[str] = []
    # Why saving failed ('' when fine).
    form_error: str = ""
    # Whether a save is in progress.
    saving: bool = False

    # The delete confirmation: which schedule, its table, and whether to drop the table too.
    delete_open: bool = False
    delete_id: str = ""
    delete_target: str = ""
    delete_drop: bool = False

    # The schedule whose run history is shown ('' for none), its runs, and why they could not be loaded.
    history_id: str = ""
    history: list[dict[str, str]] = []
    history_error: str = ""
    history_loading: bool = False

    # The run "Run now" started, followed until the list shows it finished: its schedule's id ('' for none),
    # that schedule's newest run (start time and status) before the click, and whether it was seen in flight.
    _followed_id: str = ""
    _followed_before: list[str] = []
    _followed_seen: bool = False

    # Whether this tab's status poller runs.
    _polling: bool = False
    # Set by an action that started a run: the sleeping poller refreshes at once.
    _poll_wake: bool = False

    # --- loading -------------------------------------------------------------------------------
    @rx.event(background=True)
    async def load(self):
        """Load the schedules and the saved queries, then keep statuses live.

        Links may name a schedule to show (`?schedule=<id>`, from the Inventory list) or a saved query to
        schedule (`?new=<query id>`, from the IDE's "Schedule…").
        """
        try:
            queries = await rx.run_in_thread(library.list_queries)
        except UserFacingError:
            queries = []
        async with self:
            self.queries = [{"id": str(q.id), "name": q.name} for q in queries]
            params = self.router.url.query_parameters
            linked_schedule, linked_query = params.get("schedule", "").strip(), params.get("new", "").strip()
            who = current_identity(self)
            self.highlight_id = ""  # only the link being followed is highlighted
        loaded = await _refresh(self)
        if loaded and linked_query:
            # Asked here, not read from AppState: its own on_load may not have finished.
            editor = await rx.run_in_thread(partial(identity.can_edit, who))
            async with self:
                opened = self._open_for_query(linked_query) if editor else False
                if not editor:
                    self.action_error = "Read-only access: ask an editor to schedule this query."
            if opened:  # drop ?new= so that reloading the page does not open the dialog again
                yield rx.call_script(f"window.history.replaceState(null, '', '{routes.SCHEDULES}')")
        elif loaded and linked_schedule:
            async with self:
                found = any(r["id"] == linked_schedule for r in self.rows)
                self.highlight_id = linked_schedule if found else ""
                if not found:
                    self.action_error = (f"Schedule #{linked_schedule[:20]} no longer exists: it was deleted. "
                                         "Its inventory table stays until it is dropped.")
                else:
                    self.history_id, self.history, self.history_error = linked_schedule, [], ""
                    self.history_loading = True
            if found:
                yield rx.call_script(_scroll_to_row(linked_schedule))
                await _load_history(self, linked_schedule)
        yield SchedulesState.poll

    def _open_for_query(self, query_id: str) -> bool:
        """Open the new-schedule dialog for saved query `query_id`, with a table name from its name."""
        query = next((q for q in self.queries if q["id"] == query_id), None)
        if query is None:
            self.action_error = (f"Saved query #{query_id[:20]} no longer exists, so it cannot be scheduled. "
                                 "Pick another one with “New schedule”.")
            return False
        self._reset_form()
        self.form_query_id = query_id
        self.form_table = schedules.suggest_table_name(query["name"])
        self._preview()
        self.dialog_open = True
        return True

    def _reset_form(self) -> None:
        self.editing_id = ""
        self.form_query_id = ""
        self.form_cron, self.form_timezone, self.form_table = "0 * * * *", DEFAULT_TIMEZONE, ""
        self.form_mode, self.form_keys, self.form_error = "replace", "", ""

    @rx.event(background=True)
    async def poll(self):
        """Refresh statuses while a run is queued or running, or one is due soon; stop otherwise.

        A poller already running (asleep until a run due in minutes) is woken instead: the status of a
        run just started must change within seconds, not at the next due slot.
        """
        async with self:
            if self._polling:
                self._poll_wake = True
                return
            self._polling, self._poll_wake = True, False
        try:
            deadline = time.monotonic() + POLL_MAX_S
            while time.monotonic() < deadline:
                async with self:
                    wait = _poll_wait(self.rows)
                if wait is None:
                    break
                await _sleep_unless_woken(self, wait)
                await _refresh(self)
        finally:
            async with self:
                self._polling = False

    # --- the new/edit dialog -------------------------------------------------------------------
    @rx.event
    def open_new(self):
        """Open an empty dialog."""
        self._reset_form()
        self._preview()
        self.dialog_open = True

    @rx.event
    def open_edit(self, schedule_id: str):
        """Open the dialog on an existing schedule."""
        row = next((r for r in self.rows if r["id"] == schedule_id), None)
        if row is None:
            return
        self.editing_id = schedule_id
        self.form_query_id = row["query_id"]
        self.form_cron, self.form_timezone, self.form_table = row["cron"], row["timezone"], row["table"]
        self.form_mode, self.form_keys, self.form_error = row["mode"], row["keys"], ""
        self._preview()
        self.dialog_open = True

    @rx.event
    def set_dialog_open(self, value: bool):
        self.dialog_open = value

    @rx.event
    def set_form_query(self, value: str):
        self.form_query_id = value

    @rx.event
    def set_form_cron(self, value: str):
        self.form_cron = value
        self._preview()

    @rx.event
    def set_form_timezone(self, value: str):
        self.form_timezone = value
        self._preview()

    @rx.event
    def apply_preset(self, expr: str):
        self.form_cron = expr
        self._preview()

    @rx.event
    def set_form_table(self, value: str):
        self.form_table = value

    @rx.event
    def set_form_mode(self, value: str):
        self.form_mode = value

    @rx.event
    def set_form_keys(self, value: str):
        self.form_keys = value

    def _preview(self) -> None:
        preview = schedules.preview_cron(self.form_cron, self.form_timezone.strip(), now=datetime.now(UTC))
        self.cron_preview, self.cron_error = preview.description, preview.error
        self.next_runs = [t.strftime("%a %Y-%m-%d %H:%M %Z") for t in preview.next_runs]

    @rx.event(background=True)
    async def save(self):
        """Validate and save the dialog; on error keep it open with the reason."""
        async with self:
            if self.saving:
                return
            self.saving, self.form_error = True, ""
            who = current_identity(self)
            editing = self.editing_id
            form = ScheduleForm(
                query_id=int(self.form_query_id) if self.form_query_id.isdigit() else None,
                cron_expression=self.form_cron, timezone=self.form_timezone, target_table=self.form_table,
                write_mode=self.form_mode, key_columns=schedules.parse_key_columns(self.form_keys),
            )
        try:
            if editing:
                outcome = await rx.run_in_thread(partial(schedules.update_schedule, who, int(editing), form))
            else:
                outcome = await rx.run_in_thread(partial(schedules.create_schedule, who, form))
        except UserFacingError as e:
            async with self:
                self.form_error, self.saving = e.message, False
            return
        async with self:
            self.saving, self.dialog_open = False, False
            verb = "updated" if editing else "created"
            self.notice = " ".join(filter(None, [f"Schedule for {outcome.schedule.target} {verb}.", outcome.notice]))
            self.action_error = ""
        await _refresh(self)
        return SchedulesState.poll

    # --- row actions ---------------------------------------------------------------------------
    @rx.event(background=True)
    async def run_now(self, schedule_id: str):
        """Start a run now; the status turns to queued, then running, and the notice to the run's outcome."""
        async with self:
            row = next((r for r in self.rows if r["id"] == schedule_id), None)
            before = [row["last_run_ts"], row["status"]] if row else ["", ""]
        await _act(self, schedule_id, lambda who: schedules.run_now(who, int(schedule_id)), follow=before)
        return SchedulesState.poll

    def _follow_run(self) -> None:
        """Once the list shows that the run "Run now" started has finished, say how it ended instead of
        "Run queued…" (a notice that outlived the run read as if it were still waiting)."""
        if not self._followed_id:
            return
        row = next((r for r in self.rows if r["id"] == self._followed_id), None)
        if row is None:  # deleted meanwhile: its own action said so
            self._followed_id = ""
            return
        if row["in_flight"]:
            self._followed_seen = True
            return
        if not self._followed_seen and [row["last_run_ts"], row["status"]] == self._followed_before:
            return  # the backend does not list the new run yet
        self._followed_id = ""
        self.notice, self.action_error = _run_outcome(row)

    @rx.event(background=True)
    async def pause(self, schedule_id: str):
        await _act(self, schedule_id, lambda who: _paused(schedules.set_active(who, int(schedule_id), False)))

    @rx.event(background=True)
    async def resume(self, schedule_id: str):
        await _act(self, schedule_id, lambda who: _resumed(schedules.set_active(who, int(schedule_id), True)))
        return SchedulesState.poll

    @rx.event
    def ask_delete(self, schedule_id: str):
        """Ask for confirmation (and whether to drop the table too)."""
        row = next((r for r in self.rows if r["id"] == schedule_id), None)
        if row is None:
            return
        self.delete_id, self.delete_target, self.delete_drop = schedule_id, row["target"], False
        self.delete_open = True

    @rx.event
    def set_delete_open(self, value: bool):
        self.delete_open = value

    @rx.event
    def set_delete_drop(self, value: bool):
        self.delete_drop = value

    @rx.event(background=True)
    async def confirm_delete(self):
        async with self:
            schedule_id, drop = self.delete_id, self.delete_drop
            self.delete_open = False
            if self.history_id == schedule_id:
                self.history_id, self.history = "", []
        await _act(self, schedule_id,
                   lambda who: schedules.delete_schedule(who, int(schedule_id), drop_table=drop))

    # --- run history ---------------------------------------------------------------------------
    @rx.event(background=True)
    async def toggle_history(self, schedule_id: str):
        """Show (or hide) a schedule's runs."""
        async with self:
            if self.history_id == schedule_id:
                self.history_id, self.history, self.history_error = "", [], ""
                return
            self.history_id, self.history, self.history_error = schedule_id, [], ""
            self.history_loading = True
        await _load_history(self, schedule_id)


# --- helpers used by the background events (they take the state proxy) ----------------------------


def _scroll_to_row(schedule_id: str) -> str:
    """JS that scrolls the schedule's row into view once it is rendered."""
    selector = json.dumps(f'[data-testid="schedule-row"][data-schedule-id="{schedule_id}"]')
    return (f"setTimeout(() => {{ const r = document.querySelector({selector}); "
            "if (r) r.scrollIntoView({block: 'center'}); }, 150)")


def _run_outcome(row: dict[str, str]) -> tuple[str, str]:
    """(notice, error) saying how the run of `row`'s schedule ended."""
    if row["status"] == "failed":
        return "", f"The run of {row['target']} failed. Open its run history for the error."
    return f"The run of {row['target']} finished: {row['status']}.", ""


def _paused(outcome) -> str:  # noqa: ANN001 - schedules.Outcome
    return f"Schedule for {outcome.schedule.target} paused."


def _resumed(outcome) -> str:  # noqa: ANN001 - schedules.Outcome
    return f"Schedule for {outcome.schedule.target} resumed."


def _poll_wait(rows: list[dict[str, str]]) -> float | None:
    """How long the poller sleeps: briefly while a run is in flight, until the next due run if it is soon."""
    if any(r["in_flight"] for r in rows):
        return POLL_ACTIVE_S
    now = time.time()
    upcoming = [float(r["next_run_ts"]) - now for r in rows if r["is_active"] and r["next_run_ts"]]
    soonest = min(upcoming, default=None)
    if soonest is None or soonest > POLL_AHEAD_S:
        return None
    return max(soonest, 0.0) + POLL_ACTIVE_S


async def _sleep_unless_woken(state, seconds: float) -> None:  # noqa: ANN001 - the SchedulesState proxy
    """Sleep `seconds`, in steps of at most POLL_ACTIVE_S, returning early when `poll` is asked again."""
    wake_at = time.monotonic() + seconds
    while (left := wake_at - time.monotonic()) > 0:
        await asyncio.sleep(min(left, POLL_ACTIVE_S))
        async with state:
            woken, state._poll_wake = state._poll_wake, False
        if woken:
            return


async def _refresh(state) -> bool:  # noqa: ANN001 - the SchedulesState proxy of a background event
    """Reload the list (and the open run history while a run goes); False when the list could not be loaded."""
    try:
        items = await rx.run_in_thread(schedules.list_schedules)
    except UserFacingError as e:
        problem = await list_error(state, e)
        async with state:
            state.load_error = problem
        return False
    async with state:
        state.load_error = ""
        state.rows = [_row(v) for v in items]
        state._follow_run()
        history_id = state.history_id
        in_flight = any(r["in_flight"] for r in state.rows if r["id"] == history_id)
        stale = any(h["status"] in ("queued", "running") for h in state.history)
    if history_id and (in_flight or stale):
        await _load_history(state, history_id)
    return True


async def _load_history(state, schedule_id: str) -> None:  # noqa: ANN001
    try:
        found = await rx.run_in_thread(partial(schedules.run_history, int(schedule_id)))
    except UserFacingError as e:
        async with state:
            if state.history_id == schedule_id:
                state.history_error, state.history_loading = e.message, False
        return
    async with state:
        if state.history_id != schedule_id:
            return
        tz = next((r["timezone"] for r in state.rows if r["id"] == schedule_id), "UTC")
        state.history = [_run_row(r, tz) for r in found]
        state.history_error, state.history_loading = "", False


async def _act(state, schedule_id: str, action, *, follow: list[str] | None = None) -> None:  # noqa: ANN001
    """Run one row action off the event loop; report its message or error, then refresh the list.

    `follow` (the schedule's newest run before the action: start time, status) makes the notice follow the
    run the action started, until it finished.
    """
    async with state:
        if state.busy_id:
            return
        state.busy_id, state.action_error, state.notice = schedule_id, "", ""
        who = current_identity(state)
    try:
        message = await rx.run_in_thread(partial(action, who))
    except UserFacingError as e:
        async with state:
            state.action_error, state.busy_id = e.message, ""
        await _refresh(state)
        return
    async with state:
        state.notice, state.busy_id = message, ""
        if follow is not None:
            state._followed_id, state._followed_before, state._followed_seen = schedule_id, follow, False
        elif state._followed_id:  # the notice now says something else: stop replacing it
            state._followed_id = ""
    await _refresh(state)


def page() -> rx.Component:
    S = SchedulesState
    return page_frame(
        "schedules",
        "Schedules",
        error_text(S.load_error),
        error_text(S.action_error, "schedules-error"),
        notice_text(S.notice, "schedules-notice"),
        rx.cond(
            S.rows.length() > 0,
            schedule_table(S),
            empty_state("calendar-clock", "No schedules yet",
                        "Save a query in the IDE, then schedule it to fill an inventory table.", "schedules-empty",
                        read_only_hint="Editors schedule saved queries here to fill inventory tables."),
        ),
        schedule_dialog(S),
        delete_dialog(S),
        actions=rx.button(
            rx.icon("plus", size=16), "New schedule", on_click=S.open_new, disabled=~AppState.can_edit,
            custom_attrs={"data-testid": "schedule-new"},
        ),
    )
