"""The Databricks Asset Bundle (infra/bundles) and app.yaml: they parse, the bundle validates against our strict
schema of the bundle fields we use, and the names that tie bundle, app.yaml and runner together agree.

The schema (tests/data/databricks_bundle.schema.json) is AUTHORED BY THIS PROJECT from the documented fields;
the CLI's own schema (`databricks bundle schema`) is not installable here. `databricks bundle validate -t prod`
against a workspace stays the final check (docs/deploy.md).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "infra" / "bundles"
SCHEMA = json.loads((Path(__file__).parent / "data" / "databricks_bundle.schema.json").read_text())
_REF = re.compile(r"\$\{([^}]+)\}")


def load_bundle() -> tuple[dict[str, Any], dict[str, Path]]:
    """databricks.yml with its includes merged (as the CLI does), and which file declared each resource."""
    root = yaml.safe_load((BUNDLE / "databricks.yml").read_text())
    declared_in: dict[str, Path] = {}
    for pattern in root.get("include", []):
        for path in sorted(BUNDLE.glob(pattern)):
            part = yaml.safe_load(path.read_text())
            assert set(part) <= {"resources", "variables", "targets"}, f"{path}: unexpected top-level keys"
            for kind, items in part.get("resources", {}).items():
                merged = root.setdefault("resources", {}).setdefault(kind, {})
                for key, value in items.items():
                    assert key not in merged, f"{kind}.{key} declared twice"
                    merged[key] = value
                    declared_in[f"{kind}.{key}"] = path
    return root, declared_in


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _errors(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return load_bundle()[0]


@pytest.fixture(scope="module")
def app_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "app.yaml").read_text())


def _app_env(app_yaml: dict) -> dict[str, dict]:
    return {e["name"]: e for e in app_yaml["env"]}


# --- parsing and schema -------------------------------------------------------------------------
def test_every_bundle_file_parses_and_the_schema_is_itself_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    files = [BUNDLE / "databricks.yml", *sorted((BUNDLE / "resources").glob("*.yml"))]
    assert len(files) >= 4
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_the_bundle_validates_against_the_schema(bundle: dict) -> None:
    assert _errors(bundle) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda b: b["resources"]["apps"]["stackql_inventory"].update(comand=["x"]), "Additional properties"),
        (lambda b: b["resources"]["apps"]["stackql_inventory"]["resources"][1]["secret"].update(permission="READ_ALL"),
         "is not valid"),
        (lambda b: b["resources"]["apps"]["stackql_inventory"].update(
            config={"env": [{"name": "X", "valueFrom": "postgres"}]}), "Additional properties"),  # bundles: value_from
        (lambda b: b["resources"]["secret_scopes"]["app_scope"].pop("name"), "'name' is a required property"),
        (lambda b: b["resources"]["postgres_catalogs"]["inventory"].pop("branch"), "'branch' is a required property"),
        (lambda b: b["resources"]["apps"]["stackql_inventory"]["resources"][0]["postgres"].update(
            database="databricks_postgres"), "does not match"),
        (lambda b: b["targets"]["prod"].update(mode="staging"), "is not one of"),
        (lambda b: b["resources"]["apps"]["stackql_inventory"]["permissions"].append({"level": "CAN_USE"}),
         "is not valid"),
    ],
)
def test_the_schema_catches_mistakes(bundle: dict, mutate, expected: str) -> None:
    broken = copy.deepcopy(bundle)
    mutate(broken)
    errors = _errors(broken)
    assert errors and any(expected in e for e in errors), errors


# --- the names that tie things together ---------------------------------------------------------
def test_every_reference_points_at_something_declared(bundle: dict) -> None:
    variables = set(bundle["variables"])
    for ref in {m for s in _strings(bundle) for m in _REF.findall(s)}:
        head, _, rest = ref.partition(".")
        if head == "var":
            assert rest in variables, f"${{{ref}}}: no variable {rest}"
        elif head == "resources":
            kind, key, *_ = rest.split(".")
            assert key in bundle["resources"].get(kind, {}), f"${{{ref}}}: no resource {kind}.{key}"
        else:
            assert head in ("bundle", "workspace"), ref
    for name, spec in bundle["variables"].items():
        assert spec.get("description") and "default" in spec, f"variable {name} needs a description and default"


def test_targets_dev_and_prod(bundle: dict) -> None:
    targets = bundle["targets"]
    assert targets["dev"] == {**targets["dev"], "mode": "development", "default": True}
    assert targets["prod"]["mode"] == "production"


def test_runtime_created_jobs_stay_out_of_the_bundle(bundle: dict) -> None:
    assert "jobs" not in bundle["resources"] and "job_runs" not in bundle["resources"]
    for target in bundle["targets"].values():
        assert "jobs" not in target.get("resources", {})


def test_the_app_source_is_the_repository_root_and_sync_uploads_what_it_needs(bundle: dict) -> None:
    _, declared_in = load_bundle()
    app = bundle["resources"]["apps"]["stackql_inventory"]
    source = (declared_in["apps.stackql_inventory"].parent / app["source_code_path"]).resolve()
    assert source == ROOT and (source / "app.yaml").is_file()
    assert [(BUNDLE / p).resolve() for p in bundle["sync"]["paths"]] == [ROOT]
    needed = ["app.yaml", "requirements.txt", "package.json", "package-lock.json", "rxconfig.py", "alembic.ini",
              "alembic/env.py", "reflex.lock/package.json", "stackql_inventory/serve.py", "runner/__init__.py",
              "infra/runner/job_entry.py", "infra/runner/requirements.txt", "stackql_inventory/db/engine.py"]
    excluded = [re.compile(re.escape(p).replace(r"\*\*", ".*").replace(r"\*", "[^/]*") + "$")
                for p in bundle["sync"]["exclude"]]
    for rel in needed:
        assert (ROOT / rel).exists(), rel
        assert not any(x.match(rel) for x in excluded), f"{rel} would not be uploaded"
    for rel in ("tests/conftest.py", ".venv/bin/python", "node_modules/bun/package.json", ".web/package.json"):
        assert any(x.match(rel) for x in excluded), f"{rel} would be uploaded"


def test_app_yaml_value_from_names_the_apps_resources(bundle: dict, app_yaml: dict) -> None:
    app = bundle["resources"]["apps"]["stackql_inventory"]
    resources = {r["name"]: r for r in app["resources"]}
    for entry in app_yaml["env"]:
        if "valueFrom" in entry:
            assert entry["valueFrom"] in resources, f"{entry['name']}: no app resource {entry['valueFrom']}"
    assert "postgres" in resources["postgres"] and resources["postgres"]["postgres"]["permission"] == \
        "CAN_CONNECT_AND_CREATE"
    secret = resources[_app_env(app_yaml)["ANTHROPIC_API_KEY"]["valueFrom"]]["secret"]
    assert secret == {"scope": "${resources.secret_scopes.app_scope.name}", "key": "anthropic-api-key",
                      "permission": "READ"}


def test_lakebase_resources_agree(bundle: dict) -> None:
    res = bundle["resources"]
    project = "${resources.postgres_projects.inventory.id}"
    postgres = res["apps"]["stackql_inventory"]["resources"][0]["postgres"]
    assert postgres["branch"] == f"{project}/branches/production"
    # The default database of an Autoscaling branch: resource id databricks-postgres, Postgres name databricks_postgres.
    assert postgres["database"] == f"{project}/branches/production/databases/databricks-postgres"
    catalog = res["postgres_catalogs"]["inventory"]
    assert (catalog["branch"], catalog["postgres_database"]) == (postgres["branch"], "databricks_postgres")
    assert catalog["catalog_id"] == "${var.inventory_catalog}"
    assert "postgres_branches" not in res and "postgres_endpoints" not in res  # created with the project


def test_app_yaml_names_match_the_bundle(bundle: dict, app_yaml: dict) -> None:
    env = _app_env(app_yaml)
    from stackql_inventory.config import Settings

    assert env["STACKQL_INVENTORY_SECRET_SCOPE"]["value"] == bundle["variables"]["secret_scope"]["default"]
    assert bundle["variables"]["secret_scope"]["default"] == Settings(_env_file=None).secret_scope
    files = bundle["workspace"]["root_path"] + "/files"
    assert env["STACKQL_INVENTORY_RUNNER_FILE"]["value"] == f"{files}/infra/runner/job_entry.py"
    assert env["STACKQL_INVENTORY_RUNNER_DEPENDENCIES"]["value"] == f"-r {files}/infra/runner/requirements.txt"
    assert files.startswith("/Workspace/Shared/")  # readable by the app's service principal, which jobs run as
