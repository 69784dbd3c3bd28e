"""A local fake of the Databricks REST API (SCIM Me, Secrets, Jobs 2.2, Lakebase, Workspace) for the real SDK."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import secrets as _secrets
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_TOKEN = "dapi-fake-app-token"
DEFAULT_USER = "fake-app-sp@example.com"
WORKSPACE_ID = "1234567890123456"

_PERMISSIONS = {"READ": 1, "WRITE": 2, "MANAGE": 3}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_ENDPOINT_RE = re.compile(r"^projects/[^/]+/branches/[^/]+/endpoints/[^/]+$")
_MAX_SECRET_BYTES = 128 * 1024
_MAX_SECRETS_PER_SCOPE = 1000
_TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
_STATUS_FOR_LIFECYCLE = {
    "QUEUED": "QUEUED", "PENDING": "PENDING", "RUNNING": "RUNNING", "TERMINATING": "TERMINATING",
    "TERMINATED": "TERMINATED", "SKIPPED": "TERMINATED", "INTERNAL_ERROR": "TERMINATED",
    "BLOCKED": "BLOCKED", "WAITING_FOR_RETRY": "WAITING",
}
# result_state -> (termination code, termination type) reported in status.termination_details.
_TERMINATION_FOR_RESULT = {
    "SUCCESS": ("SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS"),
    "FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "TIMEDOUT": ("CANCELED", "CLIENT_ERROR"),
    "CANCELED": ("USER_CANCELED", "SUCCESS"),
    "UPSTREAM_FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "INTERNAL_ERROR": ("INTERNAL_ERROR", "INTERNAL_ERROR"),
}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error the fake answers with: HTTP status plus the documented `{error_code, message}` body."""

    def __init__(self, status: int, error_code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {error_code}: {message}")
        self.status, self.error_code, self.message = status, error_code, message
        self.headers = dict(headers or {})


def _bad(message: str, code: str = "INVALID_PARAMETER_VALUE") -> ApiError:
    return ApiError(400, code, message)


def _job_missing(job_id: Any) -> ApiError:
    # The real Jobs API answers a missing job with 400, not 404 (the SDK maps it for jobs/get only).
    return _bad(f"Job {job_id} does not exist.")


def _run_missing(run_id: Any) -> ApiError:
    return _bad(f"Run {run_id} does not exist.")


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    principal: str | None
    raw_body: bytes = b""
    status: int = 0


@dataclass
class Fault:
    """A failure injected by `FakeDatabricks.fail_next`."""

    path_prefix: str
    status: int
    error_code: str
    message: str
    headers: dict[str, str]
    remaining: int | None  # None: every matching request until `clear_faults()`
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (self.method is None or self.method == method)


@dataclass
class FakeState:
    """Everything the fake workspace holds; tests may seed and inspect it (under `fake.lock`)."""

    users: dict[str, dict] = field(default_factory=dict)            # token -> SCIM user + "admin"
    scopes: dict[str, dict] = field(default_factory=dict)           # name -> {backend_type, acls, secrets}
    jobs: dict[int, dict] = field(default_factory=dict)             # job_id -> Job JSON
    runs: dict[int, dict] = field(default_factory=dict)             # run_id -> Run JSON
    idempotency: dict[str, int] = field(default_factory=dict)       # run-now idempotency token -> run_id
    pg_endpoints: dict[str, dict] = field(default_factory=dict)     # endpoint name -> Endpoint JSON
    db_instances: dict[str, dict] = field(default_factory=dict)     # instance name -> DatabaseInstance JSON
    credentials: list[dict] = field(default_factory=list)           # every minted Lakebase credential
    workspace: dict[str, dict] = field(default_factory=dict)        # canonical path -> object (+ "content")


@dataclass
class _Req:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    user: dict
    raw_body: bytes
    content_type: str


class FakeDatabricks:
    """A threaded local HTTP server answering like a Databricks workspace.

    Use as a context manager (or call `start()`/`close()`):

        with FakeDatabricks() as fake:
            w = fake.client()            # the real WorkspaceClient pointed at fake.url
            fake.add_scope("s"); fake.put_secret("s", "k", "v")
            fake.fail_next("/api/2.0/secrets/list", 403, "PERMISSION_DENIED", "nope")
    """

    def __init__(self, *, user_name: str = DEFAULT_USER, token: str = DEFAULT_TOKEN, admin: bool = False):
        self.state = FakeState()
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.token = token
        self._ids = itertools.count(1001)
        self._run_ids = itertools.count(700_001)
        self._token_counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for path in ("/", "/Users", "/Shared"):
            self._add_dir(path)
        self.add_user(token, user_name, admin=admin)

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeDatabricks:
        """Bind to a free localhost port and serve in a daemon thread."""
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fake-databricks", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeDatabricks:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The workspace host to hand to the SDK, e.g. `http://127.0.0.1:54321`."""
        assert self._server is not None, "FakeDatabricks is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client(self, token: str | None = None, *, retry_timeout_s: int = 5):
        """A real `WorkspaceClient` (PAT auth) pointed at this fake."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        return WorkspaceClient(config=Config(host=self.url, token=token or self.token, auth_type="pat",
                                             retry_timeout_seconds=retry_timeout_s))

    # --- identities -----------------------------------------------------------------------------
    def add_user(self, token: str, user_name: str, *, groups: tuple[str, ...] = (), admin: bool = False) -> str:
        """Register a principal reachable with `token`; returns the token."""
        with self.lock:
            uid = str(next(self._ids))
            group_names = list(groups) + (["admins"] if admin else [])
            self.state.users[token] = {
                "id": uid, "userName": user_name, "displayName": user_name, "active": True,
                "emails": [{"value": user_name, "primary": True, "type": "work"}],
                "groups": [{"display": g, "value": f"g-{g}"} for g in group_names],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "admin": admin,
            }
            self._add_dir(f"/Users/{user_name}")
        return token

    def user(self, token: str | None = None) -> dict:
        """The SCIM user for a token (default: the main one)."""
        return self.state.users[token or self.token]

    # --- fault injection ------------------------------------------------------------------------
    def fail_next(self, path_or_prefix: str, status: int, error_code: str = "", message: str = "",
                  headers: dict[str, str] | None = None, *, times: int | None = 1,
                  method: str | None = None) -> Fault:
        """Answer the next `times` requests whose path starts with `path_or_prefix` with an error.

        `times=None` fails every matching request until `clear_faults()`.
        """
        fault = Fault(path_or_prefix, status, error_code, message or f"injected {status}",
                      dict(headers or {}), times, method)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every pending injected failure."""
        with self.lock:
            self.faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    # --- recorded requests ----------------------------------------------------------------------
    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path starts with `path_prefix` (and method, if given)."""
        with self.lock:
            return [r for r in self.requests
                    if r.path.startswith(path_prefix) and (method is None or r.method == method)]

    # --- secrets seeding ------------------------------------------------------------------------
    def add_scope(self, scope: str, *, acls: dict[str, str] | None = None,
                  backend_type: str = "DATABRICKS") -> None:
        """Create a secret scope; `acls` maps principal -> READ|WRITE|MANAGE (default: creator MANAGE)."""
        with self.lock:
            self.state.scopes[scope] = {
                "backend_type": backend_type,
                "acls": dict(acls) if acls is not None else {self.user()["userName"]: "MANAGE"},
                "secrets": {},
            }

    def put_secret(self, scope: str, key: str, value: str | bytes) -> None:
        """Store a secret directly (the scope must exist)."""
        raw = value.encode() if isinstance(value, str) else value
        with self.lock:
            self.state.scopes[scope]["secrets"][key.lower()] = {
                "key": key, "value": raw, "last_updated_timestamp": _now_ms(),
            }

    # --- lakebase seeding -----------------------------------------------------------------------
    def add_postgres_endpoint(self, name: str, host: str | None = None) -> dict:
        """Seed an Autoscaling endpoint `projects/<p>/branches/<b>/endpoints/<e>`."""
        if not _ENDPOINT_RE.match(name):
            raise ValueError(f"not an endpoint name: {name}")
        endpoint_id = name.rsplit("/", 1)[1]
        host = host or f"ep-{endpoint_id}.database.us-west-2.cloud.databricks.com"
        with self.lock:
            ep = {
                "name": name, "endpoint_id": endpoint_id, "parent": name.rsplit("/endpoints/", 1)[0],
                "uid": f"ep-{next(self._ids)}", "create_time": _rfc3339(datetime.now(timezone.utc)),
                "spec": {"endpoint_type": "ENDPOINT_TYPE_READ_WRITE"},
                "status": {
                    "current_state": "ACTIVE", "endpoint_type": "ENDPOINT_TYPE_READ_WRITE",
                    "hosts": {"host": host, "read_write_pooled_host": host.replace("ep-", "ep-pooler-", 1)},
                },
            }
            self.state.pg_endpoints[name] = ep
        return ep

    def add_database_instance(self, name: str, dns: str | None = None) -> dict:
        """Seed a Provisioned Lakebase instance."""
        dns = dns or f"instance-{name}.database.cloud.databricks.com"
        with self.lock:
            inst = {
                "name": name, "uid": f"inst-{next(self._ids)}", "state": "AVAILABLE", "pg_version": "16",
                "capacity": "CU_1", "read_write_dns": dns, "creator": self.user()["userName"],
                "creation_time": _rfc3339(datetime.now(timezone.utc)),
            }
            self.state.db_instances[name] = inst
        return inst

    @property
    def minted_tokens(self) -> list[str]:
        """Every Lakebase token handed out, in order."""
        with self.lock:
            return [c["token"] for c in self.state.credentials]

    # --- workspace ------------------------------------------------------------------------------
    def workspace_file(self, path: str) -> bytes:
        """Content of an imported workspace object."""
        with self.lock:
            return self.state.workspace[_canonical(path)]["content"]

    def _add_dir(self, path: str) -> None:
        path = _canonical(path)
        if path not in self.state.workspace:
            self.state.workspace[path] = {"object_type": "DIRECTORY", "path": path,
                                          "object_id": next(self._ids), "created_at": _now_ms(),
                                          "modified_at": _now_ms()}

    # --- run lifecycle helpers ------------------------------------------------------------------
    def run(self, run_id: int) -> dict:
        """A copy of the stored run."""
        with self.lock:
            return copy.deepcopy(self.state.runs[run_id])

    def trigger_run(self, job_id: int, trigger: str = "PERIODIC") -> int:
        """Start a run as the scheduler would (no API call); returns its run_id."""
        with self.lock:
            if job_id not in self.state.jobs:
                raise KeyError(job_id)
            return self._new_run(self.state.jobs[job_id], trigger=trigger, job_parameters=None,
                                 creator=None)["run_id"]

    def start_run(self, run_id: int) -> None:
        """Move a PENDING or QUEUED run to RUNNING."""
        with self.lock:
            run = self.state.runs[run_id]
            if run["state"]["life_cycle_state"] in _TERMINAL:
                raise ValueError(f"run {run_id} already finished")
            _set_state(run, "RUNNING")

    def finish_run(self, run_id: int, result: str = "SUCCESS", message: str = "", *,
                   code: str | None = None) -> None:
        """Terminate a run with `result` (SUCCESS, FAILED, TIMEDOUT, CANCELED, ...) and a state message."""
        with self.lock:
            run = self.state.runs[run_id]
            if run["state"]["life_cycle_state"] in _TERMINAL:
                raise ValueError(f"run {run_id} already finished")
            # A failed task run shows INTERNAL_ERROR in the deprecated life_cycle_state (measured by
            # databricks/cli's testserver) while status.state is TERMINATED.
            lifecycle = "INTERNAL_ERROR" if result == "FAILED" else "TERMINATED"
            _set_state(run, lifecycle, result=result, message=message, code=code)
            self._promote_queued(run["job_id"])

    # --- internals: runs ------------------------------------------------------------------------
    def _active_runs(self, job_id: int) -> list[dict]:
        return [r for r in self.state.runs.values()
                if r["job_id"] == job_id and r["state"]["life_cycle_state"] not in _TERMINAL
                and r["state"]["life_cycle_state"] != "QUEUED"]

    def _promote_queued(self, job_id: int) -> None:
        job = self.state.jobs.get(job_id)
        if job is None:
            return
        limit = job["settings"].get("max_concurrent_runs", 1)
        queued = sorted((r for r in self.state.runs.values()
                         if r["job_id"] == job_id and r["state"]["life_cycle_state"] == "QUEUED"),
                        key=lambda r: r["run_id"])
        for run in queued:
            if len(self._active_runs(job_id)) >= limit:
                break
            _set_state(run, "PENDING")

    def _new_run(self, job: dict, *, trigger: str, job_parameters: dict | None, creator: str | None) -> dict:
        settings = job["settings"]
        run_id = next(self._run_ids)
        job_id = job["job_id"]
        number = 1 + sum(1 for r in self.state.runs.values() if r["job_id"] == job_id)
        params = {p["name"]: {"name": p["name"], "default": p.get("default", ""), "value": p.get("default", "")}
                  for p in settings.get("parameters", [])}
        for name, value in (job_parameters or {}).items():
            params.setdefault(name, {"name": name})["value"] = value
        run = {
            "job_id": job_id, "run_id": run_id, "number_in_job": number, "original_attempt_run_id": run_id,
            "creator_user_name": creator or job.get("creator_user_name"),
            "run_name": settings.get("name", "Untitled"), "run_type": "JOB_RUN", "trigger": trigger,
            "format": "MULTI_TASK", "start_time": _now_ms(), "end_time": 0,
            "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0, "run_duration": 0,
            "run_page_url": f"{self.url}/?o={WORKSPACE_ID}#job/{job_id}/run/{run_id}",
            "tasks": [{"run_id": next(self._run_ids), "task_key": t["task_key"]}
                      for t in settings.get("tasks", [])],
        }
        if params:
            run["job_parameters"] = sorted(params.values(), key=lambda p: p["name"])
        if settings.get("schedule"):
            run["schedule"] = copy.deepcopy(settings["schedule"])
        limit = settings.get("max_concurrent_runs", 1)
        if len(self._active_runs(job_id)) >= limit:
            if settings.get("queue", {}).get("enabled"):
                _set_state(run, "QUEUED")
                run["status"]["queue_details"] = {
                    "code": "ACTIVE_RUNS_LIMIT_REACHED",
                    "message": "The run is queued because the job reached its maximum concurrent runs.",
                }
            else:
                _set_state(run, "SKIPPED", message=(
                    f"Skipping this run because the limit of {limit} maximum concurrent runs has been reached."),
                    code="MAX_CONCURRENT_RUNS_EXCEEDED", termination_type="CLIENT_ERROR")
        else:
            _set_state(run, "PENDING")
        self.state.runs[run_id] = run
        return run

    # --- request dispatch -----------------------------------------------------------------------
    def _route(self, method: str, path: str) -> Callable[[_Req], Any] | None:
        exact = _ROUTES.get((method, path))
        if exact is not None:
            return lambda req: exact(self, req)
        if method == "GET" and path.startswith("/api/2.0/postgres/projects/"):
            return lambda req: self._pg_get(req, path[len("/api/2.0/postgres/"):])
        if method == "GET" and path.startswith("/api/2.0/database/instances/"):
            return lambda req: self._db_instance_get(req, path[len("/api/2.0/database/instances/"):])
        return None

    def _handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes
                ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        content_type = headers.get("content-type", "")
        body: Any = None
        if raw_body and "json" in content_type:
            try:
                body = json.loads(raw_body)
            except ValueError:
                body = _INVALID_JSON
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        with self.lock:
            user = self.state.users.get(token)
            record = RecordedRequest(method, path, query, None if body is _INVALID_JSON else body,
                                     dict(headers), user["userName"] if user else None, raw_body)
            self.requests.append(record)
        try:
            fault = self._take_fault(method, path)
            if fault is not None:
                raise ApiError(fault.status, fault.error_code, fault.message, fault.headers)
            if path == "/.well-known/databricks-config" and method == "GET":
                result: Any = {}
            else:
                handler = self._route(method, path)
                if handler is None:
                    raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{method} {path}'")
                if user is None:
                    raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")
                if body is _INVALID_JSON:
                    raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request")
                with self.lock:
                    result = handler(_Req(method, path, query, body if body is not None else {}, user,
                                          raw_body, content_type))
            record.status = 200
            return 200, {}, {} if result is None else result
        except ApiError as e:
            record.status = e.status
            error = {"error_code": e.error_code, "message": e.message} if e.error_code else {"message": e.message}
            return e.status, e.headers, error

    # --- SCIM -----------------------------------------------------------------------------------
    def _me(self, req: _Req) -> dict:
        return {k: v for k, v in copy.deepcopy(req.user).items() if k != "admin"}

    # --- secrets --------------------------------------------------------------------------------
    def _scope(self, name: Any) -> dict:
        if not isinstance(name, str) or name not in self.state.scopes:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Scope {name} does not exist!")
        return self.state.scopes[name]

    def _permission(self, user: dict, scope: dict) -> int:
        if user.get("admin"):
            return _PERMISSIONS["MANAGE"]
        principals = {user["userName"], "users"} | {g["display"] for g in user.get("groups", [])}
        return max((_PERMISSIONS[p] for who, p in scope["acls"].items() if who in principals), default=0)

    def _require(self, req: _Req, scope_name: str, needed: str) -> dict:
        scope = self._scope(scope_name)
        if self._permission(req.user, scope) < _PERMISSIONS[needed]:
            raise ApiError(403, "PERMISSION_DENIED",
                           f"User {req.user['userName']} does not have {needed} permission on scope {scope_name}")
        return scope

    def _scopes_create(self, req: _Req) -> None:
        name = req.body.get("scope")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _bad("Scope name must consist of alphanumeric characters, dashes, underscores, and periods, "
                       "and may not exceed 128 characters.")
        if name in self.state.scopes:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Scope {name} already exists!")
        backend = req.body.get("scope_backend_type", "DATABRICKS")
        if backend == "AZURE_KEYVAULT" and not req.body.get("backend_azure_keyvault"):
            raise _bad("Scope with Azure KeyVault must have AzureKeyVaultSecretScopeMetadata defined!")
        manager = req.body.get("initial_manage_principal")
        if manager not in (None, "users"):
            raise _bad("initial_manage_principal can only be 'users'.")
        self.state.scopes[name] = {"backend_type": backend, "acls": {manager or req.user["userName"]: "MANAGE"},
                                   "secrets": {}}

    def _scopes_list(self, req: _Req) -> dict:
        scopes = [{"name": n, "backend_type": s["backend_type"]} for n, s in sorted(self.state.scopes.items())]
        return {"scopes": scopes} if scopes else {}

    def _scopes_delete(self, req: _Req) -> None:
        name = req.body.get("scope")
        self._require(req, name, "MANAGE")
        del self.state.scopes[name]

    def _secrets_put(self, req: _Req) -> None:
        scope = self._require(req, req.body.get("scope"), "WRITE")
        key = req.body.get("key")
        if not isinstance(key, str) or not _NAME_RE.match(key):
            raise _bad("Secret key must consist of alphanumeric characters, dashes, underscores, and periods, "
                       "and may not exceed 128 characters.")
        string_value, bytes_value = req.body.get("string_value"), req.body.get("bytes_value")
        if (string_value is None) == (bytes_value is None):
            raise _bad("Exactly one of string_value and bytes_value must be specified.")
        try:
            raw = string_value.encode() if string_value is not None else base64.b64decode(bytes_value, validate=True)
        except (ValueError, TypeError, AttributeError):
            raise _bad("bytes_value must be base64-encoded.") from None
        if len(raw) > _MAX_SECRET_BYTES:
            raise _bad("Size of the secret value exceeds the limit of 128 KB.")
        if key.lower() not in scope["secrets"] and len(scope["secrets"]) >= _MAX_SECRETS_PER_SCOPE:
            raise ApiError(400, "RESOURCE_LIMIT_EXCEEDED", f"Scope {req.body['scope']} has reached its limit of "
                                                           f"{_MAX_SECRETS_PER_SCOPE} secrets.")
        scope["secrets"][key.lower()] = {"key": key, "value": raw, "last_updated_timestamp": _now_ms()}

    def _secrets_delete(self, req: _Req) -> None:
        scope = self._require(req, req.body.get("scope"), "WRITE")
        key = str(req.body.get("key", ""))
        if key.lower() not in scope["secrets"]:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No secret with key {key} exists in scope "
                                                           f"{req.body.get('scope')}.")
        del scope["secrets"][key.lower()]

    def _secrets_list(self, req: _Req) -> dict:
        scope = self._require(req, req.query.get("scope"), "READ")
        items = [{"key": s["key"], "last_updated_timestamp": s["last_updated_timestamp"]}
                 for _, s in sorted(scope["secrets"].items())]
        return {"secrets": items} if items else {}

    def _secrets_get(self, req: _Req) -> dict:
        scope = self._require(req, req.query.get("scope"), "READ")
        key = req.query.get("key", "")
        secret = scope["secrets"].get(key.lower())
        if secret is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                           f"Failed to get secret {key} for scope {req.query.get('scope')}.")
        return {"key": secret["key"], "value": base64.b64encode(secret["value"]).decode()}

    def _acls_put(self, req: _Req) -> None:
        scope = self._require(req, req.body.get("scope"), "MANAGE")
        principal, permission = req.body.get("principal"), req.body.get("permission")
        if not principal or permission not in _PERMISSIONS:
            raise _bad("Invalid principal or permission; permission must be READ, WRITE or MANAGE.")
        scope["acls"][principal] = permission

    def _acls_delete(self, req: _Req) -> None:
        scope = self._require(req, req.body.get("scope"), "MANAGE")
        principal = req.body.get("principal")
        if principal not in scope["acls"]:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No ACL for principal {principal} on scope "
                                                           f"{req.body.get('scope')}.")
        del scope["acls"][principal]

    def _acls_list(self, req: _Req) -> dict:
        scope = self._require(req, req.query.get("scope"), "MANAGE")
        items = [{"principal": p, "permission": v} for p, v in sorted(scope["acls"].items())]
        return {"items": items} if items else {}

    def _acls_get(self, req: _Req) -> dict:
        scope = self._require(req, req.query.get("scope"), "MANAGE")
        principal = req.query.get("principal")
        if principal not in scope["acls"]:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No ACL for principal {principal} on scope "
                                                           f"{req.query.get('scope')}.")
        return {"principal": principal, "permission": scope["acls"][principal]}

    # --- jobs -----------------------------------------------------------------------------------
    def _job(self, job_id: Any) -> dict:
        if not isinstance(job_id, int) or job_id not in self.state.jobs:
            raise _job_missing(job_id)
        return self.state.jobs[job_id]

    def _jobs_create(self, req: _Req) -> dict:
        settings = {k: copy.deepcopy(v) for k, v in req.body.items() if k not in ("access_control_list",)}
        _validate_settings(settings)
        job_id = next(self._ids)
        self.state.jobs[job_id] = {
            "job_id": job_id, "creator_user_name": req.user["userName"], "run_as_user_name": req.user["userName"],
            "created_time": _now_ms(), "settings": _with_defaults(settings),
        }
        return {"job_id": job_id}

    def _jobs_reset(self, req: _Req) -> None:
        job = self._job(_int(req.body.get("job_id"), "job_id"))
        new_settings = req.body.get("new_settings")
        if not isinstance(new_settings, dict):
            raise _bad("new_settings is required.")
        settings = copy.deepcopy(new_settings)
        _validate_settings(settings)
        job["settings"] = _with_defaults(settings)

    def _jobs_update(self, req: _Req) -> None:
        job = self._job(_int(req.body.get("job_id"), "job_id"))
        settings = copy.deepcopy(job["settings"])
        for name in req.body.get("fields_to_remove", []) or []:
            array, _, key = name.partition("/")
            if key and array in ("tasks", "job_clusters"):
                key_field = "task_key" if array == "tasks" else "job_cluster_key"
                settings[array] = [x for x in settings.get(array, []) if x.get(key_field) != key]
            elif key:
                raise _bad(f"Removing nested field {name} is not supported.")
            else:
                settings.pop(name, None)
        for name, value in (req.body.get("new_settings") or {}).items():
            if name in ("tasks", "job_clusters") and isinstance(value, list):
                key_field = "task_key" if name == "tasks" else "job_cluster_key"
                merged = {x.get(key_field): x for x in settings.get(name, [])}
                for entry in value:
                    merged[entry.get(key_field)] = copy.deepcopy(entry)
                settings[name] = list(merged.values())
            else:
                settings[name] = copy.deepcopy(value)
        _validate_settings(settings)
        job["settings"] = _with_defaults(settings)

    def _jobs_delete(self, req: _Req) -> None:
        job = self._job(_int(req.body.get("job_id"), "job_id"))
        del self.state.jobs[job["job_id"]]

    def _jobs_get(self, req: _Req) -> dict:
        return copy.deepcopy(self._job(_int(req.query.get("job_id"), "job_id")))

    def _jobs_list(self, req: _Req) -> dict:
        limit = _int(req.query.get("limit", "20"), "limit")
        if not 0 <= limit <= 100:
            raise _bad("limit must be between 1 and 100.")
        limit = limit or 20
        jobs = sorted(self.state.jobs.values(), key=lambda j: j["job_id"])
        name = req.query.get("name")
        if name is not None:
            jobs = [j for j in jobs if j["settings"].get("name", "").lower() == name.lower()]
        expand = req.query.get("expand_tasks") == "true"
        start = _offset(req.query)
        page = jobs[start:start + limit]
        out: list[dict] = []
        for job in page:
            item = copy.deepcopy(job)
            if not expand:
                item["settings"].pop("tasks", None)
                item["settings"].pop("job_clusters", None)
            out.append(item)
        return _page(out, "jobs", start, limit, len(jobs))

    def _jobs_run_now(self, req: _Req) -> dict:
        job = self._job(_int(req.body.get("job_id"), "job_id"))
        token = req.body.get("idempotency_token")
        if token and token in self.state.idempotency:
            run_id = self.state.idempotency[token]
            return {"run_id": run_id, "number_in_job": self.state.runs[run_id]["number_in_job"]}
        params = req.body.get("job_parameters")
        if params is not None and not isinstance(params, dict):
            raise _bad("job_parameters must be a map of name to value.")
        run = self._new_run(job, trigger="ONE_TIME", job_parameters=params, creator=req.user["userName"])
        if token:
            self.state.idempotency[token] = run["run_id"]
        return {"run_id": run["run_id"], "number_in_job": run["number_in_job"]}

    def _runs_list(self, req: _Req) -> dict:
        q = req.query
        active, completed = q.get("active_only") == "true", q.get("completed_only") == "true"
        if active and completed:
            raise _bad("active_only and completed_only cannot both be true.")
        limit = _int(q.get("limit", "20"), "limit")
        if not 0 <= limit <= 25:
            raise _bad("limit must be between 1 and 25.")
        limit = limit or 25
        runs = list(self.state.runs.values())
        if "job_id" in q:
            job_id = _int(q["job_id"], "job_id")
            runs = [r for r in runs if r["job_id"] == job_id]
        if active:
            runs = [r for r in runs if r["state"]["life_cycle_state"] not in _TERMINAL]
        if completed:
            runs = [r for r in runs if r["state"]["life_cycle_state"] in _TERMINAL]
        if "start_time_from" in q:
            runs = [r for r in runs if r["start_time"] >= _int(q["start_time_from"], "start_time_from")]
        if "start_time_to" in q:
            runs = [r for r in runs if r["start_time"] <= _int(q["start_time_to"], "start_time_to")]
        if "run_type" in q:
            runs = [r for r in runs if r["run_type"] == q["run_type"]]
        runs.sort(key=lambda r: (r["start_time"], r["run_id"]), reverse=True)
        expand = q.get("expand_tasks") == "true"
        start = _offset(q)
        page = [copy.deepcopy(r) for r in runs[start:start + limit]]
        if not expand:
            for r in page:
                r.pop("tasks", None)
        return _page(page, "runs", start, limit, len(runs))

    def _runs_get(self, req: _Req) -> dict:
        run_id = _int(req.query.get("run_id"), "run_id")
        if run_id not in self.state.runs:
            raise _run_missing(run_id)
        return copy.deepcopy(self.state.runs[run_id])

    def _runs_cancel(self, req: _Req) -> None:
        run_id = _int(req.body.get("run_id"), "run_id")
        run = self.state.runs.get(run_id)
        if run is None:
            raise _run_missing(run_id)
        if run["state"]["life_cycle_state"] not in _TERMINAL:
            _set_state(run, "TERMINATED", result="CANCELED", message="Run cancelled by user.")
            run["state"]["user_cancelled_or_timedout"] = True
            self._promote_queued(run["job_id"])

    # --- lakebase -------------------------------------------------------------------------------
    def _mint(self, req: _Req, api: str, **details: Any) -> str:
        token = f"lbtok-{next(self._token_counter):06d}-{_secrets.token_hex(12)}"
        self.state.credentials.append({"token": token, "api": api, "principal": req.user["userName"], **details})
        return token

    def _pg_credentials(self, req: _Req) -> dict:
        endpoint = req.body.get("endpoint")
        if not isinstance(endpoint, str) or not _ENDPOINT_RE.match(endpoint):
            raise _bad("endpoint must be of the form projects/{project_id}/branches/{branch_id}/endpoints/"
                       "{endpoint_id}.")
        if endpoint not in self.state.pg_endpoints:
            raise ApiError(404, "NOT_FOUND", f"Endpoint {endpoint} not found.")
        now = datetime.now(timezone.utc)
        if "ttl" in req.body and "expire_time" in req.body:
            raise _bad("Only one of ttl and expire_time may be set.")
        if "ttl" in req.body:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(req.body["ttl"]))
            if not m or not 300 <= float(m.group(1)) <= 3600:
                raise _bad("ttl must be between 300s and 3600s.")
            expires = now + timedelta(seconds=float(m.group(1)))
        elif "expire_time" in req.body:
            try:
                expires = datetime.fromisoformat(str(req.body["expire_time"]).replace("Z", "+00:00"))
            except ValueError:
                raise _bad("expire_time must be an RFC 3339 timestamp.") from None
            if not 299 <= (expires - now).total_seconds() <= 3601:
                raise _bad("expire_time must be between 5 minutes and 1 hour from now.")
        else:
            expires = now + timedelta(hours=1)
        token = self._mint(req, "postgres", endpoint=endpoint, expire_time=_rfc3339(expires))
        return {"token": token, "expire_time": _rfc3339(expires)}

    def _db_credentials(self, req: _Req) -> dict:
        names = req.body.get("instance_names")
        if not isinstance(names, list) or not names:
            raise _bad("instance_names must name at least one database instance.")
        for name in names:
            if name not in self.state.db_instances:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Database instance '{name}' does not exist.")
        expires = _rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))
        token = self._mint(req, "database", instance_names=list(names), request_id=req.body.get("request_id"),
                           expire_time=expires)
        return {"token": token, "expiration_time": expires}

    def _pg_get(self, req: _Req, name: str) -> dict:
        if name not in self.state.pg_endpoints:
            raise ApiError(404, "NOT_FOUND", f"Resource {name} not found.")
        return copy.deepcopy(self.state.pg_endpoints[name])

    def _db_instance_get(self, req: _Req, name: str) -> dict:
        if name not in self.state.db_instances:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Database instance '{name}' does not exist.")
        return copy.deepcopy(self.state.db_instances[name])

    # --- workspace ------------------------------------------------------------------------------
    def _ws_mkdirs(self, req: _Req) -> None:
        path = _abs_path(req.body.get("path"))
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            obj = self.state.workspace.get(sub)
            if obj is not None and obj["object_type"] != "DIRECTORY":
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Path ({sub}) already exists and is not a directory.")
        for i in range(1, len(parts) + 1):
            self._add_dir("/" + "/".join(parts[:i]))

    def _ws_import(self, req: _Req) -> None:
        if req.content_type.startswith("multipart/form-data"):
            fields = _multipart(req.content_type, req.raw_body)
            path = fields.get("path", b"").decode()
            fmt = fields.get("format", b"SOURCE").decode()
            language = fields.get("language", b"").decode() or None
            overwrite = fields.get("overwrite", b"false").decode().lower() == "true"
            content = fields.get("content", b"")
        else:
            path, fmt = req.body.get("path"), req.body.get("format", "SOURCE")
            language, overwrite = req.body.get("language"), bool(req.body.get("overwrite", False))
            try:
                content = base64.b64decode(req.body.get("content", ""), validate=True)
            except (ValueError, TypeError):
                raise _bad("content must be base64-encoded.") from None
        path = _abs_path(path)
        if fmt not in ("AUTO", "SOURCE", "RAW", "JUPYTER", "HTML", "DBC", "R_MARKDOWN"):
            raise _bad(f"Invalid format {fmt}.")
        is_notebook_source = content.lstrip().startswith((b"# Databricks notebook source",
                                                          b"-- Databricks notebook source"))
        if fmt == "SOURCE":
            if not language:
                raise _bad("The language field is required when format is SOURCE.")
            object_type = "NOTEBOOK"
        elif fmt == "AUTO":
            object_type = "NOTEBOOK" if is_notebook_source else "FILE"
            if object_type == "NOTEBOOK":
                path = re.sub(r"\.(py|sql|scala|r|ipynb)$", "", path, flags=re.IGNORECASE)
        else:
            object_type = "FILE" if fmt == "RAW" else "NOTEBOOK"
        parent = path.rsplit("/", 1)[0] or "/"
        if self.state.workspace.get(parent, {}).get("object_type") != "DIRECTORY":
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder ({parent}) does not exist.")
        existing = self.state.workspace.get(path)
        if existing is not None and (not overwrite or existing["object_type"] == "DIRECTORY"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"Path ({path}) already exists.")
        obj = {"object_type": object_type, "path": path, "object_id": next(self._ids), "size": len(content),
               "created_at": existing["created_at"] if existing else _now_ms(), "modified_at": _now_ms(),
               "content": content}
        if object_type == "NOTEBOOK":
            obj["language"] = language or "PYTHON"
        self.state.workspace[path] = obj

    def _ws_get_status(self, req: _Req) -> dict:
        requested = req.query.get("path", "")
        obj = self.state.workspace.get(_canonical(requested)) if requested.startswith("/") else None
        if obj is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({requested}) doesn't exist.")
        return {k: v for k, v in obj.items() if k != "content"}


_INVALID_JSON = object()

_ROUTES: dict[tuple[str, str], Callable[[FakeDatabricks, _Req], Any]] = {
    ("GET", "/api/2.0/preview/scim/v2/Me"): FakeDatabricks._me,
    ("POST", "/api/2.0/secrets/scopes/create"): FakeDatabricks._scopes_create,
    ("GET", "/api/2.0/secrets/scopes/list"): FakeDatabricks._scopes_list,
    ("POST", "/api/2.0/secrets/scopes/delete"): FakeDatabricks._scopes_delete,
    ("POST", "/api/2.0/secrets/put"): FakeDatabricks._secrets_put,
    ("POST", "/api/2.0/secrets/delete"): FakeDatabricks._secrets_delete,
    ("GET", "/api/2.0/secrets/list"): FakeDatabricks._secrets_list,
    ("GET", "/api/2.0/secrets/get"): FakeDatabricks._secrets_get,
    ("POST", "/api/2.0/secrets/acls/put"): FakeDatabricks._acls_put,
    ("POST", "/api/2.0/secrets/acls/delete"): FakeDatabricks._acls_delete,
    ("GET", "/api/2.0/secrets/acls/list"): FakeDatabricks._acls_list,
    ("GET", "/api/2.0/secrets/acls/get"): FakeDatabricks._acls_get,
    ("POST", "/api/2.2/jobs/create"): FakeDatabricks._jobs_create,
    ("POST", "/api/2.2/jobs/reset"): FakeDatabricks._jobs_reset,
    ("POST", "/api/2.2/jobs/update"): FakeDatabricks._jobs_update,
    ("POST", "/api/2.2/jobs/delete"): FakeDatabricks._jobs_delete,
    ("GET", "/api/2.2/jobs/get"): FakeDatabricks._jobs_get,
    ("GET", "/api/2.2/jobs/list"): FakeDatabricks._jobs_list,
    ("POST", "/api/2.2/jobs/run-now"): FakeDatabricks._jobs_run_now,
    ("GET", "/api/2.2/jobs/runs/list"): FakeDatabricks._runs_list,
    ("GET", "/api/2.2/jobs/runs/get"): FakeDatabricks._runs_get,
    ("POST", "/api/2.2/jobs/runs/cancel"): FakeDatabricks._runs_cancel,
    ("POST", "/api/2.0/postgres/credentials"): FakeDatabricks._pg_credentials,
    ("POST", "/api/2.0/database/credentials"): FakeDatabricks._db_credentials,
    ("POST", "/api/2.0/workspace/mkdirs"): FakeDatabricks._ws_mkdirs,
    ("POST", "/api/2.0/workspace/import"): FakeDatabricks._ws_import,
    ("GET", "/api/2.0/workspace/get-status"): FakeDatabricks._ws_get_status,
}


class _Handler(BaseHTTPRequestHandler):
    owner: FakeDatabricks
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; avoid the 40 ms delayed-ACK stall

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra_headers, payload = self.owner._handle(self.command, self.path, headers, raw_body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


# --- helpers ------------------------------------------------------------------------------------
def _canonical(path: str) -> str:
    """Workspace paths: `/Workspace/x` and `/x` name the same object."""
    if path == "/Workspace":
        return "/"
    if path.startswith("/Workspace/"):
        path = path[len("/Workspace"):]
    return path.rstrip("/") or "/"


def _abs_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise _bad(f"Path ({path}) must be an absolute path starting with '/'.")
    return _canonical(path)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _bad(f"Invalid value for {name}: {value}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"Invalid value for {name}: {value}") from None


def _offset(query: dict[str, str]) -> int:
    token = query.get("page_token")
    if token:
        try:
            return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise _bad("Invalid page_token.") from None
    return _int(query.get("offset", "0"), "offset")


def _token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _page(items: list[dict], key: str, start: int, limit: int, total: int) -> dict:
    out: dict[str, Any] = {"has_more": start + limit < total}
    if items:
        out[key] = items
    if start + limit < total:
        out["next_page_token"] = _token_for(start + limit)
    if start > 0:
        out["prev_page_token"] = _token_for(max(0, start - limit))
    return out


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = part.get_payload(decode=True) or b""
    return fields


def _set_state(run: dict, lifecycle: str, *, result: str | None = None, message: str = "",
               code: str | None = None, termination_type: str | None = None) -> None:
    state: dict[str, Any] = {"life_cycle_state": lifecycle, "state_message": message,
                             "user_cancelled_or_timedout": False}
    status: dict[str, Any] = {"state": _STATUS_FOR_LIFECYCLE[lifecycle]}
    if result is not None:
        state["result_state"] = result
    if lifecycle in _TERMINAL:
        default_code, default_type = _TERMINATION_FOR_RESULT.get(result or "", ("SUCCESS", "SUCCESS"))
        status["termination_details"] = {"code": code or default_code,
                                         "type": termination_type or default_type, "message": message}
        run["end_time"] = max(_now_ms(), run["start_time"] + 1)
        run["run_duration"] = run["end_time"] - run["start_time"]
        run["execution_duration"] = run["run_duration"]
    run["state"] = state
    run["status"] = status
    for task in run.get("tasks", []):
        task["state"] = dict(state)
        task["status"] = copy.deepcopy(status)


def _with_defaults(settings: dict) -> dict:
    """Server-side defaults the real API fills in and returns from jobs/get."""
    settings.setdefault("name", "Untitled")
    settings.setdefault("max_concurrent_runs", 1)
    settings.setdefault("timeout_seconds", 0)
    settings.setdefault("email_notifications", {})
    settings.setdefault("format", "MULTI_TASK")
    for task in settings.get("tasks", []):
        task.setdefault("run_if", "ALL_SUCCESS")
        task.setdefault("timeout_seconds", 0)
    return settings


_DOW_NAMES = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}


def validate_quartz(expr: Any) -> str | None:
    """Why a Quartz cron expression is invalid, or None. Covers the rules the Jobs service enforces.

    Fields: sec min hour day-of-month month day-of-week [year]; exactly one of DOM/DOW is `?`;
    day-of-week values 1-7 or SUN-SAT.
    """
    if not isinstance(expr, str):
        return "quartz_cron_expression is required."
    fields = expr.split()
    if len(fields) not in (6, 7):
        return f"Expected 6 or 7 fields in a Quartz cron expression, got {len(fields)}."
    token_re = re.compile(r"^[0-9A-Za-z*?/,\-#LW]+$")
    for f in fields:
        if not token_re.match(f):
            return f"Illegal characters in '{f}'."
    for i, f in enumerate(fields):
        if "?" in f and (i not in (3, 5) or f != "?"):
            return "'?' can only be specified for Day-of-Month or Day-of-Week."
    dom, dow = fields[3], fields[5]
    if dom != "?" and dow != "?":
        return "Support for specifying both a day-of-week AND a day-of-month parameter is not implemented."
    if dom == "?" and dow == "?":
        return "'?' can only be specified for Day-of-Month -OR- Day-of-Week."
    if dow != "?":
        for token in re.split(r"[,\-/#]", dow.upper().rstrip("L")):
            if token in ("", "*") or token in _DOW_NAMES:
                continue
            if not token.isdigit() or not 1 <= int(token) <= 7:
                return "Day-of-Week values must be between 1 and 7."
    return None


_CLUSTER_FIELDS = ("existing_cluster_id", "new_cluster", "job_cluster_key")
_SERVERLESS_NEEDS_ENV = ("spark_python_task", "python_wheel_task", "dbt_task")


def _validate_settings(settings: dict) -> None:
    """Reject job settings the Jobs service would reject (the subset this app can produce)."""
    schedule = settings.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, dict):
            raise _bad("schedule must be an object.")
        problem = validate_quartz(schedule.get("quartz_cron_expression"))
        if problem:
            raise _bad(f"Invalid quartz_cron_expression '{schedule.get('quartz_cron_expression')}': {problem}")
        tz = schedule.get("timezone_id")
        try:
            zoneinfo.ZoneInfo(tz) if isinstance(tz, str) and tz else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = None
        if not tz:
            raise _bad(f"Invalid timezone_id '{schedule.get('timezone_id')}'.")
        if schedule.get("pause_status", "UNPAUSED") not in ("PAUSED", "UNPAUSED"):
            raise _bad("pause_status must be PAUSED or UNPAUSED.")
        if settings.get("continuous") or settings.get("trigger"):
            raise _bad("A job can have only one of schedule, continuous and trigger.")
    mcr = settings.get("max_concurrent_runs", 1)
    if not isinstance(mcr, int) or not 0 <= mcr <= 1000:
        raise _bad("max_concurrent_runs must be between 0 and 1000.")
    env_keys: set[str] = set()
    for env in settings.get("environments", []) or []:
        key = env.get("environment_key")
        if not key or key in env_keys:
            raise _bad(f"environment_key '{key}' must be set and unique.")
        spec = env.get("spec") or {}
        if not (spec.get("environment_version") or spec.get("client")):
            raise _bad(f"Environment '{key}' must set spec.environment_version.")
        env_keys.add(key)
    param_names = [p.get("name") for p in settings.get("parameters", []) or []]
    if any(not n for n in param_names) or len(set(param_names)) != len(param_names):
        raise _bad("Job parameter names must be set and unique.")
    tasks = settings.get("tasks", []) or []
    keys = [t.get("task_key") for t in tasks]
    if any(not k or not re.match(r"^[\w\-.]{1,100}$", k) for k in keys):
        raise _bad("Every task needs a task_key of letters, digits, '-', '_' or '.' (at most 100).")
    if len(set(keys)) != len(keys):
        raise _bad("Task keys must be unique.")
    for task in tasks:
        kinds = [k for k in task if k.endswith("_task")]
        if len(kinds) != 1:
            raise _bad(f"Task {task['task_key']} must define exactly one task type.")
        for dep in task.get("depends_on", []) or []:
            if dep.get("task_key") not in keys:
                raise _bad(f"Task {task['task_key']} depends on unknown task {dep.get('task_key')}.")
        serverless = not any(task.get(f) for f in _CLUSTER_FIELDS)
        if serverless and kinds[0] in _SERVERLESS_NEEDS_ENV:
            env_key = task.get("environment_key")
            if not env_key:
                raise _bad(f"Task {task['task_key']} runs on serverless compute and needs an environment_key.")
            if env_key not in env_keys:
                raise _bad(f"Task {task['task_key']} refers to environment_key '{env_key}', which is not "
                           "defined in environments.")
