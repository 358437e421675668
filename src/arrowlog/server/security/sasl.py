"""Per-connection authentication: the SASL state machine and its mechanisms.

States (Kafka's SaslServerAuthenticator, reduced to what a broker needs)::

    HANDSHAKE ──SaslHandshake(mech)──▶ AUTHENTICATE ──SaslAuthenticate…──▶ AUTHENTICATED
        │                     (v0: raw size-prefixed tokens instead)
        └──────── any failure ───────▶ FAILED (the reply is sent, then the connection closes)

On a SASL listener only ApiVersions, SaslHandshake and SaslAuthenticate are
answered before AUTHENTICATED; any other request closes the connection
without a reply, as Kafka does. A failed login answers
SASL_AUTHENTICATION_FAILED (58) with a message and closes. SaslHandshake or
SaslAuthenticate out of order, or on a listener without SASL, answers
ILLEGAL_SASL_STATE (34); a mechanism that is not enabled answers
UNSUPPORTED_SASL_MECHANISM (33) with the enabled list. Both close a connection
that is not authenticated.

PLAIN (RFC 4616, ``authzid NUL authcid NUL password``) is offered only on a
TLS connection or to a loopback peer, and is checked against the same stored
SCRAM credential (the password is salted and hashed, then compared with
StoredKey), so no password is kept for it. One connection authenticates once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from .. import errors as E
from ..wire import ProtocolError
from .scram import DEFAULT_ITERATIONS, MECHANISMS, AuthenticationError, ScramServer, credential_from_salted
from .store import SecurityStateError

log = logging.getLogger("arrowlog.server.security")

HANDSHAKE, AUTHENTICATE, RAW_AUTHENTICATE, AUTHENTICATED, FAILED = range(5)
ANONYMOUS = "User:ANONYMOUS"
MAX_PLAIN_BYTES = 4096


class PlainMechanism:
    name = "PLAIN"

    def __init__(self, credentials):
        self._credentials = credentials
        self.done = False
        self.username: str | None = None

    def step(self, token: bytes) -> bytes:
        if self.done:
            raise AuthenticationError("PLAIN takes one message")
        if len(token) > MAX_PLAIN_BYTES:
            raise AuthenticationError(f"PLAIN message over {MAX_PLAIN_BYTES} bytes")
        parts = token.split(b"\0")
        if len(parts) != 3:
            raise AuthenticationError("malformed PLAIN message: expected authzid NUL user NUL password")
        try:
            authzid, user, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            raise AuthenticationError("PLAIN message is not UTF-8") from None
        if not user or not password:
            raise AuthenticationError("PLAIN user name and password must not be empty")
        if authzid and authzid != user:
            raise AuthenticationError("PLAIN authorization id must be empty or the user name")
        if not self._verify(user, password):
            raise AuthenticationError("Authentication failed: invalid credentials")
        self.done, self.username = True, user
        return b""

    def _verify(self, user: str, password: str) -> bool:
        for mechanism, h in MECHANISMS.items():
            cred = self._credentials(user, mechanism)
            if cred is not None:
                salted = hashlib.pbkdf2_hmac(h, password.encode(), cred.salt, cred.iterations)
                derived = credential_from_salted(mechanism, salted, cred.salt, cred.iterations)
                return hmac.compare_digest(derived.stored_key, cred.stored_key)
        # The same work for an unknown user, so timing does not tell which names exist.
        hashlib.pbkdf2_hmac("sha256", password.encode(), b"arrowlog-no-user", DEFAULT_ITERATIONS)
        return False


class ScramMechanism:
    def __init__(self, name: str, credentials):
        self.name = name
        self._server = ScramServer(name, lambda user: credentials(user, name))
        self._step = 0
        self.done = False
        self.username: str | None = None

    def step(self, token: bytes) -> bytes:
        self._step += 1
        if self._step == 1:
            return self._server.first(token)
        reply = self._server.final(token)
        self.done, self.username = True, self._server.username
        return reply


class ConnectionSecurity:
    """One connection's authentication state and principal (see the module comment)."""

    def __init__(self, security, peer_host: str, tls: bool, principal: str | None):
        self.security = security
        self.peer_host = peer_host
        self.tls = tls
        self.sasl = security.config.uses_sasl
        self.state = HANDSHAKE if self.sasl else AUTHENTICATED
        self.principal = principal or ANONYMOUS
        self.close_after_reply = False
        self._mechanism: PlainMechanism | ScramMechanism | None = None

    # ------------------------------------------------------------ gate
    @property
    def authenticated(self) -> bool:
        return self.state == AUTHENTICATED

    @property
    def expects_raw_token(self) -> bool:
        return self.state == RAW_AUTHENTICATE

    def check_admitted(self, api_name: str) -> None:
        if self.state != AUTHENTICATED:
            raise ProtocolError(f"{api_name} request before SASL authentication; closing")

    def offered_mechanisms(self) -> list[str]:
        plain_ok = self.tls or self.security.is_loopback(self.peer_host)
        return [m for m in self.security.config.sasl_mechanisms if m != "PLAIN" or plain_ok]

    def _fail(self, reason: str) -> None:
        self.state = FAILED
        self.close_after_reply = True
        log.warning("authentication from %s failed: %s", self.peer_host, reason)

    # ------------------------------------------------------------ SaslHandshake (17)
    def handshake(self, version: int, req: dict) -> dict:
        offered = self.offered_mechanisms() if self.sasl else []
        if not self.sasl or self.state != HANDSHAKE:
            if self.state != AUTHENTICATED:
                self._fail("SaslHandshake out of order")
            return {"error_code": E.ILLEGAL_SASL_STATE, "mechanisms": offered}
        mechanism = req["mechanism"]
        if mechanism not in offered:
            why = (" (PLAIN is only offered over TLS or on loopback)"
                   if mechanism == "PLAIN" and "PLAIN" in self.security.config.sasl_mechanisms else "")
            self._fail(f"mechanism {mechanism!r} is not enabled{why}")
            return {"error_code": E.UNSUPPORTED_SASL_MECHANISM, "mechanisms": offered}
        lookup = self.security.credentials.lookup
        self._mechanism = PlainMechanism(lookup) if mechanism == "PLAIN" else ScramMechanism(mechanism, lookup)
        self.state = AUTHENTICATE if version >= 1 else RAW_AUTHENTICATE
        return {"error_code": E.NONE, "mechanisms": offered}

    # ------------------------------------------------------------ SaslAuthenticate (36)
    def authenticate(self, req: dict) -> dict:
        if self.state != AUTHENTICATE:
            if self.state != AUTHENTICATED:
                self._fail("SaslAuthenticate before SaslHandshake")
            return {"error_code": E.ILLEGAL_SASL_STATE,
                    "error_message": "SaslAuthenticate is not expected now (send SaslHandshake first, once)",
                    "auth_bytes": b""}
        try:
            reply = self._step(req["auth_bytes"])
        except AuthenticationError as exc:
            return {"error_code": E.SASL_AUTHENTICATION_FAILED, "error_message": str(exc), "auth_bytes": b""}
        return {"error_code": E.NONE, "error_message": None, "auth_bytes": reply, "session_lifetime_ms": 0}

    def raw_token(self, token: bytes) -> bytes:
        """SaslHandshake v0: a raw token in, a size-prefixed raw token out (closes on failure)."""
        try:
            reply = self._step(token)
        except AuthenticationError as exc:
            raise ProtocolError(f"SASL authentication failed: {exc}") from None
        return len(reply).to_bytes(4, "big") + reply

    def _step(self, token: bytes) -> bytes:
        mech = self._mechanism
        assert mech is not None, "the handshake sets it before the state lets tokens in"
        try:
            reply = mech.step(bytes(token))  # the wire reader hands out memoryviews
        except AuthenticationError as exc:
            self._fail(f"{mech.name}: {exc}")
            raise
        except SecurityStateError as exc:
            log.error("%s", exc)
            self._fail(f"{mech.name}: credentials unreadable")
            raise AuthenticationError("Authentication failed: the server cannot read its credentials") from None
        if mech.done:
            self.state = AUTHENTICATED
            self.principal = f"User:{mech.username}"
            log.info("%s authenticated from %s with %s", self.principal, self.peer_host, mech.name)
        return reply
