"""infra/stackql-deploy: the demo stack's manifest and resource files fit together, every resource is tagged for
teardown, and the example inventory queries are well-formed saved queries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
import yaml

STACK = Path(__file__).resolve().parents[1] / "infra" / "stackql-deploy"
QUERIES = sorted((STACK / "inventory_queries").glob("*.sql"))
_ANCHOR = re.compile(r"/\*\+\s*([a-z]+)")
_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_.]*)")
BUILTINS = {"stack_name", "stack_env", "vars", "this"}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((STACK / "stackql_manifest.yml").read_text())


def test_manifest_shape(manifest: dict) -> None:
    assert manifest["version"] == 1 and manifest["name"] == "stackql-inventory-demo"
    assert set(manifest["providers"]) == {"awscc", "google", "azure"}
    names = [r["name"] for r in manifest["resources"]]
    assert len(names) == len(set(names))
    assert {n.split("_")[0] for n in names} == {"aws", "google", "azure"}


def test_every_resource_has_a_query_file_with_a_full_lifecycle(manifest: dict) -> None:
    files = {p.stem for p in (STACK / "resources").glob("*.iql")}
    assert files == {r["name"] for r in manifest["resources"]}
    for resource in manifest["resources"]:
        anchors = set(_ANCHOR.findall((STACK / "resources" / f"{resource['name']}.iql").read_text()))
        assert {"exists", "create", "statecheck", "exports", "delete"} <= anchors, resource["name"]


def test_every_template_variable_is_defined(manifest: dict) -> None:
    globals_ = {g["name"] for g in manifest["globals"]}
    exported: set[str] = set()
    for resource in manifest["resources"]:
        # A resource's own exports are known to its `delete` (teardown runs the exports query first).
        props = {p["name"] for p in resource.get("props", [])} | set(resource.get("exports", []))
        text = (STACK / "resources" / f"{resource['name']}.iql").read_text()
        for name in _TEMPLATE.findall(text):
            root = name.split(".")[0]
            assert root in props | globals_ | exported | BUILTINS, f"{resource['name']}: {{{{ {name} }}}}"
        for prop in resource.get("props", []):
            for merged in prop.get("merge", []):
                assert merged in globals_, f"{resource['name']}.{prop['name']} merges unknown {merged}"
        exported |= set(resource.get("exports", []))


def test_every_resource_carries_the_demo_tag(manifest: dict) -> None:
    """Teardown and the inventory queries find the demo resources by the tag/label `stackql-inventory-demo`."""
    globals_ = {g["name"]: g["value"] for g in manifest["globals"]}
    assert {"Key": "stackql-inventory-demo", "Value": "{{ stack_env }}"} in globals_["aws_tags"]
    assert globals_["labels_and_tags"]["stackql-inventory-demo"] == "{{ stack_env }}"
    for resource in manifest["resources"]:
        props = {p["name"]: p for p in resource["props"]}
        tagged = any(set(p.get("merge", [])) & {"aws_tags", "labels_and_tags"} for p in props.values())
        described = "stackql-inventory-demo" in str(props.get("description", {}).get("value", ""))
        assert tagged or described, f"{resource['name']} is not tagged for teardown"


@pytest.mark.parametrize("path", QUERIES, ids=[p.stem for p in QUERIES])
def test_inventory_queries_are_well_formed_saved_queries(path: Path) -> None:
    text = path.read_text()
    header = dict(re.findall(r"^-- (name|provider|schedule|target_table): (.+)$", text, re.MULTILINE))
    assert set(header) == {"name", "provider", "schedule", "target_table"}, path.name
    assert re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", header["target_table"])
    assert len(header["schedule"].split()) == 5
    statements = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    assert len(statements) == 1 and statements[0].key == "select"
    tables = {".".join(p for p in (t.catalog, t.db, t.name) if p) for t in statements[0].find_all(sqlglot.exp.Table)}
    assert len(tables) == 1 and next(iter(tables)).split(".")[0] == header["provider"]
    assert statements[0].args.get("where") is not None  # the required parameter (region / project / subscription)


def test_there_is_a_query_per_cloud() -> None:
    assert len(QUERIES) >= 3
    providers = {re.search(r"^-- provider: (\w+)", p.read_text(), re.MULTILINE).group(1) for p in QUERIES}
    assert providers == {"aws", "google", "azure"}
