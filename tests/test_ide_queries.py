"""The IDE's service layer: which statement runs, running it with mapped credentials into the result store,
errors with required-parameter hints, cancel, completion and the schema browser — on the stackql stand-in."""

from __future__ import annotations

import threading
import time

import pytest

from stackql_inventory.config import get_settings
from stackql_inventory.services import catalog, engine, ide_queries, result_store
from stackql_inventory.services.catalog import Catalog
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from tests.fixtures_engine import fake_download_dir
from tests.support.ide import AWS_VALUES, map_provider, process_engine

__all__ = ["fake_download_dir", "process_engine"]  # fixtures re-exported for pytest
pytestmark = pytest.mark.timeout(180)

ANA = Identity(user="ana@example.com", display_name="Ana", source="proxy")
READER = Identity(user="reader@example.com", display_name="Reader", source="proxy")
EC2 = "SELECT instanceId, instanceType FROM aws.ec2.instances WHERE region = 'us-east-1'"


# ============================================================================ which statement runs


TEXT = "SELECT 1 AS a;\n\nSELECT 2 AS b;\n-- last\nSHOW PROVIDERS"


@pytest.mark.parametrize(("selection", "offset", "expected"), [
    ("", 3, "SELECT 1 AS a"),
    ("", TEXT.index("2 AS b"), "SELECT 2 AS b"),
    ("", len("SELECT 1 AS a;"), "SELECT 1 AS a"),  # just after the `;`: the statement before
    ("", len(TEXT), "-- last\nSHOW PROVIDERS"),
    ("", None, "-- last\nSHOW PROVIDERS"),
    ("  SELECT 2 AS b  ", 0, "SELECT 2 AS b"),  # a selection wins over the cursor
    ("   ", 3, "SELECT 1 AS a"),  # a blank selection does not
])
def test_choose_statement(selection, offset, expected):
    assert ide_queries.choose_statement(TEXT, selection, offset) == expected


@pytest.mark.parametrize("text", ["", "   \n", ";;"])
def test_choose_statement_refuses_empty_text(text):
    with pytest.raises(UserFacingError) as e:
        ide_queries.choose_statement(text, "", 0)
    assert e.value.kind is ErrorKind.VALIDATION and "no statement to run" in e.value.message


# ============================================================================ editing helpers


@pytest.mark.parametrize(("statement", "expected"), [
    ("SELECT * FROM aws.ec2.instances", "SELECT * FROM aws.ec2.instances\nWHERE region = ''"),
    ("SELECT * FROM aws.ec2.instances WHERE x = 1", "SELECT * FROM aws.ec2.instances WHERE region = '' AND x = 1"),
    ("SELECT * FROM aws.ec2.instances ORDER BY 1 LIMIT 5",
     "SELECT * FROM aws.ec2.instances\nWHERE region = ''\nORDER BY 1 LIMIT 5"),
    ("SELECT * FROM (SELECT a FROM t WHERE b = 1) s LIMIT 2",
     "SELECT * FROM (SELECT a FROM t WHERE b = 1) s\nWHERE region = ''\nLIMIT 2"),
    ("SELECT 'WHERE' AS w FROM aws.ec2.instances", "SELECT 'WHERE' AS w FROM aws.ec2.instances\nWHERE region = ''"),
])
def test_add_param_to_the_where_clause(statement, expected):
    text = f"SHOW PROVIDERS;\n{statement};\nSELECT 3"
    assert ide_queries.add_param(text, statement, "region") == f"SHOW PROVIDERS;\n{expected};\nSELECT 3"


def test_add_param_refuses_bad_names_and_missing_statements():
    with pytest.raises(UserFacingError) as e:
        ide_queries.add_param("SELECT 1", "SELECT 1", "x = 1 OR 1")
    assert e.value.kind is ErrorKind.VALIDATION
    with pytest.raises(UserFacingError) as e:
        ide_queries.add_param("SELECT 2", "SELECT 1", "region")
    assert e.value.kind is ErrorKind.NOT_FOUND and "run it again" in e.value.message


def test_starter_select():
    text = ide_queries.starter_select("aws.ec2.instances", ["instanceId", "tag set"], ["region", "owner"])
    assert text == ('SELECT\n  instanceId,\n  "tag set"\nFROM aws.ec2.instances\nWHERE region = \'\'\n'
                    "  AND owner = '';\n")
    assert ide_queries.starter_select("a.b.c", [], []) == "SELECT\n  *\nFROM a.b.c;\n"
    with pytest.raises(UserFacingError):
        ide_queries.starter_select("a.b.c; DROP", ["x"], [])


# ============================================================================ catalog: completion and schema


@pytest.fixture(scope="module")
def cat(fake_download_dir, tmp_path_factory):
    eng = engine.Engine(fake_download_dir, tmp_path_factory.mktemp("approot"))
    eng.run("SHOW SERVICES IN aws", None)  # aws installed; the rest only in the registry
    yield Catalog(lambda q: eng.run(q, None))
    eng.close()


def labels(found: ide_queries.Completions) -> list[str]:
    return [i.label for i in found.items]


def test_completion_of_providers_services_and_resources(cat):
    providers = ide_queries.completions("SELECT * FROM ", 14, cat)
    assert providers.kind == "provider"
    assert labels(providers)[0] == "aws"  # installed first
    assert {"google", "okta", "synthetic"} <= set(labels(providers))
    assert next(i for i in providers.items if i.label == "okta").detail.startswith("not installed")
    assert labels(ide_queries.completions("SELECT * FROM go", 16, cat)) == ["google"]
    services = ide_queries.completions("DESCRIBE aws.", 13, cat)
    assert (services.kind, labels(services)) == ("service", ["ec2", "s3", "iam"])
    assert services.items[0].detail == "Amazon EC2"
    text = "SELECT * FROM aws.ec2.in"
    resources = ide_queries.completions(text, len(text), cat)
    assert (resources.kind, labels(resources)) == ("resource", ["instances"])
    assert resources.items[0].detail == "aws.ec2.instances" and resources.items[0].documentation


def test_completion_of_columns_of_the_named_resources(cat):
    text = "SELECT inst FROM aws.ec2.instances i JOIN aws.ec2.volumes v ON "
    found = ide_queries.completions(text, len("SELECT inst"), cat)
    assert found.kind == "column"
    assert labels(found)[:2] == ["instanceId", "instanceType"]  # prefix matches first
    everything = ide_queries.completions(text, len(text), cat)
    assert {"instanceId", "volumeId", "region"} <= set(labels(everything))
    assert len(labels(everything)) == len(set(labels(everything)))  # shared columns listed once
    qualified = ide_queries.completions("SELECT v. FROM aws.ec2.volumes v", len("SELECT v."), cat)
    assert "volumeId" in labels(qualified) and "instanceType" not in labels(qualified)
    assert qualified.items[0].detail.endswith("aws.ec2.volumes")


def test_no_completion_inside_strings_and_errors_become_empty_answers(cat):
    assert ide_queries.completions("SELECT * FROM aws.ec2.instances WHERE region = 'us", 48, cat).items == []
    missing = ide_queries.completions("SELECT * FROM nosuch.", 21, cat)
    assert (missing.kind, missing.items) == ("service", []) and "nosuch" in missing.error


def test_schema_children_walk_the_tree(cat):
    assert [(n.kind, n.name) for n in ide_queries.schema_children("", cat)][:1] == [("provider", "aws")]
    assert [n.path for n in ide_queries.schema_children("aws", cat)] == ["aws.ec2", "aws.s3", "aws.iam"]
    resources = ide_queries.schema_children("aws.ec2", cat)
    assert resources[0].path == "aws.ec2.instances" and resources[0].description
    columns = ide_queries.schema_children("aws.ec2.instances", cat)
    assert (columns[0].kind, columns[0].path, columns[0].detail) == ("column", "aws.ec2.instances.instanceId",
                                                                      "string")
    assert ide_queries.schema_children("aws.ec2.instances.instanceId", cat) == []
    assert "okta" in {n.name for n in ide_queries.registry_providers(cat)}
    assert "aws" not in {n.name for n in ide_queries.registry_providers(cat)}


def test_starter_select_for_a_resource_from_the_catalog(cat):
    text = ide_queries.starter_select_for("github.repos.repos", cat)
    assert text.startswith("SELECT\n  ") and "FROM github.repos.repos\nWHERE org = ''" in text
    assert [c.name for c in cat.columns("github.repos.repos")][0] in text


def test_missing_param_hints_come_from_show_methods(cat):
    hints = ide_queries.missing_param_hints("SELECT * FROM github.repos.repos WHERE visibility = 'x'", None, cat)
    methods = {m.name: m.required_params for m in cat.methods("github.repos.repos") if m.sql_verb == "SELECT"}
    assert [(h.method, h.params) for h in hints] == sorted(methods.items(), key=lambda kv: len(kv[1]))
    assert all(h.resource == "github.repos.repos" for h in hints)
    partial = ide_queries.missing_param_hints("SELECT * FROM aws.ec2.instances WHERE REGION = 'x'", None, cat)
    assert partial[0].params == ("region",) and partial[0].missing == ()


def test_pull_provider(cat):
    message = ide_queries.pull_provider(ANA, "okta", cat)
    assert "okta" in message and "installed" in message
    assert "okta" in {n.name for n in ide_queries.schema_children("", cat)}


@pytest.fixture
def read_only():
    """Only Ana edits: READER has a read-only app."""
    mp = pytest.MonkeyPatch()
    mp.setenv("STACKQL_INVENTORY_EDITORS", "ana@example.com")
    get_settings.cache_clear()
    yield
    mp.undo()
    get_settings.cache_clear()


def test_read_only_users_cannot_pull_providers(cat, read_only):
    """A provider pulled from the registry is installed for everyone: editors only, whatever the page shows."""
    before = {n.name for n in ide_queries.schema_children("", cat)}
    assert "cloudflare" not in before and "cloudflare" in {n.name for n in ide_queries.registry_providers(cat)}
    with pytest.raises(UserFacingError) as e:
        ide_queries.pull_provider(READER, "cloudflare", cat)
    assert e.value.kind is ErrorKind.PERMISSION
    assert "Reader has read-only access and cannot pull providers from the registry" in e.value.message
    assert {n.name for n in ide_queries.schema_children("", cat)} == before


@pytest.mark.parametrize("text", ["REGISTRY PULL cloudflare", "-- install it\n  registry\n pull cloudflare;"])
def test_read_only_users_cannot_pull_from_the_editor_either(db, process_engine, read_only, text):
    with pytest.raises(UserFacingError) as e:
        ide_queries.run(text, actor=READER, session="s", run_id="pull")
    assert e.value.kind is ErrorKind.PERMISSION and "cannot pull providers" in e.value.message
    assert "cloudflare" not in {p.name for p in catalog.get_catalog().providers()}
    assert ide_queries.run("SELECT 1 AS one", actor=READER, session="s", run_id="read").row_count == 1


@pytest.mark.parametrize(("statement", "expected"), [
    ("SELECT * FROM aws.ec2.instances i JOIN Google.compute.instances g ON 1 = 1", ["aws", "google"]),
    ("-- c\n show extended resources in cloudflare.zones", ["cloudflare"]),
    ("SHOW METHODS IN okta.user.users", ["okta"]),
    ("DESCRIBE github.repos.repos", ["github"]),
    ("SELECT json_extract(x, '$.a.b.c') AS v FROM azure.compute.vms", ["azure"]),
    ("SELECT 1 AS one", []),
    ("SHOW PROVIDERS", []),
])
def test_referenced_providers(statement, expected):
    assert ide_queries.referenced_providers(statement) == expected


@pytest.mark.parametrize("text", ["SELECT id, name FROM cloudflare.zones.zones", "SHOW SERVICES IN cloudflare",
                                  "DESCRIBE cloudflare.zones.zones"])
def test_read_only_users_cannot_install_a_provider_by_querying_it(db, process_engine, read_only, text):
    with pytest.raises(UserFacingError) as e:
        ide_queries.run(text, actor=READER, session="s", run_id="auto-install")
    assert e.value.kind is ErrorKind.PERMISSION
    assert "cannot install the cloudflare provider" in e.value.message and "REGISTRY PULL cloudflare" in e.value.message
    assert "cloudflare" not in {p.name for p in catalog.get_catalog().providers()}


def test_once_an_editor_installed_it_read_only_users_query_it(db, process_engine, read_only):
    ide_queries.run("SHOW SERVICES IN cloudflare", actor=ANA, session="s", run_id="editor")  # installs it
    result = ide_queries.run("SHOW SERVICES IN cloudflare", actor=READER, session="s", run_id="reader")
    assert result.row_count > 0


def test_providers_the_registry_does_not_have_are_left_to_stackql(db, process_engine, read_only):
    with pytest.raises(ide_queries.QueryFailed) as e:
        ide_queries.run("SELECT x FROM nosuchprovider.svc.res", actor=READER, session="s", run_id="unknown")
    assert e.value.kind is not ErrorKind.PERMISSION


def test_is_installed_checks_a_cached_no_again():
    installed: list[dict] = []
    calls = []

    def execute(statement: str) -> engine.QueryResult:
        calls.append(statement)
        return engine.QueryResult(["name", "version"], [(r["name"], r["version"]) for r in installed], False, 0.0,
                                  (), "srv")

    cat = Catalog(execute)
    assert cat.is_installed("aws") is False and len(calls) == 2
    installed.append({"name": "aws", "version": "v1"})  # installed by another process meanwhile
    assert cat.is_installed("aws") is True
    assert cat.is_installed("aws") is True and len(calls) == 3  # a cached "yes" is not asked again


# ============================================================================ running


def test_run_stores_the_result_and_uses_every_mapped_credential(db, process_engine):
    map_provider(db, process_engine, "aws", AWS_VALUES)
    assert ide_queries.configured_providers() == ["aws"]
    result = ide_queries.run(EC2, actor=ANA, session="tab-1", run_id="r1", provider="aws")
    assert result.columns == ("instanceId", "instanceType")
    assert result.row_count > 0 and result.truncated is False and result.notices == ()
    assert result.row_limit == 100_000 and result.elapsed_s > 0
    stored = result_store.get(result.result_id, owner=ANA.user)
    assert (stored.session, stored.statement, stored.provider) == ("tab-1", EC2, "aws")
    assert stored.head(1)[0][0].startswith("i-")
    with pytest.raises(UserFacingError):
        result_store.get(result.result_id, owner="someone-else")


def test_the_row_limit_truncates(db, process_engine):
    q = "SELECT item_id FROM synthetic.bulk.items WHERE count = 50"
    result = ide_queries.run(q, actor=ANA, session="s", run_id="r2", limits=engine.QueryLimits(row_limit=20))
    assert (result.row_count, result.truncated, result.row_limit) == (20, True, 20)


def test_missing_credentials_are_notices_and_stackqls_error_is_verbatim(db, process_engine):
    map_provider(db, process_engine, "aws", AWS_VALUES, write_secrets=False)
    with pytest.raises(ide_queries.QueryFailed) as e:
        ide_queries.run(EC2, actor=ANA, session="s", run_id="r3", provider="aws")
    failure = e.value
    assert failure.kind is ErrorKind.AUTH and failure.statement == EC2
    assert failure.message.startswith("stackql: http response status code: 401")
    assert len(failure.notices) == 2 and all("aws" in n and "ide-tests/aws-" in n for n in failure.notices)
    assert failure.status.value == "error"


def test_a_missing_required_parameter_offers_the_parameters(db, process_engine):
    map_provider(db, process_engine, "aws", AWS_VALUES)
    statement = "SELECT instanceId FROM aws.ec2.instances"
    with pytest.raises(ide_queries.QueryFailed) as e:
        ide_queries.run(statement, actor=ANA, session="s", run_id="r4")
    assert "cannot find matching operation" in e.value.message
    assert [(h.resource, h.missing) for h in e.value.hints][:1] == [("aws.ec2.instances", ("region",))]
    fixed = ide_queries.add_param(statement, statement, "region").replace("''", "'us-east-1'")
    assert ide_queries.run(fixed, actor=ANA, session="s", run_id="r5").row_count > 0


def test_cancel_stops_the_run_and_the_engine_stays_usable(db, process_engine):
    outcome: dict = {}

    def run() -> None:
        try:
            ide_queries.run("SELECT seconds FROM synthetic.timing.sleep WHERE seconds = 30", actor=ANA,
                            session="s", run_id="slow")
        except ide_queries.QueryFailed as exc:
            outcome["failure"] = exc

    worker = threading.Thread(target=run)
    started = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 20
    while "slow" not in engine.running_ids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.cancel("slow")
    worker.join(20)
    assert time.monotonic() - started < 15
    assert outcome["failure"].kind is ErrorKind.CANCELLED and outcome["failure"].status.value == "cancelled"
    assert ide_queries.run("SELECT 1 AS one", actor=ANA, session="s", run_id="after").row_count == 1


def test_several_statements_are_refused(db, process_engine):
    with pytest.raises(ide_queries.QueryFailed) as e:
        ide_queries.run("SELECT 1; SELECT 2", actor=ANA, session="s", run_id="r6")
    assert e.value.kind is ErrorKind.VALIDATION and "2 statements" in e.value.message


def test_unreadable_mappings_run_without_credentials_and_say_why(process_engine):
    from stackql_inventory.db import engine as db_engine
    import sqlalchemy as sa

    db_engine.set_engine(sa.create_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none",
                                          connect_args={"connect_timeout": 2}))
    try:
        result = ide_queries.run("SELECT 1 AS one", actor=ANA, session="s", run_id="r7")
    finally:
        db_engine.set_engine(None)
    assert result.row_count == 1
    assert result.notices and result.notices[0].startswith("Provider credentials could not be loaded")


def test_process_catalog_serves_completion(process_engine):
    found = ide_queries.completions("SELECT * FROM synthetic.", 24)
    assert labels(found) == ["bulk", "timing", "env"]
    assert catalog.get_catalog() is catalog.get_catalog()
