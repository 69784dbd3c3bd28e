"""Configuration: every contract variable exists with its default, and is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stackql_inventory.config import Backend, Settings

ROOT = Path(__file__).resolve().parents[1]

# DESIGN.md's configuration contract.
CONTRACT = [
    "STACKQL_INVENTORY_DATA_DIR", "DATABASE_URL", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER",
    "LAKEBASE_INSTANCE", "LAKEBASE_ENDPOINT", "STACKQL_DOWNLOAD_DIR", "STACKQL_INVENTORY_SECRETS_BACKEND",
    "STACKQL_INVENTORY_JOBS_BACKEND", "STACKQL_INVENTORY_SECRET_SCOPE", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
    "STACKQL_INVENTORY_AI_MODEL", "DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET", "DATABRICKS_APP_PORT",
]


def settings_vars() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(getattr(alias, "choices", [alias]))
    return {n for n in names if isinstance(n, str)}


def test_every_contract_variable_is_a_setting() -> None:
    assert set(CONTRACT) <= settings_vars()


@pytest.mark.parametrize("var", sorted(settings_vars()))
def test_every_setting_is_in_the_readme_table(var: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^\|\s*`{var}`", readme, re.M), f"{var} missing from README's configuration table"


def test_app_yaml_mentions_only_known_variables() -> None:
    app = yaml.safe_load((ROOT / "app.yaml").read_text())
    names = {e["name"] for e in app.get("env", [])}
    assert names <= settings_vars() | {"REFLEX_TELEMETRY_ENABLED", "REFLEX_CHECK_LATEST_VERSION", "PYTHONUNBUFFERED"}


def test_defaults(tmp_path: Path) -> None:
    s = Settings(_env_file=None)
    assert s.secret_scope == "stackql-inventory"
    assert s.secrets_backend is Backend.LOCAL and s.jobs_backend is Backend.LOCAL
    assert s.serve_port == 3000
    assert s.uses_embedded_db and not s.uses_lakebase
    assert s.stackql_download_dir == s.data_dir / "stackql"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 3000),
        ({"PORT": "8080"}, 8080),
        ({"PORT": "8080", "DATABRICKS_APP_PORT": "8000"}, 8000),
    ],
)
def test_serve_port_precedence(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: int) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert Settings(_env_file=None).serve_port == expected


def test_backends_default_to_databricks_inside_an_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_APP_NAME", "inventory")
    s = Settings(_env_file=None)
    assert s.secrets_backend is Backend.DATABRICKS and s.jobs_backend is Backend.DATABRICKS
    monkeypatch.setenv("STACKQL_INVENTORY_JOBS_BACKEND", "local")
    assert Settings(_env_file=None).jobs_backend is Backend.LOCAL


def test_invalid_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKQL_INVENTORY_SECRETS_BACKEND", "vault")
    with pytest.raises(ValueError, match="STACKQL_INVENTORY_SECRETS_BACKEND"):
        Settings(_env_file=None)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STACKQL_INVENTORY_SECRET_SCOPE=from-dotenv\nSTACKQL_INVENTORY_AI_MODEL=dotenv-model\n")
    monkeypatch.setenv("STACKQL_INVENTORY_AI_MODEL", "env-model")
    s = Settings(_env_file=env_file)
    assert s.secret_scope == "from-dotenv"
    assert s.ai_model == "env-model"


def test_lakebase_is_chosen_by_pghost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "instance.database.cloud.databricks.com")
    s = Settings(_env_file=None)
    assert s.uses_lakebase and not s.uses_embedded_db
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    s = Settings(_env_file=None)
    assert not s.uses_lakebase and not s.uses_embedded_db


def test_runner_children_get_the_apps_environment_without_the_anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from stackql_inventory.config import runner_env
    from stackql_inventory.services import scheduler

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-only-for-the-app")
    monkeypatch.setenv("STACKQL_INVENTORY_SECRET_SCOPE", "inv")
    env = runner_env()
    assert "ANTHROPIC_API_KEY" not in env and env["STACKQL_INVENTORY_SECRET_SCOPE"] == "inv"
    assert "sk-ant-only-for-the-app" not in scheduler.Scheduler.env_factory().values()
