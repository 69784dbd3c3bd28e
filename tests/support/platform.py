"""A local stand-in for Lakebase: real PostgreSQL that demands a password, TLS in front, tokens from FakeDatabricks.

    client (psycopg2, sslmode=require)
      -> TlsFront       TLS-only front door (answers SSLRequest, refuses plaintext like Lakebase)
      -> PostgreSQL 16  pg_hba: the app's role logs in with `radius` (a password is required)
      -> TokenRadius    accepts exactly the tokens FakeDatabricks minted for that role, until they expire

Why RADIUS: it makes the real server ask an outside authority for each login, which is what Lakebase
does with OAuth tokens: any unexpired token minted for the role is accepted, several at once, and expiry
is enforced only at login (open connections keep working). Setting the role's password to the newest
token would accept only one token at a time. The pgserver build has no OpenSSL, hence the TLS front.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import socket
import ssl
import struct
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from tests.fakes.databricks_api import FakeDatabricks

# The app's service principal: its application (client) id is its Postgres role name on Lakebase.
APP_ROLE = "8b3f3c1e-5e7a-4c2b-9d0e-1a2b3c4d5e6f"
ENDPOINT = "projects/stackql-inventory/branches/production/endpoints/primary"
INSTANCE = "stackql-inventory-db"
DATABASE = "inventory"

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


# --------------------------------------------------------------------------------------- RADIUS
@dataclass
class Login:
    """One login attempt the RADIUS server judged."""

    user: str
    token: str
    accepted: bool


class TokenRadius:
    """A RADIUS server (RFC 2865 Access-Request/Accept/Reject) backed by FakeDatabricks' credential ledger."""

    def __init__(self, fake: FakeDatabricks, secret: bytes = b"lakebase-stand-in"):
        self.fake = fake
        self.secret = secret
        self.logins: list[Login] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="token-radius", daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def start(self) -> TokenRadius:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def accepts(self, user: str, token: str) -> bool:
        """Whether `token` was minted for `user` and has not expired (checked now, i.e. at login)."""
        now = dt.datetime.now(dt.timezone.utc)
        with self.fake.lock:
            for cred in self.fake.state.credentials:
                if cred["token"] == token and cred["principal"] == user:
                    expires = dt.datetime.fromisoformat(cred["expire_time"].replace("Z", "+00:00"))
                    return expires > now
        return False

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, addr = self._sock.recvfrom(4096)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            reply = self._answer(packet)
            if reply:
                self._sock.sendto(reply, addr)

    def _answer(self, packet: bytes) -> bytes | None:
        if len(packet) < 20 or packet[0] != 1:  # Access-Request only
            return None
        ident, length = packet[1], struct.unpack("!H", packet[2:4])[0]
        authenticator = packet[4:20]
        attrs: dict[int, bytes] = {}
        i = 20
        while i + 2 <= length:
            kind, size = packet[i], packet[i + 1]
            attrs.setdefault(kind, packet[i + 2:i + size])
            i += max(size, 2)
        user = attrs.get(1, b"").decode()
        token = self._decode_password(attrs.get(2, b""), authenticator).decode(errors="replace")
        accepted = self.accepts(user, token)
        self.logins.append(Login(user, token, accepted))
        code = 2 if accepted else 3
        head = bytes([code, ident]) + struct.pack("!H", 20)
        return head + hashlib.md5(head + authenticator + self.secret).digest()

    def _decode_password(self, hidden: bytes, authenticator: bytes) -> bytes:
        out, prev = b"", authenticator
        for i in range(0, len(hidden), 16):
            block = hidden[i:i + 16]
            key = hashlib.md5(self.secret + prev).digest()
            out += bytes(a ^ b for a, b in zip(block, key))
            prev = block
        return out.rstrip(b"\0")


# --------------------------------------------------------------------------------------- TLS front
def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lakebase-stand-in")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _fatal(code: str, message: str) -> bytes:
    body = b"".join(k + v.encode() + b"\0" for k, v in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code),
                                                         (b"M", message))) + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class TlsFront:
    """A TCP listener that speaks the Postgres SSL negotiation, then relays the session to a unix socket."""

    def __init__(self, backend_socket: Path, workdir: Path):
        self.backend_socket = backend_socket
        cert, key = _self_signed(workdir)
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert, key)
        self.plaintext_refused = 0
        self.tls_sessions = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-front", daemon=True)
        self.port = 0

    def start(self) -> TlsFront:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            length, code = struct.unpack("!II", await reader.readexactly(8))
            if length == 8 and code == _GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
                length, code = struct.unpack("!II", await reader.readexactly(8))
            if length != 8 or code != _SSL_REQUEST:
                self.plaintext_refused += 1
                writer.write(_fatal("28000", "Lakebase stand-in: SSL is required (use sslmode=require)"))
                await writer.drain()
                return
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(self._ctx)
            self.tls_sessions += 1
            back_reader, back_writer = await asyncio.open_unix_connection(str(self.backend_socket))
            await asyncio.gather(self._pump(reader, back_writer), self._pump(back_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            dst.close()


# --------------------------------------------------------------------------------------- the stand-in
@dataclass
class LakebaseStandIn:
    """PostgreSQL + RADIUS + TLS front + FakeDatabricks, wired like an App's Lakebase database resource."""

    root: Path
    fake: FakeDatabricks = field(init=False)
    radius: TokenRadius = field(init=False)
    front: TlsFront = field(init=False)
    admin: sa.Engine = field(init=False)
    server: object = field(init=False, default=None)

    def start(self) -> LakebaseStandIn:
        import pgserver

        self.root.mkdir(parents=True, exist_ok=True)
        self.fake = FakeDatabricks(user_name=APP_ROLE).start()
        self.fake.add_postgres_endpoint(ENDPOINT, host="127.0.0.1")
        self.fake.add_database_instance(INSTANCE, dns="127.0.0.1")
        self.server = pgserver.get_server(self.root / "pg", cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        socket_path = Path(info.socket_dir) / f".s.PGSQL.{info.port}"
        self.admin = sa.create_engine(self.server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1),
                                      isolation_level="AUTOCOMMIT")
        self.radius = TokenRadius(self.fake).start()
        radius = (f'radius radiusservers="127.0.0.1" radiussecrets="{self.radius.secret.decode()}" '
                  f'radiusports="{self.radius.port}"')
        hba = Path(info.pgdata) / "pg_hba.conf"
        # First match wins: the app's role must present a token; everything else keeps the harness's trust.
        hba.write_text(f'local all "{APP_ROLE}" {radius}\nhost all "{APP_ROLE}" 127.0.0.1/32 {radius}\n'
                       + hba.read_text())
        with self.admin.connect() as c:
            c.execute(sa.text("SELECT pg_reload_conf()"))
            c.execute(sa.text(f'CREATE ROLE "{APP_ROLE}" LOGIN'))
            c.execute(sa.text(f"CREATE DATABASE {DATABASE}"))
            # What the app's database resource grants (CAN_CONNECT_AND_CREATE).
            c.execute(sa.text(f'GRANT CONNECT, CREATE ON DATABASE {DATABASE} TO "{APP_ROLE}"'))
        self.front = TlsFront(socket_path, Path(tempfile.mkdtemp(dir=self.root))).start()
        return self

    def stop(self) -> None:
        self.front.stop()
        self.radius.stop()
        self.admin.dispose()
        self.fake.close()
        if self.server is not None:
            self.server.cleanup()

    def fresh_database(self) -> str:
        """A new empty database the app's role may connect to and create schemas in; returns its name."""
        self._count = getattr(self, "_count", 0) + 1
        name = f"{DATABASE}_{self._count}"
        with self.admin.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
            c.execute(sa.text(f'GRANT CONNECT, CREATE ON DATABASE {name} TO "{APP_ROLE}"'))
        return name

    def env(self, **extra: str) -> dict[str, str]:
        """What a Databricks App's `postgres` resource injects (no password), plus `extra`."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.front.port), "PGDATABASE": DATABASE,
                "PGUSER": APP_ROLE, "PGSSLMODE": "require", "LAKEBASE_ENDPOINT": ENDPOINT, **extra}

    def backend_pids(self) -> set[int]:
        """Backend pids of the app role's open sessions."""
        with self.admin.connect() as c:
            rows = c.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE usename = :u"), {"u": APP_ROLE})
            return {r[0] for r in rows}

    def expire(self, token: str) -> None:
        """Make a minted token expire now (the ledger is the fake's; tests may edit it)."""
        past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.fake.lock:
            for cred in self.fake.state.credentials:
                if cred["token"] == token:
                    cred["expire_time"] = past


# --------------------------------------------------------------------------------------- SCIM users
class ScimFakeDatabricks(FakeDatabricks):
    """FakeDatabricks plus `GET /api/2.0/preview/scim/v2/Users?filter=userName eq "x"` (groups of a user)."""

    def _route(self, method: str, path: str):  # noqa: ANN202 - same contract as the base class
        if method == "GET" and path == "/api/2.0/preview/scim/v2/Users":
            return self._users_list
        return super()._route(method, path)

    def _users_list(self, req) -> dict:  # noqa: ANN001
        import re

        match = re.fullmatch(r'userName eq "((?:[^"\\]|\\.)*)"', req.query.get("filter", ""))
        if match is None:
            from tests.fakes.databricks_api import ApiError

            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Only userName eq filters are supported here.")
        wanted = match.group(1).replace('\\"', '"').replace("\\\\", "\\").lower()
        start = int(req.query.get("startIndex", "1"))
        with self.lock:
            found = [{k: v for k, v in u.items() if k != "admin"} for u in self.state.users.values()
                     if u["userName"].lower() == wanted]
        page = found if start <= 1 else []
        return {"totalResults": len(found), "startIndex": start, "itemsPerPage": len(page), "Resources": page,
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]}
