"""Secrets: one interface over local files (the embedded default) and Databricks Secrets."""

from __future__ import annotations

import base64
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from stackql_inventory.config import Backend, Settings, get_settings
from stackql_inventory.services.errors import ErrorKind, UserFacingError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

# The Databricks backend imports databricks-sdk (and databricks_client, which imports it) when it
# is used: the SDK takes most of a second to import, and the local backend (and a runner that reads
# local secrets) never needs it.

logger = logging.getLogger(__name__)

# Databricks rules for scope and key names; they also keep every local path inside the secrets folder.
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
MAX_VALUE_BYTES = 128 * 1024
_DIR_MODE = 0o700
_FILE_MODE = 0o600
# "~" is not allowed in key names, so a half-written temp file can never be taken for a key.
_TMP_PREFIX = "~tmp~"


class SecretState(str, Enum):
    """Whether a secret can be used, as far as the app can tell without reading it."""

    OK = "ok"
    MISSING = "missing"
    NO_PERMISSION = "no_permission"
    ERROR = "error"


@dataclass(frozen=True)
class SecretStatus:
    """A secret's state plus a message for the person fixing it; never carries the value."""

    state: SecretState
    message: str

    @property
    def ok(self) -> bool:
        return self.state is SecretState.OK


class SecretsBackend(Protocol):
    """What every secrets backend offers."""

    def exists(self, scope: str, key: str) -> bool: ...
    def list_keys(self, scope: str) -> list[str]: ...
    def get(self, scope: str, key: str) -> str: ...
    def status(self, scope: str, key: str) -> SecretStatus: ...
    def put(self, scope: str, key: str, value: str) -> None: ...
    def delete(self, scope: str, key: str) -> bool: ...


def _shown(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "…"


def validate_name(name: object, what: str = "secret key") -> str:
    """Return `name` if it is a valid scope or key name, else raise a VALIDATION error.

    Valid: 1-128 letters, digits, '-', '_' or '.', and not '.' or '..'.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise UserFacingError(
            f"The {what} name {_shown(name)} is not valid. Use 1-128 letters, digits, '-', '_' or '.' "
            "(not '.' or '..'), then retry.",
            ErrorKind.VALIDATION,
        )
    return name


def backend_for(settings: Settings | None = None, *, client: WorkspaceClient | None = None) -> SecretsBackend:
    """The backend `settings.secrets_backend` selects (`client` overrides the process-wide Databricks client)."""
    settings = settings or get_settings()
    if settings.secrets_backend is Backend.DATABRICKS:
        return DatabricksSecrets(client, settings=settings)
    return LocalSecrets(settings.data_dir / "secrets")


# --- local files ---------------------------------------------------------------------------------
class LocalSecrets:
    """Secrets as files `<root>/<scope>/<key>` (mode 0600, folders 0700); keys are case-insensitive."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalSecrets(root={str(self.root)!r})"

    def _scope_dir(self, scope: str) -> Path:
        return self._contained(self.root / validate_name(scope, "secret scope"))

    def _key_path(self, scope: str, key: str) -> Path:
        # Databricks compares keys case-insensitively; store them lower-cased to behave the same.
        return self._contained(self._scope_dir(scope) / validate_name(key, "secret key").lower())

    def _contained(self, path: Path) -> Path:
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise UserFacingError(
                f"The secret path {str(path)!r} leads outside the secrets folder {str(self.root)!r} "
                "(a symlink?). Remove the link, then retry.",
                ErrorKind.VALIDATION,
            )
        return path

    def _ensure_dir(self, path: Path) -> None:
        path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, _DIR_MODE)  # mkdir's mode is filtered by the umask, and the folder may predate us

    def exists(self, scope: str, key: str) -> bool:
        """True if the secret file exists (a missing scope is simply False)."""
        return self._key_path(scope, key).is_file()

    def list_keys(self, scope: str) -> list[str]:
        """Sorted key names in `scope`; NOT_FOUND if the scope folder does not exist."""
        folder = self._scope_dir(scope)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            raise self._scope_missing(scope) from None
        except OSError as e:
            raise self._os_error(e, f"list the secrets in scope '{scope}'") from None
        return sorted(n for n in names if _NAME_RE.fullmatch(n) and n not in (".", "..")
                      and (folder / n).is_file())

    def get(self, scope: str, key: str) -> str:
        """The secret's value, read from disk now."""
        path = self._key_path(scope, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if not self._scope_dir(scope).is_dir():
                raise self._scope_missing(scope) from None
            raise UserFacingError(
                f"Secret '{key}' does not exist in scope '{scope}'. Save it on the Providers page (local "
                f"store {self.root}), then retry.",
                ErrorKind.NOT_FOUND,
            ) from None
        except OSError as e:
            raise self._os_error(e, f"read secret '{key}' in scope '{scope}'") from None
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserFacingError(
                f"Secret '{key}' in scope '{scope}' is not UTF-8 text. Save it again, then retry.",
                ErrorKind.VALIDATION,
            ) from None
        logger.debug("secret_read backend=local scope=%s key=%s", scope, key)
        return value

    def status(self, scope: str, key: str) -> SecretStatus:
        """OK / MISSING / NO_PERMISSION / ERROR for the secret, without reading its value."""
        try:
            path = self._key_path(scope, key)
            if path.is_file():
                if os.access(path, os.R_OK):
                    return SecretStatus(SecretState.OK, f"Secret '{key}' is set in scope '{scope}'.")
                return SecretStatus(SecretState.NO_PERMISSION,
                                    f"The app cannot read secret '{key}' in scope '{scope}' ({path}). Make the "
                                    "file readable by the app's user (mode 0600), then retry.")
            if not self._scope_dir(scope).is_dir():
                return SecretStatus(SecretState.MISSING, self._scope_missing(scope).message)
            return SecretStatus(SecretState.MISSING,
                                f"Secret '{key}' is not set in scope '{scope}'. Save it on the Providers page, "
                                "then retry.")
        except UserFacingError as e:
            return SecretStatus(SecretState.ERROR, e.message)
        except PermissionError:
            return SecretStatus(SecretState.NO_PERMISSION,
                                f"The app cannot open the secrets folder for scope '{scope}' under {self.root}. "
                                "Make it accessible to the app's user (mode 0700), then retry.")
        except OSError as e:
            return SecretStatus(SecretState.ERROR, self._os_error(e, f"check secret '{key}'").message)

    def put(self, scope: str, key: str, value: str) -> None:
        """Create or replace the secret atomically (temp file + rename), mode 0600 in 0700 folders."""
        if not isinstance(value, str):
            raise UserFacingError("A secret value must be text. Paste it again, then retry.", ErrorKind.VALIDATION)
        data = value.encode("utf-8")
        if len(data) > MAX_VALUE_BYTES:
            raise UserFacingError(
                f"The value for secret '{key}' is larger than 128 KB, the limit Databricks also applies. "
                "Store a smaller value, then retry.",
                ErrorKind.VALIDATION,
            )
        path = self._key_path(scope, key)
        tmp: str | None = None
        try:
            self._ensure_dir(self.root)
            self._ensure_dir(path.parent)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)  # created 0600
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), _FILE_MODE)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            raise self._os_error(e, f"save secret '{key}' in scope '{scope}'") from None
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        logger.info("secret_saved backend=local scope=%s key=%s", scope, key)

    def delete(self, scope: str, key: str) -> bool:
        """Remove the secret; returns False if there was nothing to remove."""
        path = self._key_path(scope, key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as e:
            raise self._os_error(e, f"delete secret '{key}' in scope '{scope}'") from None
        logger.info("secret_deleted backend=local scope=%s key=%s", scope, key)
        return True

    def _scope_missing(self, scope: str) -> UserFacingError:
        return UserFacingError(
            f"Secret scope '{scope}' does not exist in the local secret store ({self.root}). Save a secret in it "
            "on the Providers page, then retry.",
            ErrorKind.NOT_FOUND,
        )

    def _os_error(self, e: OSError, action: str) -> UserFacingError:
        kind = ErrorKind.PERMISSION if isinstance(e, PermissionError) else ErrorKind.INTERNAL
        return UserFacingError(
            f"Could not {action} in the local secret store ({self.root}): {e.strerror or type(e).__name__}. "
            "Check that the folder exists and belongs to the app's user, then retry.",
            kind,
        )


# --- Databricks Secrets --------------------------------------------------------------------------
class DatabricksSecrets:
    """Databricks Secrets through the SDK: validated by listing keys, values read only by `get`."""

    def __init__(self, client: WorkspaceClient | None = None, *, settings: Settings | None = None):
        self._client = client
        self._settings = settings

    def __repr__(self) -> str:
        return "DatabricksSecrets()"

    @property
    def _w(self) -> WorkspaceClient:
        from stackql_inventory.services.databricks_client import workspace_client

        return self._client or workspace_client(self._settings)

    def _list(self, scope: str) -> list[str]:
        # Raises the SDK's errors; callers decide what a missing scope means for them.
        return [m.key for m in self._w.secrets.list_secrets(validate_name(scope, "secret scope")) if m.key]

    def exists(self, scope: str, key: str) -> bool:
        """True if `key` is listed in `scope` (case-insensitive); False if the scope does not exist."""
        from databricks.sdk.errors import NotFound

        validate_name(key, "secret key")
        try:
            keys = self._list(scope)
        except NotFound:
            return False
        except Exception as e:  # noqa: BLE001 - every SDK failure becomes a user-facing error
            raise self._error(e, scope, key) from None
        return key.lower() in {k.lower() for k in keys}

    def list_keys(self, scope: str) -> list[str]:
        """Sorted key names in `scope` (metadata only; no value is read)."""
        try:
            return sorted(self._list(scope))
        except UserFacingError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._error(e, scope) from None

    def get(self, scope: str, key: str) -> str:
        """The secret's value, fetched now (`get_secret`, base64-decoded)."""
        from databricks.sdk.errors import NotFound

        validate_name(scope, "secret scope")
        validate_name(key, "secret key")
        try:
            response = self._w.secrets.get_secret(scope, key)
        except NotFound:
            raise self._missing(scope, key) from None
        except Exception as e:  # noqa: BLE001
            raise self._error(e, scope, key) from None
        try:
            value = base64.b64decode(response.value or "", validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError; their text may quote the bytes
            raise UserFacingError(
                f"Secret '{key}' in scope '{scope}' is not UTF-8 text. Store it again with "
                f"`databricks secrets put-secret {scope} {key}`, then retry.",
                ErrorKind.VALIDATION,
            ) from None
        logger.debug("secret_read backend=databricks scope=%s key=%s", scope, key)
        return value

    def status(self, scope: str, key: str) -> SecretStatus:
        """OK / MISSING / NO_PERMISSION / ERROR from the scope's key list; the value is never read."""
        from databricks.sdk.errors import NotFound, PermissionDenied

        try:
            validate_name(key, "secret key")
            keys = self._list(scope)
        except UserFacingError as e:
            return SecretStatus(SecretState.ERROR, e.message)
        except NotFound:
            return SecretStatus(SecretState.MISSING, _scope_missing_message(scope))
        except PermissionDenied:
            return SecretStatus(SecretState.NO_PERMISSION, _no_permission_message(scope))
        except Exception as e:  # noqa: BLE001
            return SecretStatus(SecretState.ERROR, self._error(e, scope, key).message)
        if key.lower() in {k.lower() for k in keys}:
            return SecretStatus(SecretState.OK, f"Secret '{key}' is set in scope '{scope}'.")
        return SecretStatus(SecretState.MISSING, _key_missing_message(scope, key))

    def put(self, scope: str, key: str, value: str) -> None:
        """Not done from the app: Databricks secrets are written with the CLI by someone with WRITE."""
        validate_name(scope, "secret scope")
        validate_name(key, "secret key")
        raise UserFacingError(
            f"The app does not write Databricks secrets. Run `databricks secrets put-secret {scope} {key}` "
            "(you need WRITE on the scope), then retry.",
            ErrorKind.CONFIG,
        )

    def delete(self, scope: str, key: str) -> bool:
        """Not done from the app: delete with `databricks secrets delete-secret`."""
        validate_name(scope, "secret scope")
        validate_name(key, "secret key")
        raise UserFacingError(
            f"The app does not delete Databricks secrets. Run `databricks secrets delete-secret {scope} {key}` "
            "(you need WRITE on the scope), then retry.",
            ErrorKind.CONFIG,
        )

    def _missing(self, scope: str, key: str) -> UserFacingError:
        # get_secret says RESOURCE_DOES_NOT_EXIST for a missing scope and a missing key alike.
        from databricks.sdk.errors import NotFound

        try:
            self._list(scope)
        except NotFound:
            return UserFacingError(_scope_missing_message(scope), ErrorKind.NOT_FOUND)
        except Exception:  # noqa: BLE001 - fall back to the key message
            pass
        return UserFacingError(_key_missing_message(scope, key), ErrorKind.NOT_FOUND)

    def _error(self, exc: BaseException, scope: str, key: str | None = None) -> UserFacingError:
        from databricks.sdk.errors import NotFound, PermissionDenied

        from stackql_inventory.services.databricks_client import sdk_error_to_user_facing

        if isinstance(exc, UserFacingError):
            return exc
        if isinstance(exc, NotFound):
            return UserFacingError(_scope_missing_message(scope), ErrorKind.NOT_FOUND)
        if isinstance(exc, PermissionDenied):
            return UserFacingError(_no_permission_message(scope), ErrorKind.PERMISSION, detail=str(exc))
        what = f"secret '{key}' in scope '{scope}'" if key else f"secret scope '{scope}'"
        return sdk_error_to_user_facing(exc, what)


def _scope_missing_message(scope: str) -> str:
    return (f"Secret scope '{scope}' does not exist. Create it with `databricks secrets create-scope {scope}`, "
            "then retry.")


def _key_missing_message(scope: str, key: str) -> str:
    return (f"Secret '{key}' does not exist in scope '{scope}'. Add it with "
            f"`databricks secrets put-secret {scope} {key}`, then retry.")


def _no_permission_message(scope: str) -> str:
    return (f"The app's Databricks identity cannot read secret scope '{scope}'. Grant it READ with "
            f"`databricks secrets put-acl {scope} <app service principal id> READ` (or add the scope to the app "
            "as a secret resource), then retry.")
