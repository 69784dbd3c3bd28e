"""The Databricks fake answers the real databricks-sdk as the documented REST API does."""

from __future__ import annotations

import base64
import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from databricks.sdk import errors
from databricks.sdk.service import compute, jobs
from databricks.sdk.service.workspace import AclPermission, ImportFormat, Language, ObjectType
from google.protobuf.duration_pb2 import Duration

from stackql_inventory.config import Settings
from stackql_inventory.services import databricks_client
from stackql_inventory.services.databricks_client import sdk_error_to_user_facing
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.fakes.databricks_api import FakeDatabricks, validate_quartz

ENDPOINT = "projects/inv/branches/production/endpoints/primary"


@pytest.fixture
def fake(monkeypatch):
    # Explicit host + token must be all the SDK sees; an ambient profile or workspace id would leak in.
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    with FakeDatabricks() as server:
        yield server


@pytest.fixture
def w(fake):
    return fake.client()


def _serverless_job(name: str = "inv-sq-1", cron: str = "0 30 2 ? * MON-FRI", **extra) -> dict:
    return dict(
        name=name,
        schedule=jobs.CronSchedule(quartz_cron_expression=cron, timezone_id="UTC"),
        parameters=[jobs.JobParameterDefinition(name="query_id", default="1")],
        environments=[jobs.JobEnvironment(environment_key="default",
                                          spec=compute.Environment(environment_version="4",
                                                                   dependencies=["psycopg[binary]>=3.2"]))],
        tasks=[jobs.Task(task_key="run", environment_key="default",
                         spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/app/runner.py",
                                                                parameters=["--query-id", "1"]))],
        **extra,
    )


# --- basics ---------------------------------------------------------------------------------------
def test_sdk_probes_host_metadata_and_reads_current_user(fake, w):
    me = w.current_user.me()
    assert me.user_name == fake.user()["userName"]
    assert me.emails[0].value == me.user_name
    probes = fake.requests_to("/.well-known/databricks-config")
    assert probes and probes[0].status == 200
    me_call = fake.requests_to("/api/2.0/preview/scim/v2/Me")[0]
    assert me_call.method == "GET" and me_call.principal == me.user_name
    assert me_call.headers["authorization"] == f"Bearer {fake.token}"


def test_current_user_is_configurable(monkeypatch):
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    with FakeDatabricks(user_name="4b1e-sp-client-id", token="dapi-other") as server:
        assert server.client().current_user.me().user_name == "4b1e-sp-client-id"


def test_unknown_token_is_unauthenticated(fake):
    with pytest.raises(errors.Unauthenticated, match="Invalid access token"):
        fake.client(token="dapi-wrong").current_user.me()


def test_unknown_endpoint_is_404(fake, w):
    with pytest.raises(errors.NotFound, match="No API found"):
        w.api_client.do("GET", "/api/2.0/clusters/list")


# --- secrets --------------------------------------------------------------------------------------
def test_secret_round_trip_and_metadata_only_list(fake, w):
    w.secrets.create_scope("inv")
    w.secrets.put_secret("inv", "Api-Key", string_value="s3cret-value")
    w.secrets.put_secret("inv", "blob", bytes_value=base64.b64encode(b"\x00\x01").decode())
    listed = list(w.secrets.list_secrets("inv"))
    assert [m.key for m in listed] == ["Api-Key", "blob"]
    assert all(m.last_updated_timestamp > 0 for m in listed)
    raw_list = w.api_client.do("GET", "/api/2.0/secrets/list", query={"scope": "inv"})
    assert "s3cret-value" not in str(raw_list) and all(set(s) == {"key", "last_updated_timestamp"}
                                                       for s in raw_list["secrets"])
    # Keys are case-insensitive; values come back base64-encoded.
    assert base64.b64decode(w.secrets.get_secret("inv", "api-key").value) == b"s3cret-value"
    assert w.dbutils.secrets.get("inv", "API-KEY") == "s3cret-value"
    assert base64.b64decode(w.secrets.get_secret("inv", "blob").value) == b"\x00\x01"
    assert [s.name for s in w.secrets.list_scopes()] == ["inv"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda w: list(w.secrets.list_secrets("nope")), errors.ResourceDoesNotExist, "Scope nope does not exist"),
        (lambda w: w.secrets.get_secret("nope", "k"), errors.ResourceDoesNotExist, "Scope nope does not exist"),
        (lambda w: w.secrets.get_secret("inv", "missing"), errors.ResourceDoesNotExist, "Failed to get secret"),
        (lambda w: w.secrets.delete_secret("inv", "missing"), errors.ResourceDoesNotExist, "No secret"),
        (lambda w: w.secrets.put_secret("nope", "k", string_value="v"), errors.ResourceDoesNotExist, "nope"),
        (lambda w: w.secrets.delete_scope("nope"), errors.ResourceDoesNotExist, "nope"),
        (lambda w: w.secrets.create_scope("inv"), errors.ResourceAlreadyExists, "already exists"),
        (lambda w: w.secrets.create_scope("bad/name"), errors.InvalidParameterValue, "alphanumeric"),
        (lambda w: w.secrets.create_scope("x" * 129), errors.InvalidParameterValue, "128"),
        (lambda w: w.secrets.put_secret("inv", "bad key", string_value="v"), errors.InvalidParameterValue,
         "alphanumeric"),
        (lambda w: w.secrets.put_secret("inv", "k"), errors.InvalidParameterValue, "Exactly one"),
        (lambda w: w.secrets.put_secret("inv", "k", string_value="v", bytes_value="dg=="),
         errors.InvalidParameterValue, "Exactly one"),
        (lambda w: w.secrets.put_secret("inv", "k", string_value="x" * (128 * 1024 + 1)),
         errors.InvalidParameterValue, "128 KB"),
        (lambda w: w.secrets.get_acl("inv", "nobody"), errors.ResourceDoesNotExist, "No ACL"),
    ],
)
def test_secret_error_paths(fake, w, call, error, message):
    w.secrets.create_scope("inv")
    with pytest.raises(error, match=message):
        call(w)


def test_delete_secret_and_scope(fake, w):
    w.secrets.create_scope("inv")
    w.secrets.put_secret("inv", "k", string_value="v")
    w.secrets.delete_secret("inv", "K")
    assert list(w.secrets.list_secrets("inv")) == []
    w.secrets.delete_scope("inv")
    assert list(w.secrets.list_scopes()) == []


def test_scope_acls_decide_who_reads(fake, w):
    reader = fake.add_user("dapi-reader", "reader@example.com", groups=("analysts",))
    other = fake.client(token=reader)
    w.secrets.create_scope("inv")
    w.secrets.put_secret("inv", "k", string_value="v")
    assert [(a.principal, a.permission) for a in w.secrets.list_acls("inv")] == [
        (fake.user()["userName"], AclPermission.MANAGE)]

    with pytest.raises(errors.PermissionDenied, match="READ permission on scope inv"):
        list(other.secrets.list_secrets("inv"))
    with pytest.raises(errors.PermissionDenied):
        other.secrets.get_secret("inv", "k")

    w.secrets.put_acl("inv", "analysts", AclPermission.READ)  # through a group
    assert [m.key for m in other.secrets.list_secrets("inv")] == ["k"]
    assert other.dbutils.secrets.get("inv", "k") == "v"
    assert w.secrets.get_acl("inv", "analysts").permission == AclPermission.READ
    with pytest.raises(errors.PermissionDenied, match="WRITE"):
        other.secrets.put_secret("inv", "k2", string_value="v")
    with pytest.raises(errors.PermissionDenied, match="MANAGE"):
        list(other.secrets.list_acls("inv"))

    w.secrets.delete_acl("inv", "analysts")
    with pytest.raises(errors.PermissionDenied):
        list(other.secrets.list_secrets("inv"))


def test_users_group_and_admins(fake, w):
    fake.add_user("dapi-anyone", "anyone@example.com")
    fake.add_user("dapi-admin", "admin@example.com", admin=True)
    w.secrets.create_scope("shared", initial_manage_principal="users")
    w.secrets.create_scope("private")
    assert list(fake.client(token="dapi-anyone").secrets.list_secrets("shared")) == []
    assert list(fake.client(token="dapi-admin").secrets.list_secrets("private")) == []
    with pytest.raises(errors.PermissionDenied):
        list(fake.client(token="dapi-anyone").secrets.list_secrets("private"))


# --- jobs -----------------------------------------------------------------------------------------
def test_job_create_get_with_server_defaults(fake, w):
    job_id = w.jobs.create(**_serverless_job()).job_id
    job = w.jobs.get(job_id)
    assert job.job_id == job_id and job.creator_user_name == fake.user()["userName"]
    assert job.settings.schedule.quartz_cron_expression == "0 30 2 ? * MON-FRI"
    assert job.settings.max_concurrent_runs == 1 and job.settings.tasks[0].run_if == jobs.RunIf.ALL_SUCCESS
    body = fake.requests_to("/api/2.2/jobs/create")[0].json
    assert body["tasks"][0]["spark_python_task"]["python_file"] == "/Workspace/Shared/app/runner.py"
    assert body["environments"][0]["spec"]["environment_version"] == "4"


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("0 0 12 * *", "6 or 7 fields"),
        ("0 0 12 * * * * *", "6 or 7 fields"),
        ("0 0 12 * * *", "both a day-of-week AND a day-of-month"),
        ("0 0 12 1 * MON", "both a day-of-week AND a day-of-month"),
        ("0 0 12 ? * ?", "-OR-"),
        ("0 0 12 ? * 0", "between 1 and 7"),
        ("? 0 12 * * ?", "'?' can only be specified"),
        ("0 0 12 * * ? $", "Illegal characters"),
    ],
)
def test_job_rejects_invalid_quartz(fake, w, cron, problem):
    with pytest.raises(errors.InvalidParameterValue, match="Invalid quartz_cron_expression"):
        w.jobs.create(**_serverless_job(cron=cron))
    assert problem in validate_quartz(cron)
    assert fake.state.jobs == {}


@pytest.mark.parametrize("cron", ["0 0 12 * * ?", "0 */15 * * * ?", "0 0 9 ? * MON,TUE,WED,THU,FRI",
                                  "0 0 0 ? * 1", "0 0 12 1,15 * ?", "0 0 12 * * ? 2030"])
def test_job_accepts_valid_quartz(w, cron):
    assert validate_quartz(cron) is None
    assert w.jobs.create(**_serverless_job(cron=cron)).job_id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(schedule=jobs.CronSchedule(quartz_cron_expression="0 0 12 * * ?", timezone_id="Mars/Base")),
         "Invalid timezone_id"),
        (dict(tasks=[jobs.Task(task_key="run", spark_python_task=jobs.SparkPythonTask(python_file="/x.py"))]),
         "needs an environment_key"),
        (dict(tasks=[jobs.Task(task_key="run", environment_key="other",
                               spark_python_task=jobs.SparkPythonTask(python_file="/x.py"))]),
         "not defined in environments"),
        (dict(environments=[jobs.JobEnvironment(environment_key="default", spec=compute.Environment())]),
         "environment_version"),
        (dict(tasks=[jobs.Task(task_key="a", environment_key="default",
                               spark_python_task=jobs.SparkPythonTask(python_file="/x.py")),
                     jobs.Task(task_key="a", environment_key="default",
                               spark_python_task=jobs.SparkPythonTask(python_file="/x.py"))]), "unique"),
        (dict(max_concurrent_runs=5000), "max_concurrent_runs"),
    ],
)
def test_job_rejects_invalid_settings(w, change, message):
    with pytest.raises(errors.InvalidParameterValue, match=message):
        w.jobs.create(**{**_serverless_job(), **change})


def test_job_update_replaces_top_level_merges_tasks_and_removes_fields(fake, w):
    job_id = w.jobs.create(**_serverless_job(tags={"app": "inventory"})).job_id
    w.jobs.update(job_id, new_settings=jobs.JobSettings(
        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 1 * * ?", timezone_id="Europe/Berlin",
                                   pause_status=jobs.PauseStatus.PAUSED),
        tasks=[jobs.Task(task_key="extra", environment_key="default",
                         spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/x.py"))]))
    settings = w.jobs.get(job_id).settings
    assert settings.schedule.pause_status == jobs.PauseStatus.PAUSED
    assert settings.schedule.timezone_id == "Europe/Berlin"
    assert sorted(t.task_key for t in settings.tasks) == ["extra", "run"]
    assert settings.tags == {"app": "inventory"}

    w.jobs.update(job_id, fields_to_remove=["schedule", "tasks/extra", "tags"])
    settings = w.jobs.get(job_id).settings
    assert settings.schedule is None and settings.tags is None
    assert [t.task_key for t in settings.tasks] == ["run"]


def test_job_update_validates_the_merged_settings(w):
    job_id = w.jobs.create(**_serverless_job()).job_id
    with pytest.raises(errors.InvalidParameterValue, match="Invalid quartz_cron_expression"):
        w.jobs.update(job_id, new_settings=jobs.JobSettings(
            schedule=jobs.CronSchedule(quartz_cron_expression="0 0 12 * * *", timezone_id="UTC")))
    assert w.jobs.get(job_id).settings.schedule.quartz_cron_expression == "0 30 2 ? * MON-FRI"


def test_job_reset_overwrites_everything(w):
    job_id = w.jobs.create(**_serverless_job(tags={"a": "b"})).job_id
    w.jobs.reset(job_id, new_settings=jobs.JobSettings(**_serverless_job(name="renamed")))
    settings = w.jobs.get(job_id).settings
    assert settings.name == "renamed" and settings.tags is None


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda w: w.jobs.get(424242), errors.ResourceDoesNotExist),
        (lambda w: w.jobs.delete(424242), errors.InvalidParameterValue),
        (lambda w: w.jobs.reset(424242, new_settings=jobs.JobSettings(name="x")), errors.InvalidParameterValue),
        (lambda w: w.jobs.update(424242, new_settings=jobs.JobSettings(name="x")), errors.InvalidParameterValue),
        (lambda w: w.jobs.run_now(424242), errors.InvalidParameterValue),
    ],
)
def test_missing_job_is_400_job_does_not_exist(fake, w, call, error):
    with pytest.raises(error, match=r"^Job 424242 does not exist\.$") as info:
        call(w)
    assert fake.requests[-1].status == 400
    # Whatever class the SDK picked, the app sees NOT_FOUND.
    assert sdk_error_to_user_facing(info.value, "job 424242").kind is ErrorKind.NOT_FOUND


def test_job_delete(fake, w):
    job_id = w.jobs.create(**_serverless_job()).job_id
    w.jobs.delete(job_id)
    with pytest.raises(errors.ResourceDoesNotExist):
        w.jobs.get(job_id)


def test_job_list_name_filter_and_pagination(fake, w):
    ids = [w.jobs.create(**_serverless_job(name=f"inv-{i}")).job_id for i in range(5)]
    assert [j.job_id for j in w.jobs.list(limit=2)] == ids
    pages = fake.requests_to("/api/2.2/jobs/list")
    assert len(pages) == 3 and "page_token" not in pages[0].query and pages[1].query["page_token"]
    assert [j.job_id for j in w.jobs.list(name="INV-3")] == [ids[3]]
    assert list(w.jobs.list(name="inv-")) == []
    listed = next(iter(w.jobs.list(name="inv-0")))
    assert listed.settings.name == "inv-0" and not listed.settings.tasks
    with pytest.raises(errors.InvalidParameterValue):
        list(w.jobs.list(limit=101))


# --- runs -----------------------------------------------------------------------------------------
def test_run_lifecycle_success(fake, w):
    job_id = w.jobs.create(**_serverless_job()).job_id
    run_id = w.jobs.run_now(job_id, job_parameters={"query_id": "7"}).run_id
    run = w.jobs.get_run(run_id)
    assert run.status.state == jobs.RunLifecycleStateV2State.PENDING
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.PENDING
    assert run.trigger == jobs.TriggerType.ONE_TIME and run.start_time > 0 and run.end_time == 0
    assert {p.name: p.value for p in run.job_parameters} == {"query_id": "7"}
    assert str(run_id) in run.run_page_url and [t.task_key for t in run.tasks] == ["run"]

    fake.start_run(run_id)
    assert w.jobs.get_run(run_id).status.state == jobs.RunLifecycleStateV2State.RUNNING
    fake.finish_run(run_id, "SUCCESS")
    run = w.jobs.get_run(run_id)
    assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    assert run.status.termination_details.code == jobs.TerminationCodeCode.SUCCESS
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.end_time >= run.start_time
    # The SDK's waiter polls the deprecated state; a finished run returns at once.
    assert w.jobs.run_now(job_id).run_id != run_id


def test_run_failure_reports_message(fake, w):
    job_id = w.jobs.create(**_serverless_job()).job_id
    run_id = w.jobs.run_now(job_id).run_id
    fake.finish_run(run_id, "FAILED", "stackql: provider aws not found")
    run = w.jobs.get_run(run_id)
    assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    details = run.status.termination_details
    assert details.code == jobs.TerminationCodeCode.RUN_EXECUTION_ERROR
    assert details.type == jobs.TerminationTypeType.CLIENT_ERROR
    assert details.message == "stackql: provider aws not found"
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert run.state.state_message == "stackql: provider aws not found"


def test_run_now_waiter_returns_when_the_run_finishes(fake, w):
    job_id = w.jobs.create(**_serverless_job()).job_id
    waiter = w.jobs.run_now(job_id)
    timer = threading.Timer(0.2, fake.finish_run, args=(waiter.run_id, "SUCCESS"))
    timer.start()
    try:
        run = waiter.result(timeout=timedelta(seconds=10))
    finally:
        timer.cancel()
    assert run.state.result_state == jobs.RunResultState.SUCCESS


def test_cancel_run(fake, w):
    job_id = w.jobs.create(**_serverless_job()).job_id
    run_id = w.jobs.run_now(job_id).run_id
    fake.start_run(run_id)
    w.jobs.cancel_run(run_id)
    run = w.jobs.get_run(run_id)
    assert run.state.result_state == jobs.RunResultState.CANCELED
    assert run.status.termination_details.code == jobs.TerminationCodeCode.USER_CANCELED
    w.jobs.cancel_run(run_id)  # cancelling a finished run is a no-op
    assert w.jobs.get_run(run_id).state.result_state == jobs.RunResultState.CANCELED


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda w: w.jobs.get_run(999), errors.ResourceDoesNotExist),
        (lambda w: w.jobs.cancel_run(999), errors.InvalidParameterValue),
    ],
)
def test_missing_run(w, call, error):
    with pytest.raises(error, match="Run 999 does not exist"):
        call(w)


def test_runs_list_filters_and_pagination(fake, w):
    job_id = w.jobs.create(**_serverless_job(max_concurrent_runs=10)).job_id
    other = w.jobs.create(**_serverless_job(name="other")).job_id
    run_ids = [w.jobs.run_now(job_id).run_id for _ in range(5)]
    w.jobs.run_now(other)
    for run_id in run_ids[:3]:
        fake.finish_run(run_id, "SUCCESS")

    listed = [r.run_id for r in w.jobs.list_runs(job_id=job_id, limit=2)]
    assert listed == sorted(run_ids, reverse=True)  # newest first, across 3 pages
    pages = fake.requests_to("/api/2.2/jobs/runs/list")
    assert len(pages) == 3 and pages[0].query == {"job_id": str(job_id), "limit": "2"}
    assert [r.run_id for r in w.jobs.list_runs(job_id=job_id, active_only=True)] == run_ids[:2:-1]
    assert sorted(r.run_id for r in w.jobs.list_runs(job_id=job_id, completed_only=True)) == run_ids[:3]
    assert len(list(w.jobs.list_runs())) == 6
    assert fake.requests_to("/api/2.2/jobs/runs/list")[-1].query.get("active_only") is None

    page = w.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"job_id": job_id, "limit": 2})
    assert page["has_more"] is True and "next_page_token" in page and "tasks" not in page["runs"][0]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": 26}, "between 1 and 25"),
        ({"active_only": True, "completed_only": True}, "cannot both be true"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
def test_runs_list_rejects_bad_queries(w, query, message):
    with pytest.raises(errors.InvalidParameterValue, match=message):
        list(w.jobs.list_runs(**query))


def test_concurrent_runs_skip_or_queue(fake, w):
    skip_job = w.jobs.create(**_serverless_job(name="skip")).job_id
    first = w.jobs.run_now(skip_job).run_id
    skipped = w.jobs.get_run(w.jobs.run_now(skip_job).run_id)
    assert skipped.state.life_cycle_state == jobs.RunLifeCycleState.SKIPPED
    assert skipped.status.termination_details.code == jobs.TerminationCodeCode.MAX_CONCURRENT_RUNS_EXCEEDED
    fake.finish_run(first, "SUCCESS")

    queue_job = w.jobs.create(**_serverless_job(name="queue", queue=jobs.QueueSettings(enabled=True))).job_id
    first = w.jobs.run_now(queue_job).run_id
    queued = w.jobs.run_now(queue_job).run_id
    assert w.jobs.get_run(queued).status.state == jobs.RunLifecycleStateV2State.QUEUED
    fake.finish_run(first, "SUCCESS")
    assert w.jobs.get_run(queued).status.state == jobs.RunLifecycleStateV2State.PENDING


def test_run_now_idempotency_and_scheduled_trigger(fake, w):
    job_id = w.jobs.create(**_serverless_job(max_concurrent_runs=5)).job_id
    a = w.jobs.run_now(job_id, idempotency_token="tok-1").run_id
    assert w.jobs.run_now(job_id, idempotency_token="tok-1").run_id == a
    scheduled = fake.trigger_run(job_id)
    run = w.jobs.get_run(scheduled)
    assert run.trigger == jobs.TriggerType.PERIODIC and run.number_in_job == 2


# --- Lakebase -------------------------------------------------------------------------------------
def test_postgres_credentials_are_new_each_time(fake, w):
    fake.add_postgres_endpoint(ENDPOINT, host="ep-primary.example.com")
    first = w.postgres.generate_database_credential(endpoint=ENDPOINT)
    second = w.postgres.generate_database_credential(endpoint=ENDPOINT, ttl=Duration(seconds=600))
    assert first.token != second.token and fake.minted_tokens == [first.token, second.token]
    now = datetime.now(timezone.utc)
    assert timedelta(minutes=59) < first.expire_time.ToDatetime(tzinfo=timezone.utc) - now <= timedelta(hours=1)
    assert second.expire_time.ToDatetime(tzinfo=timezone.utc) - now <= timedelta(seconds=600)
    bodies = [r.json for r in fake.requests_to("/api/2.0/postgres/credentials")]
    assert bodies == [{"endpoint": ENDPOINT}, {"endpoint": ENDPOINT, "ttl": "600s"}]
    assert w.postgres.get_endpoint(name=ENDPOINT).status.hosts.host == "ep-primary.example.com"


def test_database_credentials_for_provisioned_instance(fake, w):
    fake.add_database_instance("inv-db", dns="inv-db.example.com")
    cred = w.database.generate_database_credential(instance_names=["inv-db"], request_id="req-1")
    assert cred.token == fake.minted_tokens[-1] and cred.expiration_time.endswith("Z")
    assert fake.state.credentials[-1]["request_id"] == "req-1"
    assert w.database.get_database_instance("inv-db").read_write_dns == "inv-db.example.com"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda w: w.postgres.generate_database_credential(endpoint="projects/x/branches/y/endpoints/z"),
         errors.NotFound, "not found"),
        (lambda w: w.postgres.generate_database_credential(endpoint="primary"), errors.InvalidParameterValue,
         "projects/"),
        (lambda w: w.postgres.generate_database_credential(endpoint=ENDPOINT, ttl=Duration(seconds=60)),
         errors.InvalidParameterValue, "300s and 3600s"),
        (lambda w: w.postgres.get_endpoint(name="projects/x/branches/y/endpoints/z"), errors.NotFound, "not found"),
        (lambda w: w.database.generate_database_credential(instance_names=["nope"]), errors.ResourceDoesNotExist,
         "nope"),
        (lambda w: w.database.generate_database_credential(instance_names=[]), errors.InvalidParameterValue,
         "at least one"),
        (lambda w: w.database.get_database_instance("nope"), errors.ResourceDoesNotExist, "nope"),
    ],
)
def test_lakebase_error_paths(fake, w, call, error, message):
    fake.add_postgres_endpoint(ENDPOINT)
    with pytest.raises(error, match=message):
        call(w)
    assert fake.minted_tokens == []


def test_minting_can_be_made_to_fail_once(fake, w):
    fake.add_postgres_endpoint(ENDPOINT)
    fake.fail_next("/api/2.0/postgres/credentials", 403, "PERMISSION_DENIED", "no CAN_CONNECT_AND_CREATE")
    with pytest.raises(errors.PermissionDenied, match="CAN_CONNECT"):
        w.postgres.generate_database_credential(endpoint=ENDPOINT)
    assert fake.minted_tokens == []
    assert w.postgres.generate_database_credential(endpoint=ENDPOINT).token == fake.minted_tokens[0]


# --- workspace ------------------------------------------------------------------------------------
def test_workspace_mkdirs_upload_and_status(fake, w):
    w.workspace.mkdirs("/Workspace/Shared/stackql-inventory/runner")
    status = w.workspace.get_status("/Shared/stackql-inventory")
    assert status.object_type == ObjectType.DIRECTORY
    w.workspace.upload("/Workspace/Shared/stackql-inventory/runner/run.py", b"print('hi')\n",
                       format=ImportFormat.AUTO, overwrite=True)
    status = w.workspace.get_status("/Workspace/Shared/stackql-inventory/runner/run.py")
    assert status.object_type == ObjectType.FILE and status.size == 12
    assert fake.workspace_file("/Shared/stackql-inventory/runner/run.py") == b"print('hi')\n"
    upload = fake.requests_to("/api/2.0/workspace/import")[0]
    assert upload.headers["content-type"].startswith("multipart/form-data")


def test_workspace_import_json_and_notebook_detection(fake, w):
    w.workspace.import_("/Shared/nb.py", content=base64.b64encode(b"print(1)").decode(),
                        format=ImportFormat.SOURCE, language=Language.PYTHON)
    assert w.workspace.get_status("/Shared/nb.py").object_type == ObjectType.NOTEBOOK
    source = b"# Databricks notebook source\nprint(1)\n"
    w.workspace.upload("/Shared/auto.py", source, format=ImportFormat.AUTO)
    assert w.workspace.get_status("/Shared/auto").object_type == ObjectType.NOTEBOOK
    w.workspace.upload("/Shared/raw.py", source, format=ImportFormat.RAW)
    assert w.workspace.get_status("/Shared/raw.py").object_type == ObjectType.FILE


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda w: w.workspace.upload("/Shared/missing/run.py", b"x", format=ImportFormat.AUTO),
         errors.ResourceDoesNotExist, "parent folder"),
        (lambda w: w.workspace.upload("/Shared/run.py", b"y", format=ImportFormat.AUTO),
         errors.ResourceAlreadyExists, "already exists"),
        (lambda w: w.workspace.get_status("/Shared/nope"), errors.ResourceDoesNotExist, "doesn't exist"),
        (lambda w: w.workspace.mkdirs("/Shared/run.py/sub"), errors.ResourceAlreadyExists, "not a directory"),
        (lambda w: w.workspace.mkdirs("relative/path"), errors.InvalidParameterValue, "absolute"),
    ],
)
def test_workspace_error_paths(fake, w, call, error, message):
    w.workspace.upload("/Shared/run.py", b"x", format=ImportFormat.AUTO)
    with pytest.raises(error, match=message):
        call(w)
    assert fake.workspace_file("/Shared/run.py") == b"x"


# --- fault injection and SDK error mapping --------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error_code", "sdk_error", "kind"),
    [
        (404, "RESOURCE_DOES_NOT_EXIST", errors.ResourceDoesNotExist, ErrorKind.NOT_FOUND),
        (404, "", errors.NotFound, ErrorKind.NOT_FOUND),
        (403, "PERMISSION_DENIED", errors.PermissionDenied, ErrorKind.PERMISSION),
        (401, "UNAUTHENTICATED", errors.Unauthenticated, ErrorKind.AUTH),
        (400, "INVALID_PARAMETER_VALUE", errors.InvalidParameterValue, ErrorKind.UPSTREAM),
        (409, "RESOURCE_CONFLICT", errors.ResourceConflict, ErrorKind.UPSTREAM),
        (500, "INTERNAL_ERROR", errors.InternalError, ErrorKind.UPSTREAM),
    ],
)
def test_injected_errors_reach_the_sdk_and_map_to_user_facing(fake, w, status, error_code, sdk_error, kind):
    fake.fail_next("/api/2.2/jobs/", status, error_code, "injected failure")
    with pytest.raises(sdk_error, match="injected failure") as info:
        list(w.jobs.list())
    assert type(info.value) is sdk_error
    mapped = sdk_error_to_user_facing(info.value, "the job list")
    assert mapped.kind is kind and "the job list" in mapped.message.lower() and mapped.detail
    assert list(w.jobs.list()) == []  # the fault fired once


def test_fault_matches_method_prefix_and_count(fake, w):
    fake.fail_next("/api/2.0/secrets", 403, "PERMISSION_DENIED", "denied", times=2, method="GET")
    w.secrets.create_scope("inv")  # POST: not matched
    for _ in range(2):
        with pytest.raises(errors.PermissionDenied):
            list(w.secrets.list_secrets("inv"))
    assert list(w.secrets.list_secrets("inv")) == []
    fake.fail_next("/api/2.0/secrets", 500, "INTERNAL_ERROR", "down", times=None)
    for _ in range(3):
        with pytest.raises(errors.InternalError):
            list(w.secrets.list_scopes())
    fake.clear_faults()
    assert [s.name for s in w.secrets.list_scopes()] == ["inv"]


def test_429_with_retry_after_is_retried_by_the_sdk(fake, w):
    w.secrets.create_scope("inv")
    fake.fail_next("/api/2.0/secrets/list", 429, "REQUEST_LIMIT_EXCEEDED", "slow down", headers={"Retry-After": "1"})
    started = time.monotonic()
    assert list(w.secrets.list_secrets("inv")) == []
    assert time.monotonic() - started >= 1.0  # it honoured Retry-After
    assert [r.status for r in fake.requests_to("/api/2.0/secrets/list")] == [429, 200]


def test_429_until_the_retry_budget_runs_out_maps_to_rate_limit(fake):
    w = fake.client(retry_timeout_s=1)
    fake.fail_next("/api/2.0/secrets/scopes/list", 429, "REQUEST_LIMIT_EXCEEDED", "slow down",
                   headers={"Retry-After": "1"}, times=None)
    with pytest.raises(TimeoutError) as info:
        list(w.secrets.list_scopes())
    assert isinstance(info.value.__cause__, errors.TooManyRequests)
    assert info.value.__cause__.retry_after_secs == 1
    mapped = sdk_error_to_user_facing(info.value, "secret scopes")
    assert mapped.kind is ErrorKind.RATE_LIMIT and "Wait 1 s" in mapped.message


def test_requests_are_recorded(fake, w):
    w.secrets.create_scope("inv")
    list(w.secrets.list_secrets("inv"))
    create = fake.requests_to("/api/2.0/secrets/scopes/create")[0]
    listing = fake.requests_to("/api/2.0/secrets/list")[0]
    assert (create.method, create.json, create.status) == ("POST", {"scope": "inv"}, 200)
    assert (listing.method, listing.query, listing.json) == ("GET", {"scope": "inv"}, None)


# --- services.databricks_client against the fake --------------------------------------------------
def _settings(**values) -> Settings:
    base = dict(databricks_host=None, databricks_token=None, databricks_client_id=None,
                databricks_client_secret=None, databricks_retry_timeout_s=2)
    return Settings(_env_file=None, **{**base, **values})


def test_workspace_client_is_built_once_from_settings(fake):
    databricks_client.set_workspace_client(None)
    try:
        settings = _settings(databricks_host=fake.url, databricks_token=fake.token)
        client = databricks_client.workspace_client(settings)
        assert databricks_client.workspace_client(settings) is client
        assert client.current_user.me().user_name == fake.user()["userName"]
        assert client.config.retry_timeout_seconds == 2
        other = fake.client()
        databricks_client.set_workspace_client(other)
        assert databricks_client.workspace_client() is other
    finally:
        databricks_client.set_workspace_client(None)


def test_workspace_client_without_credentials_is_an_auth_error(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg to fall back on
    with pytest.raises(UserFacingError) as info:
        databricks_client.build_workspace_client(_settings())
    assert info.value.kind is ErrorKind.AUTH and "DATABRICKS_HOST" in info.value.message


def test_unreachable_workspace_maps_to_upstream(monkeypatch):
    for name in list(os.environ):
        if name.startswith("DATABRICKS_"):
            monkeypatch.delenv(name)
    with FakeDatabricks() as server:
        w = server.client(retry_timeout_s=1)
    # The server is closed now: connections are refused until the retry budget runs out.
    with pytest.raises(TimeoutError) as info:
        w.current_user.me()
    mapped = sdk_error_to_user_facing(info.value, "the current user")
    assert mapped.kind is ErrorKind.UPSTREAM and "Could not reach" in mapped.message
