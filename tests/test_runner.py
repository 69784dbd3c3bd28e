"""The runner end to end: ledger, schedule summary, credentials, redaction, skips, exit codes, kills."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import time

import pytest
import sqlalchemy as sa

from runner import __main__ as cli
from runner.run import (EXIT_CANCELLED, EXIT_FAILED, EXIT_NO_LEDGER, EXIT_SKIPPED, EXIT_SUCCESS, EXIT_USAGE,
                        RunRequest, execute)
from stackql_inventory.services import inventory_writer, runs
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from tests.support.runner import (add_query, add_schedule, bulk_query, fake_stackql, map_credential,  # noqa: F401
                                  rows, run_runner, runner_env, scalar, set_query_text, snapshot, start_runner)

S = "stackql_inventory"
PLANTED = "planted-S3cr3t-value-0042"


def schedule_row(db, schedule_id: int) -> tuple:
    return rows(db, "SELECT last_run_at, last_run_status, consecutive_failures FROM stackql_app.schedules "
                    "WHERE id = :i", i=schedule_id)[0]


# ---------------------------------------------------------------------------------------------- ledger


def test_a_scheduled_run_writes_the_table_and_records_itself(db, fake_stackql):
    qid = add_query(bulk_query(250), name="Bulk items")
    sid = add_schedule(qid, "items", cron="15 */6 * * *")
    summary = execute(RunRequest(schedule_id=sid))
    assert summary.status == "success" and summary.exit_code == EXIT_SUCCESS
    assert summary.rows_written == 250 and summary.target == f"{S}.items"
    run = runs.get_run(summary.run_id)
    assert (run.status, run.trigger, run.schedule_id, run.query_id, run.write_mode, run.backend) == (
        "success", "schedule", sid, qid, "replace", "local")
    assert run.rows_written == 250 and run.error_message is None and run.created_by == "scheduler"
    assert run.finished_at >= run.started_at and 0 < run.duration_s < 60
    assert run.runner_host == socket.gethostname() and run.runner_pid == os.getpid()
    assert schedule_row(db, sid) == (run.started_at, "success", 0)
    assert scalar(db, f"SELECT count(*) FROM {S}.items WHERE _stackql_run_id = :r", r=run.id) == 250
    # Analyzed after the write: row estimates (the inventory page) are right at once.
    assert scalar(db, f"SELECT reltuples FROM pg_class WHERE oid = '{S}.items'::regclass") == 250
    comment = scalar(db, f"SELECT obj_description('{S}.items'::regclass, 'pg_class')")
    assert f"Source query: Bulk items (query {qid})" in comment and f"Schedule: {sid}, cron 15 */6 * * * (UTC)" in \
        comment and f"by run {run.id} (250 rows)" in comment
    assert [r.id for r in runs.list_runs(sid)] == [run.id]


def test_failures_count_up_and_a_success_resets_them(db, fake_stackql):
    qid = add_query("SELECT nope FROM synthetic.bulk.nothing WHERE count = 1")
    sid = add_schedule(qid, "flaky")
    first = execute(RunRequest(schedule_id=sid))
    second = execute(RunRequest(schedule_id=sid, trigger="catchup"))
    assert (first.status, first.exit_code, second.status) == ("failed", EXIT_FAILED, "failed")
    assert first.error_class == ErrorKind.NOT_FOUND.value and "could not locate" in first.error_message
    run = runs.get_run(second.run_id)
    assert run.status == "failed" and run.rows_written is None and run.trigger == "catchup"
    assert "could not locate table" in run.error_message
    assert schedule_row(db, sid)[1:] == ("failed", 2)
    set_query_text(qid, bulk_query(3))
    ok = execute(RunRequest(schedule_id=sid, trigger="manual", created_by="ann@example.com"))
    assert ok.status == "success" and runs.get_run(ok.run_id).created_by == "ann@example.com"
    assert schedule_row(db, sid)[1:] == ("success", 0)


def test_one_off_run_into_a_history_table(db, fake_stackql):
    qid = add_query(bulk_query(5, columns=("item_id", "name", "quantity")))
    first = execute(RunRequest(query_id=qid, target_table="one_off", write_mode="history",
                               key_columns=("item_id",)))
    set_query_text(qid, bulk_query(4, columns=("item_id", "name", "quantity")))
    second = execute(RunRequest(query_id=qid, target_table="one_off", write_mode="history",
                                key_columns=("item_id",)))
    assert (first.status, second.status) == ("success", "success")
    assert second.write.history == inventory_writer.HistoryCounts(opened=0, closed=1, deleted=1, unchanged=4)
    run = runs.get_run(second.run_id)
    assert (run.trigger, run.schedule_id, run.write_mode) == ("adhoc", None, "history")
    assert scalar(db, f"SELECT count(*) FROM {S}.one_off WHERE _is_deleted AND _valid_to IS NULL") == 1


def test_a_refresh_failure_fails_the_run_but_the_write_is_recorded(db, fake_stackql):
    qid = add_query(bulk_query(2, columns=("item_id", "quantity")))
    sid = add_schedule(qid, "with_mv")
    assert execute(RunRequest(schedule_id=sid)).status == "success"
    with db.begin() as c:
        c.execute(sa.text(f"CREATE MATERIALIZED VIEW {S}.mv_bad AS SELECT 1 / (count(*) - 3) AS x FROM {S}.with_mv"))
    set_query_text(qid, bulk_query(3, columns=("item_id", "quantity")))
    summary = execute(RunRequest(schedule_id=sid))
    assert summary.status == "failed" and summary.rows_written == 3
    assert "was written, but refreshing" in summary.error_message and "mv_bad" in summary.error_message
    assert runs.get_run(summary.run_id).rows_written == 3
    assert scalar(db, f"SELECT count(*) FROM {S}.with_mv") == 3


# ---------------------------------------------------------------------------------------------- credentials


def test_credentials_reach_stackql_only_for_the_querys_providers_and_are_redacted(db, fake_stackql, caplog):
    map_credential("aws", "AWS_ACCESS_KEY_ID", "AKIAFAKE00EXAMPLE01")
    map_credential("aws", "AWS_SECRET_ACCESS_KEY", PLANTED)
    map_credential("github", "STACKQL_GITHUB_PASSWORD", "github-pat-not-for-this-query")
    names = "AWS_SECRET_ACCESS_KEY,STACKQL_GITHUB_PASSWORD"
    qid = add_query(f"SELECT env_var, present, sha256 FROM synthetic.env.credentials WHERE names = '{names}'",
                    provider="aws")
    sid = add_schedule(qid, "creds")
    caplog.set_level(logging.DEBUG)
    summary = execute(RunRequest(schedule_id=sid))
    assert summary.status == "success"
    assert rows(db, f"SELECT env_var, present, sha256 FROM {S}.creds ORDER BY 1") == [
        ("AWS_SECRET_ACCESS_KEY", True, hashlib.sha256(PLANTED.encode()).hexdigest()),
        ("STACKQL_GITHUB_PASSWORD", False, None)]
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ
    assert PLANTED not in caplog.text

    # The planted value comes back as data that no longer fits its column: the error would quote it.
    set_query_text(qid, f"SELECT env_var, '{PLANTED}' AS present, sha256 FROM synthetic.env.credentials "
                        f"WHERE names = '{names}'")
    caplog.clear()
    failed = execute(RunRequest(schedule_id=sid))
    assert failed.status == "failed" and failed.error_class == ErrorKind.SCHEMA.value
    assert "'present'" in failed.error_message and "[REDACTED]" in failed.error_message
    assert PLANTED not in failed.error_message
    stored = scalar(db, "SELECT error_message FROM stackql_app.runs WHERE id = :i", i=failed.run_id)
    assert PLANTED not in stored and "[REDACTED]" in stored
    assert PLANTED not in caplog.text and "[REDACTED]" in caplog.text


def test_realistic_provider_with_and_without_its_credentials(db, fake_stackql):
    qid = add_query("SELECT instanceId, instanceType, launchTime FROM aws.ec2.instances WHERE region = 'us-east-1'",
                    name="EC2", provider="aws")
    sid = add_schedule(qid, "ec2_instances", mode="history", keys=("instanceId",))
    failed = execute(RunRequest(schedule_id=sid))
    assert failed.status == "failed" and failed.error_class == ErrorKind.AUTH.value
    assert "401" in failed.error_message
    assert scalar(db, "SELECT to_regclass('stackql_inventory.ec2_instances')") is None
    map_credential("aws", "AWS_ACCESS_KEY_ID", "AKIAFAKE00EXAMPLE01")
    map_credential("aws", "AWS_SECRET_ACCESS_KEY", "fake/secret+key")
    ok = execute(RunRequest(schedule_id=sid))
    assert ok.status == "success" and ok.rows_written > 0
    assert dict(rows(db, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                         "'stackql_inventory.ec2_instances'::regclass AND attnum > 0"))["launchTime"] == \
        "timestamp with time zone"


def test_a_missing_secret_fails_the_run_with_its_name(db, fake_stackql):
    from stackql_inventory.db.engine import session_scope
    from stackql_inventory.db.models import ProviderConfig

    with session_scope() as s:
        s.add(ProviderConfig(provider="synthetic", env_var_name="SYNTHETIC_TOKEN", secret_scope="stackql-inventory",
                             secret_key="never-stored"))
    sid = add_schedule(add_query(bulk_query(1)), "nosecret")
    summary = execute(RunRequest(schedule_id=sid))
    assert summary.status == "failed" and summary.error_class == ErrorKind.AUTH.value
    assert "SYNTHETIC_TOKEN" in summary.error_message and "never-stored" in summary.error_message


# ---------------------------------------------------------------------------------------------- skips


def test_an_invalid_one_off_target_fails_the_run(db, fake_stackql):
    summary = execute(RunRequest(query_id=add_query(bulk_query(1)), target_table='x";drop'))
    assert summary.exit_code == EXIT_FAILED and "not a valid table name" in summary.error_message
    assert runs.get_run(summary.run_id).status == "failed"


def test_a_paused_schedule_is_skipped_unless_run_by_hand(db, fake_stackql):
    sid = add_schedule(add_query(bulk_query(2)), "paused", active=False)
    skipped = execute(RunRequest(schedule_id=sid))
    assert (skipped.status, skipped.exit_code) == ("skipped", EXIT_SKIPPED)
    assert "paused" in skipped.error_message
    assert schedule_row(db, sid) == (None, None, 0)  # a skip does not count as the schedule's last run
    assert execute(RunRequest(schedule_id=sid, trigger="manual")).status == "success"


def test_a_run_older_than_the_last_writer_is_skipped(db, fake_stackql):
    sid = add_schedule(add_query(bulk_query(2)), "ordered")
    queued = runs.queue_run(sid, trigger="schedule")
    newer = execute(RunRequest(schedule_id=sid, trigger="manual"))
    assert newer.status == "success" and newer.run_id > queued.id
    late = execute(RunRequest(schedule_id=sid, run_id=queued.id))
    assert late.status == "skipped" and f"Run {newer.run_id} (newer) already wrote" in late.error_message
    assert scalar(db, f"SELECT DISTINCT _stackql_run_id FROM {S}.ordered") == newer.run_id


def test_a_second_run_on_a_busy_target_is_skipped_with_the_reason(db, db_uri, fake_stackql):
    qid = add_query("SELECT seconds, pid FROM synthetic.timing.sleep WHERE seconds = 4")
    sid = add_schedule(qid, "slow")
    proc = start_runner(["--schedule-id", str(sid)], runner_env(db_uri, fake_stackql))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not scalar(
                db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        first_id = scalar(db, "SELECT id FROM stackql_app.runs WHERE schedule_id = :s", s=sid)
        second = execute(RunRequest(schedule_id=sid, trigger="manual"))
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_SUCCESS, err
    assert second.status == "skipped" and second.exit_code == EXIT_SKIPPED
    assert f"Run {first_id} (started" in second.error_message and "is writing stackql_inventory.slow" in \
        second.error_message
    assert rows(db, "SELECT status FROM stackql_app.runs WHERE schedule_id = :s ORDER BY id", s=sid) == [
        ("success",), ("skipped",)]
    assert schedule_row(db, sid)[1] == "success"


# ---------------------------------------------------------------------------------------------- queued runs


def test_taking_over_a_queued_run(db, db_uri, fake_stackql):
    sid = add_schedule(add_query(bulk_query(3)), "queued")
    queued = runs.queue_run(sid, trigger="schedule", backend="databricks")
    assert queued.status == "queued" and queued.created_by == "scheduler"
    env = runner_env(db_uri, fake_stackql)
    done = run_runner(["--schedule-id", str(sid), "--run-id", str(queued.id), "--backend-run-id", "job-run-77"], env)
    assert done.returncode == EXIT_SUCCESS, done.stderr
    run = runs.get_run(queued.id)
    assert (run.status, run.backend, run.backend_run_id, run.rows_written) == ("success", "databricks", "job-run-77",
                                                                                3)
    assert run.runner_pid not in (None, os.getpid())
    again = run_runner(["--schedule-id", str(sid), "--run-id", str(queued.id)], env)
    assert again.returncode == EXIT_USAGE and "is success, not queued" in again.stderr
    other = add_schedule(add_query(bulk_query(1), name="other"), "other")
    wrong = run_runner(["--schedule-id", str(other), "--run-id", str(queued.id)], env)
    assert wrong.returncode == EXIT_USAGE and f"belongs to schedule {sid}" in wrong.stderr
    assert runs.get_run(queued.id).status == "success"


def test_manual_runs_are_queued_for_editors_only(db, monkeypatch):
    from stackql_inventory.config import get_settings

    sid = add_schedule(add_query(bulk_query(1)), "manual_q")
    ann = Identity("ann@example.com", "Ann", "proxy")
    run = runs.queue_run(sid, trigger="manual", actor=ann)
    assert (run.status, run.trigger, run.created_by, run.target) == ("queued", "manual", "ann@example.com",
                                                                     f"{S}.manual_q")
    monkeypatch.setenv("STACKQL_INVENTORY_EDITORS", "bob@example.com")
    get_settings.cache_clear()
    with pytest.raises(UserFacingError) as e:
        runs.queue_run(sid, trigger="manual", actor=ann)
    assert e.value.kind is ErrorKind.PERMISSION
    with pytest.raises(UserFacingError) as e:
        runs.queue_run(999, trigger="schedule")
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_a_queued_run_of_a_deleted_schedule_is_closed(db, db_uri, fake_stackql):
    sid = add_schedule(add_query(bulk_query(1)), "gone")
    queued = runs.queue_run(sid, trigger="schedule")
    with db.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_app.schedules WHERE id = :i"), {"i": sid})
    summary = execute(RunRequest(schedule_id=sid, run_id=queued.id))
    assert summary.exit_code == EXIT_USAGE
    run = runs.get_run(queued.id)
    assert run.status == "failed" and "does not exist" in run.error_message


# ---------------------------------------------------------------------------------------------- CLI


def test_exit_codes_and_log_lines(db, db_uri, fake_stackql):
    env = runner_env(db_uri, fake_stackql)
    map_credential("synthetic", "SYNTHETIC_TOKEN", PLANTED)
    ok_sid = add_schedule(add_query(bulk_query(10), name="ok"), "cli_ok")
    done = run_runner(["--schedule-id", str(ok_sid)], env)
    assert done.returncode == EXIT_SUCCESS, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert all(line.startswith("ts=") and " level=" in line for line in lines)
    finished = [line for line in lines if "event=run_finished" in line]
    assert len(finished) == 1 and f"schedule_id={ok_sid}" in finished[0] and "status=success" in finished[0]
    assert "rows=10" in finished[0] and "run_id=" in finished[0]
    assert PLANTED not in done.stderr

    bad_sid = add_schedule(add_query(f"SELECT item_id, '{PLANTED}' AS quantity FROM synthetic.bulk.items "
                                     "WHERE count = 2", name="bad"), "cli_ok_bad")
    run_runner(["--schedule-id", str(bad_sid)], env)  # creates the table (quantity is text there)
    with db.begin() as c:
        c.execute(sa.text(f"ALTER TABLE {S}.cli_ok_bad ALTER COLUMN quantity TYPE bigint USING 0"))
    failed = run_runner(["--schedule-id", str(bad_sid)], env)
    assert failed.returncode == EXIT_FAILED
    assert "status=failed" in failed.stderr and "[REDACTED]" in failed.stderr and PLANTED not in failed.stderr

    assert run_runner(["--schedule-id", "987654"], env).returncode == EXIT_USAGE
    usage = run_runner([], env)
    assert usage.returncode == EXIT_USAGE and "one of the arguments" in usage.stderr
    paused = add_schedule(add_query(bulk_query(1), name="p"), "cli_paused", active=False)
    assert run_runner(["--schedule-id", str(paused)], env).returncode == EXIT_SKIPPED

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = run_runner(["--schedule-id", str(ok_sid)],
                      {**env, "DATABASE_URL": f"postgresql://nobody:pw-not-shown@127.0.0.1:{port}/x"})
    assert down.returncode == EXIT_NO_LEDGER and "Cannot reach the database" in down.stderr
    assert "pw-not-shown" not in down.stderr


def test_sigterm_cancels_the_run_and_writes_nothing(db, db_uri, fake_stackql):
    qid = add_query(bulk_query(2))
    sid = add_schedule(qid, "cancel_me")
    assert execute(RunRequest(schedule_id=sid)).status == "success"
    before = snapshot(db, "cancel_me")
    set_query_text(qid, "SELECT seconds FROM synthetic.timing.sleep WHERE seconds = 30")
    proc = start_runner(["--schedule-id", str(sid)], runner_env(db_uri, fake_stackql))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and scalar(
            db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == 0:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_CANCELLED, err
    assert "event=stop_requested signal=SIGTERM" in err
    run = rows(db, "SELECT status, error_class FROM stackql_app.runs WHERE schedule_id = :s ORDER BY id DESC "
                   "LIMIT 1", s=sid)[0]
    assert run == ("cancelled", "cancelled")
    assert schedule_row(db, sid)[1:] == ("cancelled", 0)
    assert snapshot(db, "cancel_me") == before
    assert not rows(db, "SELECT pid FROM pg_stat_activity WHERE application_name = '' AND query LIKE 'COPY%'")


def _wait_for_copy(db, proc, table: str) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        copied = scalar(db, "SELECT coalesce(max(tuples_processed), 0) FROM pg_stat_progress_copy "
                            "WHERE relid = to_regclass(:t)", t=f"{S}.{table}")
        if copied > 0:
            return copied
        time.sleep(0.01)
    return 0


def test_sigterm_during_copy_rolls_back_and_exits_promptly(db, db_uri, fake_stackql):
    qid = add_query(bulk_query(3))
    sid = add_schedule(qid, "term_copy")
    assert execute(RunRequest(schedule_id=sid)).status == "success"
    before = snapshot(db, "term_copy")
    set_query_text(qid, bulk_query(600_000))
    proc = start_runner(["--schedule-id", str(sid)], runner_env(db_uri, fake_stackql))
    assert _wait_for_copy(db, proc, "term_copy") > 0, "the runner never reached COPY"
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_CANCELLED, err
    assert time.monotonic() - stopped_at < 10
    assert snapshot(db, "term_copy") == before
    assert rows(db, "SELECT status FROM stackql_app.runs WHERE schedule_id = :s ORDER BY id", s=sid) == [
        ("success",), ("cancelled",)]


def test_kill_9_mid_write_leaves_the_old_table_and_releases_the_target(db, db_uri, fake_stackql):
    qid = add_query(bulk_query(3))
    sid = add_schedule(qid, "killed")
    assert execute(RunRequest(schedule_id=sid)).status == "success"
    before = snapshot(db, "killed")
    set_query_text(qid, bulk_query(600_000))
    proc = start_runner(["--schedule-id", str(sid)], runner_env(db_uri, fake_stackql))
    assert _wait_for_copy(db, proc, "killed") > 0, "the runner never reached COPY"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 30
    while scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the dropped connection and rolls back
    assert snapshot(db, "killed") == before
    with inventory_writer.open_target(S, "killed"):
        pass  # the lock went with the dead session
    # The killed run could not close itself: its row stays `running` for the scheduler to reap.
    assert rows(db, "SELECT status FROM stackql_app.runs WHERE schedule_id = :s ORDER BY id", s=sid) == [
        ("success",), ("running",)]


def test_parse_args_builds_the_request():
    req = cli.parse_args(["--query-id", "4", "--target-table", "t", "--write-mode", "history", "--key-columns",
                          "a, b", "--target-schema", "team", "--timeout", "90", "--trigger", "manual"])
    assert req == RunRequest(query_id=4, target_table="t", target_schema="team", write_mode="history",
                             key_columns=("a", "b"), trigger="manual", timeout_s=90.0)
    req = cli.parse_args(["--schedule-id", "3", "--run-id", "9", "--backend-run-id", "r-1", "--backend",
                          "databricks"])
    assert (req.schedule_id, req.run_id, req.backend_run_id, req.backend) == (3, 9, "r-1", "databricks")
    assert req.created_by == ""  # the cron's run: "scheduler" in the ledger
    assert cli.parse_args(["--schedule-id", "3", "--requested-by", " ann@example.com "]).created_by == "ann@example.com"
    for bad in (["--schedule-id", "0"], ["--schedule-id", "1", "--trigger", "cron"],
                ["--timeout", "-1", "--schedule-id", "1"], ["--query-id", "1"], ["--schedule-id", "x"],
                ["--run-id", "3", "--query-id", "1", "--target-table", "t"],
                ["--schedule-id", "1", "--target-table", "t"], ["--schedule-id", "1", "--query-id", "2"]):
        with pytest.raises(SystemExit) as e:
            cli.parse_args(bad)
        assert e.value.code == EXIT_USAGE
