"""Catalog of providers, services, resources, columns and methods: stackql meta-commands, cached with a TTL."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.process_default import ProcessDefault

if TYPE_CHECKING:
    from stackql_inventory.services.engine import QueryResult

# Provider, service and resource names as stackql registries spell them; anything else is refused
# before it reaches a meta-command, so a name can never inject SQL.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")


@dataclass(frozen=True)
class ProviderInfo:
    """An installed provider (SHOW PROVIDERS)."""

    name: str
    version: str


@dataclass(frozen=True)
class ServiceInfo:
    """A service of a provider (SHOW SERVICES IN p)."""

    id: str
    name: str
    title: str


@dataclass(frozen=True)
class ResourceInfo:
    """A resource of a service (SHOW EXTENDED RESOURCES IN p.s); `id` is its `p.s.r` name."""

    name: str
    id: str
    description: str


@dataclass(frozen=True)
class ColumnInfo:
    """A column of a resource (DESCRIBE EXTENDED p.s.r)."""

    name: str
    type: str
    description: str


@dataclass(frozen=True)
class MethodInfo:
    """A method of a resource (SHOW METHODS IN p.s.r)."""

    name: str
    required_params: tuple[str, ...]
    sql_verb: str


@dataclass(frozen=True)
class RegistryEntry:
    """A provider available in the registry (REGISTRY LIST)."""

    provider: str
    versions: tuple[str, ...]


@dataclass(frozen=True)
class SearchHit:
    """A catalog entry whose name or description matches a search."""

    kind: str  # provider | service | resource
    name: str  # p, p.s or p.s.r
    description: str


def check_name(value: str, what: str) -> str:
    """`value` if it is a valid provider/service/resource name, else a VALIDATION error."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = str(value)[:64]
        raise UserFacingError(
            f"'{shown}' is not a valid {what} name: use letters, digits and underscores (e.g. aws, ec2, instances).",
            ErrorKind.VALIDATION)
    return value


def parse_fqn(fqn: str) -> tuple[str, str, str]:
    """Split and validate `provider.service.resource`."""
    parts = fqn.split(".") if isinstance(fqn, str) else []
    if len(parts) != 3:
        raise UserFacingError(
            f"'{str(fqn)[:64]}' is not a resource name: write provider.service.resource (e.g. aws.ec2.instances).",
            ErrorKind.VALIDATION)
    return (check_name(parts[0], "provider"), check_name(parts[1], "service"), check_name(parts[2], "resource"))


def _records(result: QueryResult) -> list[dict[str, str]]:
    return [{c: ("" if v is None else v) for c, v in zip(result.columns, row)} for row in result.rows]


class Catalog:
    """Cached answers to stackql's meta-commands; `execute(statement)` runs one statement.

    Entries expire after `ttl_s`; pull() and invalidate() drop them all.
    """

    def __init__(self, execute: Callable[[str], QueryResult], ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self._execute = execute
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = load()
        with self._lock:
            self._cache[key] = (self._clock() + self.ttl_s, value)
        return value

    def invalidate(self) -> None:
        """Forget every cached answer."""
        with self._lock:
            self._cache.clear()

    # ---------------------------------------------------------------- meta-commands
    def providers(self) -> list[ProviderInfo]:
        """Installed providers (SHOW PROVIDERS)."""
        return self._cached(("providers",), lambda: [
            ProviderInfo(r["name"], r.get("version", "")) for r in _records(self._execute("SHOW PROVIDERS"))])

    def is_installed(self, provider: str) -> bool:
        """Whether `provider` is installed; a cached "no" is checked again (another process may have installed it)."""
        if any(p.name == provider for p in self.providers()):
            return True
        with self._lock:
            self._cache.pop(("providers",), None)
        return any(p.name == provider for p in self.providers())

    def services(self, provider: str) -> list[ServiceInfo]:
        """Services of a provider (SHOW SERVICES IN p); installs the provider on first use."""
        p = check_name(provider, "provider")
        return self._cached(("services", p), lambda: [
            ServiceInfo(r.get("id", ""), r["name"], r.get("title", ""))
            for r in _records(self._execute(f"SHOW SERVICES IN {p}"))])

    def resources(self, provider: str, service: str) -> list[ResourceInfo]:
        """Resources of a service with descriptions (SHOW EXTENDED RESOURCES IN p.s)."""
        p, s = check_name(provider, "provider"), check_name(service, "service")
        return self._cached(("resources", p, s), lambda: [
            ResourceInfo(r["name"], r.get("id") or f"{p}.{s}.{r['name']}", r.get("description", ""))
            for r in _records(self._execute(f"SHOW EXTENDED RESOURCES IN {p}.{s}"))])

    def columns(self, fqn: str) -> list[ColumnInfo]:
        """Columns of a resource in DESCRIBE order (DESCRIBE EXTENDED p.s.r)."""
        p, s, r = parse_fqn(fqn)
        return self._cached(("columns", p, s, r), lambda: [
            ColumnInfo(row["name"], row.get("type", ""), row.get("description", ""))
            for row in _records(self._execute(f"DESCRIBE EXTENDED {p}.{s}.{r}"))])

    def methods(self, fqn: str) -> list[MethodInfo]:
        """Methods of a resource with their required parameters (SHOW METHODS IN p.s.r)."""
        p, s, r = parse_fqn(fqn)
        return self._cached(("methods", p, s, r), lambda: [
            MethodInfo(row["MethodName"],
                       tuple(x.strip() for x in row.get("RequiredParams", "").split(",") if x.strip()),
                       row.get("SQLVerb", "").upper())
            for row in _records(self._execute(f"SHOW METHODS IN {p}.{s}.{r}"))])

    def required_params(self, fqn: str) -> list[str]:
        """The parameters a SELECT on `fqn` needs: those of its SELECT method needing the fewest."""
        selects = [m for m in self.methods(fqn) if m.sql_verb == "SELECT"]
        if not selects:
            return []
        return list(min(selects, key=lambda m: len(m.required_params)).required_params)

    def registry_list(self, provider: str | None = None) -> list[RegistryEntry]:
        """Providers available in the registry (REGISTRY LIST [p]); with a provider, all its versions."""
        if provider is None:
            return self._cached(("registry",), lambda: [
                RegistryEntry(r["provider"], (r["version"],) if r.get("version") else ())
                for r in _records(self._execute("REGISTRY LIST"))])
        p = check_name(provider, "provider")
        return self._cached(("registry", p), lambda: [
            RegistryEntry(r["provider"], tuple(v.strip() for v in r.get("versions", "").split(",") if v.strip()))
            for r in _records(self._execute(f"REGISTRY LIST {p}"))])

    def pull(self, provider: str, version: str | None = None) -> str:
        """Install (or change the version of) a provider (REGISTRY PULL); returns stackql's message."""
        p = check_name(provider, "provider")
        statement = f"REGISTRY PULL {p}"
        if version is not None:
            if not isinstance(version, str) or not _VERSION.fullmatch(version):
                raise UserFacingError(
                    f"'{str(version)[:64]}' is not a valid provider version (e.g. v24.07.00246).", ErrorKind.VALIDATION)
            statement += f" '{version}'"
        result = self._execute(statement)
        self.invalidate()
        return "\n".join(result.messages) or f"{p} provider pulled."

    # ---------------------------------------------------------------- search
    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Providers, services and resources whose name (or description) contains `text`.

        Cheap by design: it looks at installed providers and at whatever services/resources are
        already cached (the schema browser fills the cache as it is expanded); it runs no other query.
        """
        needle = (text or "").strip().lower()
        if not needle:
            return []
        hits: list[tuple[int, SearchHit]] = []

        def consider(kind: str, name: str, label: str, description: str) -> None:
            low = label.lower()
            if low == needle:
                rank = 0
            elif low.startswith(needle):
                rank = 1
            elif needle in low or needle in name.lower():
                rank = 2
            elif needle in description.lower():
                rank = 3
            else:
                return
            hits.append((rank, SearchHit(kind, name, description)))

        for prov in self.providers():
            consider("provider", prov.name, prov.name, "")
        with self._lock:
            cached = list(self._cache.items())
        for key, (_expires, value) in cached:
            if key[0] == "services":
                for svc in value:
                    consider("service", f"{key[1]}.{svc.name}", svc.name, svc.title)
            elif key[0] == "resources":
                for res in value:
                    consider("resource", res.id, res.name, res.description)
        hits.sort(key=lambda h: (h[0], h[1].name))
        return [h for _rank, h in hits[:limit]]


# ============================================================================ process-wide default


def _build_default() -> Catalog:
    from stackql_inventory.services import engine

    limits = engine.QueryLimits(row_limit=None, timeout_s=60.0)
    return Catalog(lambda q: engine.run(q, None, limits, mode=engine.Mode.INTERACTIVE))


_default: ProcessDefault[Catalog] = ProcessDefault(_build_default)


def get_catalog() -> Catalog:
    """The process-wide catalog, answered by the engine's warm interactive server."""
    return _default.get()


def reset() -> None:
    """Forget the process-wide catalog (after a settings change, and in tests)."""
    _default.reset()
