"""The stackql stand-in honours the documented CLI and srv contract (reference §2, §4.2), pitfalls included."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import psycopg2
import psycopg2.errors
import pytest

from tests.fakes.install import install_fake_stackql, read_invocations
from tests.fixtures_engine import AWS_ENV, GOOGLE_ENV, fake_download_dir, free_port, minimal_env, wait_for_port

__all__ = ["fake_download_dir"]  # fixture re-exported for pytest
pytestmark = pytest.mark.timeout(120)  # a hung child must fail the test, not the run

MISSING_PARAMS = (
    "cannot find matching operation, possible causes include missing required parameters or an unsupported method "
    "for the resource, to find required parameters for supported methods run SHOW METHODS IN aws.ec2.instances: "
    "cannot resolve Method"
)
EC2_WEST = "SELECT instanceId, region FROM aws.ec2.instances WHERE region = 'us-west-2' ORDER BY instanceId"
PYSTACKQL_DEFAULT_FLAGS = [
    "--output", "json", "--execution.concurrency.limit", "-1", "--dataflow.dependency.max", "50",
    "--dataflow.components.max", "50", "--http.response.maxResults", "-1", "--http.response.pageLimit", "20",
    "--indirect.depth.max", "5", "--apirequesttimeout", "45",
]


@pytest.fixture()
def stackql(fake_download_dir: Path, tmp_path: Path):
    """Run the stand-in with argv (no shell) and a clean env; returns CompletedProcess (text)."""
    approot = tmp_path / "approot"

    def run(*args: str, env: dict[str, str] | None = None, approot_flag: bool = True) -> subprocess.CompletedProcess:
        argv = [str(fake_download_dir / "stackql"), *args]
        if approot_flag:
            argv += ["--approot", str(approot)]
        return subprocess.run(argv, capture_output=True, text=True, env=minimal_env(**(env or {})), timeout=60)

    run.approot = approot
    return run


# ----------------------------------------------------------------------------------------------- CLI


def test_version_prints_three_lines_pystackql_can_parse(stackql):
    proc = stackql("--version", approot_flag=False)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0
    assert len(lines) == 3
    assert re.fullmatch(r"stackql v0\.10\.\d+ linux \([0-9a-f]{7}\)", lines[0])
    assert lines[1].startswith("BuildDate: ")
    assert lines[2] == "https://stackql.io"
    tokens = lines[0].split(" ")  # what pystackql does: version = tokens[1], sha = tokens[3]
    assert tokens[1].startswith("v0.10.") and tokens[3].strip("()") == "f4e3c21"


@pytest.mark.parametrize("args", [
    pytest.param(["exec", EC2_WEST, *PYSTACKQL_DEFAULT_FLAGS], id="pystackql-order"),
    pytest.param(["--output=json", "exec", "--apirequesttimeout=10", EC2_WEST], id="flags-first-equals-form"),
    pytest.param(["exec", "-o", "json", EC2_WEST, "--http.log.enabled", "--tls.allowInsecure=true"],
                 id="short-and-bools"),
    pytest.param(["exec", "-ojson", "--indirect.depth.max", "5", "--", EC2_WEST], id="attached-short-and-dashdash"),
])
def test_exec_accepts_flags_in_any_order_and_form(stackql, args):
    proc = stackql(*args, env=AWS_ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert [r["instanceId"] for r in json.loads(proc.stdout)] == [
        "i-0171894deaeca58f6", "i-01ddb7f634c5a8756", "i-086ce2def3060b977"]


@pytest.mark.parametrize("args, message", [
    (["exec", "--nope", "SELECT 1"], "Error: unknown flag: --nope"),
    (["exec", "-z", "SELECT 1"], "Error: unknown shorthand flag: 'z' in -z"),
    (["exec", "SELECT 1", "--output"], "Error: flag needs an argument: --output"),
    (["exec", "SELECT 1", "--apirequesttimeout", "soon"], 'Error: invalid argument "soon" for "--apirequesttimeout"'),
    (["exec", "-- comment\nSELECT 1"], "Error: unknown flag: -- comment"),
    (["exec", "SELECT 1", "--output", "xml"], "error: output format 'xml' is not supported"),
])
def test_cobra_style_flag_errors_exit_1(stackql, args, message):
    proc = stackql(*args, approot_flag=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(message)
    assert proc.stdout == ""


@pytest.mark.parametrize("flag, value, message", [
    # What pystackql's shell quoting makes of a constructor custom_auth / custom_registry (reference §1.4).
    ("--auth", "{aws:", "error unmarshalling auth: "),
    ("--auth", '{"aws": "aws_signing_v4"}', "error unmarshalling auth: provider 'aws'"),
    ("--registry", "{url:", "error unmarshalling registry: "),
    ("--sqlBackend", "{dsn:", "error unmarshalling sqlBackend: "),
    ("--sqlBackend", '{"dbEngine": "oracle"}', "error: unsupported dbEngine 'oracle'"),
])
def test_bad_config_flags_exit_1(stackql, flag, value, message):
    proc = stackql("exec", "SELECT 1 AS x", "--output", "json", flag, value)
    assert proc.returncode == 1
    assert proc.stderr.startswith(message)


def test_valid_config_flags_are_accepted(stackql):
    proc = stackql("exec", "SELECT 1 AS x", "--output", "json",
                   "--registry", '{"url": "file:///tmp/registry", "localDocRoot": "/tmp/registry", '
                                 '"verifyConfig": {"nopVerify": true}}',
                   "--sqlBackend", "{}", "--auth", '{"google": {"type": "service_account", "credentialsenvvar": "GC"}}')
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '[{"x":"1"}]', "")


def test_json_is_go_style_sorted_strings_nulls_no_trailing_newline(stackql):
    query = ("SELECT 'b' AS zeta, 42 AS alpha, 1.5 AS mid, NULL AS nada, "
             "json_object('k', json_array(1, 2)) AS obj, 'it''s \"$HOME\"' AS quoted")
    proc = stackql("exec", query, "--output", "json")
    assert proc.returncode == 0
    assert proc.stdout == ('[{"alpha":"42","mid":"1.5","nada":null,"obj":"{\\"k\\":[1,2]}",'
                           '"quoted":"it\'s \\"$HOME\\"","zeta":"b"}]')


def test_several_statements_print_one_array_each(stackql):
    proc = stackql("exec", "SELECT 1 AS a; SELECT 2 AS b;", "--output", "json")
    assert proc.stdout == '[{"a":"1"}][{"b":"2"}]'


@pytest.mark.parametrize("fmt, extra, expected", [
    ("jsonl", [], '{"a_first":"2","z_last":"1"}\n{"a_first":"4","z_last":null}\n'),
    ("ndjson", [], '{"a_first":"2","z_last":"1"}\n{"a_first":"4","z_last":null}\n'),
    ("csv", [], "z_last,a_first\n1,2\n,4\n"),
    ("csv", ["-H", "-d", ";"], "1;2\n;4\n"),
    ("text", ["-H"], "1,2\nnull,4\n"),
    ("table", [], "|--------|---------|\n| z_last | a_first |\n|--------|---------|\n| 1      | 2       |\n"
                  "| null   | 4       |\n|--------|---------|\n"),
])
def test_output_formats(stackql, fmt, extra, expected):
    proc = stackql("exec", "SELECT 1 AS z_last, 2 AS a_first UNION ALL SELECT NULL, 4", "--output", fmt, *extra)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected


def test_empty_results(stackql):
    query = "SELECT instanceId FROM aws.ec2.instances WHERE region = 'ap-south-1'"
    assert stackql("exec", query, "-o", "json", env=AWS_ENV).stdout == "[]"
    assert stackql("exec", query, "-o", "jsonl", env=AWS_ENV).stdout == ""


@pytest.mark.parametrize("query, env, stderr", [
    ("SELECT * FROM aws.ec2.nope WHERE region = 'us-east-1'", AWS_ENV, "could not locate table 'aws.ec2.nope'\n"),
    ("SELECT * FROM nosuch.svc.res", {}, "could not locate provider 'nosuch'\n"),
    ("SELECT instanceId FROM aws.ec2.instances", AWS_ENV, MISSING_PARAMS + "\n"),
    ("SELECT instanceId FROM aws.ec2.instances WHERE instanceType = 't3.micro'", AWS_ENV, MISSING_PARAMS + "\n"),
    ("SELEC 1", {}, "syntax error at position 6 near 'selec'\n"),
])
def test_query_errors_go_to_stderr_with_exit_0(stackql, query, env, stderr):
    proc = stackql("exec", query, "--output", "json", env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", stderr)


@pytest.mark.parametrize("query, env, missing", [
    ("SELECT * FROM aws.s3.buckets WHERE region = 'us-east-1'", {"AWS_ACCESS_KEY_ID": "x"}, "AWS_SECRET_ACCESS_KEY"),
    ("SELECT * FROM google.storage.buckets WHERE project = 'acme-prod'", {}, "GOOGLE_CREDENTIALS"),
    ("SELECT * FROM azure.resources.resource_groups WHERE subscriptionId = 'x'", {"AZURE_TENANT_ID": "t"},
     "AZURE_CLIENT_ID"),
    ("SELECT * FROM github.orgs.orgs WHERE org = 'stackql'", {"STACKQL_GITHUB_USERNAME": "u"},
     "STACKQL_GITHUB_PASSWORD"),
    ("SELECT * FROM okta.user.users WHERE subdomain = 'acme'", {}, "OKTA_API_TOKEN"),
    ("SELECT * FROM cloudflare.zones.zones", {}, "CLOUDFLARE_API_TOKEN"),
    ("SELECT * FROM databricks_workspace.compute.clusters WHERE deployment_name = 'd'",
     {"DATABRICKS_CLIENT_ID": "i", "DATABRICKS_CLIENT_SECRET": "s"}, "DATABRICKS_ACCOUNT_ID"),
])
def test_missing_provider_credentials_is_a_401(stackql, query, env, missing):
    proc = stackql("exec", query, "--output", "json", env=env)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.startswith("http response status code: 401")
    assert missing in proc.stderr


def test_auth_renames_the_credential_variables(stackql):
    auth = json.dumps({"aws": {"type": "aws_signing_v4", "keyIDenvvar": "MY_KEY_ID", "credentialsenvvar": "MY_SECRET"},
                       "okta": {"type": "api_key", "valuePrefix": "SSWS ", "credentialsenvvar": "OKTA_TOKEN_PROD"}})
    renamed = {"MY_KEY_ID": "k", "MY_SECRET": "s", "OKTA_TOKEN_PROD": "t"}
    ok = stackql("exec", EC2_WEST, "--auth", auth, "-o", "json", env=renamed)
    assert len(json.loads(ok.stdout)) == 3
    users = stackql("exec", "SELECT id FROM okta.user.users WHERE subdomain = 'acme'", "--auth", auth, "-o", "json",
                    env=renamed)
    assert len(json.loads(users.stdout)) == 1
    # The default names no longer count once --auth renames them.
    refused = stackql("exec", EC2_WEST, "--auth", auth, "-o", "json", env=AWS_ENV)
    assert refused.stdout == "" and "MY_KEY_ID" in refused.stderr


@pytest.mark.parametrize("query, count", [
    ("SELECT instanceId FROM aws.ec2.instances WHERE region IN ('us-east-1', 'eu-west-1')", 6),
    ("SELECT i.instanceId FROM aws.ec2.instances AS i WHERE i.region = 'us-east-1' AND i.ebsOptimized = 'true'", 2),
    ("SELECT i.instanceId, v.volumeId FROM aws.ec2.instances i JOIN aws.ec2.volumes v ON v.region = i.region "
     "WHERE i.region = 'eu-west-1' AND v.region = 'eu-west-1'", 1),
    ("SELECT name FROM google.compute.instances WHERE project = 'stackql-demo' AND zone = 'us-central1-a'", 2),
    ("SELECT name FROM google.compute.instances WHERE project = 'stackql-demo' AND zone = 'us-central1-a' "
     "AND instance = 'web-2'", 1),
    ("SELECT COUNT(*) AS n FROM azure.compute.virtual_machines WHERE subscriptionId = "
     "'00000000-aaaa-bbbb-cccc-000000000001' AND resourceGroupName = 'rg-data'", 1),
    ("SELECT full_name FROM github.repos.repos WHERE owner = 'stackql' AND repo = 'pystackql'", 1),
    ("SELECT split_part(machineType, '/', -1) AS mt FROM google.compute.instances WHERE project = 'acme-prod' "
     "AND zone = 'europe-west1-b'", 2),
])
def test_required_parameters_as_equality_or_in_predicates(stackql, query, count):
    env = {**AWS_ENV, **GOOGLE_ENV, "AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s",
           "STACKQL_GITHUB_USERNAME": "u", "STACKQL_GITHUB_PASSWORD": "p"}
    proc = stackql("exec", query, "-o", "json", env=env)
    assert proc.stderr == ""
    rows = json.loads(proc.stdout)
    assert len(rows) == count or rows == [{"n": str(count)}]


def test_required_parameter_must_qualify_the_right_alias(stackql):
    query = ("SELECT i.instanceId FROM aws.ec2.instances i JOIN aws.ec2.volumes v ON v.region = i.region "
             "WHERE i.region = 'eu-west-1'")
    proc = stackql("exec", query, "-o", "json", env=AWS_ENV)
    assert proc.stdout == "" and "SHOW METHODS IN aws.ec2.volumes" in proc.stderr


META = [
    ("SHOW PROVIDERS", ["name", "version"], None),
    ("SHOW SERVICES IN google", ["id", "name", "title"], {"id": "compute:v24.06.00236", "name": "compute",
                                                          "title": "Compute Engine API"}),
    ("SHOW EXTENDED SERVICES IN aws LIKE 'ec%'", ["description", "id", "name", "preferred", "title", "version"], None),
    ("SHOW RESOURCES IN aws.ec2", ["id", "name"], {"name": "instances", "id": "aws.ec2.instances"}),
    ("SHOW EXTENDED RESOURCES IN okta.user", ["description", "id", "name"], None),
    ("SHOW METHODS IN github.repos.repos", ["MethodName", "RequiredParams", "SQLVerb"],
     {"MethodName": "get", "RequiredParams": "owner, repo", "SQLVerb": "SELECT"}),
    ("DESCRIBE aws.s3.buckets", ["name", "type"], {"name": "bucket_name", "type": "string"}),
    ("DESCRIBE EXTENDED aws.s3.buckets", ["description", "name", "type"], None),
    ("REGISTRY LIST", ["provider", "version"], {"provider": "aws", "version": "v24.07.00246"}),
    ("REGISTRY LIST aws", ["provider", "versions"], {"provider": "aws", "versions": "v24.05.00220, v24.07.00246"}),
]


@pytest.mark.parametrize("statement, keys, first", META, ids=[m[0] for m in META])
def test_meta_commands_have_their_documented_columns(stackql, statement, keys, first):
    stackql("exec", "DESCRIBE aws.ec2.instances", "-o", "json")  # installs aws (SHOW PROVIDERS then lists it)
    proc = stackql("exec", statement, "-o", "json")
    assert proc.returncode == 0 and proc.stderr == ""
    rows = json.loads(proc.stdout)
    assert rows and all(list(r) == keys for r in rows)
    if first is not None:
        assert rows[0] == first


def test_meta_commands_keep_documented_order_in_csv(stackql):
    proc = stackql("exec", "SHOW METHODS IN aws.ec2.instances", "-o", "csv")
    assert proc.stdout.splitlines()[:2] == ["MethodName,RequiredParams,SQLVerb", "describe_instances,region,SELECT"]


def test_providers_auto_install_and_registry_pull(stackql):
    assert stackql("exec", "SHOW PROVIDERS", "-o", "json").stdout == "[]"
    stackql("exec", "SHOW SERVICES IN github", "-o", "json")
    assert json.loads(stackql("exec", "SHOW PROVIDERS", "-o", "json").stdout) == [
        {"name": "github", "version": "v24.04.00224"}]
    pulled = stackql("exec", "REGISTRY PULL github 'v24.02.00200';", "-o", "json")
    assert (pulled.returncode, pulled.stdout) == (0, "")
    assert pulled.stderr == "github provider, version 'v24.02.00200' successfully installed\n"
    assert (stackql.approot / "src" / "github" / "v24.02.00200" / "provider.yaml").exists()
    assert json.loads(stackql("exec", "SHOW PROVIDERS", "-o", "json").stdout) == [
        {"name": "github", "version": "v24.02.00200"}]
    cli = stackql("registry", "pull", "okta")
    assert cli.stderr == "okta provider, version 'v24.03.00212' successfully installed\n"
    bad = stackql("exec", "REGISTRY PULL github 'v1.0.0'", "-o", "json")
    assert bad.stdout == "" and "could not locate version 'v1.0.0'" in bad.stderr


def test_mutations_report_messages_on_stderr(stackql):
    proc = stackql("exec", "DELETE FROM aws.ec2.instances WHERE InstanceId = 'i-1' AND region = 'us-east-1'",
                   "-o", "json", env=AWS_ENV)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "The operation was despatched successfully\n")


# ----------------------------------------------------------------------------------------------- hooks


def test_synthetic_bulk_rows_are_typed_deterministic_and_complete(stackql):
    query = "SELECT * FROM synthetic.bulk.items WHERE count = 1000 AND seed = 7"
    first = stackql("exec", query, "-o", "jsonl")
    again = stackql("exec", query, "-o", "jsonl")
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert first.stdout == again.stdout
    assert len(rows) == 1000
    data_columns = ["item_id", "name", "category", "quantity", "price", "weight_kg", "is_active", "in_stock",
                    "created_at", "updated_at", "attributes", "tags"]
    assert sorted(rows[0]) == sorted(data_columns + ["count", "seed", "fail_at"])
    assert all(isinstance(v, str) for r in rows for k, v in r.items() if k not in ("weight_kg", "fail_at"))
    assert rows[0]["weight_kg"] is None and rows[1]["weight_kg"] is not None  # NULL every 17th row
    assert rows[1]["is_active"] in ("true", "false")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[1]["created_at"])
    assert json.loads(rows[1]["attributes"])["zone"] == "zone-1" and float(rows[1]["price"]) >= 0


def test_synthetic_failure_after_rows_reports_503(stackql):
    proc = stackql("exec", "SELECT item_id FROM synthetic.bulk.items WHERE count = 5000 AND fail_at = 4500",
                   "-o", "jsonl")
    assert 0 < len(proc.stdout.splitlines()) <= 4500
    assert proc.stderr.startswith("http response status code: 503")


def test_synthetic_env_credentials_hash_what_the_process_sees(stackql):
    env = {"GOOGLE_CREDENTIALS": GOOGLE_ENV["GOOGLE_CREDENTIALS"], "EMPTY_ONE": ""}
    proc = stackql("exec", "SELECT env_var, present, sha256 FROM synthetic.env.credentials "
                           "WHERE names = 'GOOGLE_CREDENTIALS,EMPTY_ONE,NOT_SET'", "-o", "json", env=env)
    assert json.loads(proc.stdout) == [
        {"env_var": "GOOGLE_CREDENTIALS", "present": "true",
         "sha256": hashlib.sha256(GOOGLE_ENV["GOOGLE_CREDENTIALS"].encode()).hexdigest()},
        {"env_var": "EMPTY_ONE", "present": "true", "sha256": hashlib.sha256(b"").hexdigest()},
        {"env_var": "NOT_SET", "present": "false", "sha256": None},
    ]


def test_invocation_record_has_names_and_hashes_never_values(tmp_path):
    binary = install_fake_stackql(tmp_path / "bin", record=True)
    env = minimal_env(**AWS_ENV, UNRELATED="plain")
    subprocess.run([str(binary), "exec", "SELECT 1 AS x", "--approot", str(tmp_path / "ar")], env=env,
                   capture_output=True, timeout=30, check=True)
    subprocess.run([str(binary), "--version"], env=env, capture_output=True, timeout=30, check=True)
    records = read_invocations(tmp_path / "bin")
    assert [r["argv"][0] for r in records] == ["exec", "--version"]
    assert set(env) <= set(records[0]["env_names"]) and "FAKE_STACKQL_BIN" not in records[0]["env_names"]
    assert records[0]["env_names"] == sorted(records[0]["env_names"])
    assert records[0]["credential_sha256"] == {k: hashlib.sha256(v.encode()).hexdigest() for k, v in AWS_ENV.items()}
    raw = (tmp_path / "bin" / "invocations.jsonl").read_text()
    assert all(v not in raw for v in AWS_ENV.values())
    assert "AKIAFAKE00EXAMPLE01" not in raw


# ----------------------------------------------------------------------------------------------- srv


@pytest.fixture(scope="module")
def srv_port(fake_download_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    approot = tmp_path_factory.mktemp("srv-approot")
    proc = subprocess.Popen(
        [str(fake_download_dir / "stackql"), "srv", "--pgsrv.address=127.0.0.1", f"--pgsrv.port={port}",
         "--approot", str(approot), "--execution.concurrency.limit", "-1"],
        env=minimal_env(**AWS_ENV), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_port(port, proc)
    yield port
    proc.terminate()
    proc.wait(10)


def pg2(port: int, **kwargs):
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="anyone", dbname="whatever", **kwargs)
    conn.autocommit = True
    return conn


def test_srv_startup_trust_auth_and_parameter_status(srv_port):
    conn = psycopg2.connect(host="127.0.0.1", port=srv_port, user="stackql", dbname="stackql", sslmode="prefer")
    try:
        assert conn.get_parameter_status("server_version").startswith("14")
        assert conn.get_parameter_status("client_encoding") == "UTF8"
        assert conn.get_parameter_status("standard_conforming_strings") == "on"
        assert conn.get_parameter_status("DateStyle").startswith("ISO")
        assert conn.info.backend_pid > 0
        with conn.cursor() as cur:  # autocommit off: psycopg2 sends BEGIN first, then COMMIT
            cur.execute("SET search_path TO stackql")
            cur.execute(EC2_WEST)
            assert [d.name for d in cur.description] == ["instanceId", "region"]
            assert len(cur.fetchall()) == 3
        conn.commit()
        conn.rollback()
    finally:
        conn.close()


def test_srv_keeps_select_order_and_text_values(srv_port):
    with pg2(srv_port) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 AS z_last, NULL AS m, 2.5 AS a_first")
        assert [d.name for d in cur.description] == ["z_last", "m", "a_first"]
        assert cur.fetchall() == [("1", None, "2.5")]


def test_srv_errors_are_error_responses_and_connection_stays_usable(srv_port):
    conn = pg2(srv_port)
    with conn.cursor() as cur:
        with pytest.raises(psycopg2.Error) as err:
            cur.execute("SELECT * FROM aws.ec2.instances")
        assert err.value.diag.message_primary == "query returns error: " + MISSING_PARAMS
        cur.execute("SELECT 'still here' AS s")
        assert cur.fetchone() == ("still here",)
    conn.close()


def test_srv_messages_arrive_as_notices(srv_port):
    conn = pg2(srv_port)
    with conn.cursor() as cur:
        cur.execute("REGISTRY PULL aws 'v24.05.00220'")
        assert cur.description is None
    assert conn.notices == ["NOTICE:  aws provider, version 'v24.05.00220' successfully installed\n"]
    conn.close()


def test_srv_cancel_request_stops_the_running_query_of_that_backend(srv_port):
    conn, other = pg2(srv_port), pg2(srv_port)
    timer = threading.Timer(0.3, conn.cancel)
    timer.start()
    started = time.monotonic()
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.QueryCanceled):
        cur.execute("SELECT * FROM synthetic.timing.sleep WHERE seconds = 20")
    assert time.monotonic() - started < 5
    with other.cursor() as cur2:  # another backend's query is not affected, and conn still works
        cur2.execute("SELECT pid FROM synthetic.timing.sleep WHERE seconds = 0.2")
        assert cur2.fetchall()
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        assert cur.fetchone() == ("1",)
    conn.close()
    other.close()


def test_srv_serves_connections_concurrently(srv_port):
    results: list[float] = []

    def sleeper():
        with pg2(srv_port) as c, c.cursor() as cur:
            cur.execute("SELECT seconds FROM synthetic.timing.sleep WHERE seconds = 0.6")
            results.append(float(cur.fetchone()[0]))

    threads = [threading.Thread(target=sleeper) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [0.6, 0.6, 0.6]
    assert time.monotonic() - started < 1.6


def test_srv_extended_protocol_with_psycopg3(srv_port, stackql):
    literal = stackql("exec", "SELECT item_id, quantity FROM synthetic.bulk.items WHERE count = 5 AND seed = 3 "
                              "ORDER BY item_id LIMIT 2", "-o", "json")
    with psycopg.connect(host="127.0.0.1", port=srv_port, user="stackql", dbname="stackql", autocommit=True) as conn:
        rows = conn.execute("SELECT item_id, quantity FROM synthetic.bulk.items WHERE count = %s AND seed = %s "
                            "ORDER BY item_id LIMIT 2", (5, "3")).fetchall()  # an int and a str parameter
        assert rows == [(r["item_id"], r["quantity"]) for r in json.loads(literal.stdout)]
        assert len(rows) == 2
        for _ in range(2):  # prepared: Parse (named) + Describe + Bind/Execute, reused
            assert conn.execute("SELECT %s AS t", ("it's",), prepare=True).fetchall() == [("it's",)]
        conn.prepared_max = 1  # evicting prepared statements: Close (or DEALLOCATE) reaches the server
        for name in ("a", "b", "c"):
            assert conn.execute(f"SELECT %s AS {name}", (name,), prepare=True).fetchall() == [(name,)]
        with conn.pipeline() as pipeline:  # pipeline mode: several Parse/Bind/Execute before one Sync
            first = conn.execute("SELECT %s AS p1", (1,))
            second = conn.execute("SELECT %s AS p2", ("two",))
            pipeline.sync()
            assert (first.fetchall(), second.fetchall()) == ([("1",)], [("two",)])
        with conn.cursor() as cur:  # single-row mode
            assert [r[0] for r in cur.stream("SELECT item_id FROM synthetic.bulk.items WHERE count = 3")] == [
                "item-0000000", "item-0000001", "item-0000002"]
        with pytest.raises(psycopg.errors.InternalError_, match="could not locate provider 'nope'"):
            conn.execute("SELECT * FROM nope.a.b WHERE x = %s", (1,))
        assert conn.execute("SELECT 2 AS y").fetchall() == [("2",)]
        timer = threading.Timer(0.3, conn.cancel_safe)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT * FROM synthetic.timing.sleep WHERE seconds = %s", (20,))
        assert conn.execute("SELECT 3 AS z").fetchall() == [("3",)]


def test_srv_ssl_request_is_refused_then_plaintext_works(srv_port):
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=srv_port, user="stackql", dbname="stackql", sslmode="require",
                         connect_timeout=5)
    with psycopg.connect(host="127.0.0.1", port=srv_port, user="stackql", dbname="stackql", sslmode="prefer") as c:
        assert c.execute("SELECT 'plain' AS p").fetchone() == ("plain",)


# ----------------------------------------------------------------------------------------------- pystackql


@pytest.fixture()
def pystackql_client(fake_download_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from pystackql import StackQL

    monkeypatch.chdir(tmp_path)  # pystackql's default approot is <cwd>/.stackql
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    return StackQL(download_dir=str(fake_download_dir))


def test_pystackql_finds_the_stand_in_and_reads_its_version(pystackql_client, fake_download_dir):
    assert pystackql_client.bin_path == str(fake_download_dir / "stackql")
    assert (pystackql_client.version, pystackql_client.sha) == ("v0.10.383", "f4e3c21")


# The pitfalls of reference §1 reproduce against the stand-in: it is faithful enough to catch them.
@pytest.mark.parametrize("query, kwargs, expected", [
    pytest.param("SELECT * FROM aws.ec2.nope", {}, [], id="errors-suppressed-by-default"),
    pytest.param("SELECT * FROM aws.ec2.nope", {"suppress_errors": False},
                 [{"error": "could not locate table 'aws.ec2.nope'\n"}], id="error-only-when-unsuppressed"),
    pytest.param("SELECT 'a' AS x -- comment\n, 'b' AS y", {}, [{"x": "a"}], id="newline-comment-swallows-rest"),
    pytest.param("SELECT 'line1\nline2' AS x", {}, [{"x": "line1 line2"}], id="newlines-become-spaces"),
    pytest.param("SELECT 1 AS a; SELECT 2 AS b", {"suppress_errors": False}, "Invalid JSON format",
                 id="multi-statement"),
])
def test_pystackql_pitfalls_reproduce(pystackql_client, query, kwargs, expected):
    result = pystackql_client.execute(query, **kwargs)
    if isinstance(expected, str):
        assert expected in result[0]["error"]
    else:
        assert result == expected


def test_pystackql_constructor_custom_auth_is_shell_mangled(fake_download_dir, tmp_path, monkeypatch):
    from pystackql import StackQL

    monkeypatch.chdir(tmp_path)
    client = StackQL(download_dir=str(fake_download_dir),
                     custom_auth={"aws": {"type": "aws_signing_v4", "credentialsenvvar": "S", "keyIDenvvar": "K"}})
    assert client.execute("SELECT 1 AS x") == []
    assert "error unmarshalling auth" in client.execute("SELECT 1 AS x", suppress_errors=False)[0]["error"]


def test_pystackql_env_vars_lose_quotes_in_the_shell(pystackql_client):
    value = '{"type": "service_account", "k": "v"}'
    rows = pystackql_client.execute(
        "SELECT sha256 FROM synthetic.env.credentials WHERE names = 'GOOGLE_CREDENTIALS'",
        env_vars={"GOOGLE_CREDENTIALS": value})
    assert rows[0]["sha256"] == hashlib.sha256(b"{type: service_account, k: v}").hexdigest()
    assert rows[0]["sha256"] != hashlib.sha256(value.encode()).hexdigest()
