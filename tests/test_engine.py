"""The engine runs stackql correctly through the real pystackql (against the stand-in, or a real binary)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from stackql_inventory import config
from stackql_inventory.services import engine as engine_module
from stackql_inventory.services.engine import Engine, QueryLimits, cancel, resolve_columns, running_ids, to_dataframe
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.fixtures_engine import (
    AWS_ENV, GOOGLE_ENV, engine, fake_download_dir, make_engine, pid_alive, real_download_dir,
)

__all__ = ["engine", "fake_download_dir", "make_engine", "real_download_dir"]  # fixtures re-exported for pytest
pytestmark = pytest.mark.timeout(120)  # a hung child must fail the test, not the run

MODES = ["interactive", "batch"]
PROCESS = "SELECT pid FROM synthetic.env.process"
SLEEP_20 = "SELECT * FROM synthetic.timing.sleep WHERE seconds = 20"


@pytest.fixture(scope="module")
def fake_engine(fake_download_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    eng = Engine(fake_download_dir, tmp_path_factory.mktemp("approot"))
    yield eng
    eng.close()


def srv_pid(eng: Engine, env: dict[str, str] | None = None) -> int:
    return int(eng.run(PROCESS, env).rows[0][0])


def run_in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        started = time.monotonic()
        try:
            outcome["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def wait_running(run_id: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while run_id not in running_ids():
        assert time.monotonic() < deadline, f"{run_id} never started"
        time.sleep(0.01)


# ----------------------------------------------------------------------------------------------- binary


def test_pystackql_client_is_built_once_per_process(make_engine):
    eng = make_engine(record=True)
    for mode in MODES * 2:
        assert eng.run("SELECT 1 AS one", mode=mode).rows == [("1",)]
    with eng.stream("SELECT 2 AS two") as s:
        assert list(s.rows) == [("2",)]
    commands = [r["argv"][0] for r in eng.invocations()]
    assert commands.count("--version") == 1
    assert commands.count("srv") == 1
    assert commands.count("exec") == 3
    assert eng.binary().version == "v0.10.383"


def test_missing_binary_with_blocked_download_is_a_quick_binary_error(tmp_path, monkeypatch):
    # A proxy nobody listens on: the download fails at once, as on an offline machine.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{dead_port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    eng = Engine(tmp_path / "empty", tmp_path / "approot", install_timeout_s=60)
    started = time.monotonic()
    for call in (lambda: eng.run("SELECT 1 AS x"), lambda: eng.run("SELECT 1 AS x", mode="batch"),
                 lambda: eng.stream("SELECT 1 AS x").__enter__()):
        with pytest.raises(UserFacingError) as err:
            call()
        assert err.value.kind is ErrorKind.BINARY
        assert str(tmp_path / "empty") in err.value.message and "STACKQL_DOWNLOAD_DIR" in err.value.message
        assert "could not be downloaded" in err.value.message
    assert time.monotonic() - started < 30


def test_hanging_download_is_cut_by_the_install_timeout(tmp_path, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    try:
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{silent.getsockname()[1]}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        eng = Engine(tmp_path / "empty", tmp_path / "approot", install_timeout_s=2)
        started = time.monotonic()
        with pytest.raises(UserFacingError) as err:
            eng.run("SELECT 1 AS x")
        assert err.value.kind is ErrorKind.BINARY and "longer than 2 s" in err.value.message
        assert time.monotonic() - started < 10
    finally:
        silent.close()


@pytest.mark.parametrize("script", [
    "#!/bin/sh\necho garbage\n",  # pystackql: IndexError -> exit(1)
    "#!/bin/sh\nexit 3\n",
])
def test_broken_binary_is_a_binary_error_not_system_exit(tmp_path, script):
    (tmp_path / "bin").mkdir()
    binary = tmp_path / "bin" / "stackql"
    binary.write_text(script)
    binary.chmod(0o755)
    eng = Engine(tmp_path / "bin", tmp_path / "approot", install_timeout_s=10)
    with pytest.raises(UserFacingError) as err:
        eng.run("SELECT 1 AS x", mode="batch")
    assert err.value.kind is ErrorKind.BINARY and "does not work" in err.value.message


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query, env, kind, text", [
    ("SELECT * FROM aws.ec2.nope WHERE region = 'us-east-1'", AWS_ENV, ErrorKind.NOT_FOUND,
     "stackql: could not locate table 'aws.ec2.nope'"),
    ("SELECT instanceId FROM aws.ec2.instances", AWS_ENV, ErrorKind.VALIDATION,
     "(SHOW METHODS IN aws.ec2.instances lists them)"),
    ("SELECT instanceId FROM aws.ec2.instances WHERE region = 'us-east-1'", {}, ErrorKind.AUTH,
     "stackql: http response status code: 401"),
    ("SELECT * FROM nosuch.svc.res", {}, ErrorKind.NOT_FOUND, "stackql: could not locate provider 'nosuch'"),
    ("SELECT item_id FROM synthetic.bulk.items WHERE count = 100 AND fail_at = 50", {}, ErrorKind.UPSTREAM,
     "stackql: http response status code: 503"),
], ids=["table", "params", "credentials", "provider", "upstream"])
def test_stackql_errors_surface_with_its_own_message(fake_engine, mode, query, env, kind, text):
    with pytest.raises(UserFacingError) as err:
        fake_engine.run(query, env, mode=mode)
    assert err.value.kind is kind
    assert text in err.value.message
    assert "query returns error" not in err.value.message
    assert err.value.detail


@pytest.mark.parametrize("mode", MODES)
def test_syntax_errors_surface(engine, mode):
    with pytest.raises(UserFacingError) as err:
        engine.run("SELEC 1", mode=mode)
    assert err.value.kind is ErrorKind.VALIDATION and "syntax error" in err.value.message


@pytest.mark.parametrize("mode", MODES)
def test_bad_auth_config_is_a_config_error(fake_engine, mode):
    with pytest.raises(UserFacingError) as err:
        fake_engine.run("SELECT 1 AS x", {}, mode=mode, auth={"aws": "not-an-object"})
    assert err.value.kind is ErrorKind.CONFIG and "error unmarshalling auth" in err.value.message
    assert fake_engine.run("SELECT 1 AS x", {}, mode=mode).rows == [("1",)]


# ----------------------------------------------------------------------------------------------- text fidelity


@pytest.mark.parametrize("mode", MODES)
def test_multiline_queries_and_comments(engine, mode):
    query = (
        "-- the literals\n"
        "SELECT 'a' AS first, -- a trailing comment\n"
        "       /* a block; comment */ 'line1\nline2' AS second,\n"
        "       '--not a comment' AS third\n"
        ";  -- after the end\n"
    )
    result = engine.run(query, mode=mode)
    assert result.columns == ["first", "second", "third"]
    assert result.rows == [("a", "line1\nline2", "--not a comment")]


@pytest.mark.parametrize("mode", MODES)
def test_quotes_dollars_backticks_and_json_survive(engine, mode):
    query = ("SELECT '$HOME' AS dollar, '`id`' AS backticks, '{\"k\": \"it''s\"}' AS json_text, "
             "'say \"q\" $(id)' AS mixed")
    result = engine.run(query, mode=mode)
    assert result.rows == [("$HOME", "`id`", '{"k": "it\'s"}', 'say "q" $(id)')]


@pytest.mark.parametrize("mode", MODES)
def test_credentials_reach_stackql_unchanged(fake_engine, mode):
    env = {**AWS_ENV, **GOOGLE_ENV}
    result = fake_engine.run(
        "SELECT env_var, sha256 FROM synthetic.env.credentials "
        "WHERE names = 'AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,GOOGLE_CREDENTIALS'", env, mode=mode)
    assert dict(result.rows) == {k: hashlib.sha256(v.encode()).hexdigest() for k, v in env.items()}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query, error", [
    ("SELECT 1 AS a;", None),
    ("SELECT 1 AS a; -- done", None),
    ("\n\nSELECT 1 AS a\n\n;\n", None),
    ("SELECT 1 AS a; SELECT 2 AS b", "holds 2 statements and stackql runs one at a time: select the one you want"),
    ("SELECT 'x;y' AS a; SHOW PROVIDERS; ", "holds 2 statements"),
    ("", "There is no statement to run"),
    ("  -- only a comment\n", "There is no statement to run"),
])
def test_exactly_one_statement_per_run(engine, mode, query, error):
    if error is None:
        assert engine.run(query, mode=mode).columns == ["a"]
    else:
        with pytest.raises(UserFacingError) as err:
            engine.run(query, mode=mode)
        assert err.value.kind is ErrorKind.VALIDATION and error in err.value.message


# ----------------------------------------------------------------------------------------------- columns and values


@pytest.mark.parametrize("mode", MODES)
def test_literal_column_order_kept(engine, mode):
    result = engine.run("SELECT 'z' AS zeta, 'a' AS alpha, 'm' AS mid", mode=mode)
    assert result.columns == ["zeta", "alpha", "mid"]
    assert result.rows == [("z", "a", "m")]


BUCKET_COLUMNS = ["bucket_name", "creation_date", "arn", "versioning_enabled", "region"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query, columns", [
    ("SELECT region AS z_region, instanceId AS a_id, launchTime FROM aws.ec2.instances WHERE region = 'us-west-2'",
     ["z_region", "a_id", "launchTime"]),
    ("SELECT json_extract(instanceState, '$.Name'), instanceId, json_extract(cpuOptions, '$.CoreCount') AS cores "
     "FROM aws.ec2.instances WHERE region = 'us-west-2'",
     ["json_extract(instanceState, '$.Name')", "instanceId", "cores"]),
    ("SELECT instanceType, COUNT(*) FROM aws.ec2.instances WHERE region = 'us-east-1' GROUP BY instanceType",
     ["instanceType", "COUNT(*)"]),
    ("SELECT * FROM aws.s3.buckets WHERE region = 'us-east-1'", BUCKET_COLUMNS),
    ("SELECT b.*, 'x' AS a_extra FROM aws.s3.buckets b WHERE b.region = 'us-east-1'", BUCKET_COLUMNS + ["a_extra"]),
    ("SELECT v.volumeId, i.instanceId, v.size FROM aws.ec2.instances i JOIN aws.ec2.volumes v ON v.region = i.region "
     "WHERE i.region = 'eu-west-1' AND v.region = 'eu-west-1'", ["volumeId", "instanceId", "size"]),
    ("SELECT REGION, bucket_name FROM aws.s3.buckets WHERE region = 'us-west-2'", ["region", "bucket_name"]),
    ("SHOW METHODS IN github.repos.repos", ["MethodName", "RequiredParams", "SQLVerb"]),
    ("DESCRIBE EXTENDED aws.s3.buckets", ["name", "type", "description"]),
    ("SELECT region AS z, instanceId AS a FROM aws.ec2.instances WHERE region = 'nowhere'", ["z", "a"]),
    ("SELECT * FROM aws.s3.buckets WHERE region = 'nowhere'", BUCKET_COLUMNS),
], ids=["aliases", "json_extract", "count", "star", "alias-star", "join", "case", "meta", "describe", "empty",
        "empty-star"])
def test_select_column_order_is_kept(fake_engine, mode, query, columns):
    result = fake_engine.run(query, AWS_ENV, mode=mode)
    assert result.columns == columns
    other = fake_engine.run(query, AWS_ENV, mode="batch" if mode == "interactive" else "interactive")
    assert (other.columns, other.rows) == (result.columns, result.rows)  # both paths agree, values included


def _describe(fqn: str) -> list[str]:
    return {"p.s.r": ["id", "name", "zone", "created"], "p.s.q": ["qid", "name"]}[fqn]


@pytest.mark.parametrize("statement, keys, expected", [
    ("SELECT name AS b, id AS a FROM p.s.r", ["a", "b"], ["b", "a"]),
    ("SELECT name, id FROM p.s.r", ["extra", "id", "name"], ["name", "id", "extra"]),
    ("SELECT * FROM p.s.r", ["created", "id", "name", "zone"], ["id", "name", "zone", "created"]),
    ("SELECT * FROM p.s.r r JOIN p.s.q q ON q.qid = r.id", ["created", "id", "name", "qid", "zone"],
     ["id", "name", "zone", "created", "qid"]),
    ("SELECT q.*, r.zone FROM p.s.r r JOIN p.s.q q ON 1 = 1", ["name", "qid", "zone"], ["qid", "name", "zone"]),
    ("SELECT count( * ), name FROM p.s.r", ["count(*)", "name"], ["count(*)", "name"]),
    ("SELECT upper(name) FROM p.s.r", ["UPPER(name)"], ["UPPER(name)"]),
    ("SELECT NAME FROM p.s.r", ["name"], ["name"]),
    ("SELECT name, some_func(zone) FROM p.s.r", ["name", "weird_key", "zone"], ["name", "zone", "weird_key"]),
    ("SELECT name AS b, id AS a FROM p.s.r", [], ["b", "a"]),
    ("SELECT * FROM p.s.r", [], ["id", "name", "zone", "created"]),
    ("SHOW RESOURCES IN p.s", ["id", "name"], ["name", "id"]),
    ("SHOW EXTENDED RESOURCES IN p.s", [], ["name", "id", "description"]),
    ("EXEC p.s.r.start @id = 'x'", ["zone", "id"], ["id", "zone"]),
])
def test_resolve_columns(statement, keys, expected):
    assert resolve_columns(statement, keys, _describe) == expected


def test_result_values_and_dataframe_dtypes(fake_engine):
    result = fake_engine.run("SELECT item_id, quantity, price, weight_kg, is_active, created_at, attributes, tags "
                             "FROM synthetic.bulk.items WHERE count = 40")
    assert (result.row_count, result.truncated) == (40, False) and result.elapsed_s > 0
    assert all(v is None or isinstance(v, str) for row in result.rows for v in row)
    df = result.dataframe
    assert list(df.columns) == result.columns
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        "item_id": "string", "quantity": "Int64", "price": "Float64", "weight_kg": "Float64",
        "is_active": "boolean", "created_at": "datetime64[us, UTC]", "attributes": "string", "tags": "string"}
    assert df["weight_kg"].isna().tolist()[:18] == [True] + [False] * 16 + [True]
    assert json.loads(df["attributes"][1]) == {"zone": "zone-1", "rank": 1, "labels": ["a", "b1"]}
    assert df["created_at"][0].isoformat() == "2023-11-14T22:13:20+00:00"


@pytest.mark.parametrize("columns, rows, dtypes", [
    (["zip", "big"], [("007", "123456789012345678901"), ("010", "1")], ["string", "string"]),
    (["n"], [("1",), ("2.5",), (None,)], ["Float64"]),
    (["b"], [("TRUE",), ("false",)], ["boolean"]),
    (["t"], [("2024-01-01T00:00:00Z",), ("2024-01-02 10:00:00+02:00",)], ["datetime64[us, UTC]"]),
    (["j"], [('{"a": 1}',), ("[1, 2]",)], ["string"]),
    (["empty"], [(None,), (None,)], ["string"]),
    (["dup", "dup"], [("1", "x")], ["Int64", "string"]),
    (["none"], [], ["string"]),
])
def test_dataframe_dtype_inference(columns, rows, dtypes):
    df = to_dataframe(columns, rows)
    assert list(df.columns) == columns and len(df) == len(rows)
    assert [str(t) for t in df.dtypes] == dtypes


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("limit, count, truncated", [(10, 10, True), (30, 30, False), (None, 30, False)])
def test_row_cap(fake_engine, mode, limit, count, truncated):
    result = fake_engine.run("SELECT item_id FROM synthetic.bulk.items WHERE count = 30",
                             limits=QueryLimits(row_limit=limit), mode=mode)
    assert (result.row_count, result.truncated) == (count, truncated)
    assert result.rows[-1] == (f"item-{count - 1:07d}",)


@pytest.mark.parametrize("mode", MODES)
def test_messages_are_not_errors(fake_engine, mode):
    result = fake_engine.run("REGISTRY PULL okta", mode=mode)
    assert (result.columns, result.rows) == ([], [])
    assert result.messages == ("okta provider, version 'v24.03.00212' successfully installed",)


@pytest.mark.parametrize("mode", MODES)
def test_auth_renames_credentials(fake_engine, mode):
    auth = {"aws": {"type": "aws_signing_v4", "keyIDenvvar": "PROD_AWS_KEY", "credentialsenvvar": "PROD_AWS_SECRET"}}
    env = {"PROD_AWS_KEY": "k", "PROD_AWS_SECRET": "s"}
    result = fake_engine.run("SELECT instanceId FROM aws.ec2.instances WHERE region = 'eu-west-1'", env, mode=mode,
                             auth=auth)
    assert result.rows == [("i-04bda733dd2bb8970",)]


# ----------------------------------------------------------------------------------------------- cancel and timeout


@pytest.mark.parametrize("mode", MODES)
def test_cancel_stops_the_query_and_leaves_the_engine_usable(fake_engine, mode):
    pid_before = srv_pid(fake_engine)
    run_id = f"cancel-{mode}"
    thread, outcome = run_in_thread(fake_engine.run, SLEEP_20, None, run_id=run_id, mode=mode)
    wait_running(run_id)
    time.sleep(0.3)
    assert cancel(run_id) is True
    thread.join(10)
    assert isinstance(outcome.get("error"), UserFacingError), outcome
    assert outcome["error"].kind is ErrorKind.CANCELLED and outcome["elapsed"] < 3
    assert cancel(run_id) is False
    assert fake_engine.run("SELECT 'after' AS a", mode=mode).rows == [("after",)]
    assert srv_pid(fake_engine) == pid_before  # the warm server survived


def test_cancel_before_the_query_reaches_stackql(fake_engine):
    run_id = "cancel-early"
    thread, outcome = run_in_thread(fake_engine.run, "SELECT seconds FROM synthetic.timing.sleep WHERE seconds = 3",
                                    None, run_id=run_id, mode="batch")
    wait_running(run_id)
    assert cancel(run_id) is True
    thread.join(10)
    assert outcome["error"].kind is ErrorKind.CANCELLED and outcome["elapsed"] < 2.5


@pytest.mark.parametrize("mode", MODES)
def test_timeout_stops_the_query(fake_engine, mode):
    started = time.monotonic()
    with pytest.raises(UserFacingError) as err:
        fake_engine.run(SLEEP_20, None, QueryLimits(timeout_s=0.5), mode=mode)
    assert err.value.kind is ErrorKind.TIMEOUT and "longer than 0.5 s" in err.value.message
    assert time.monotonic() - started < 3
    assert fake_engine.run("SELECT 'after' AS a", mode=mode).rows == [("after",)]


def test_cancel_cuts_the_connection_when_the_server_ignores_cancel_requests(make_engine):
    eng = make_engine(cancel_grace_s=0.5)
    env = {"FAKE_STACKQL_IGNORE_CANCEL": "1"}
    thread, outcome = run_in_thread(eng.run, SLEEP_20, env, run_id="stubborn")
    wait_running("stubborn")
    time.sleep(0.3)
    assert cancel("stubborn") is True
    thread.join(10)
    assert outcome["error"].kind is ErrorKind.CANCELLED and outcome["elapsed"] < 3
    assert eng.run("SELECT 'after' AS a", env).rows == [("after",)]


def test_a_running_run_id_cannot_be_reused(fake_engine):
    thread, outcome = run_in_thread(fake_engine.run, SLEEP_20, None, run_id="dup")
    wait_running("dup")
    with pytest.raises(UserFacingError) as err:
        fake_engine.run("SELECT 1 AS x", run_id="dup", mode="batch")
    assert err.value.kind is ErrorKind.CONFLICT
    cancel("dup")
    thread.join(10)
    assert outcome["error"].kind is ErrorKind.CANCELLED


# ----------------------------------------------------------------------------------------------- credentials


def _holds(obj, needle: str, seen: set[int] | None = None, depth: int = 0) -> bool:
    """Whether `needle` is reachable as a string from `obj`'s attributes (depth-limited walk)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 6:
        return False
    seen.add(id(obj))
    if isinstance(obj, str):
        return needle in obj
    if isinstance(obj, bytes):
        return needle.encode() in obj
    if isinstance(obj, dict):
        return any(_holds(k, needle, seen, depth + 1) or _holds(v, needle, seen, depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return any(_holds(v, needle, seen, depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith("stackql_inventory"):
        return any(_holds(v, needle, seen, depth + 1) for v in vars(obj).values())
    return False


def test_srv_restarts_only_when_credentials_change(make_engine):
    eng = make_engine()
    env_a = {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": "secret-value-AAAA"}
    env_b = {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": "secret-value-BBBB"}
    first = srv_pid(eng, env_a)
    assert srv_pid(eng, dict(env_a)) == first
    assert srv_pid(eng, None) == first  # metadata queries reuse whatever server runs
    second = srv_pid(eng, env_b)
    assert second != first
    deadline = time.monotonic() + 5
    while pid_alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(first)
    seen = eng.run("SELECT sha256 FROM synthetic.env.credentials WHERE names = 'AWS_SECRET_ACCESS_KEY'", env_b)
    assert seen.rows == [(hashlib.sha256(b"secret-value-BBBB").hexdigest(),)]
    # The retired server's values are gone; the live one keeps its own only to redact what it says.
    assert not _holds(eng, "secret-value-AAAA")
    assert [s for s in (eng._warm._srv,) if s and "secret-value-BBBB" in s.secrets]


def test_interactive_users_with_different_credentials_stay_isolated(make_engine):
    eng = make_engine()
    query = ("SELECT c.sha256, s.pid FROM synthetic.env.credentials c, synthetic.timing.sleep s "
             "WHERE c.names = 'AWS_SECRET_ACCESS_KEY' AND s.seconds = 0.8")
    env_a = {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": "alice-secret-1"}
    env_b = {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": "bob-secret-2"}
    t_a, out_a = run_in_thread(eng.run, query, env_a)
    time.sleep(0.3)  # alice's query is running on the first server when bob's arrives
    t_b, out_b = run_in_thread(eng.run, query, env_b)
    t_a.join(10)
    t_b.join(10)
    sha_a, pid_a = out_a["result"].rows[0]
    sha_b, pid_b = out_b["result"].rows[0]
    assert sha_a == hashlib.sha256(b"alice-secret-1").hexdigest()
    assert sha_b == hashlib.sha256(b"bob-secret-2").hexdigest()
    assert pid_a != pid_b


def test_batch_runs_in_parallel_each_see_only_their_credentials(make_engine):
    eng = make_engine(record=True)
    environ_before = dict(os.environ)
    secrets = [f"tenant-{n}-$HOME-`id`-'q'-secret" for n in range(10)]
    threads = [run_in_thread(eng.run, "SELECT sha256 FROM synthetic.env.credentials WHERE names = "
                             "'AWS_SECRET_ACCESS_KEY'", {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": s}, mode="batch")
               for s in secrets]
    for thread, _ in threads:
        thread.join(30)
    for secret, (_, outcome) in zip(secrets, threads):
        assert outcome["result"].rows == [(hashlib.sha256(secret.encode()).hexdigest(),)]
    execs = [r for r in eng.invocations() if r["argv"][0] == "exec"]
    assert sorted(r["credential_sha256"]["AWS_SECRET_ACCESS_KEY"] for r in execs) == sorted(
        hashlib.sha256(s.encode()).hexdigest() for s in secrets)
    assert not any(s in " ".join(r["argv"]) for s in secrets for r in execs)  # never on a command line
    assert dict(os.environ) == environ_before and "AWS_SECRET_ACCESS_KEY" not in os.environ


@pytest.mark.parametrize("mode", MODES)
def test_secret_values_never_reach_errors_or_logs(fake_engine, mode, caplog):
    caplog.set_level(logging.DEBUG)
    env = {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": "hunter2secretvalue", **GOOGLE_ENV}
    inner = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"  # a line of the private key inside GOOGLE_CREDENTIALS
    for table in ("hunter2secretvalue", inner):
        with pytest.raises(UserFacingError) as err:
            fake_engine.run(f"SELECT * FROM aws.ec2.{table} WHERE region = 'x'", env, mode=mode)
        assert "[REDACTED]" in err.value.message
        assert table not in err.value.message and table not in err.value.detail
    assert "hunter2secretvalue" not in caplog.text and inner not in caplog.text


def test_errors_of_a_query_without_credentials_are_redacted_with_the_servers_own(fake_engine, caplog):
    # The catalog (and the IDE when the mappings cannot be read) passes no credentials and reuses the
    # warm server, which holds every provider's: what that server says is still redacted.
    env = {**AWS_ENV, "AWS_SECRET_ACCESS_KEY": "hunter2secretvalue"}
    fake_engine.run("SELECT instanceId FROM aws.ec2.instances WHERE region = 'eu-west-1'", env)
    with pytest.raises(UserFacingError) as err:
        fake_engine.run("SELECT * FROM aws.ec2.hunter2secretvalue WHERE region = 'x'", None)
    assert "[REDACTED]" in err.value.message
    assert "hunter2secretvalue" not in err.value.message + (err.value.detail or "")
    assert "hunter2secretvalue" not in caplog.text


def test_app_environment_never_changes(fake_engine):
    before = dict(os.environ)
    fake_engine.run("SELECT instanceId FROM aws.ec2.instances WHERE region = 'eu-west-1'", AWS_ENV)
    fake_engine.run("SELECT instanceId FROM aws.ec2.instances WHERE region = 'eu-west-1'", AWS_ENV, mode="batch")
    with fake_engine.stream("SELECT instanceId FROM aws.ec2.instances WHERE region = 'eu-west-1'", AWS_ENV) as s:
        list(s.rows)
    assert dict(os.environ) == before


# ----------------------------------------------------------------------------------------------- streaming


def _stackql_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "exec" in p.cmdline()]


def test_stream_200k_rows_without_buffering(fake_engine):
    me = psutil.Process()
    query = "SELECT * FROM synthetic.bulk.items WHERE count = 200000"
    with fake_engine.stream(query, None, QueryLimits(row_limit=None, timeout_s=120)) as s:
        assert s.columns[:4] == ["item_id", "name", "category", "quantity"] and len(s.columns) == 15
        rows = iter(s.rows)
        first = next(rows)
        assert first[0] == "item-0000000" and len(first) == 15
        assert any(p.is_running() for p in _stackql_children())  # rows flow while stackql still writes
        baseline, peak, count = me.memory_info().rss, 0, 1
        for row in rows:
            count += 1
            if count % 20000 == 0:
                peak = max(peak, me.memory_info().rss)
        assert row[0] == "item-0199999"
    assert count == s.row_count == 200000 and not s.truncated
    assert peak - baseline < 40 * 2**20  # ~75 MB of JSON went through; little of it stayed


def test_stream_raises_an_error_seen_mid_stream(fake_engine):
    got = 0
    with pytest.raises(UserFacingError) as err:
        query = "SELECT item_id FROM synthetic.bulk.items WHERE count = 50000 AND fail_at = 30000"
        with fake_engine.stream(query) as s:
            for _ in s.rows:
                got += 1
    assert err.value.kind is ErrorKind.UPSTREAM and "503" in err.value.message
    assert 0 < got <= 30000


def test_stream_row_cap_stops_the_child(fake_engine):
    started = time.monotonic()
    with fake_engine.stream("SELECT item_id FROM synthetic.bulk.items WHERE count = 1000000",
                            None, QueryLimits(row_limit=1000)) as s:
        rows = list(s.rows)
    assert (len(rows), s.truncated) == (1000, True)
    assert time.monotonic() - started < 5
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in _stackql_children())


def test_stream_errors_before_any_row_are_raised_on_enter(fake_engine):
    with pytest.raises(UserFacingError) as err:
        with fake_engine.stream("SELECT * FROM aws.ec2.nope", AWS_ENV):
            pytest.fail("the body must not run")
    assert err.value.kind is ErrorKind.NOT_FOUND


def test_stream_cancel(fake_engine):
    def consume():
        with fake_engine.stream(SLEEP_20, None, run_id="stream-cancel") as s:
            return list(s.rows)

    thread, outcome = run_in_thread(consume)
    wait_running("stream-cancel")
    time.sleep(0.2)
    assert cancel("stream-cancel")
    thread.join(10)
    assert outcome["error"].kind is ErrorKind.CANCELLED


# ----------------------------------------------------------------------------------------------- srv lifecycle


def test_engine_recovers_when_the_server_dies(make_engine):
    eng = make_engine()
    pid = srv_pid(eng)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv_pid(eng) not in (pid, 0)


def test_module_level_api_uses_settings(fake_download_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STACKQL_DOWNLOAD_DIR", str(fake_download_dir))
    monkeypatch.setenv("STACKQL_INVENTORY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STACKQL_INVENTORY_ROW_LIMIT", "5")
    config.get_settings.cache_clear()
    engine_module.reset()
    try:
        result = engine_module.run("SELECT item_id FROM synthetic.bulk.items WHERE count = 9")
        assert (result.row_count, result.truncated) == (5, True)
        with engine_module.stream("SELECT 'b' AS b, 'a' AS a") as s:
            assert (s.columns, list(s.rows)) == (["b", "a"], [("b", "a")])
        with engine_module.stream("SELECT item_id FROM synthetic.bulk.items WHERE count = 9") as s:
            assert (len(list(s.rows)), s.truncated) == (9, False)  # streams are not capped unless asked
        assert engine_module.cancel("no-such-run") is False
        assert (tmp_path / "stackql-approot" / "src" / "synthetic").is_dir()
    finally:
        engine_module.reset()
        config.get_settings.cache_clear()
