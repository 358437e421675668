"""Durable security state in the data directory: SCRAM credentials and ACLs.

Layout (directory mode 0700, files 0600)::

    <data>/security/scram-credentials.json
        {"users": {"<name>": {"SCRAM-SHA-256": {"salt", "iterations",
                                                 "stored_key", "server_key"}, ...}}}
    <data>/security/acls.json
        {"acls": [{"resource_type", "resource_name", "pattern_type", "principal",
                   "host", "operation", "permission_type"}, ...]}
    <data>/security/.lock    flock held while a file is read-modified-written

Passwords are never written: only the salted SCRAM keys (see scram.py).
Durability: every change replaces its file atomically (temp file, fsync,
rename, directory fsync), so after a crash it holds the old or the new state.
Readers re-read a file when its inode, size or mtime changed, so ``arrowlog
user add`` on a running server's directory takes effect at the next login.
Thread-safety: one thread per object; processes serialise through the lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from arrowlog.errors import ArrowlogError
from arrowlog.storage.files import ExclusiveFlock, open_shared_file, write_json_atomic

from .scram import ScramCredential

SECURITY_DIR = "security"
# Both files are small (a few hundred bytes per user or ACL); a bigger one is not ours.
MAX_FILE_BYTES = 64 << 20


class SecurityStateError(ArrowlogError):
    """A security file in the data directory is unreadable or damaged."""


class JsonStateFile:
    """One JSON document under <data>/security, re-read when it changes."""

    def __init__(self, data_dir: str, name: str, empty: Callable[[], Any]):
        self.dir = os.path.join(os.fspath(data_dir), SECURITY_DIR)
        self.path = os.path.join(self.dir, name)
        self._empty = empty
        self._stamp: tuple | None = None
        self._value = empty()

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _read(self) -> Any:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return self._empty()
        if len(raw) > MAX_FILE_BYTES:
            raise SecurityStateError(f"{self.path} is over {MAX_FILE_BYTES} bytes: not an arrowlog file")
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError) as exc:   # (RecursionError: nested too deep to parse)
            raise SecurityStateError(f"{self.path} is damaged ({exc}); restore it from a backup "
                                     "or remove it and add the users/ACLs again") from None
        if not isinstance(value, dict):
            raise SecurityStateError(f"{self.path} does not hold a JSON object")
        return value

    def get(self) -> Any:
        stamp = self._stat()
        if stamp != self._stamp:
            self._value = self._read()
            self._stamp = stamp
        return self._value

    def update(self, change: Callable[[Any], Any]) -> Any:
        """Apply ``change(value) -> result`` under the lock and write the file; returns result."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd, read_only = open_shared_file(os.path.join(self.dir, ".lock"))
        try:
            if read_only:
                raise SecurityStateError(f"{self.dir} is read-only: cannot change security state")
            with ExclusiveFlock(fd):
                value = self._read()
                result = change(value)
                write_json_atomic(self.path, value)
                self._value, self._stamp = value, self._stat()
                return result
        finally:
            os.close(fd)


class CredentialStore:
    """SCRAM credentials per user and mechanism."""

    def __init__(self, data_dir: str):
        self._file = JsonStateFile(data_dir, "scram-credentials.json", lambda: {"users": {}})

    def _users(self, value: Any) -> dict:
        users = value.setdefault("users", {})
        if not isinstance(users, dict):
            raise SecurityStateError(f"{self._file.path}: 'users' is not an object")
        return users

    def lookup(self, user: str, mechanism: str) -> ScramCredential | None:
        entry = self._users(self._file.get()).get(user, {}).get(mechanism)
        if entry is None:
            return None
        try:
            return ScramCredential.from_json(entry)
        except (KeyError, TypeError, ValueError):
            raise SecurityStateError(f"{self._file.path}: credential of {user!r} ({mechanism}) "
                                     "is damaged; set the password again") from None

    def users(self) -> dict[str, dict[str, int]]:
        """{user: {mechanism: iterations}}."""
        return {u: {m: int(c.get("iterations", 0)) for m, c in sorted(mechs.items())}
                for u, mechs in sorted(self._users(self._file.get()).items())}

    def upsert(self, user: str, mechanism: str, credential: ScramCredential) -> None:
        def change(value):
            self._users(value).setdefault(user, {})[mechanism] = credential.to_json()
        self._file.update(change)

    def delete(self, user: str, mechanism: str | None = None) -> bool:
        """Remove one mechanism of ``user`` (or all); False if there was nothing to remove."""
        def change(value):
            users = self._users(value)
            mechs = users.get(user)
            if mechs is None or (mechanism is not None and mechanism not in mechs):
                return False
            if mechanism is None:
                del users[user]
            else:
                del mechs[mechanism]
                if not mechs:
                    del users[user]
            return True
        return self._file.update(change)


class AclStore:
    """ACL bindings as a list of dicts (field names as in CreateAcls)."""

    def __init__(self, data_dir: str):
        self._file = JsonStateFile(data_dir, "acls.json", lambda: {"acls": []})

    def bindings(self) -> list[dict]:
        acls = self._file.get().get("acls", [])
        if not isinstance(acls, list):
            raise SecurityStateError(f"{self._file.path}: 'acls' is not a list")
        return acls

    def add(self, bindings: list[dict]) -> None:
        def change(value):
            acls = value.setdefault("acls", [])
            present = {tuple(sorted(b.items())) for b in acls}
            for b in bindings:
                key = tuple(sorted(b.items()))
                if key not in present:
                    present.add(key)
                    acls.append(b)
        self._file.update(change)

    def remove(self, matches: Callable[[dict], bool]) -> list[dict]:
        """Delete the bindings ``matches`` selects; returns them."""
        def change(value):
            acls = value.setdefault("acls", [])
            gone = [b for b in acls if matches(b)]
            value["acls"] = [b for b in acls if not matches(b)]
            return gone
        return self._file.update(change)
