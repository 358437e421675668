"""A login for the console: HTTP Basic against the SCRAM users of ``arrowlog serve``.

The console reuses the server's credentials (``arrowlog user add NAME``,
stored salted in ``<data>/security/``) and the server's PLAIN verifier, so
one password works for Kafka clients and the console and nothing new is
stored. A verified login is remembered in the signed session cookie, so the
PBKDF2 work (4,096+ iterations) is done once per session, not per request.

Basic auth sends the password in clear text: beyond loopback, put TLS in
front of the console (docs/OPERATIONS.md).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..server.security.sasl import PlainMechanism
from ..server.security.scram import AuthenticationError
from ..server.security.store import CredentialStore

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def password_checker(data_dir: str) -> Callable[[str, str], bool]:
    """``check(user, password)`` against the directory's SCRAM users; refuses to
    make one when there are no users (a login nobody can pass is a mistake)."""
    store = CredentialStore(data_dir)
    if not store.users():
        raise ConfigError(f"the console needs a login but {data_dir} has no users: add one with "
                          "`arrowlog user add NAME` (the same users as arrowlog serve's SASL)")

    def check(user: str, password: str) -> bool:
        if not user or not password:
            return False
        try:
            PlainMechanism(store.lookup).step(b"\0" + user.encode() + b"\0" + password.encode())
        except AuthenticationError:
            return False
        return True

    return check


def loopback_names(host: str) -> list[str] | None:
    """The Host headers a console listening on ``host`` answers: on IPv4 loopback
    only its own names (a DNS-rebound name is refused); elsewhere any (None)."""
    return ["127.0.0.1", "localhost"] if host in ("127.0.0.1", "localhost") else None


def needs_login(host: str, login: bool | None) -> bool:
    """An explicit choice wins; otherwise a login is required beyond loopback."""
    return login if login is not None else host not in LOOPBACK
