"""The schedules service with the local backend: validation (nothing saved on error), roles, cron preview,
the list with next runs and statuses, edit, pause/resume, run-now queueing, run history, delete (+ drop)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from stackql_inventory.config import get_settings
from stackql_inventory.services import schedules
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from stackql_inventory.services.schedules import ScheduleForm
from tests.support.scheduling import runs, schedule_row, seed_query

ANA = Identity(user="ana@example.com", display_name="Ana", source="proxy")
BOB = Identity(user="bob@example.com", display_name="Bob", source="proxy")
NOW = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)


def _form(qid: int | None, **changes) -> ScheduleForm:
    base = dict(query_id=qid, cron_expression="*/15 * * * *", timezone="UTC", target_table="aws_instances",
                write_mode="replace", key_columns=())
    base.update(changes)
    return ScheduleForm(**base)


def _count(db: sa.Engine) -> int:
    with db.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM stackql_app.schedules")).scalar()


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "needle"), [
    (dict(query_id=None), "Pick the saved query"),
    (dict(query_id=999_999), "no longer exists"),
    (dict(cron_expression=""), "Cron expression is empty"),
    (dict(cron_expression="*/15 * * *"), "Cron needs 5 fields"),
    (dict(cron_expression="61 * * * *"), "out of range"),
    (dict(cron_expression="0 12 1 * MON"), "Databricks (Quartz) cannot express"),
    (dict(cron_expression="0 0 12 * * ?"), "Quartz expression with a seconds field"),
    (dict(timezone="Mars/Olympus"), "Unknown time zone"),
    (dict(timezone="europe/berlin"), "Did you mean `Europe/Berlin`"),
    (dict(target_table=""), "Enter the inventory table"),
    (dict(target_table="AWS-Instances"), "not a valid table name"),
    (dict(target_table="1st_table"), "not a valid table name"),
    (dict(target_table="x" * 64), "not a valid table name"),
    (dict(target_table="robert'); drop table students;--"), "not a valid table name"),
    (dict(write_mode="upsert"), "Write mode `upsert` is unknown"),
    (dict(write_mode="history", key_columns=("id", "bad-name")), "Key column `bad-name`"),
    (dict(write_mode="history", key_columns=("id", "ID")), "only once"),
])
def test_invalid_input_is_refused_and_nothing_is_saved(db, changes: dict, needle: str) -> None:
    qid = seed_query(db)
    form = _form(qid, **changes)
    with pytest.raises(UserFacingError) as e:
        schedules.create_schedule(ANA, form, now=NOW)
    assert e.value.kind is ErrorKind.VALIDATION
    assert needle in e.value.message
    assert _count(db) == 0


@pytest.mark.parametrize(("text", "needle"), [
    ("SELECT instanceId FROM aws.ec2.instances WHERE region = 'us-east-1';\n\n"
     "SELECT instanceId FROM aws.ec2.instances WHERE region = 'eu-west-1';", "holds 2 statements"),
    ("-- nothing here yet\n", "is empty"),
])
def test_a_query_that_is_not_one_statement_cannot_be_scheduled(db, text: str, needle: str) -> None:
    """An assistant answer inserted below the first query makes two statements: the runner would fail on
    every run with a syntax error, so the schedule is refused when it is saved."""
    qid = seed_query(db, name="EC2 two regions", query_text=text)
    with pytest.raises(UserFacingError) as e:
        schedules.create_schedule(ANA, _form(qid), now=NOW)
    assert e.value.kind is ErrorKind.VALIDATION
    assert needle in e.value.message and "“EC2 two regions”" in e.value.message
    assert _count(db) == 0


def test_target_used_by_another_schedule_is_refused(db) -> None:
    qid = seed_query(db, name="ec2")
    schedules.create_schedule(ANA, _form(qid), now=NOW)
    other = seed_query(db, name="other")
    with pytest.raises(UserFacingError) as e:
        schedules.create_schedule(ANA, _form(other), now=NOW)
    assert "already written by the schedule of “ec2”" in e.value.message
    assert _count(db) == 1


@pytest.mark.parametrize(("ddl", "kind"), [
    ("CREATE VIEW stackql_inventory.taken AS SELECT 1 AS x", "view"),
    ("CREATE TABLE stackql_inventory.taken (x int)", "table"),
    ("CREATE MATERIALIZED VIEW stackql_inventory.taken AS SELECT 1 AS x", "materialized view"),
    ("CREATE SEQUENCE stackql_inventory.taken", "sequence"),
    ("CREATE TYPE stackql_inventory.taken AS ENUM ('a')", "type"),
])
def test_target_colliding_with_another_object_is_refused(db, ddl: str, kind: str) -> None:
    with db.begin() as c:
        c.execute(sa.text(ddl))
    qid = seed_query(db)
    with pytest.raises(UserFacingError) as e:
        schedules.create_schedule(ANA, _form(qid, target_table="taken"), now=NOW)
    assert f"already exists as a {kind} the scheduler did not create" in e.value.message
    assert _count(db) == 0


def test_an_orphaned_inventory_table_can_be_adopted(db) -> None:
    with db.begin() as c:  # kept when its schedule was deleted
        c.execute(sa.text("CREATE TABLE stackql_inventory.kept (_stackql_run_id bigint, id text)"))
    qid = seed_query(db)
    view = schedules.create_schedule(ANA, _form(qid, target_table="kept"), now=NOW).schedule
    assert view.target == "stackql_inventory.kept"


def test_read_only_users_cannot_change_schedules(db, monkeypatch) -> None:
    monkeypatch.setenv("STACKQL_INVENTORY_EDITORS", "ana@example.com")
    get_settings.cache_clear()
    try:
        qid = seed_query(db)
        sch = schedules.create_schedule(ANA, _form(qid), now=NOW).schedule
        for action in (lambda: schedules.create_schedule(BOB, _form(qid, target_table="other"), now=NOW),
                       lambda: schedules.update_schedule(BOB, sch.id, _form(qid, cron_expression="0 * * * *")),
                       lambda: schedules.set_active(BOB, sch.id, False),
                       lambda: schedules.run_now(BOB, sch.id),
                       lambda: schedules.delete_schedule(BOB, sch.id)):
            with pytest.raises(UserFacingError) as e:
                action()
            assert e.value.kind is ErrorKind.PERMISSION and "read-only" in e.value.message
        row = schedule_row(db, sch.id)
        assert (row["cron_expression"], row["is_active"]) == ("*/15 * * * *", True)
        assert runs(db) == []
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# --- preview -------------------------------------------------------------------------------------


def test_preview_describes_and_lists_next_runs_in_the_zone() -> None:
    preview = schedules.preview_cron("30 2 * * *", "Europe/Berlin", now=NOW)
    assert preview.error == "" and preview.description == "At 02:30"
    berlin = ZoneInfo("Europe/Berlin")
    assert [t.isoformat() for t in preview.next_runs] == [
        datetime(2026, 3, 29, 3, 0, tzinfo=berlin).isoformat(),   # 02:30 does not exist that night
        datetime(2026, 3, 30, 2, 30, tzinfo=berlin).isoformat(),
        datetime(2026, 3, 31, 2, 30, tzinfo=berlin).isoformat(),
        datetime(2026, 4, 1, 2, 30, tzinfo=berlin).isoformat(),
        datetime(2026, 4, 2, 2, 30, tzinfo=berlin).isoformat(),
    ]
    assert schedules.preview_cron("*/5 * * * *", "UTC", now=NOW).description == "Every 5 minutes"


@pytest.mark.parametrize(("expr", "tz", "needle"), [
    ("every day", "UTC", "Cron needs 5 fields"),
    ("0 12 1 * 1", "UTC", "cannot express"),
    ("0 12 * * *", "Nowhere/City", "Unknown time zone"),
])
def test_preview_of_invalid_input_explains_without_raising(expr: str, tz: str, needle: str) -> None:
    preview = schedules.preview_cron(expr, tz, now=NOW)
    assert needle in preview.error and preview.next_runs == [] and preview.description == ""


# --- list, edit, pause, run now, history, delete -------------------------------------------------


def test_list_shows_next_run_target_mode_and_description(db) -> None:
    qid = seed_query(db, name="ec2 instances")
    schedules.create_schedule(ANA, _form(qid, cron_expression="0 9 * * 1-5", timezone="America/New_York",
                                         write_mode="history", key_columns=("instance_id",)), now=NOW)
    (view,) = schedules.list_schedules(now=NOW)
    assert (view.query_name, view.target, view.write_mode, view.key_columns) == (
        "ec2 instances", "stackql_inventory.aws_instances", "history", ("instance_id",))
    assert view.cron_description == "At 09:00, Monday through Friday"
    assert view.next_run_at == datetime(2026, 3, 30, 13, 0, tzinfo=UTC)  # Monday 09:00 EDT
    assert (view.status, view.is_active, view.job_id, view.job_url) == ("never run", True, "", "")


def test_key_columns_are_only_kept_for_history(db) -> None:
    qid = seed_query(db)
    view = schedules.create_schedule(ANA, _form(qid, key_columns=("id",)), now=NOW).schedule
    assert view.key_columns == ()
    assert schedules.parse_key_columns(" id, region  name,") == ("id", "region", "name")


def test_edit_validates_and_replans(db) -> None:
    qid = seed_query(db)
    a = schedules.create_schedule(ANA, _form(qid, target_table="a"), now=NOW).schedule
    schedules.create_schedule(ANA, _form(qid, target_table="b"), now=NOW)
    with pytest.raises(UserFacingError) as e:  # b belongs to the other schedule
        schedules.update_schedule(ANA, a.id, _form(qid, target_table="b"), now=NOW)
    assert "already written" in e.value.message
    with pytest.raises(UserFacingError):
        schedules.update_schedule(ANA, a.id, _form(qid, target_table="a", cron_expression="0 0 31 2 *"), now=NOW)
    assert schedule_row(db, a.id)["cron_expression"] == "*/15 * * * *"
    later = NOW + timedelta(hours=1)
    outcome = schedules.update_schedule(ANA, a.id, _form(qid, target_table="a", cron_expression="0 6 * * *"),
                                        now=later)
    assert outcome.schedule.next_run_at == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert schedule_row(db, a.id)["updated_at"] == later
    with pytest.raises(UserFacingError) as e:
        schedules.update_schedule(ANA, 987_654, _form(qid), now=NOW)
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_pause_and_resume(db) -> None:
    qid = seed_query(db)
    sch = schedules.create_schedule(ANA, _form(qid), now=NOW).schedule
    paused = schedules.set_active(ANA, sch.id, False, now=NOW).schedule
    assert (paused.is_active, paused.next_run_at) == (False, None)
    assert schedule_row(db, sch.id)["next_run_at"] is None
    resumed = schedules.set_active(ANA, sch.id, True, now=NOW + timedelta(hours=2)).schedule
    assert resumed.next_run_at == NOW + timedelta(hours=2, minutes=15)


def test_run_now_queues_a_manual_run_and_history_shows_it(db) -> None:
    qid = seed_query(db)
    sch = schedules.create_schedule(ANA, _form(qid), now=NOW).schedule
    assert "queued" in schedules.run_now(ANA, sch.id).lower()
    (run,) = runs(db, sch.id)
    assert (run["trigger"], run["status"], run["backend"], run["created_by"], run["runner_pid"]) == (
        "manual", "queued", "local", "ana@example.com", None)
    (view,) = schedules.list_schedules()
    assert view.status == "queued" and view.in_flight
    with pytest.raises(UserFacingError) as e:
        schedules.run_now(ANA, sch.id)
    assert e.value.kind is ErrorKind.CONFLICT
    with pytest.raises(UserFacingError) as e:
        schedules.delete_schedule(ANA, sch.id)
    assert e.value.kind is ErrorKind.CONFLICT and "Wait for it to finish" in e.value.message
    with db.begin() as c:
        c.execute(sa.text("UPDATE stackql_app.runs SET status = 'failed', error_class = 'QueryError', "
                          "error_message = 'boom', duration_s = 2.5 WHERE schedule_id = :s"), {"s": sch.id})
    (entry,) = schedules.run_history(sch.id)
    assert (entry.trigger, entry.status, entry.error_class, entry.error_message, entry.duration_s) == (
        "manual", "failed", "QueryError", "boom", 2.5)
    assert schedules.list_schedules()[0].status == "failed"


@pytest.mark.parametrize(("failures", "delay", "note"), [
    (0, timedelta(0), ""),
    (1, timedelta(0), ""),  # failed, but the next run is on its slot (e.g. a manual run failed)
    (0, timedelta(minutes=5), ""),
    (1, timedelta(minutes=2), "delayed 2 min after 1 failed run"),
    (2, timedelta(minutes=4), "delayed 4 min after 2 failed runs"),
    (7, timedelta(minutes=60), "delayed 60 min after 7 failed runs"),
])
def test_backoff_note_only_for_a_real_delay(failures: int, delay: timedelta, note: str) -> None:
    assert schedules.backoff_note(failures, delay) == note


def _set(db: sa.Engine, schedule_id: int, **values) -> None:
    sets = ", ".join(f"{k} = :{k}" for k in values)
    with db.begin() as c:
        c.execute(sa.text(f"UPDATE stackql_app.schedules SET {sets} WHERE id = :id"), {"id": schedule_id, **values})


def test_the_list_says_delayed_only_when_failures_push_the_next_run_back(db) -> None:
    """The scheduler plans the first slot after the last run plus 2**failures minutes (services/scheduler.py);
    the note appears only when next_run_at really is later than that slot."""
    qid = seed_query(db)
    sch = schedules.create_schedule(ANA, _form(qid, cron_expression="0 */6 * * *"), now=NOW).schedule
    ran = datetime(2026, 3, 29, 0, 0, 2, tzinfo=UTC)  # the 00:00 run started, then failed
    # As the scheduler replans after the third failure in a row: 06:00 + 8 min.
    _set(db, sch.id, consecutive_failures=3, last_run_at=ran, last_run_status="failed",
         next_run_at=datetime(2026, 3, 29, 6, 8, tzinfo=UTC))
    (view,) = schedules.list_schedules(now=ran)
    assert (view.backoff_delay, view.backoff_note) == (timedelta(minutes=8), "delayed 8 min after 3 failed runs")
    # A failed manual run leaves the plan on its slot: failures, but nothing delayed.
    _set(db, sch.id, consecutive_failures=1, next_run_at=datetime(2026, 3, 29, 6, 0, tzinfo=UTC))
    assert schedules.list_schedules(now=ran)[0].backoff_note == ""
    # Edited (or resumed) with failures: planned from the edit, still delayed.
    edited = schedules.update_schedule(ANA, sch.id, _form(qid, cron_expression="0 * * * *"),
                                       now=datetime(2026, 3, 29, 1, 30, tzinfo=UTC)).schedule
    assert edited.next_run_at == datetime(2026, 3, 29, 2, 2, tzinfo=UTC)
    assert edited.backoff_note == "delayed 2 min after 1 failed run"
    # Paused: no next run, nothing delayed.
    assert schedules.set_active(ANA, sch.id, False, now=NOW).schedule.backoff_note == ""
    schedules.set_active(ANA, sch.id, True, now=datetime(2026, 3, 29, 1, 40, tzinfo=UTC))
    assert schedules.list_schedules(now=ran)[0].backoff_note == "delayed 2 min after 1 failed run"
    # A run in flight: the scheduler plans the plain next slot until it ends.
    schedules.run_now(ANA, sch.id)
    (view,) = schedules.list_schedules(now=ran)
    assert view.in_flight and view.backoff_note == ""


def test_delete_keeps_the_table_unless_asked(db) -> None:
    qid = seed_query(db)
    keep = schedules.create_schedule(ANA, _form(qid, target_table="keep_me"), now=NOW).schedule
    drop = schedules.create_schedule(ANA, _form(qid, target_table="Drop_me".lower()), now=NOW).schedule
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.keep_me (_stackql_run_id bigint)"))
        c.execute(sa.text("CREATE TABLE stackql_inventory.drop_me (_stackql_run_id bigint)"))
        c.execute(sa.text("INSERT INTO stackql_app.runs (schedule_id, target_schema, target_table, write_mode, "
                          "trigger, status) VALUES (:s, 'stackql_inventory', 'keep_me', 'replace', 'manual', "
                          "'success')"), {"s": keep.id})
    assert "kept" in schedules.delete_schedule(ANA, keep.id)
    assert "dropped" in schedules.delete_schedule(ANA, drop.id, drop_table=True)
    with db.connect() as c:
        assert c.execute(sa.text("SELECT to_regclass('stackql_inventory.keep_me')")).scalar() is not None
        assert c.execute(sa.text("SELECT to_regclass('stackql_inventory.drop_me')")).scalar() is None
    assert schedules.list_schedules() == []
    assert runs(db)[0]["schedule_id"] is None  # history survives the schedule
    with pytest.raises(UserFacingError) as e:
        schedules.delete_schedule(ANA, keep.id)
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_drop_quotes_identifiers(db) -> None:
    from stackql_inventory.db import schedules as db_schedules
    from stackql_inventory.db.engine import session_scope

    with db.begin() as c:
        c.execute(sa.text('CREATE TABLE stackql_inventory."select" (x int)'))
        c.execute(sa.text("CREATE VIEW stackql_inventory.a_view AS SELECT 1 AS x"))
    with session_scope() as s:
        assert db_schedules.drop_table(s, "stackql_inventory", "select") is True
        assert db_schedules.drop_table(s, "stackql_inventory", "a_view") is False  # not a table
        assert db_schedules.drop_table(s, "stackql_inventory", "missing") is False
    with db.connect() as c:
        assert c.execute(sa.text("SELECT to_regclass('stackql_inventory.a_view')")).scalar() is not None


@pytest.mark.parametrize(("name", "table"), [
    ("EC2 instances (us-east-1)", "ec2_instances_us_east_1"),
    ("  GitHub repos — public ", "github_repos_public"),
    ("2024 audit", "q_2024_audit"),
    ("Ünïcode only ✓", "n_code_only"),
    ("!!!", ""),
    ("x" * 80, "x" * 63),
])
def test_suggested_table_names_are_valid_targets(name: str, table: str) -> None:
    assert schedules.suggest_table_name(name) == table
    assert table == "" or schedules.TABLE_NAME.match(table)
