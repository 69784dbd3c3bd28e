#!/usr/bin/env python3
"""Stand-in for the `stackql` binary: its CLI and `srv` contract over fixture data in SQLite (stdlib only)."""

# It honours the contract in /work/shared/reference/stackql.md (sections 2 and 4.2), not whatever
# the engine happens to send: cobra-style flags, stdout/stderr/exit-code rules, Go-style JSON
# (keys sorted, values as strings), meta-commands with their documented columns, provider auth
# through env vars (renamed by --auth), auto-installed providers under --approot, and `srv` over
# the Postgres wire protocol (simple and extended query protocols, cancel requests).
#
# Test hooks: the `synthetic` provider (bulk rows, cancellable sleep, env inspection) and, when
# `<dir of the invoked executable>/fake-stackql.record` exists, one JSON line per invocation
# appended to `<same dir>/invocations.jsonl` (argv, env var names, sha256 of credential values).

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CATALOGUE_PATH = os.path.join(HERE, "stackql_catalogue.json")
RECORD_FLAG = "fake-stackql.record"
RECORD_FILE = "invocations.jsonl"
SELF_ENV = "FAKE_STACKQL_BIN"  # set by the sh wrapper (tests/fakes/install.py): the invoked path

_catalogue = None


def catalogue():
    global _catalogue
    if _catalogue is None:
        with open(CATALOGUE_PATH, encoding="utf-8") as f:
            _catalogue = json.load(f)
    return _catalogue


def providers():
    return catalogue()["providers"]


# ============================================================================ errors


class CliError(Exception):
    """A cobra/config error: printed to stderr, exit code 1."""


class QueryError(Exception):
    """A query error: one stderr line (srv: ErrorResponse), exit code 0."""


class Cancelled(Exception):
    """The running query was cancelled (srv CancelRequest)."""


# ============================================================================ flags

STRING_FLAGS = {
    "output": "o", "outfile": "f", "infile": "i", "delimiter": "d", "iqldata": "q", "var": None,
    "auth": None, "registry": None, "sqlBackend": None, "approot": None, "configfile": None,
    "export.alias": None, "dbInternal": None, "namespaces": None, "gc": None, "store.txn": None,
    "http.proxy.host": None, "http.proxy.user": None, "http.proxy.password": None,
    "http.proxy.scheme": None, "tls.CABundle": None, "loglevel": None, "errorpresentation": None,
    "env.file": None, "pgsrv.address": None, "pgsrv.loglevel": None, "pgsrv.tls": None,
    "session": None, "mcp.server.type": None, "mcp.config": None,
}
INT_FLAGS = {
    "apirequesttimeout", "http.response.maxResults", "http.response.pageLimit", "http.proxy.port",
    "execution.concurrency.limit", "dataflow.dependency.max", "dataflow.components.max",
    "indirect.depth.max", "pgsrv.port",
}
BOOL_FLAGS = {
    "hideheaders": "H", "offline": None, "dryrun": None, "verbose": "v", "http.log.enabled": None,
    "tls.allowInsecure": None, "TestWithoutAPICalls": None, "pgsrv.debug.enable": None,
    "help": "h", "version": None,
}
SHORT = {}
for _name, _short in list(STRING_FLAGS.items()) + list(BOOL_FLAGS.items()):
    if _short:
        SHORT[_short] = _name
OUTPUTS = {"json", "jsonl", "ndjson", "csv", "text", "table", "pptext"}

USAGE = """Usage:
  stackql [command]

Available Commands:
  exec        Run one or more stackql commands or queries
  registry    Interact with a provider registry
  shell       Interactive shell for running stackql commands
  srv         run a stackql server over the postgres wire protocol

Flags:
      --approot string     Application config and cache root path
      --auth string        auth contexts keyed by provider name, JSON/YAML
  -o, --output string      output format, one of 'csv', 'json', 'jsonl', 'table', 'text' (default "table")
      --registry string    openapi registry context, JSON/YAML
      --sqlBackend string  SQL backend config, JSON/YAML
      --version            print the version
"""


def _parse_bool(name, val):
    low = val.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise CliError('invalid argument "%s" for "--%s" flag: strconv.ParseBool: parsing "%s": invalid syntax'
                   % (val, name, val))


def _set_flag(flags, name, val):
    if name in INT_FLAGS:
        try:
            int(val, 10)
        except ValueError:
            raise CliError('invalid argument "%s" for "--%s" flag: strconv.ParseInt: parsing "%s": invalid syntax'
                           % (val, name, val))
    if name == "var":
        flags.setdefault("var", []).append(val)
    else:
        flags[name] = val


def parse_args(args):
    """pflag semantics: flags anywhere, `--f v` / `--f=v` / `-o v` / `-ov`, `--` ends flags."""
    flags, positionals = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            positionals.extend(args[i + 1:])
            break
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            if not name or name[0] in "-=":
                raise CliError("bad flag syntax: %s" % a)
            if name in BOOL_FLAGS:
                flags[name] = _parse_bool(name, val) if eq else True
            elif name in STRING_FLAGS or name in INT_FLAGS:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise CliError("flag needs an argument: --%s" % name)
                    val = args[i]
                _set_flag(flags, name, val)
            else:
                raise CliError("unknown flag: --%s" % name)
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                name = SHORT.get(c)
                if name is None:
                    raise CliError("unknown shorthand flag: '%s' in %s" % (c, a))
                if name in BOOL_FLAGS:
                    flags[name] = True
                    j += 1
                    continue
                rest = a[j + 1:]
                if rest.startswith("="):
                    rest = rest[1:]
                if not rest:
                    i += 1
                    if i >= len(args):
                        raise CliError("flag needs an argument: '%s' in -%s" % (c, c))
                    rest = args[i]
                _set_flag(flags, name, rest)
                break
        else:
            positionals.append(a)
        i += 1
    return flags, positionals


def _load_config_json(flag, text):
    # stackql reads these as YAML; JSON (a subset of YAML) is all the stand-in understands.
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise CliError("error unmarshalling %s: %s" % (flag, e))
    if not isinstance(obj, dict):
        raise CliError("error unmarshalling %s: cannot unmarshal %s into a map" % (flag, type(obj).__name__))
    return obj


def validate_config(flags):
    auth = {}
    if "auth" in flags:
        auth = _load_config_json("auth", flags["auth"])
        for prov, ctx in auth.items():
            if not isinstance(ctx, dict):
                raise CliError("error unmarshalling auth: provider %r: expected an object" % prov)
    if "registry" in flags:
        _load_config_json("registry", flags["registry"])
    if "sqlBackend" in flags:
        backend = _load_config_json("sqlBackend", flags["sqlBackend"])
        engine = backend.get("dbEngine", "sqlite3_embedded")
        if engine not in ("sqlite3_embedded", "postgres_tcp", "snowflake_tcp"):
            raise CliError("error: unsupported dbEngine '%s'" % engine)
        if engine != "sqlite3_embedded":
            raise CliError("error: dbEngine '%s' is not available in the stackql stand-in" % engine)
    out = flags.get("output", "table")
    if out not in OUTPUTS:
        raise CliError("error: output format '%s' is not supported" % out)
    return auth


# ============================================================================ invocation record

_CRED_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def auth_env_names(ctx):
    names = []
    for k, v in ctx.items():
        if isinstance(v, str):
            if re.search(r"(envvar|env_var|_var)$", k, re.I):
                names.append(v)
            names.extend(re.findall(r"__env__(\w+)", v))
    return names


def credential_names(auth):
    names = set()
    for prov in providers().values():
        names.update(auth_env_names(prov["auth"]))
    names.update(("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AWS_SESSION_TOKEN"))
    for ctx in auth.values():
        if isinstance(ctx, dict):
            names.update(auth_env_names(ctx))
    return names


def record_invocation(argv, auth):
    invoked = os.environ.get(SELF_ENV) or sys.argv[0]
    d = os.path.dirname(os.path.abspath(invoked))
    if not os.path.exists(os.path.join(d, RECORD_FLAG)):
        return
    env_names = sorted(k for k in os.environ if k != SELF_ENV)
    creds = credential_names(auth)
    hashes = {k: hashlib.sha256(os.environ[k].encode("utf-8", "surrogateescape")).hexdigest()
              for k in env_names if k in creds or _CRED_NAME.search(k)}
    line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "time": time.time(), "argv": argv,
                       "env_names": env_names, "credential_sha256": hashes}) + "\n"
    fd = os.open(os.path.join(d, RECORD_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


# ============================================================================ SQL tokens

_TOKEN_RE = re.compile(r"""
 (?P<ws>\s+)
|(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
|(?P<string>'(?:[^']|'')*'?)
|(?P<dquote>"(?:[^"]|"")*"?)
|(?P<bquote>`(?:[^`]|``)*`?)
|(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
|(?P<param>\$\d+)
|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
|(?P<op><>|!=|<=|>=|==|\|\||.)
""", re.S | re.X)


class Tok:
    __slots__ = ("kind", "text", "pos", "value")

    def __init__(self, kind, text, pos, value=None):
        self.kind, self.text, self.pos = kind, text, pos
        self.value = value if value is not None else text

    @property
    def upper(self):
        return self.text.upper() if self.kind == "word" else None

    def __repr__(self):
        return "Tok(%s,%r)" % (self.kind, self.text)


def tokenize(sql):
    toks = []
    for m in _TOKEN_RE.finditer(sql):
        kind, text = m.lastgroup, m.group()
        value = None
        if kind == "dquote":
            value = text[1:-1].replace('""', '"') if len(text) > 1 and text.endswith('"') else text[1:]
        elif kind == "bquote":
            value = text[1:-1].replace("``", "`") if len(text) > 1 and text.endswith("`") else text[1:]
        elif kind == "string":
            value = text[1:-1].replace("''", "'") if len(text) > 1 and text.endswith("'") else text[1:]
        toks.append(Tok(kind, text, m.start(), value))
    return toks


def significant(toks):
    return [t for t in toks if t.kind not in ("ws", "comment")]


def split_statements(sql):
    out, cur = [], []
    for t in tokenize(sql):
        if t.kind == "op" and t.text == ";":
            out.append("".join(x.text for x in cur))
            cur = []
        else:
            cur.append(t)
    out.append("".join(x.text for x in cur))
    return [s for s in out if significant(tokenize(s))]


def is_ident(t):
    return t.kind in ("word", "dquote", "bquote")


KEYWORDS = {
    "WHERE", "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "OUTER", "CROSS", "NATURAL", "ON", "USING",
    "GROUP", "ORDER", "LIMIT", "OFFSET", "UNION", "INTERSECT", "EXCEPT", "HAVING", "WINDOW", "AS",
    "SET", "VALUES", "SELECT", "FROM", "AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "BETWEEN",
    "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT", "ALL", "INTO", "RETURNING",
}


# ============================================================================ installed providers (approot)


class Approot:
    def __init__(self, path):
        self.path = os.path.abspath(path or os.path.join(os.getcwd(), ".stackql"))

    def _src(self):
        return os.path.join(self.path, "src")

    def installed(self):
        found = {}
        src = self._src()
        if not os.path.isdir(src):
            return found
        for prov in sorted(os.listdir(src)):
            vdir = os.path.join(src, prov)
            if not os.path.isdir(vdir):
                continue
            versions = sorted(v for v in os.listdir(vdir) if os.path.exists(os.path.join(vdir, v, "provider.yaml")))
            if versions:
                found[prov] = versions[-1]
        return found

    def install(self, prov, version):
        vdir = os.path.join(self._src(), prov)
        if os.path.isdir(vdir):
            for old in os.listdir(vdir):
                if old != version:
                    p = os.path.join(vdir, old, "provider.yaml")
                    if os.path.exists(p):
                        os.remove(p)
        target = os.path.join(vdir, version)
        os.makedirs(target, exist_ok=True)
        tmp = os.path.join(target, "provider.yaml.%d" % os.getpid())
        with open(tmp, "w") as f:
            f.write("id: %s\nname: %s\nversion: %s\n" % (prov, prov, version))
        os.replace(tmp, os.path.join(target, "provider.yaml"))

    def ensure(self, prov):
        """Providers auto-install (latest version) on first use."""
        if prov not in self.installed():
            self.install(prov, providers()[prov]["versions"][-1])


# ============================================================================ results


def _sqlite_text(v):
    """A value as SQLite's `v || ''` renders it (what stackql's Go driver hands back as a string)."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        s = "%.15g" % v
        if "inf" in s or "nan" in s:
            return s
        if "e" in s:
            mant, exp = s.split("e")
            if "." not in mant:
                mant += ".0"
            return mant + "e" + exp
        if "." not in s:
            s += ".0"
        return s
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def _json_line(names, row):
    obj = {}
    for n, v in zip(names, row):
        obj[n] = _sqlite_text(v)  # duplicate names: the last one wins, as in a Go map
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def _quote_lit(text):
    return "'" + text.replace("'", "''") + "'"


class Result:
    """A statement's outcome: rows (select order) and/or messages for stderr."""

    def __init__(self, columns=None, rows=None, messages=(), tag=None, db=None, sql=None, session=None):
        self.columns = columns  # None: no result set
        self._rows = rows  # list of tuples (meta results)
        self.messages = list(messages)
        self.tag = tag
        self._db, self._sql, self._session = db, sql, session

    def _wrappable(self):
        low = [c.lower() for c in self.columns]
        return self._db is not None and all(self.columns) and len(set(low)) == len(low)

    def _iter_sql(self, sql):
        if self._session is not None:
            self._session.busy = True
        cur = self._db.execute(sql)
        try:
            while True:
                rows = cur.fetchmany(2000)
                if not rows:
                    return
                if self._session is not None and self._session.cancel_event.is_set():
                    raise Cancelled()
                yield rows
        except sqlite3.OperationalError as e:
            if self._session is not None and self._session.cancel_event.is_set():
                raise Cancelled()
            if "user-defined function raised exception" in str(e):
                raise QueryError(SYNTHETIC_FAILURE)
            raise QueryError(str(e))
        finally:
            cur.close()
            if self._session is not None:
                self._session.busy = False

    def text_rows(self):
        """Chunks of tuples of str | None in select order."""
        if self._db is None:
            yield [tuple(_sqlite_text(v) for v in r) for r in self._rows]
            return
        if self._wrappable():
            sql = "SELECT " + ", ".join("%s||''" % _quote_ident(c) for c in self.columns) + " FROM (" + self._sql + ")"
            try:
                self._db.execute("EXPLAIN " + sql).close()
            except sqlite3.Error:
                sql = None
            if sql:
                yield from self._iter_sql(sql)
                return
        for rows in self._iter_sql(self._sql):
            yield [tuple(_sqlite_text(v) for v in r) for r in rows]

    def json_lines(self):
        """Chunks of JSON object texts, keys sorted like Go's encoding of a map."""
        if self._db is None:
            yield [_json_line(self.columns, r) for r in self._rows]
            return
        if self._wrappable():
            pairs = ", ".join("%s, %s||''" % (_quote_lit(c), _quote_ident(c)) for c in sorted(self.columns))
            sql = "SELECT json_object(" + pairs + ") FROM (" + self._sql + ")"
            try:
                self._db.execute("EXPLAIN " + sql).close()
            except sqlite3.Error:
                sql = None
            if sql:
                for rows in self._iter_sql(sql):
                    yield [r[0] for r in rows]
                return
        names = self.columns
        for rows in self._iter_sql(self._sql):
            yield [_json_line(names, r) for r in rows]


# ============================================================================ the executor

_AFFINITY = {"integer": "INTEGER", "number": "REAL"}
MISSING_PARAMS = ("cannot find matching operation, possible causes include missing required parameters or an "
                  "unsupported method for the resource, to find required parameters for supported methods run "
                  "SHOW METHODS IN %s: cannot resolve Method")


def _iso(ts=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts if ts is not None else time.time()))


def _split_part(s, delim, n):
    if s is None or delim is None or n is None:
        return None
    parts = str(s).split(str(delim))
    n = int(n)
    try:
        return parts[n - 1] if n > 0 else parts[n] if n < 0 else None
    except IndexError:
        return ""


def _fail(i):
    raise RuntimeError("synthetic failure at row %s" % i)


BAD_REQUEST = 'http response status code: 400, response body: {"message":"%s"}'
SYNTHETIC_FAILURE = 'http response status code: 503, response body: {"message":"synthetic failure while paging"}'


class Session:
    """One query context (a process for exec, a connection for srv) with its own SQLite database."""

    def __init__(self, approot, auth, command):
        self.approot = approot
        self.auth = auth
        self.command = command
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.db.create_function("split_part", 3, _split_part)
        self.db.create_function("fake_fail", 1, _fail)
        self.static_tables = set()
        self.cancel_event = threading.Event()
        self.busy = False  # True while SQLite works for the current statement

    # ---------------------------------------------------------------- entry point
    def execute(self, stmt):
        try:
            return self._execute(stmt)
        except sqlite3.Error as e:
            if self.cancel_event.is_set():
                raise Cancelled()
            raise QueryError(self._sqlite_message(e, stmt))

    def interrupt(self):
        """Cancel the running query (srv CancelRequest): wake a sleeper and interrupt SQLite if it is busy."""
        self.cancel_event.set()
        if self.db.in_transaction or self.busy:
            self.db.interrupt()

    def _execute(self, stmt):
        sig = significant(tokenize(stmt))
        if not sig:
            return Result(tag="EMPTY")
        first = sig[0].upper or ""
        parenthesised = sig[0].text == "(" and len(sig) > 1 and sig[1].upper in ("SELECT", "WITH")
        if first in ("SELECT", "WITH", "VALUES") or parenthesised:
            return self._select(stmt)
        if first in ("SHOW", "DESCRIBE", "DESC", "REGISTRY"):
            return self._meta(stmt, sig)
        if first in ("INSERT", "UPDATE", "DELETE", "EXEC", "REPLACE"):
            return self._mutation(stmt)
        if first in ("BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SET", "RESET", "DISCARD", "DEALLOCATE"):
            return Result(tag={"START": "START TRANSACTION", "END": "COMMIT"}.get(first, first))
        raise QueryError("syntax error at position %d near '%s'" % (len(sig[0].text) + 1, sig[0].text.lower()))

    # ---------------------------------------------------------------- credentials
    def _auth_ctx(self, prov):
        default = providers()[prov]["auth"]
        ctx = self.auth.get(prov)
        if not ctx:
            return default
        if not auth_env_names(ctx) and ctx.get("type") == default.get("type") and "credentialsfilepath" not in ctx:
            return default
        return ctx

    def check_credentials(self, prov):
        ctx = self._auth_ctx(prov)
        typ = ctx.get("type", "")
        if typ == "null_auth":
            return
        if "credentialsfilepath" in ctx and not os.path.exists(str(ctx["credentialsfilepath"])):
            raise QueryError("open %s: no such file or directory" % ctx["credentialsfilepath"])
        names = auth_env_names(ctx)
        if typ == "azure_default" and not names:
            names = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]
        for name in names:
            if not os.environ.get(name):
                raise QueryError(
                    'http response status code: 401, response body: {"error":"unauthorized","message":'
                    '"%s auth (%s): environment variable %s is not set"}' % (prov, typ, name))

    # ---------------------------------------------------------------- tables
    def _lookup(self, parts):
        p, s, r = parts
        prov = providers().get(p)
        if prov is None:
            raise QueryError("could not locate provider '%s'" % p)
        res = prov["services"].get(s, {}).get("resources", {}).get(r)
        if res is None:
            raise QueryError("could not locate table '%s.%s.%s'" % (p, s, r))
        return res

    def _resolve_tables(self, toks):
        """Replace provider.service.resource chains by one 'table' token; returns (tokens, refs)."""
        out, refs = [], []
        i, n = 0, len(toks)
        prev_sig = None
        while i < n:
            t = toks[i]
            if is_ident(t):
                parts, j = [t.value], i + 1
                while j + 1 < n and toks[j].kind == "op" and toks[j].text == "." and is_ident(toks[j + 1]):
                    parts.append(toks[j + 1].value)
                    j += 2
                table_position = prev_sig in ("FROM", "JOIN", "INTO", "UPDATE") and len(parts) == 3
                if len(parts) >= 3 and (parts[0] in providers() or table_position):
                    fqn = ".".join(parts[:3])
                    self._lookup(parts[:3])
                    text = _quote_ident(fqn) + "".join("." + _quote_ident(x) for x in parts[3:])
                    tok = Tok("table", text, t.pos, fqn)
                    out.append(tok)
                    refs.append(fqn)
                    prev_sig = None
                    i = j
                    continue
            out.append(t)
            if t.kind not in ("ws", "comment"):
                prev_sig = t.upper if t.kind == "word" else t.text
            i += 1
        return out, refs

    def _create_static(self, fqn, res):
        if fqn in self.static_tables:
            return
        cols = res["columns"]
        ddl = "CREATE TABLE %s (%s)" % (_quote_ident(fqn), ", ".join(
            "%s %s" % (_quote_ident(c[0]), _AFFINITY.get(c[1], "TEXT")) for c in cols))
        self.db.execute(ddl)
        if res.get("rows"):
            marks = ", ".join("?" * len(cols))
            self.db.executemany("INSERT INTO %s VALUES (%s)" % (_quote_ident(fqn), marks), res["rows"])
        self.static_tables.add(fqn)

    # ---------------------------------------------------------------- predicates
    @staticmethod
    def _literal(sig, k):
        if k >= len(sig):
            return None
        t = sig[k]
        if t.kind == "string":
            return t.value
        if t.kind == "number":
            return t.text
        if t.kind == "op" and t.text == "-" and k + 1 < len(sig) and sig[k + 1].kind == "number":
            return "-" + sig[k + 1].text
        return None

    def _predicates(self, sig):
        """[(qualifier | None, name_lower, [literal values])] for `[q.]name = lit` and `[q.]name IN (lits)`."""
        preds = []
        n = len(sig)
        for i, t in enumerate(sig):
            if not is_ident(t) or (t.kind == "word" and t.upper in KEYWORDS):
                continue
            if i + 1 < n and sig[i + 1].kind == "op" and sig[i + 1].text == ".":
                continue
            qual = None
            dotted = i >= 2 and sig[i - 1].kind == "op" and sig[i - 1].text == "."
            if dotted and (is_ident(sig[i - 2]) or sig[i - 2].kind == "table"):
                qual = sig[i - 2].value
            nxt = sig[i + 1] if i + 1 < n else None
            if nxt is None:
                continue
            vals = []
            if nxt.kind == "op" and nxt.text in ("=", "=="):
                v = self._literal(sig, i + 2)
                if v is None:
                    continue
                vals = [v]
            elif nxt.upper == "IN" and i + 2 < n and sig[i + 2].text == "(":
                k = i + 3
                while k < n and sig[k].text != ")":
                    v = self._literal(sig, k)
                    if v is not None:
                        vals.append(v)
                    k += 1
                if not vals:
                    continue
            else:
                continue
            preds.append((qual, t.value.lower(), vals))
        return preds

    @staticmethod
    def _aliases(sig):
        """{fqn: {names that qualify it}}."""
        names = {}
        for i, t in enumerate(sig):
            if t.kind != "table":
                continue
            quals = names.setdefault(t.value, {t.value})
            k = i + 1
            if k < len(sig) and sig[k].upper == "AS":
                k += 1
            if k < len(sig) and is_ident(sig[k]) and not (sig[k].kind == "word" and sig[k].upper in KEYWORDS):
                quals.add(sig[k].value)
        return names

    # ---------------------------------------------------------------- SELECT
    def _select(self, stmt):
        toks, refs = self._resolve_tables(tokenize(stmt))
        sig = significant(toks)
        preds = self._predicates(sig)
        quals = self._aliases(sig)
        for fqn in dict.fromkeys(refs):
            prov = fqn.split(".")[0]
            self.approot.ensure(prov)
            self.check_credentials(prov)
        for fqn in dict.fromkeys(refs):
            res = self._lookup(fqn.split("."))
            q = quals.get(fqn, {fqn})
            values = {}
            for qual, name, vals in preds:
                if qual is None or qual in q:
                    values.setdefault(name, vals)
            methods = [m for m in res["methods"] if m[2] == "SELECT"]
            if not any(all(p.lower() in values for p in m[1]) for m in methods):
                raise QueryError(MISSING_PARAMS % fqn)
            gen = res.get("generator")
            if gen:
                getattr(self, "_gen_" + gen)(fqn, values)
            else:
                self._create_static(fqn, res)
        sql = "".join(t.text for t in toks)
        try:
            self.busy = True
            cur = self.db.execute(sql)
            names = [d[0] for d in cur.description] if cur.description else []
            cur.close()
        except sqlite3.Error as e:
            if self.cancel_event.is_set():
                raise Cancelled()
            if "user-defined function raised exception" in str(e):
                raise QueryError(SYNTHETIC_FAILURE)
            raise QueryError(self._sqlite_message(e, stmt))
        finally:
            self.busy = False
        return Result(columns=names, db=self.db, sql=sql, session=self, tag="SELECT")

    @staticmethod
    def _sqlite_message(e, stmt):
        msg = str(e)
        m = re.match(r'near "(.*)": syntax error', msg)
        if m:
            pos = stmt.find(m.group(1))
            where = pos + len(m.group(1)) + 1 if pos >= 0 else 0
            return "syntax error at position %d near '%s'" % (where, m.group(1).lower())
        if msg == "incomplete input":
            return "syntax error at position %d near 'EOF'" % (len(stmt) + 1)
        return msg

    # ---------------------------------------------------------------- synthetic generators
    def _temp_rows(self, fqn, columns, rows):
        self._temp(fqn, "CREATE TEMP TABLE %s (%s)" % (_quote_ident(fqn), columns))
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.db.executemany("INSERT INTO temp.%s VALUES (%s)" % (_quote_ident(fqn), marks), rows)

    def _temp(self, fqn, ddl):
        for (kind,) in self.db.execute("SELECT type FROM sqlite_temp_master WHERE name = ?", (fqn,)).fetchall():
            self.db.execute("DROP %s temp.%s" % ("VIEW" if kind == "view" else "TABLE", _quote_ident(fqn)))
        self.db.execute(ddl)

    @staticmethod
    def _int_param(values, name, default=None, lo=0, hi=50_000_000):
        raw = values.get(name, [default])[0]
        try:
            v = int(float(raw))
        except (TypeError, ValueError):
            raise QueryError(BAD_REQUEST % ("%s must be an integer" % name))
        if not lo <= v <= hi:
            raise QueryError(BAD_REQUEST % ("%s must be between %d and %d" % (name, lo, hi)))
        return v

    def _gen_bulk(self, fqn, values):
        count = self._int_param(values, "count")
        seed = self._int_param(values, "seed", 0, -(2 ** 31), 2 ** 31)
        fail_at = self._int_param(values, "fail_at", -1, -1)
        self._temp(fqn, """CREATE TEMP VIEW %s AS WITH RECURSIVE seq(i) AS (
  SELECT 0 WHERE %d > 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < %d)
SELECT CASE WHEN %d >= 0 AND i >= %d THEN fake_fail(i) ELSE printf('item-%%07d', i) END AS item_id,
  'Item ' || i || ' ' || char(65 + ((i + %d) %% 26)) AS name,
  CASE (i + %d) %% 4 WHEN 0 THEN 'compute' WHEN 1 THEN 'storage' WHEN 2 THEN 'network' ELSE 'database' END AS category,
  (i * 7919 + %d * 104729 + 13) %% 1000 AS quantity,
  ((i * 104729 + %d * 7) %% 100000) / 100.0 AS price,
  CASE WHEN i %% 17 = 0 THEN NULL ELSE ((i * 31 + %d) %% 5000) / 100.0 + 0.5 END AS weight_kg,
  CASE (i + %d) %% 3 WHEN 0 THEN 'false' ELSE 'true' END AS is_active,
  CASE i %% 5 WHEN 0 THEN 'false' ELSE 'true' END AS in_stock,
  strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', 1700000000 + i * 37, 'unixepoch') AS created_at,
  strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', 1700000000 + i * 37 + 86400 + (i %% 7) * 3600, 'unixepoch') AS updated_at,
  json_object('zone', 'zone-' || (i %% 3), 'rank', i %% 100, 'labels', json_array('a', 'b' || (i %% 2))) AS attributes,
  json_array('t' || (i %% 7), 't' || (i %% 11)) AS tags,
  CAST(%d AS INTEGER) AS count, CAST(%d AS INTEGER) AS seed, CAST(%s AS INTEGER) AS fail_at
FROM seq""" % (_quote_ident(fqn), count, count, fail_at, fail_at, seed, seed, seed, seed, seed, seed, count, seed,
               fail_at if fail_at >= 0 else "NULL"))

    def _gen_sleep(self, fqn, values):
        raw = values["seconds"][0]
        try:
            seconds = float(raw)
        except ValueError:
            raise QueryError(BAD_REQUEST % "seconds must be a number")
        if not 0 <= seconds <= 3600:
            raise QueryError(BAD_REQUEST % "seconds must be between 0 and 3600")
        started = time.time()
        if self.cancel_event.wait(seconds):
            raise Cancelled()
        self._temp_rows(fqn, "seconds REAL, started_at TEXT, finished_at TEXT, pid INTEGER",
                        [(seconds, _iso(started), _iso(), os.getpid())])

    def _gen_credentials(self, fqn, values):
        rows = []
        for spec in values["names"]:
            for name in [x.strip() for x in spec.split(",") if x.strip()]:
                val = os.environ.get(name)
                digest = hashlib.sha256(val.encode("utf-8", "surrogateescape")).hexdigest() if val is not None else None
                rows.append((name, "true" if val is not None else "false", digest, spec))
        self._temp_rows(fqn, "env_var TEXT, present TEXT, sha256 TEXT, names TEXT", rows)

    def _gen_process(self, fqn, values):
        self._temp_rows(fqn, "pid INTEGER, ppid INTEGER, approot TEXT, auth_providers TEXT, command TEXT",
                        [(os.getpid(), os.getppid(), self.approot.path, ",".join(sorted(self.auth)), self.command)])

    # ---------------------------------------------------------------- mutations
    def _mutation(self, stmt):
        toks, refs = self._resolve_tables(tokenize(stmt))
        if not refs:
            text = stmt.strip()
            raise QueryError("syntax error at position %d near '%s'" % (len(text) + 1, text.split()[0].lower()))
        for fqn in dict.fromkeys(refs):
            prov = fqn.split(".")[0]
            self.approot.ensure(prov)
            self.check_credentials(prov)
        return Result(messages=["The operation was despatched successfully"], tag="OK")

    # ---------------------------------------------------------------- meta-commands
    _ID = r"[`\"]?([A-Za-z0-9_\-]+)[`\"]?"
    _LIKE = r"(?:\s+LIKE\s+'((?:[^']|'')*)')?"

    @staticmethod
    def _like(pattern, value):
        if pattern is None:
            return True
        rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern.replace("''", "'"))
        return re.fullmatch(rx, value, re.I | re.S) is not None

    def _provider(self, name):
        if name not in providers():
            raise QueryError("could not locate provider '%s'" % name)
        self.approot.ensure(name)
        return providers()[name]

    def _meta(self, stmt, sig):
        text = re.sub(r"\s*\.\s*", ".", " ".join(t.text for t in sig))
        I, L = self._ID, self._LIKE
        m = re.fullmatch(r"SHOW\s+(EXTENDED\s+)?PROVIDERS" + L, text, re.I)
        if m:
            rows = [(n, v) for n, v in sorted(self.approot.installed().items()) if self._like(m.group(2), n)]
            return Result(columns=["name", "version"], rows=rows, tag="SHOW")
        m = re.fullmatch(r"SHOW\s+(EXTENDED\s+)?SERVICES\s+(?:IN|FROM)\s+" + I + L, text, re.I)
        if m:
            prov = self._provider(m.group(2))
            version = self.approot.installed().get(m.group(2), prov["versions"][-1])
            rows = []
            for sname, svc in prov["services"].items():
                if not self._like(m.group(3), sname):
                    continue
                row = ("%s:%s" % (sname, version), sname, svc["title"])
                if m.group(1):
                    row += (svc.get("description", ""), version, "true")
                rows.append(row)
            cols = ["id", "name", "title"] + (["description", "version", "preferred"] if m.group(1) else [])
            return Result(columns=cols, rows=rows, tag="SHOW")
        m = re.fullmatch(r"SHOW\s+(EXTENDED\s+)?RESOURCES\s+(?:IN|FROM)\s+" + I + r"\." + I + L, text, re.I)
        if m:
            prov = self._provider(m.group(2))
            svc = prov["services"].get(m.group(3))
            if svc is None:
                raise QueryError("could not locate service '%s.%s'" % (m.group(2), m.group(3)))
            rows = []
            for rname, res in svc["resources"].items():
                if self._like(m.group(4), rname):
                    row = (rname, "%s.%s.%s" % (m.group(2), m.group(3), rname))
                    rows.append(row + ((res["description"],) if m.group(1) else ()))
            return Result(columns=["name", "id"] + (["description"] if m.group(1) else []), rows=rows, tag="SHOW")
        m = re.fullmatch(r"SHOW\s+(EXTENDED\s+)?METHODS\s+(?:IN|FROM)\s+" + I + r"\." + I + r"\." + I, text, re.I)
        if m:
            self._provider(m.group(2))
            res = self._lookup([m.group(2), m.group(3), m.group(4)])
            rows = [(name, ", ".join(params), verb) for name, params, verb in res["methods"]]
            return Result(columns=["MethodName", "RequiredParams", "SQLVerb"], rows=rows, tag="SHOW")
        m = re.fullmatch(r"(?:DESCRIBE|DESC)\s+(EXTENDED\s+)?" + I + r"\." + I + r"\." + I, text, re.I)
        if m:
            self._provider(m.group(2))
            res = self._lookup([m.group(2), m.group(3), m.group(4)])
            if m.group(1):
                return Result(columns=["name", "type", "description"], rows=[tuple(c) for c in res["columns"]],
                              tag="DESCRIBE")
            return Result(columns=["name", "type"], rows=[(c[0], c[1]) for c in res["columns"]], tag="DESCRIBE")
        m = re.fullmatch(r"SHOW\s+VERSION", text, re.I)
        if m:
            meta = catalogue()["stackql"]
            return Result(columns=["version"], rows=[(meta["version"].lstrip("v"),)], tag="SHOW")
        m = re.fullmatch(r"REGISTRY\s+LIST(?:\s+" + I + ")?", text, re.I)
        if m:
            if m.group(1):
                prov = providers().get(m.group(1))
                if prov is None:
                    raise QueryError("could not locate provider '%s' in the registry" % m.group(1))
                return Result(columns=["provider", "versions"], rows=[(m.group(1), ", ".join(prov["versions"]))],
                              tag="REGISTRY")
            latest = [(n, p["versions"][-1]) for n, p in sorted(providers().items())]
            return Result(columns=["provider", "version"], rows=latest, tag="REGISTRY")
        m = re.fullmatch(r"REGISTRY\s+PULL\s+" + I + r"(?:\s+'?([A-Za-z0-9_.\-]+)'?)?", text, re.I)
        if m:
            return Result(messages=[self.pull(m.group(1), m.group(2))], tag="OK")
        raise QueryError("syntax error at position %d near '%s'" % (len(text) + 1, text.split()[-1].lower()))

    def pull(self, name, version=None):
        prov = providers().get(name)
        if prov is None:
            raise QueryError("could not locate provider '%s' in the registry" % name)
        version = version or prov["versions"][-1]
        if version not in prov["versions"]:
            raise QueryError("could not locate version '%s' of provider '%s' in the registry" % (version, name))
        self.approot.install(name, version)
        return "%s provider, version '%s' successfully installed" % (name, version)


# ============================================================================ exec output


class Writer:
    def __init__(self, stream, fmt, hide_headers, delimiter):
        self.stream, self.fmt, self.hide, self.delim = stream, fmt, hide_headers, delimiter

    def w(self, s):
        self.stream.write(s.encode("utf-8", "surrogateescape"))

    def result(self, res):
        fmt = self.fmt
        if fmt in ("json",):
            self.w("[")
            first = True
            for chunk in res.json_lines():
                if chunk:
                    self.w(("" if first else ",") + ",".join(chunk))
                    first = False
            self.w("]")
        elif fmt in ("jsonl", "ndjson"):
            for chunk in res.json_lines():
                if chunk:
                    self.w("\n".join(chunk) + "\n")
        elif fmt == "csv":
            import csv
            import io
            buf = io.StringIO()
            wr = csv.writer(buf, delimiter=self.delim, lineterminator="\n")
            if not self.hide:
                wr.writerow(res.columns)
            for chunk in res.text_rows():
                wr.writerows([["" if v is None else v for v in r] for r in chunk])
                self.w(buf.getvalue())
                buf.seek(0)
                buf.truncate()
            self.w(buf.getvalue())
        elif fmt == "text":
            if not self.hide:
                self.w(self.delim.join(res.columns) + "\n")
            for chunk in res.text_rows():
                self.w("".join(self.delim.join("null" if v is None else v for v in r) + "\n" for r in chunk))
        else:  # table / pptext
            rows = [r for chunk in res.text_rows() for r in chunk]
            cells = [["null" if v is None else v for v in r] for r in rows]
            widths = [max([len(c)] + [len(r[k]) for r in cells]) for k, c in enumerate(res.columns)]
            line = "|" + "|".join("-" * (w + 2) for w in widths) + "|\n"
            out = [line]
            if not self.hide:
                out.append("|" + "|".join(" " + c.center(w) + " " for c, w in zip(res.columns, widths)) + "|\n")
                out.append(line)
            for r in cells:
                out.append("|" + "|".join(" " + v.ljust(w) + " " for v, w in zip(r, widths)) + "|\n")
            out.append(line)
            self.w("".join(out))
        self.stream.flush()


def _stderr(msg):
    sys.stderr.write(msg.rstrip("\n") + "\n")
    sys.stderr.flush()


def cmd_exec(flags, args, auth):
    if "infile" in flags:
        with open(flags["infile"], encoding="utf-8") as f:
            query = f.read()
    elif args:
        query = " ".join(args)
    else:
        raise CliError("exec requires a query argument or --infile")
    session = Session(Approot(flags.get("approot")), auth, "exec")
    stream = open(flags["outfile"], "wb") if "outfile" in flags else sys.stdout.buffer
    writer = Writer(stream, flags.get("output", "table"), flags.get("hideheaders", False), flags.get("delimiter", ","))
    for stmt in split_statements(query):
        try:
            res = session.execute(stmt)
            for msg in res.messages:
                _stderr(msg)
            if res.columns is not None:
                writer.result(res)
        except QueryError as e:
            _stderr(str(e))
    if stream is not sys.stdout.buffer:
        stream.close()
    return 0


def cmd_registry(flags, args, auth):
    if not args or args[0] not in ("list", "pull"):
        raise CliError("registry requires a subcommand: list | pull")
    session = Session(Approot(flags.get("approot")), auth, "registry")
    try:
        if args[0] == "pull":
            if len(args) < 2:
                raise CliError("registry pull requires a provider name")
            _stderr(session.pull(args[1], args[2] if len(args) > 2 else None))
        else:
            res = session.execute("REGISTRY LIST" + (" " + args[1] if len(args) > 1 else ""))
            writer = Writer(sys.stdout.buffer, flags.get("output", "table"), flags.get("hideheaders", False),
                            flags.get("delimiter", ","))
            writer.result(res)
    except QueryError as e:
        _stderr(str(e))
    return 0


# ============================================================================ srv: Postgres wire protocol

PG_TEXT_OID = 25
HANDLERS = {b"Q": "query", b"P": "parse", b"B": "bind", b"D": "describe", b"E": "execute", b"S": "sync",
            b"H": "flush", b"C": "close"}
PARAMETER_STATUS = (
    ("server_version", "14.0 (stackql stand-in)"), ("server_encoding", "UTF8"), ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"), ("integer_datetimes", "on"), ("standard_conforming_strings", "on"),
    ("TimeZone", "UTC"), ("IntervalStyle", "postgres"), ("is_superuser", "off"), ("application_name", ""),
)


def _msg(kind, payload=b""):
    import struct
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _cstr(s):
    return s.encode("utf-8", "replace") + b"\x00"


def _error_payload(severity, code, message):
    return b"S" + _cstr(severity) + b"V" + _cstr(severity) + b"C" + _cstr(code) + b"M" + _cstr(message) + b"\x00"


class _Backends:
    lock = threading.Lock()
    by_key = {}
    counter = [0]


def run_srv(flags, auth):
    import random
    import socket
    import socketserver
    import struct

    address = flags.get("pgsrv.address", "0.0.0.0")
    port = int(flags.get("pgsrv.port", "5466"))
    approot = Approot(flags.get("approot"))
    rnd = random.SystemRandom()

    class Handler(socketserver.BaseRequestHandler):
        def setup(self):
            self.sock = self.request
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.rf = self.sock.makefile("rb", buffering=65536)
            self.out = bytearray()
            self.session = None
            self.key = None

        # -------------------------------------------------------- io
        def read_exact(self, n):
            data = self.rf.read(n)
            if data is None or len(data) < n:
                raise EOFError()
            return data

        def send(self, kind, payload=b""):
            self.out += _msg(kind, payload)
            if len(self.out) > 65536:
                self.flush()

        def flush(self):
            if self.out:
                self.sock.sendall(bytes(self.out))
                self.out.clear()

        # -------------------------------------------------------- startup
        def startup(self):
            while True:
                (length,) = struct.unpack("!i", self.read_exact(4))
                body = self.read_exact(length - 4)
                (code,) = struct.unpack("!i", body[:4])
                if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest
                    self.sock.sendall(b"N")
                    continue
                if code == 80877102:  # CancelRequest
                    if os.environ.get("FAKE_STACKQL_IGNORE_CANCEL") == "1":
                        return False  # test hook: a server that ignores cancel requests
                    pid, secret = struct.unpack("!ii", body[4:12])
                    with _Backends.lock:
                        target = _Backends.by_key.get((pid, secret))
                    if target is not None:
                        target.cancel()
                    return False
                major, minor = code >> 16, code & 0xFFFF
                if major != 3:
                    message = "unsupported frontend protocol %d.%d" % (major, minor)
                    self.send(b"E", _error_payload("FATAL", "0A000", message))
                    self.flush()
                    return False
                if minor > 0:
                    self.send(b"v", struct.pack("!ii", 0, 0))  # NegotiateProtocolVersion: we speak 3.0
                self.send(b"R", struct.pack("!i", 0))  # AuthenticationOk: trust, any user / database
                for name, value in PARAMETER_STATUS:
                    self.send(b"S", _cstr(name) + _cstr(value))
                with _Backends.lock:
                    _Backends.counter[0] += 1
                    pid = (os.getpid() * 1000 + _Backends.counter[0]) % 2_000_000_000
                    self.key = (pid, rnd.randint(1, 2 ** 31 - 1))
                    _Backends.by_key[self.key] = self
                self.send(b"K", struct.pack("!ii", *self.key))
                self.send(b"Z", b"I")
                self.flush()
                return True

        def cancel(self):
            session = self.session
            if session is not None:
                session.interrupt()

        # -------------------------------------------------------- main loop
        def handle(self):
            try:
                if not self.startup():
                    return
                self.session = Session(approot, auth, "srv")
                self.prepared, self.portals, self.skip_to_sync = {}, {}, False
                while True:
                    kind = self.read_exact(1)
                    (length,) = struct.unpack("!i", self.read_exact(4))
                    body = self.read_exact(length - 4)
                    if kind == b"X":
                        return
                    if self.skip_to_sync and kind != b"S":
                        continue
                    getattr(self, "on_" + HANDLERS.get(kind, "unknown"))(body)
            except (EOFError, ConnectionError, OSError):
                pass
            finally:
                if self.key is not None:
                    with _Backends.lock:
                        _Backends.by_key.pop(self.key, None)

        def on_unknown(self, body):
            self.send(b"E", _error_payload("ERROR", "08P01", "unsupported message type"))
            self.send(b"Z", b"I")
            self.flush()

        def on_flush(self, body):
            self.flush()

        # -------------------------------------------------------- execution
        def run_statement(self, sql):
            """Execute one statement; returns its Result (raises QueryError / Cancelled)."""
            self.session.cancel_event.clear()
            res = self.session.execute(sql)
            return res

        def send_error(self, exc):
            if isinstance(exc, Cancelled):
                self.send(b"E", _error_payload("ERROR", "57014", "canceling statement due to user request"))
            else:
                self.send(b"E", _error_payload("ERROR", "XX000", "query returns error: %s" % exc))

        def row_description(self, res):
            payload = struct.pack("!h", len(res.columns))
            for c in res.columns:
                payload += _cstr(c) + struct.pack("!ihihih", 0, 0, PG_TEXT_OID, -1, -1, 0)
            self.send(b"T", payload)

        def send_rows(self, rows_iter, limit=0):
            """Send DataRows; returns (count, exhausted)."""
            count = 0
            pack_h, pack_i = struct.Struct("!h").pack, struct.Struct("!i").pack
            for chunk in rows_iter:
                for row in chunk:
                    parts = [pack_h(len(row))]
                    for v in row:
                        if v is None:
                            parts.append(b"\xff\xff\xff\xff")
                        else:
                            b = v.encode("utf-8", "surrogateescape")
                            parts.append(pack_i(len(b)) + b)
                    self.send(b"D", b"".join(parts))
                    count += 1
                if self.session.cancel_event.is_set():
                    raise Cancelled()
            return count

        def complete(self, res, count):
            for msg in res.messages:
                self.send(b"N", _error_payload("NOTICE", "00000", msg))
            if res.tag == "EMPTY":
                self.send(b"I")
            elif res.columns is not None:
                self.send(b"C", _cstr("SELECT %d" % count))
            else:
                self.send(b"C", _cstr(res.tag or "OK"))

        def on_query(self, body):
            sql = body[:-1].decode("utf-8", "surrogateescape")
            stmts = split_statements(sql)
            if not stmts:
                self.send(b"I")
            for stmt in stmts:
                try:
                    res = self.run_statement(stmt)
                    count = 0
                    if res.columns is not None:
                        self.row_description(res)
                        count = self.send_rows(res.text_rows())
                    self.complete(res, count)
                except (QueryError, Cancelled) as e:
                    self.send_error(e)
                    break
                except Exception as e:  # a stand-in bug must not look like a dropped connection
                    self.send_error(QueryError("internal error in the stackql stand-in: %r" % e))
                    break
            self.send(b"Z", b"I")
            self.flush()

        # -------------------------------------------------------- extended protocol
        def on_parse(self, body):
            name, rest = body.split(b"\x00", 1)
            query, rest = rest.split(b"\x00", 1)
            (n,) = struct.unpack("!h", rest[:2])
            oids = list(struct.unpack("!%di" % n, rest[2:2 + 4 * n])) if n else []
            self.prepared[name] = (query.decode("utf-8", "surrogateescape"), oids)
            self.send(b"1")

        @staticmethod
        def _decode_param(raw, fmt, oid):
            if raw is None:
                return "NULL"
            if fmt == 1:
                if oid == 16:
                    return "1" if raw != b"\x00" else "0"
                if oid in (20, 21, 23):
                    return str(int.from_bytes(raw, "big", signed=True))
                if oid == 701:
                    return repr(struct.unpack("!d", raw)[0])
                if oid == 700:
                    return repr(struct.unpack("!f", raw)[0])
            text = raw.decode("utf-8", "surrogateescape")
            if oid in (20, 21, 23, 700, 701, 1700) and re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", text):
                return text
            return _quote_lit(text)

        def on_bind(self, body):
            portal, rest = body.split(b"\x00", 1)
            stmt, rest = rest.split(b"\x00", 1)
            if stmt not in self.prepared:
                self.send(b"E", _error_payload("ERROR", "26000", "prepared statement does not exist"))
                self.skip_to_sync = True
                return
            query, oids = self.prepared[stmt]
            off = 0
            (nf,) = struct.unpack_from("!h", rest, off)
            off += 2
            fmts = list(struct.unpack_from("!%dh" % nf, rest, off)) if nf else []
            off += 2 * nf
            (npar,) = struct.unpack_from("!h", rest, off)
            off += 2
            values = []
            for k in range(npar):
                (ln,) = struct.unpack_from("!i", rest, off)
                off += 4
                raw = None if ln < 0 else rest[off:off + ln]
                off += max(ln, 0)
                fmt = fmts[k] if len(fmts) > 1 else (fmts[0] if fmts else 0)
                oid = oids[k] if k < len(oids) else 0
                values.append(self._decode_param(raw, fmt, oid))
            (nr,) = struct.unpack_from("!h", rest, off)
            off += 2
            rfmts = list(struct.unpack_from("!%dh" % nr, rest, off)) if nr else []
            if any(rfmts):
                message = "query returns error: binary result format is not supported"
                self.send(b"E", _error_payload("ERROR", "0A000", message))
                self.skip_to_sync = True
                return
            toks = tokenize(query)
            sql = "".join(values[int(t.text[1:]) - 1] if t.kind == "param" and 0 < int(t.text[1:]) <= len(values)
                          else t.text for t in toks)
            self.portals[portal] = {"sql": sql, "result": None, "rows": None, "count": 0}
            self.send(b"2")

        def _portal_result(self, portal):
            p = self.portals[portal]
            if p["result"] is None:
                p["result"] = self.run_statement(p["sql"])
                p["rows"] = p["result"].text_rows() if p["result"].columns is not None else iter(())
            return p

        def on_describe(self, body):
            what, name = body[:1], body[1:-1]
            try:
                if what == b"S":
                    if name not in self.prepared:
                        raise QueryError("prepared statement does not exist")
                    query, oids = self.prepared[name]
                    n = len(re.findall(r"\$\d+", query))
                    oids = (oids + [0] * n)[:max(n, len(oids))]
                    types = b"".join(struct.pack("!i", o or PG_TEXT_OID) for o in oids)
                    self.send(b"t", struct.pack("!h", len(oids)) + types)
                    if n:
                        self.send(b"n")  # row shape unknown until bound
                        return
                    res = self.run_statement(query)
                else:
                    if name not in self.portals:
                        raise QueryError("portal does not exist")
                    res = self._portal_result(name)["result"]
                if res.columns is not None:
                    self.row_description(res)
                else:
                    self.send(b"n")
            except (QueryError, Cancelled) as e:
                self.send_error(e)
                self.skip_to_sync = True

        def on_execute(self, body):
            name, rest = body.split(b"\x00", 1)
            (maxrows,) = struct.unpack("!i", rest[:4])
            try:
                if name not in self.portals:
                    raise QueryError("portal does not exist")
                p = self._portal_result(name)
                res = p["result"]
                if res.columns is None:
                    self.complete(res, 0)
                    return
                if maxrows > 0:
                    sent = 0
                    while sent < maxrows:
                        buf = p.setdefault("buffer", [])
                        if not buf:
                            nxt = next(p["rows"], None)
                            if nxt is None:
                                break
                            buf.extend(nxt)
                            continue
                        take = buf[:maxrows - sent]
                        del buf[:len(take)]
                        sent += self.send_rows([take])
                    p["count"] += sent
                    if sent == maxrows and (p.get("buffer") or p["rows"] is not None):
                        self.send(b"s")  # PortalSuspended
                        return
                    self.complete(res, p["count"])
                    return
                buffered = p.pop("buffer", [])
                count = self.send_rows([buffered]) if buffered else 0
                count += self.send_rows(p["rows"])
                self.complete(res, p["count"] + count)
            except (QueryError, Cancelled) as e:
                self.send_error(e)
                self.skip_to_sync = True

        def on_sync(self, body):
            self.skip_to_sync = False
            self.portals.pop(b"", None)
            self.send(b"Z", b"I")
            self.flush()

        def on_close(self, body):
            what, name = body[:1], body[1:-1]
            (self.prepared if what == b"S" else self.portals).pop(name, None)
            self.send(b"3")

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    try:
        server = Server((address, port), Handler)
    except OSError as e:
        raise CliError("listen tcp %s:%d: bind: %s" % (address, port, e.strerror or e))

    parent = os.getppid()

    def watch_parent():
        # A srv child whose parent died must not linger (tests, crashed apps).
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    server.serve_forever(poll_interval=0.2)
    return 0


# ============================================================================ main


def version_text():
    meta = catalogue()["stackql"]
    return "stackql %s %s (%s)\nBuildDate: %s\nhttps://stackql.io\n" % (
        meta["version"], meta["platform"], meta["sha"], meta["build_date"])


def main(argv):
    auth = {}
    try:
        try:
            flags, positionals = parse_args(argv)
            if flags.get("version"):
                sys.stdout.write(version_text())
                return 0
            auth = validate_config(flags)
        finally:
            record_invocation(argv, auth)
        if not positionals or flags.get("help"):
            sys.stdout.write(USAGE)
            return 0
        command, args = positionals[0], positionals[1:]
        if command == "exec":
            return cmd_exec(flags, args, auth)
        if command == "srv":
            return run_srv(flags, auth)
        if command == "registry":
            return cmd_registry(flags, args, auth)
        if command in ("shell", "mcp"):
            raise CliError("the stackql stand-in does not implement '%s'" % command)
        raise CliError('unknown command "%s" for "stackql"' % command)
    except CliError as e:
        msg = str(e)
        if msg.startswith("error"):
            _stderr(msg)
        else:
            _stderr("Error: " + msg + "\nRun 'stackql --help' for usage.")
        return 1
    except BrokenPipeError:
        # The reader went away (row cap reached, cancelled): die quietly like a Go binary on SIGPIPE.
        os._exit(1)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os._exit(1)
    sys.exit(code)
