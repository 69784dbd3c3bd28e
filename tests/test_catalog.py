"""The catalog answers stackql's meta-commands as dataclasses, caches them, and refuses unsafe names."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from stackql_inventory import config
from stackql_inventory.services import catalog as catalog_module
from stackql_inventory.services import engine as engine_module
from stackql_inventory.services.catalog import (
    Catalog, ColumnInfo, MethodInfo, ProviderInfo, RegistryEntry, ResourceInfo, SearchHit, ServiceInfo,
)
from stackql_inventory.services.engine import Engine
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.fixtures_engine import fake_download_dir, make_engine

__all__ = ["fake_download_dir", "make_engine"]  # fixtures re-exported for pytest
pytestmark = pytest.mark.timeout(120)  # a hung child must fail the test, not the run


class Counting:
    """An executor that runs statements on an engine and remembers them."""

    def __init__(self, eng: Engine, mode: str = "interactive"):
        self.eng, self.mode, self.statements = eng, mode, []

    def __call__(self, statement: str):
        self.statements.append(statement)
        return self.eng.run(statement, None, mode=self.mode)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def shared_engine(fake_download_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    eng = Engine(fake_download_dir, tmp_path_factory.mktemp("approot"))
    yield eng
    eng.close()


@pytest.fixture()
def executor(shared_engine: Engine) -> Counting:
    return Counting(shared_engine)


@pytest.fixture()
def cat(executor: Counting) -> Catalog:
    return Catalog(executor)


def test_services_resources_columns_and_methods(cat):
    assert cat.services("aws") == [
        ServiceInfo("ec2:v24.07.00246", "ec2", "Amazon EC2"), ServiceInfo("s3:v24.07.00246", "s3", "Amazon S3"),
        ServiceInfo("iam:v24.07.00246", "iam", "AWS Identity and Access Management")]
    assert cat.resources("aws", "ec2")[0] == ResourceInfo(
        "instances", "aws.ec2.instances", "Describes the specified instances or all instances.")
    columns = cat.columns("aws.ec2.instances")
    assert columns[0] == ColumnInfo("instanceId", "string", "The ID of the instance.")
    assert [c.name for c in columns][-3:] == ["cpuOptions", "tagSet", "region"]
    assert cat.methods("github.repos.repos") == [
        MethodInfo("get", ("owner", "repo"), "SELECT"), MethodInfo("list_for_org", ("org",), "SELECT"),
        MethodInfo("create_in_org", ("org",), "INSERT"), MethodInfo("delete", ("owner", "repo"), "DELETE")]
    assert ProviderInfo("aws", "v24.07.00246") in cat.providers()  # installed on first use


@pytest.mark.parametrize("fqn, params", [
    ("aws.ec2.instances", ["region"]),
    ("google.compute.instances", ["project"]),  # aggregated_list needs only the project
    ("google.compute.disks", ["project", "zone"]),
    ("github.repos.repos", ["org"]),
    ("azure.compute.virtual_machines", ["subscriptionId"]),  # list_all
    ("azure.compute.disks", ["subscriptionId"]),
    ("aws.iam.roles", ["region"]),
    ("cloudflare.zones.zones", []),
    ("databricks_workspace.compute.clusters", ["deployment_name"]),
    ("synthetic.bulk.items", ["count"]),
])
def test_required_params_come_from_the_select_method_needing_fewest(cat, fqn, params):
    assert cat.required_params(fqn) == params


def test_registry_list(cat):
    assert RegistryEntry("aws", ("v24.07.00246",)) in cat.registry_list()
    assert cat.registry_list("aws") == [RegistryEntry("aws", ("v24.05.00220", "v24.07.00246"))]


def test_answers_are_cached_until_the_ttl_expires(executor):
    clock = Clock()
    cat = Catalog(executor, ttl_s=60, clock=clock)
    cat.columns("aws.s3.buckets")
    cat.columns("aws.s3.buckets")
    cat.resources("aws", "s3")
    assert executor.statements == ["DESCRIBE EXTENDED aws.s3.buckets", "SHOW EXTENDED RESOURCES IN aws.s3"]
    clock.now += 61
    cat.columns("aws.s3.buckets")
    assert executor.statements[-1] == "DESCRIBE EXTENDED aws.s3.buckets" and len(executor.statements) == 3


def test_pull_installs_and_invalidates_the_cache(make_engine):
    executor = Counting(make_engine())
    cat = Catalog(executor, ttl_s=3600)
    cat.services("github")
    assert cat.providers() == [ProviderInfo("github", "v24.04.00224")]
    assert cat.pull("github", "v24.02.00200") == "github provider, version 'v24.02.00200' successfully installed"
    assert cat.providers() == [ProviderInfo("github", "v24.02.00200")]
    assert executor.statements == ["SHOW SERVICES IN github", "SHOW PROVIDERS", "REGISTRY PULL github 'v24.02.00200'",
                                   "SHOW PROVIDERS"]
    cat.pull("okta")
    assert ProviderInfo("okta", "v24.03.00212") in cat.providers()


@pytest.mark.parametrize("call", [
    lambda c: c.services("aws; DROP TABLE x"),
    lambda c: c.services(""),
    lambda c: c.services("aws--"),
    lambda c: c.resources("aws", "ec2 LIKE '%'"),
    lambda c: c.resources("aws", "ec2.instances"),
    lambda c: c.columns("aws.ec2"),
    lambda c: c.columns("aws.ec2.instances; SHOW PROVIDERS"),
    lambda c: c.columns("aws.ec2.in`stances"),
    lambda c: c.methods("a.b.c.d"),
    lambda c: c.required_params("aws.ec2.instances WHERE 1=1"),
    lambda c: c.registry_list("x y"),
    lambda c: c.pull("aws", "v1'; REGISTRY PULL evil"),
    lambda c: c.pull("aws'"),
])
def test_unsafe_names_are_refused_before_reaching_stackql(cat, executor, call):
    with pytest.raises(UserFacingError) as err:
        call(cat)
    assert err.value.kind is ErrorKind.VALIDATION
    assert executor.statements == []


def test_stackql_errors_pass_through(cat):
    with pytest.raises(UserFacingError) as err:
        cat.services("nosuch")
    assert err.value.kind is ErrorKind.NOT_FOUND and "could not locate provider 'nosuch'" in err.value.message
    with pytest.raises(UserFacingError) as err:
        cat.columns("aws.ec2.nope")
    assert "could not locate table 'aws.ec2.nope'" in err.value.message


def test_search_looks_at_providers_and_what_is_cached(cat, executor):
    cat.services("aws")
    cat.resources("aws", "ec2")
    cat.resources("aws", "s3")
    ran = len(executor.statements)
    hits = cat.search("inst")
    assert hits[0] == SearchHit("resource", "aws.ec2.instances", "Describes the specified instances or all instances.")
    assert cat.search("ec2")[0] == SearchHit("service", "aws.ec2", "Amazon EC2")
    assert [h.name for h in cat.search("EBS")] == ["aws.ec2.volumes"]  # matched in the description
    assert cat.search("AWS")[0] == SearchHit("provider", "aws", "")
    assert cat.search("  ") == [] and cat.search("zzz-nothing") == []
    assert len(executor.statements) <= ran + 1  # at most SHOW PROVIDERS


def test_same_answers_over_the_batch_path(shared_engine):
    interactive = Catalog(Counting(shared_engine, "interactive"))
    batch = Catalog(Counting(shared_engine, "batch"))
    assert batch.columns("okta.user.users") == interactive.columns("okta.user.users")
    assert batch.methods("okta.user.users") == interactive.methods("okta.user.users")


def test_default_catalog_runs_on_the_interactive_engine(fake_download_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STACKQL_DOWNLOAD_DIR", str(fake_download_dir))
    monkeypatch.setenv("STACKQL_INVENTORY_DATA_DIR", str(tmp_path))
    config.get_settings.cache_clear()
    engine_module.reset()
    catalog_module.reset()
    try:
        cat = catalog_module.get_catalog()
        assert cat is catalog_module.get_catalog()
        assert cat.required_params("google.storage.buckets") == ["project"]
        assert [p.name for p in cat.providers()] == ["google"]
        srv_children = [p for p in psutil.Process().children(recursive=True) if "srv" in p.cmdline()]
        assert any(str(tmp_path) in " ".join(p.cmdline()) for p in srv_children)  # the warm srv answered
    finally:
        catalog_module.reset()
        engine_module.reset()
        config.get_settings.cache_clear()
