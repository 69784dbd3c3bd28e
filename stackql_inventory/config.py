"""Settings: the only module that reads the process environment (and `.env`)."""

from __future__ import annotations

import functools
import getpass
import os
from enum import Enum
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Backend(str, Enum):
    """Where secrets live and how schedules run."""

    LOCAL = "local"
    DATABRICKS = "databricks"


# Variables a child process (stackql, the runner) may inherit from the app's own environment.
# Everything else, provider credentials above all, is handed to a child explicitly. Public: a provider
# credential mapping must not name one of these (services/providers.py refuses them).
CHILD_ENV_PASSTHROUGH: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
)


def _env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, *more)


class Settings(BaseSettings):
    """Every setting of the app, read from the environment and `.env` (environment wins)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
        case_sensitive=True,
    )

    # --- local state and database -------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=lambda: Path.home() / ".stackql-inventory",
        validation_alias=_env("STACKQL_INVENTORY_DATA_DIR"),
    )
    database_url: SecretStr | None = Field(None, validation_alias=_env("DATABASE_URL"))
    pghost: str | None = Field(None, validation_alias=_env("PGHOST"))
    pgport: int = Field(5432, validation_alias=_env("PGPORT"))
    pgdatabase: str | None = Field(None, validation_alias=_env("PGDATABASE"))
    pguser: str | None = Field(None, validation_alias=_env("PGUSER"))
    pgsslmode: str = Field("require", validation_alias=_env("PGSSLMODE"))
    pgappname: str = Field("stackql-inventory", validation_alias=_env("PGAPPNAME"))
    lakebase_instance: str | None = Field(None, validation_alias=_env("LAKEBASE_INSTANCE"))
    lakebase_endpoint: str | None = Field(None, validation_alias=_env("LAKEBASE_ENDPOINT"))
    # Seconds a pooled Lakebase connection lives; tokens last an hour and are checked only at login.
    db_pool_recycle_s: int = Field(2700, validation_alias=_env("STACKQL_INVENTORY_DB_POOL_RECYCLE"))

    # --- stackql -------------------------------------------------------------------------------
    stackql_download_dir_raw: Path | None = Field(None, validation_alias=_env("STACKQL_DOWNLOAD_DIR"))
    row_limit: int = Field(100_000, ge=1, validation_alias=_env("STACKQL_INVENTORY_ROW_LIMIT"))
    query_timeout_s: float = Field(300.0, gt=0, validation_alias=_env("STACKQL_INVENTORY_QUERY_TIMEOUT"))
    # IDE results held server-side (services/result_store.py): memory cap for all sessions, and
    # results kept per browser session (the oldest go first).
    result_cache_mb: int = Field(1024, ge=16, validation_alias=_env("STACKQL_INVENTORY_RESULT_CACHE_MB"))
    results_per_session: int = Field(3, ge=1, le=50, validation_alias=_env("STACKQL_INVENTORY_RESULTS_PER_SESSION"))
    # IDE runs kept in the history per user (0: every run is kept).
    history_keep: int = Field(0, ge=0, validation_alias=_env("STACKQL_INVENTORY_HISTORY_KEEP"))
    # How long pystackql may take to provision (download) the binary before we give up.
    stackql_install_timeout_s: float = Field(
        120.0, gt=0, validation_alias=_env("STACKQL_INVENTORY_INSTALL_TIMEOUT")
    )

    # --- backends ------------------------------------------------------------------------------
    secrets_backend_raw: Backend | None = Field(
        None, validation_alias=_env("STACKQL_INVENTORY_SECRETS_BACKEND")
    )
    jobs_backend_raw: Backend | None = Field(None, validation_alias=_env("STACKQL_INVENTORY_JOBS_BACKEND"))
    secret_scope: str = Field("stackql-inventory", validation_alias=_env("STACKQL_INVENTORY_SECRET_SCOPE"))
    max_concurrent_runs: int = Field(2, ge=1, validation_alias=_env("STACKQL_INVENTORY_MAX_CONCURRENT_RUNS"))
    scheduler_enabled: bool = Field(True, validation_alias=_env("STACKQL_INVENTORY_SCHEDULER"))
    # Comma-separated users (email or name) or groups (`group:<name>`) allowed to write; "*" means everyone.
    editors: str = Field("*", validation_alias=_env("STACKQL_INVENTORY_EDITORS"))

    # --- AI ------------------------------------------------------------------------------------
    anthropic_api_key: SecretStr | None = Field(None, validation_alias=_env("ANTHROPIC_API_KEY"))
    anthropic_base_url: str | None = Field(None, validation_alias=_env("ANTHROPIC_BASE_URL"))
    ai_model: str = Field("claude-sonnet-5-5", validation_alias=_env("STACKQL_INVENTORY_AI_MODEL"))
    # Key, in the default secret scope, that may hold the Anthropic API key.
    ai_secret_key: str = Field("anthropic-api-key", validation_alias=_env("STACKQL_INVENTORY_AI_SECRET_KEY"))

    # --- Databricks ----------------------------------------------------------------------------
    databricks_host: str | None = Field(None, validation_alias=_env("DATABRICKS_HOST"))
    databricks_token: SecretStr | None = Field(None, validation_alias=_env("DATABRICKS_TOKEN"))
    databricks_client_id: str | None = Field(None, validation_alias=_env("DATABRICKS_CLIENT_ID"))
    databricks_client_secret: SecretStr | None = Field(
        None, validation_alias=_env("DATABRICKS_CLIENT_SECRET")
    )
    # How long the SDK keeps retrying throttled (429/503) or unreachable calls; its own default is 300 s,
    # far too long for a page waiting on the answer.
    databricks_retry_timeout_s: int = Field(
        60, ge=1, validation_alias=_env("STACKQL_INVENTORY_DATABRICKS_RETRY_TIMEOUT")
    )
    databricks_app_name: str | None = Field(None, validation_alias=_env("DATABRICKS_APP_NAME"))
    databricks_app_port: int | None = Field(None, validation_alias=_env("DATABRICKS_APP_PORT"))
    port: int | None = Field(None, validation_alias=_env("PORT"))
    # Where Databricks jobs find the runner (a workspace file or volume path), and its dependencies.
    runner_python_file: str | None = Field(None, validation_alias=_env("STACKQL_INVENTORY_RUNNER_FILE"))
    runner_dependencies: str = Field("", validation_alias=_env("STACKQL_INVENTORY_RUNNER_DEPENDENCIES"))

    log_level: str = Field("INFO", validation_alias=_env("STACKQL_INVENTORY_LOG_LEVEL"))

    # --- derived -------------------------------------------------------------------------------
    @property
    def on_databricks(self) -> bool:
        """True when running as a Databricks App."""
        return bool(self.databricks_app_name)

    @property
    def secrets_backend(self) -> Backend:
        return self.secrets_backend_raw or (Backend.DATABRICKS if self.on_databricks else Backend.LOCAL)

    @property
    def jobs_backend(self) -> Backend:
        return self.jobs_backend_raw or (Backend.DATABRICKS if self.on_databricks else Backend.LOCAL)

    @property
    def stackql_download_dir(self) -> Path:
        return self.stackql_download_dir_raw or self.data_dir / "stackql"

    @property
    def stackql_approot(self) -> Path:
        """stackql's own state (installed providers, caches): the --approot of every stackql child."""
        return self.data_dir / "stackql-approot"

    @property
    def uses_lakebase(self) -> bool:
        """PGHOST (an app's database resource) or a Lakebase endpoint/instance alone (a job), without DATABASE_URL."""
        return self.database_url is None and bool(self.pghost or self.lakebase_endpoint or self.lakebase_instance)

    @property
    def uses_embedded_db(self) -> bool:
        return self.database_url is None and not self.uses_lakebase

    @property
    def serve_port(self) -> int:
        """The one port production serves on: $DATABRICKS_APP_PORT, else $PORT, else 3000."""
        return self.databricks_app_port or self.port or 3000

    @property
    def editor_set(self) -> frozenset[str]:
        return frozenset(p.strip().lower() for p in self.editors.split(",") if p.strip())


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call `get_settings.cache_clear()`)."""
    return Settings()


def child_base_env() -> dict[str, str]:
    """The minimal environment a stackql child process starts from (no app secrets)."""
    return {k: v for k, v in os.environ.items() if k in CHILD_ENV_PASSTHROUGH}


# Secrets only the app process itself uses: a runner child does not get them.
APP_ONLY_ENV = frozenset({"ANTHROPIC_API_KEY"})


def runner_env() -> dict[str, str]:
    """The environment for a runner child: this process's, without what only the app uses (the Anthropic key)."""
    return {k: v for k, v in os.environ.items() if k not in APP_ONLY_ENV}


def process_env() -> dict[str, str]:
    """A copy of this process's environment, for children running our own code (the runner)."""
    return dict(os.environ)


def local_user() -> str:
    """The OS user, the identity when no proxy header names one."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "local-user"
