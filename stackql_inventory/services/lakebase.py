"""Lakebase (Databricks-managed Postgres) logins: OAuth tokens minted per new connection, and connect params."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied, Unauthenticated
from google.protobuf.duration_pb2 import Duration

from stackql_inventory.config import Settings
from stackql_inventory.services.databricks_client import sdk_error_to_user_facing
from stackql_inventory.services.errors import ErrorKind, UserFacingError

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "databricks_postgres"
TOKEN_LIFETIME_S = 3600.0  # what Lakebase documents; used when a response carries no expiry
_ENDPOINT_RE = re.compile(r"projects/[^/]+/branches/[^/]+/endpoints/[^/]+")
_STRICT_SSLMODES = ("require", "verify-ca", "verify-full")


class LakebaseCredentials:
    """Mints Lakebase OAuth tokens through databricks-sdk, to use as the Postgres password.

    Autoscaling (`endpoint`, `w.postgres`) wins over Provisioned (`instance`, `w.database`) when both are
    set. Lakebase checks a token only at login, so each new connection gets a fresh one from
    `password()`; `cached_password()` reuses the last token while it has more than `refresh_margin_s` left.
    """

    def __init__(self, client: WorkspaceClient, endpoint: str | None = None, instance: str | None = None, *,
                 refresh_margin_s: float = 300.0, ttl_s: int | None = None,
                 clock: Callable[[], float] = time.time):
        if not endpoint and not instance:
            raise UserFacingError(
                "Lakebase is not configured. Set LAKEBASE_ENDPOINT (projects/<p>/branches/<b>/endpoints/<e>) or "
                "LAKEBASE_INSTANCE, then restart the app.",
                ErrorKind.CONFIG,
            )
        if endpoint and not _ENDPOINT_RE.fullmatch(endpoint):
            raise UserFacingError(
                f"LAKEBASE_ENDPOINT {endpoint!r} is not an endpoint name. Use "
                "projects/<project>/branches/<branch>/endpoints/<endpoint>, then restart the app.",
                ErrorKind.CONFIG,
            )
        if ttl_s is not None and not 300 <= ttl_s <= 3600:
            raise UserFacingError("The Lakebase token lifetime must be 300-3600 s.", ErrorKind.CONFIG)
        self._client = client
        self.endpoint = endpoint or None
        self.instance = None if endpoint else instance
        self.refresh_margin_s = refresh_margin_s
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[str, float] | None = None  # (token, expires at epoch s)

    @classmethod
    def from_settings(cls, settings: Settings, client: WorkspaceClient, **kwargs) -> LakebaseCredentials:
        """Credentials for `settings.lakebase_endpoint` / `settings.lakebase_instance`."""
        return cls(client, endpoint=settings.lakebase_endpoint, instance=settings.lakebase_instance, **kwargs)

    def __repr__(self) -> str:
        return f"LakebaseCredentials({self.target})"

    @property
    def target(self) -> str:
        """What tokens are minted for, for messages: "endpoint '…'" or "instance '…'"."""
        return f"endpoint '{self.endpoint}'" if self.endpoint else f"instance '{self.instance}'"

    def password(self) -> str:
        """A freshly minted token (call once per new connection)."""
        token, expires_at = self._mint()
        with self._lock:
            self._last = (token, expires_at)
        return token

    def cached_password(self) -> str:
        """The last token if it is valid for more than `refresh_margin_s`, else a freshly minted one."""
        with self._lock:
            last = self._last
        if last is not None and last[1] - self._clock() > self.refresh_margin_s:
            return last[0]
        return self.password()

    @property
    def expires_at(self) -> float | None:
        """When the last minted token expires (epoch seconds), or None before the first."""
        with self._lock:
            return self._last[1] if self._last else None

    def _mint(self) -> tuple[str, float]:
        started = self._clock()
        try:
            if self.endpoint:
                kwargs = {}
                if self.ttl_s is not None:
                    kwargs["ttl"] = Duration(seconds=self.ttl_s)
                cred = self._client.postgres.generate_database_credential(endpoint=self.endpoint, **kwargs)
                expires = cred.expire_time.ToDatetime(tzinfo=timezone.utc) if cred.expire_time else None
            else:
                cred = self._client.database.generate_database_credential(
                    instance_names=[self.instance], request_id=str(uuid.uuid4()))
                expires = _parse_time(cred.expiration_time)
        except Exception as e:  # noqa: BLE001 - every SDK failure becomes a DATABASE error
            raise self._error(e) from None
        if not cred.token:
            raise UserFacingError(
                f"Databricks returned no Lakebase token for {self.target}. Retry; if it keeps happening, check "
                "the Lakebase status in the workspace.",
                ErrorKind.DATABASE,
            )
        expires_at = expires.timestamp() if expires else started + TOKEN_LIFETIME_S
        logger.info("lakebase_token_minted target=%s expires_in_s=%d", self.target, expires_at - started)
        return cred.token, expires_at

    def _error(self, exc: BaseException) -> UserFacingError:
        env = "LAKEBASE_ENDPOINT" if self.endpoint else "LAKEBASE_INSTANCE"
        if isinstance(exc, UserFacingError):
            return UserFacingError(exc.message, ErrorKind.DATABASE, detail=exc.detail)
        if isinstance(exc, NotFound):
            return UserFacingError(
                f"Could not get a Lakebase login: {self.target} does not exist. Check {env}, then restart the app.",
                ErrorKind.DATABASE, detail=str(exc))
        if isinstance(exc, PermissionDenied):
            return UserFacingError(
                f"Could not get a Lakebase login for {self.target}: the app's Databricks identity may not generate "
                "database credentials for it. Add the database to the app as a resource with "
                "CAN_CONNECT_AND_CREATE (or grant the identity access), then retry.",
                ErrorKind.DATABASE, detail=str(exc))
        if isinstance(exc, Unauthenticated):
            return UserFacingError(
                f"Could not get a Lakebase login for {self.target}: Databricks rejected the app's credentials. "
                "Check DATABRICKS_HOST and the app's token or client id and secret, then retry.",
                ErrorKind.DATABASE, detail=str(exc))
        base = sdk_error_to_user_facing(exc, f"Lakebase {self.target}")
        return UserFacingError(f"Could not get a Lakebase login. {base.message}", ErrorKind.DATABASE,
                               detail=base.detail)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def lakebase_connect_params(settings: Settings, client: WorkspaceClient | None) -> dict:
    """libpq keyword arguments (no password) for Lakebase: host, port, dbname, user, sslmode, application_name.

    PG* settings (set by a Databricks App's database resource) win; otherwise the host comes from the
    endpoint or instance and the user is the app identity's user name (its role in Postgres). `client` may
    be None only when PGHOST and PGUSER are both set (nothing to look up).
    """
    host = settings.pghost or _lookup_host(settings, client)
    user = settings.pguser
    if not user:
        try:
            user = client.current_user.me().user_name
        except Exception as e:  # noqa: BLE001
            base = sdk_error_to_user_facing(e, "the app's Databricks identity")
            raise UserFacingError(f"Could not find the Lakebase user name. {base.message} Or set PGUSER.",
                                  ErrorKind.DATABASE, detail=base.detail) from None
    # Lakebase refuses unencrypted connections; never weaken that, whatever PGSSLMODE says.
    sslmode = settings.pgsslmode if settings.pgsslmode in _STRICT_SSLMODES else "require"
    return {
        "host": host,
        "port": settings.pgport,
        "dbname": settings.pgdatabase or DEFAULT_DATABASE,
        "user": user,
        "sslmode": sslmode,
        "application_name": settings.pgappname,
    }


def _lookup_host(settings: Settings, client: WorkspaceClient) -> str:
    endpoint, instance = settings.lakebase_endpoint, settings.lakebase_instance
    if not endpoint and not instance:
        raise UserFacingError(
            "The Lakebase host is unknown. Set PGHOST, or LAKEBASE_ENDPOINT or LAKEBASE_INSTANCE, then restart "
            "the app.",
            ErrorKind.CONFIG,
        )
    target = f"endpoint '{endpoint}'" if endpoint else f"instance '{instance}'"
    try:
        if endpoint:
            ep = client.postgres.get_endpoint(name=endpoint)
            host = ep.status.hosts.host if ep.status and ep.status.hosts else None
        else:
            host = client.database.get_database_instance(name=instance).read_write_dns
    except Exception as e:  # noqa: BLE001
        base = sdk_error_to_user_facing(e, f"Lakebase {target}")
        raise UserFacingError(f"Could not look up the Lakebase host. {base.message}", ErrorKind.DATABASE,
                              detail=base.detail) from None
    if not host:
        raise UserFacingError(
            f"Lakebase {target} has no host yet (is it still starting?). Wait a minute, then retry, or set PGHOST.",
            ErrorKind.DATABASE,
        )
    return host
