"""The runner's deployment for Databricks jobs: infra/runner/job_entry.py and the job environment's requirements."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.platform import ENDPOINT, LakebaseStandIn

ROOT = Path(__file__).resolve().parents[1]
RUNNER_REQS = ROOT / "infra" / "runner" / "requirements.txt"
# Direct requirements the job environment leaves out, and why.
NOT_IN_JOBS = {
    "reflex": "UI", "reflex-monaco": "UI", "pgserver": "embedded database (jobs use Lakebase)",
    "pytest": "tests", "playwright": "tests", "pytest-playwright": "tests", "pytest-timeout": "tests",
    "jsonschema": "tests", "PyYAML": "tests",
}
# Imports of the job-side code that need no distribution of their own in the job.
JOB_IMPORTS_WITHOUT_REQUIREMENT = {"pgserver"}  # imported lazily, only for the embedded database


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("# --- transitive"):
            break
        if line:
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    return pins


def _direct_requirements() -> dict[str, str]:
    text = (ROOT / "requirements.txt").read_text().split("# --- transitive ---", 1)[0]
    tmp = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            tmp[name.strip()] = version.strip()
    return tmp


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_job_requirements_are_the_apps_direct_requirements_minus_ui_and_tests() -> None:
    direct = {_norm(k): v for k, v in _direct_requirements().items()}
    jobs = {_norm(k): v for k, v in _pins(RUNNER_REQS).items()}
    expected = {k: v for k, v in direct.items() if k not in {_norm(n) for n in NOT_IN_JOBS}}
    assert jobs == expected


def _requires_closure(dists: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(dists)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req:
                continue
            todo.append(_norm(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]))
    return seen


def test_every_import_of_the_job_side_code_is_installed_by_the_job_requirements() -> None:
    files = [ROOT / "stackql_inventory" / "config.py", *(ROOT / "stackql_inventory" / "db").glob("*.py"),
             *(ROOT / "stackql_inventory" / "services").glob("*.py"), *(ROOT / "runner").glob("*.py"),
             ROOT / "infra" / "runner" / "job_entry.py"]
    modules: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m not in ("stackql_inventory", "runner")}
    assert "reflex" not in third_party  # the job container has no UI
    installed = _requires_closure({_norm(n) for n in _pins(RUNNER_REQS)})
    providers = md.packages_distributions()
    missing = {m for m in third_party - JOB_IMPORTS_WITHOUT_REQUIREMENT
               if not {_norm(d) for d in providers.get(m, [])} & installed}
    assert missing == set()


def test_job_entry_refuses_credentials_as_parameters() -> None:
    for setting in ("DATABRICKS_TOKEN=dapi123", "ANTHROPIC_API_KEY=sk-1", "PGPASSWORD=x", "HOME=/tmp",
                    "STACKQL_INVENTORY_AI_SECRET_KEY=k", "NOEQUALS"):
        proc = subprocess.run([sys.executable, str(ROOT / "infra" / "runner" / "job_entry.py"), "--env", setting,
                               "--", "--schedule-id", "1"], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "refusing --env" in proc.stderr, (setting, proc.stderr)
        assert "dapi123" not in proc.stderr and "sk-1" not in proc.stderr


@pytest.fixture(scope="module")
def lakebase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakebaseStandIn]:
    stand_in = LakebaseStandIn(tmp_path_factory.mktemp("lakebase-runner")).start()
    yield stand_in
    stand_in.stop()


def test_job_entry_runs_from_the_synced_files_with_its_settings(lakebase: LakebaseStandIn, tmp_path: Path) -> None:
    """As a serverless task would: the synced files elsewhere, another cwd, settings only as parameters."""
    files = tmp_path / "Workspace" / "Shared" / "stackql-inventory" / "files"
    for rel in ("stackql_inventory", "runner", "alembic", "infra/runner"):
        shutil.copytree(ROOT / rel, files / rel, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "alembic.ini", files / "alembic.ini")
    database = lakebase.fresh_database()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PG", "LAKEBASE_", "DATABRICKS_", "DATABASE_URL", "STACKQL_", "PYTHONPATH"))}
    # The job's own identity: the SDK's default auth (here a PAT for the fake workspace).
    env.update({"DATABRICKS_HOST": lakebase.fake.url, "DATABRICKS_TOKEN": lakebase.fake.token})
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(files / "infra" / "runner" / "job_entry.py"),
         "--env", f"LAKEBASE_ENDPOINT={ENDPOINT}", "--env", f"PGPORT={lakebase.front.port}",
         "--env", f"PGDATABASE={database}", "--module", "stackql_inventory.db.migrate"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "migrations at head" in proc.stderr
    engine = sa.create_engine(lakebase.admin.url.set(database=database))
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM stackql_app.queries")).scalar() == 0  # schema created
    engine.dispose()
    assert not (work / "stackql_inventory").exists()  # ran from the synced files, not the cwd
