"""The Databricks jobs backend through the real databricks-sdk against the local fake Jobs API: job bodies
(Quartz cron, serverless runner task, no secret values), reset/pause/resume/delete/run-now, status and
history from runs, jobs deleted outside the app, 403 and 404 answers."""

from __future__ import annotations

import json
import time
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from databricks.sdk.service import jobs

from stackql_inventory.config import get_settings
from stackql_inventory.services import cron, databricks_client, schedules
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from stackql_inventory.services.jobs import backend_for
from stackql_inventory.services.jobs_databricks import DatabricksJobs, run_status, runner_dependencies
from tests.fakes.databricks_api import FakeDatabricks
from tests.support.scheduling import runs, schedule_row, seed_query

ANA = Identity(user="ana@example.com", display_name="Ana", source="proxy")
RUNNER_FILE = "/Workspace/Shared/stackql-inventory/runner.py"
SECRET_VALUE = "ghp-super-secret-token-0042"
ENDPOINT = "projects/inv/branches/production/endpoints/primary"
RUNNER_SETTINGS = ["--env", "PGPORT=5432", "--env", "PGDATABASE=databricks_postgres", "--env", "PGSSLMODE=require",
                   "--env", f"LAKEBASE_ENDPOINT={ENDPOINT}", "--env", "STACKQL_INVENTORY_SECRETS_BACKEND=databricks",
                   "--env", "STACKQL_INVENTORY_SECRET_SCOPE=stackql-inventory",
                   "--env", "STACKQL_INVENTORY_JOBS_BACKEND=databricks",
                   "--env", "STACKQL_INVENTORY_QUERY_TIMEOUT=300", "--env", "STACKQL_INVENTORY_LOG_LEVEL=INFO"]


@pytest.fixture
def fake(db: sa.Engine) -> Iterator[FakeDatabricks]:
    """The fake workspace as the app's Databricks, jobs backend `databricks`, with a provider secret in it."""
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            mp.delenv(name)
    with FakeDatabricks() as server:
        mp.setenv("STACKQL_INVENTORY_JOBS_BACKEND", "databricks")
        mp.setenv("STACKQL_INVENTORY_SECRETS_BACKEND", "databricks")
        mp.setenv("LAKEBASE_ENDPOINT", ENDPOINT)  # the app's database resource, as jobs must reach it
        mp.setenv("PGDATABASE", "databricks_postgres")
        mp.setenv("STACKQL_INVENTORY_RUNNER_FILE", RUNNER_FILE)
        mp.setenv("STACKQL_INVENTORY_RUNNER_DEPENDENCIES", "psycopg2-binary>=2.9,<3, /Volumes/main/inv/whl/runner.whl")
        mp.setenv("DATABRICKS_HOST", server.url)
        get_settings.cache_clear()
        databricks_client.set_workspace_client(server.client())
        server.add_scope("stackql-inventory")
        server.put_secret("stackql-inventory", "github-token", SECRET_VALUE)
        with db.begin() as c:
            c.execute(sa.text("INSERT INTO stackql_app.provider_config (provider, env_var_name, secret_scope, "
                              "secret_key) VALUES ('github', 'STACKQL_GITHUB_PASSWORD', 'stackql-inventory', "
                              "'github-token')"))
        try:
            yield server
        finally:
            databricks_client.set_workspace_client(None)
            mp.undo()
            get_settings.cache_clear()


def _fresh() -> DatabricksJobs:
    """The backend without its status cache: for reading a change made in the workspace behind the app's back
    (the page would show it within jobs_databricks.STATUS_TTL_S)."""
    return DatabricksJobs(get_settings(), status_ttl_s=0, idle_status_ttl_s=0)


def _create(db: sa.Engine, expr: str = "0 9 * * 1-5", table: str = "gh_repos", tz: str = "Europe/Berlin"):
    qid = seed_query(db, name=f"q-{table}")
    return schedules.create_schedule(ANA, schedules.ScheduleForm(qid, expr, tz, table, "replace")).schedule


def _body(fake: FakeDatabricks, path: str) -> dict:
    (request,) = fake.requests_to(path, "POST")[-1:]
    return request.json


def _job(fake: FakeDatabricks, job_id: str) -> dict:
    with fake.lock:
        return fake.state.jobs[int(job_id)]


def _assert_no_secrets(fake: FakeDatabricks) -> None:
    for request in fake.requests_to("/api/2.2/jobs"):
        raw = request.raw_body.decode()
        assert SECRET_VALUE not in raw
        assert fake.token not in raw
        assert "{{secrets/" not in raw


# --- the job definition --------------------------------------------------------------------------


def test_the_jobs_runner_gets_the_apps_database_and_secret_scope_and_nothing_secret(db, fake, monkeypatch) -> None:
    """What a job run executes, parameters substituted as the Jobs service does, through job_entry's own parsing:
    the runner reaches the app's Lakebase and secret scope (not an embedded database and local files)."""
    import importlib.util
    from pathlib import Path

    from runner.__main__ import parse_args

    path = Path(__file__).resolve().parents[1] / "infra" / "runner" / "job_entry.py"
    spec = importlib.util.spec_from_file_location("job_entry", path)
    job_entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job_entry)

    sch = _create(db)
    params = _job(fake, sch.job_id)["settings"]["tasks"][0]["spark_python_task"]["parameters"]
    argv = [p.replace("{{job.parameters.schedule_id}}", str(sch.id)).replace("{{job.run_id}}", "991")
             .replace("{{job.parameters.trigger}}", "manual").replace("{{job.parameters.requested_by}}", "ana@example.com")
             for p in params]
    env, module, rest = job_entry.split_args(argv)
    assert module == "runner"
    for name in list(os.environ):
        if name.startswith(("PG", "LAKEBASE_", "STACKQL_", "DATABRICKS_APP")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    job = get_settings()
    assert job.uses_lakebase and not job.uses_embedded_db and job.lakebase_endpoint == ENDPOINT
    assert job.pgdatabase == "databricks_postgres" and job.secrets_backend.value == "databricks"
    assert job.secret_scope == "stackql-inventory" and job.jobs_backend.value == "databricks"
    req = parse_args(rest)
    assert (req.schedule_id, req.backend, req.backend_run_id, req.trigger, req.created_by) == (
        sch.id, "databricks", "991", "manual", "ana@example.com")
    _assert_no_secrets(fake)


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("LAKEBASE_ENDPOINT", None, "the embedded PostgreSQL on this machine"),
    ("DATABASE_URL", "postgresql://inv:pw-in-url@db.example.com/inv", "DATABASE_URL"),
    ("STACKQL_INVENTORY_SECRETS_BACKEND", "local", "cannot read this app's local secret files"),
])
def test_a_job_the_runner_could_not_run_is_refused_with_the_reason(db, fake, monkeypatch, setting, value,
                                                                  says) -> None:
    if value is None:
        monkeypatch.delenv(setting)
    else:
        monkeypatch.setenv(setting, value)
    get_settings.cache_clear()
    qid = seed_query(db, name="q-refused")
    with pytest.raises(UserFacingError) as err:
        schedules.create_schedule(ANA, schedules.ScheduleForm(qid, "0 9 * * *", "UTC", "refused", "replace"))
    assert err.value.kind is ErrorKind.CONFIG and says in err.value.message
    assert "pw-in-url" not in err.value.message
    assert not fake.requests_to("/api/2.2/jobs/create", "POST")
    with db.connect() as c:  # closed here: a connection left to the garbage collector outlives its database
        assert not runs(db) and not c.execute(sa.text("SELECT 1 FROM stackql_app.schedules")).first()


def test_backend_is_picked_from_the_settings(fake) -> None:
    assert backend_for().name == "databricks"


def test_create_sends_a_quartz_serverless_job_without_secrets(db, fake) -> None:
    sch = _create(db, "0 9 * * 1-5")
    assert sch.job_id and sch.job_url == f"{fake.url}/jobs/{sch.job_id}"
    body = _body(fake, "/api/2.2/jobs/create")
    assert body["schedule"] == {"quartz_cron_expression": "0 0 9 ? * MON,TUE,WED,THU,FRI",
                                "timezone_id": "Europe/Berlin", "pause_status": "UNPAUSED"}
    assert body["schedule"]["quartz_cron_expression"] == cron.to_quartz("0 9 * * 1-5")
    assert body["max_concurrent_runs"] == 1
    (task,) = body["tasks"]
    assert "new_cluster" not in task and "existing_cluster_id" not in task  # serverless
    assert task["spark_python_task"] == {
        "python_file": RUNNER_FILE,
        "parameters": [*RUNNER_SETTINGS, "--", "--schedule-id", "{{job.parameters.schedule_id}}",
                       "--backend", "databricks", "--backend-run-id", "{{job.run_id}}",
                       "--trigger", "{{job.parameters.trigger}}", "--requested-by", "{{job.parameters.requested_by}}"]}
    (env,) = body["environments"]
    assert env["environment_key"] == task["environment_key"]
    assert env["spec"] == {"environment_version": "4",
                           "dependencies": ["psycopg2-binary>=2.9,<3", "/Volumes/main/inv/whl/runner.whl"]}
    assert body["parameters"] == [{"name": "schedule_id", "default": str(sch.id)},
                                  {"name": "trigger", "default": "schedule"}, {"name": "requested_by", "default": ""}]
    assert body["tags"]["app"] == "stackql-inventory"
    assert body["tags"]["stackql_inventory_schedule"] == str(sch.id)
    assert body["tags"]["stackql_inventory_target"] == "stackql_inventory.gh_repos"
    assert "environment_variables" not in body
    assert schedule_row(db, sch.id)["job_id"] == sch.job_id
    _assert_no_secrets(fake)


@pytest.mark.parametrize(("expr", "quartz"), [
    ("*/15 * * * *", "0 */15 * * * ?"),
    ("0 0 * * 0", "0 0 0 ? * SUN"),
    ("0 12 1,15 * *", "0 0 12 1,15 * ?"),
    ("@daily", "0 0 0 * * ?"),
])
def test_job_cron_is_the_quartz_conversion(db, fake, expr: str, quartz: str) -> None:
    _create(db, expr, table="t_" + str(abs(hash(expr)) % 10_000))
    assert _body(fake, "/api/2.2/jobs/create")["schedule"]["quartz_cron_expression"] == quartz


def test_missing_runner_file_is_a_config_error_and_saves_nothing(db, fake, monkeypatch) -> None:
    monkeypatch.delenv("STACKQL_INVENTORY_RUNNER_FILE")
    get_settings.cache_clear()
    with pytest.raises(UserFacingError) as e:
        _create(db)
    assert e.value.kind is ErrorKind.CONFIG and "STACKQL_INVENTORY_RUNNER_FILE" in e.value.message
    assert fake.requests_to("/api/2.2/jobs/create") == []
    assert schedules.list_schedules() == []


def test_runner_dependencies_keep_version_ranges_together() -> None:
    assert runner_dependencies("") == []
    assert runner_dependencies("a>=1,<2, b , /Volumes/x/y.whl\nc==3") == ["a>=1,<2", "b", "/Volumes/x/y.whl", "c==3"]


# --- changes -------------------------------------------------------------------------------------


def test_edit_resets_the_job_with_full_settings(db, fake) -> None:
    sch = _create(db)
    form = schedules.ScheduleForm(sch.query_id, "30 6 * * *", "UTC", "gh_repos_v2", "append")
    outcome = schedules.update_schedule(ANA, sch.id, form)
    assert outcome.notice == "" and outcome.schedule.job_id == sch.job_id
    body = _body(fake, "/api/2.2/jobs/reset")
    assert body["job_id"] == int(sch.job_id)
    settings = body["new_settings"]
    assert settings["schedule"] == {"quartz_cron_expression": "0 30 6 * * ?", "timezone_id": "UTC",
                                    "pause_status": "UNPAUSED"}
    assert settings["tasks"][0]["spark_python_task"]["python_file"] == RUNNER_FILE
    assert settings["tags"]["stackql_inventory_target"] == "stackql_inventory.gh_repos_v2"
    assert _job(fake, sch.job_id)["settings"]["name"] == "stackql-inventory: stackql_inventory.gh_repos_v2"
    _assert_no_secrets(fake)


def test_pause_and_resume_update_the_full_cron_schedule(db, fake) -> None:
    sch = _create(db, "*/30 * * * *", tz="America/New_York")
    schedules.set_active(ANA, sch.id, False)
    body = _body(fake, "/api/2.2/jobs/update")
    assert body == {"job_id": int(sch.job_id), "new_settings": {"schedule": {
        "quartz_cron_expression": "0 */30 * * * ?", "timezone_id": "America/New_York", "pause_status": "PAUSED"}}}
    assert _job(fake, sch.job_id)["settings"]["schedule"]["pause_status"] == "PAUSED"
    assert schedules.list_schedules()[0].next_run_at is None
    schedules.set_active(ANA, sch.id, True)
    assert _body(fake, "/api/2.2/jobs/update")["new_settings"]["schedule"]["pause_status"] == "UNPAUSED"
    assert _job(fake, sch.job_id)["settings"]["schedule"]["pause_status"] == "UNPAUSED"
    assert _job(fake, sch.job_id)["settings"]["tasks"], "update must not drop the tasks"


def test_delete_deletes_the_job_and_keeps_the_table_by_default(db, fake) -> None:
    sch = _create(db)
    with db.begin() as c:
        c.execute(sa.text("CREATE TABLE stackql_inventory.gh_repos (_stackql_run_id bigint, name text)"))
    message = schedules.delete_schedule(ANA, sch.id)
    assert f"Databricks job {sch.job_id} deleted" in message and "kept" in message
    assert _body(fake, "/api/2.2/jobs/delete") == {"job_id": int(sch.job_id)}
    with fake.lock:
        assert int(sch.job_id) not in fake.state.jobs
    assert schedules.list_schedules() == []
    with db.connect() as c:
        assert c.execute(sa.text("SELECT to_regclass('stackql_inventory.gh_repos')")).scalar() is not None


# --- runs ----------------------------------------------------------------------------------------


def test_run_now_and_live_status_from_the_runs_api(db, fake) -> None:
    sch = _create(db)
    message = schedules.run_now(ANA, sch.id)
    run_id = int(message.split()[1])
    assert "(queued)" in message and f"/run/{run_id}" in message
    assert fake.requests_to("/api/2.2/jobs/runs/get")[-1].query["run_id"] == str(run_id)
    assert _body(fake, "/api/2.2/jobs/run-now") == {
        "job_id": int(sch.job_id), "job_parameters": {"schedule_id": str(sch.id), "trigger": "manual",
                                              "requested_by": "ana@example.com"}}
    assert schedules.list_schedules(backend=_fresh())[0].status == "queued"
    fake.start_run(run_id)
    assert schedules.list_schedules(backend=_fresh())[0].status == "running"
    fake.finish_run(run_id, "SUCCESS")
    (view,) = schedules.list_schedules(backend=_fresh())
    assert view.status == "success" and view.problem == ""
    # The runner's ledger row (written from inside the job) adds rows and the trigger.
    with db.begin() as c:
        c.execute(sa.text(
            "INSERT INTO stackql_app.runs (schedule_id, target_schema, target_table, write_mode, trigger, backend, "
            "backend_run_id, status, rows_written, duration_s) VALUES (:s, 'stackql_inventory', 'gh_repos', "
            "'replace', 'manual', 'databricks', :r, 'success', 25, 1.5)"), {"s": sch.id, "r": str(run_id)})
    scheduled = fake.trigger_run(int(sch.job_id))
    fake.start_run(scheduled)
    fake.finish_run(scheduled, "FAILED", "Task run failed: stackql exited with 1")
    assert fake.run(scheduled)["state"]["life_cycle_state"] == "INTERNAL_ERROR"  # the deprecated field
    history = schedules.run_history(sch.id, backend=_fresh())
    assert [(r.run_id, r.trigger, r.status) for r in history] == [
        (str(scheduled), "schedule", "failed"), (str(run_id), "manual", "success")]
    assert history[0].error_message == "Task run failed: stackql exited with 1"
    assert history[0].error_class == "RUN_EXECUTION_ERROR" and history[0].url.endswith(f"/run/{scheduled}")
    assert (history[1].rows_written, history[1].duration_s) == (25, 1.5)
    assert schedules.list_schedules(backend=_fresh())[0].status == "failed"
    _assert_no_secrets(fake)


@pytest.mark.parametrize(("status", "expected"), [
    ({"state": "QUEUED"}, "queued"), ({"state": "PENDING"}, "queued"), ({"state": "BLOCKED"}, "queued"),
    ({"state": "RUNNING"}, "running"), ({"state": "TERMINATING"}, "running"),
    ({"state": "TERMINATED", "termination_details": {"code": "SUCCESS", "type": "SUCCESS"}}, "success"),
    ({"state": "TERMINATED", "termination_details": {"code": "RUN_EXECUTION_ERROR", "type": "CLIENT_ERROR"}},
     "failed"),
    ({"state": "TERMINATED", "termination_details": {"code": "LIBRARY_INSTALLATION_ERROR"}}, "failed"),
    ({"state": "TERMINATED", "termination_details": {"code": "USER_CANCELED", "type": "SUCCESS"}}, "cancelled"),
    ({"state": "TERMINATED", "termination_details": {"code": "MAX_CONCURRENT_RUNS_EXCEEDED"}}, "skipped"),
])
def test_run_status_reads_status_state_not_the_deprecated_state(status: dict, expected: str) -> None:
    # The deprecated `state` says the opposite, to show it is ignored.
    run = jobs.BaseRun.from_dict({"run_id": 1, "status": status,
                                  "state": {"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED"}})
    assert run_status(run) == expected


# --- jobs deleted outside the app, 403, 404 -----------------------------------------------------


def test_a_job_deleted_outside_the_app_is_reported_not_crashed_on(db, fake) -> None:
    sch = _create(db)
    fake.client().jobs.delete(job_id=int(sch.job_id))
    (view,) = schedules.list_schedules(backend=_fresh())
    assert f"job {sch.job_id} no longer exists" in view.problem and "deleted outside the app" in view.problem
    for action in (lambda: schedules.set_active(ANA, sch.id, False), lambda: schedules.run_now(ANA, sch.id)):
        with pytest.raises(UserFacingError) as e:
            action()
        assert e.value.kind is ErrorKind.NOT_FOUND and "no longer exists" in e.value.message
    assert schedule_row(db, sch.id)["is_active"] is True, "the failed pause saved nothing"
    assert schedules.run_history(sch.id, backend=_fresh()) == []  # nothing ran; no crash
    fake.fail_next("/api/2.2/jobs/runs/list", 400, "INVALID_PARAMETER_VALUE", f"Job {sch.job_id} does not exist.")
    assert schedules.run_history(sch.id, backend=_fresh()) == []
    # Saving the schedule again creates a new job in place of the lost one.
    form = schedules.ScheduleForm(sch.query_id, "0 9 * * 1-5", "Europe/Berlin", "gh_repos", "replace")
    outcome = schedules.update_schedule(ANA, sch.id, form)
    assert outcome.schedule.job_id != sch.job_id and "deleted outside the app" in outcome.notice
    assert schedules.list_schedules(backend=_fresh())[0].problem == ""
    # And deleting a schedule whose job is gone still works.
    fake.client().jobs.delete(job_id=int(outcome.schedule.job_id))
    message = schedules.delete_schedule(ANA, sch.id)
    assert "already gone" in message
    assert schedules.list_schedules(backend=_fresh()) == []


def test_permission_denied_on_create_saves_nothing(db, fake) -> None:
    fake.fail_next("/api/2.2/jobs/create", 403, "PERMISSION_DENIED", "User is not allowed to create jobs")
    with pytest.raises(UserFacingError) as e:
        _create(db)
    assert e.value.kind is ErrorKind.PERMISSION and "not allowed" in e.value.message
    assert schedules.list_schedules() == []
    with fake.lock:
        assert fake.state.jobs == {}


def test_permission_denied_and_not_found_in_status(db, fake) -> None:
    sch = _create(db)
    fake.fail_next("/api/2.2/jobs/get", 403, "PERMISSION_DENIED", "no access")
    assert "not allowed to access job" in schedules.list_schedules(backend=_fresh())[0].problem
    fake.fail_next("/api/2.2/jobs/get", 404, "RESOURCE_DOES_NOT_EXIST", "gone")
    assert "no longer exists" in schedules.list_schedules(backend=_fresh())[0].problem
    assert schedules.list_schedules(backend=_fresh())[0].problem == ""


def test_permission_denied_on_edit_and_delete_keeps_everything(db, fake) -> None:
    sch = _create(db)
    fake.fail_next("/api/2.2/jobs/reset", 403, "PERMISSION_DENIED", "no")
    form = schedules.ScheduleForm(sch.query_id, "0 1 * * *", "UTC", "renamed", "replace")
    with pytest.raises(UserFacingError) as e:
        schedules.update_schedule(ANA, sch.id, form)
    assert e.value.kind is ErrorKind.PERMISSION
    row = schedule_row(db, sch.id)
    assert (row["cron_expression"], row["target_table"]) == ("0 9 * * 1-5", "gh_repos")
    fake.fail_next("/api/2.2/jobs/delete", 403, "PERMISSION_DENIED", "no")
    with pytest.raises(UserFacingError) as e:
        schedules.delete_schedule(ANA, sch.id)
    assert e.value.kind is ErrorKind.PERMISSION
    assert [v.id for v in schedules.list_schedules()] == [sch.id]


def test_the_local_scheduler_never_fires_job_backed_schedules(db, fake) -> None:
    from stackql_inventory.services.scheduler import Scheduler

    sch = _create(db)
    with db.begin() as c:
        c.execute(sa.text("UPDATE stackql_app.schedules SET next_run_at = now() - interval '1 hour'"))
    plan = Scheduler(register=False).plan(datetime.now(UTC))
    assert plan.claims == [] and plan.next_due is None
    assert runs(db, sch.id) == []


def test_databricks_backend_has_job_urls_even_for_bare_hosts(fake, monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", "adb-123.4.azuredatabricks.net/")
    get_settings.cache_clear()
    assert DatabricksJobs(get_settings()).job_url("77") == "https://adb-123.4.azuredatabricks.net/jobs/77"
    assert json.dumps(DatabricksJobs(get_settings()).job_url(None)) == '""'


# --- status cache: the Schedules page's poller must not hit the Jobs API rate limit -------------------


def _status_calls(fake: FakeDatabricks) -> int:
    return len(fake.requests_to("/api/2.2/jobs/get")) + len(fake.requests_to("/api/2.2/jobs/runs/list"))


def test_listing_many_job_backed_schedules_reuses_job_statuses_for_a_few_seconds(db, fake) -> None:
    created = [_create(db, "*/5 * * * *", f"tbl_{i:03d}", "UTC") for i in range(100)]
    backend = DatabricksJobs(get_settings(), status_ttl_s=2.0, idle_status_ttl_s=2.0)
    base = _status_calls(fake)
    assert len(schedules.list_schedules(backend=backend)) == 100
    first = _status_calls(fake) - base
    assert first == 200, "one jobs/get and one runs/list per job-backed schedule"
    # The page's poller re-lists every 1.5 s while a run goes; other tabs list too. Within the TTL: no calls.
    for _ in range(5):
        schedules.list_schedules(backend=backend)
    schedules.list_schedules()  # a new backend object (another request) shares the cache
    assert _status_calls(fake) - base == 200
    # Run now forgets that job's entry: its "queued" shows at once, at the cost of that one job's 2 calls.
    target = created[7]
    schedules.run_now(ANA, target.id)
    before = _status_calls(fake)
    views = {v.id: v for v in schedules.list_schedules(backend=backend)}
    assert views[target.id].status == "queued"
    assert _status_calls(fake) - before == 2
    # Past the TTL every job is asked again.
    time.sleep(2.1)
    before = _status_calls(fake)
    schedules.list_schedules(backend=backend)
    assert _status_calls(fake) - before == 200


def test_a_run_finishing_shows_once_the_cached_status_expires(db, fake) -> None:
    sch = _create(db)
    backend = DatabricksJobs(get_settings(), status_ttl_s=0.5, idle_status_ttl_s=0.5)
    run_id = int(schedules.run_now(ANA, sch.id).split()[1])
    assert schedules.list_schedules(backend=backend)[0].status == "queued"
    fake.start_run(run_id)
    fake.finish_run(run_id, "SUCCESS")
    assert schedules.list_schedules(backend=backend)[0].status == "queued", "still the cached answer"
    time.sleep(0.6)
    assert schedules.list_schedules(backend=backend)[0].status == "success"
    # Errors are cached too (a 429 must not be retried by every poll), and expire the same way.
    fake.fail_next("/api/2.2/jobs/get", 403, "PERMISSION_DENIED", "no access")
    time.sleep(0.6)
    assert "not allowed to access job" in schedules.list_schedules(backend=backend)[0].problem
    assert "not allowed to access job" in schedules.list_schedules(backend=backend)[0].problem
    time.sleep(0.6)
    assert schedules.list_schedules(backend=backend)[0].problem == ""


def test_pause_and_edit_forget_the_cached_status(db, fake) -> None:
    sch = _create(db)
    backend = DatabricksJobs(get_settings(), status_ttl_s=60, idle_status_ttl_s=60)
    schedules.list_schedules(backend=backend)
    fake.client().jobs.delete(job_id=int(sch.job_id))  # behind the app's back: cached as fine for now
    assert schedules.list_schedules(backend=backend)[0].problem == ""
    with pytest.raises(UserFacingError):
        schedules.set_active(ANA, sch.id, False)  # the pause finds the job gone and forgets the entry
    assert "no longer exists" in schedules.list_schedules(backend=backend)[0].problem


def test_a_job_with_a_run_going_is_asked_again_sooner_than_an_idle_one(db, fake) -> None:
    """Idle jobs (last run finished) change only when a run starts: they are reused for longer."""
    busy, idle = _create(db, table="busy_tbl"), _create(db, table="idle_tbl")
    backend = DatabricksJobs(get_settings(), status_ttl_s=0.4, idle_status_ttl_s=60)
    run_id = int(schedules.run_now(ANA, busy.id).split()[1])
    fake.start_run(run_id)
    schedules.list_schedules(backend=backend)
    time.sleep(0.5)
    calls = _status_calls(fake)
    views = {v.id: v for v in schedules.list_schedules(backend=backend)}
    assert views[busy.id].status == "running" and views[idle.id].status == "never run"
    assert _status_calls(fake) - calls == 2, "only the job with a run going was asked again"
    fake.finish_run(run_id, "SUCCESS")
    time.sleep(0.5)
    assert {v.id: v.status for v in schedules.list_schedules(backend=backend)}[busy.id] == "success"
    calls = _status_calls(fake)
    time.sleep(0.5)
    schedules.list_schedules(backend=backend)
    assert _status_calls(fake) == calls, "finished: now idle, reused"
