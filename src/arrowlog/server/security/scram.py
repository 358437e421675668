"""SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677), the server side.

Stored credential (what the data directory holds; never the password)::

    salt        random bytes (16 by default)
    iterations  PBKDF2 rounds, at least 4096 (Kafka's minimum)
    stored_key  H(HMAC(SaltedPassword, "Client Key"))
    server_key  HMAC(SaltedPassword, "Server Key")
    SaltedPassword = PBKDF2-HMAC-H(password, salt, iterations)

Exchange (one ``ScramServer`` per authentication attempt)::

    client-first  n,,n=<user>,r=<cnonce>
    server-first  r=<cnonce><snonce>,s=<base64 salt>,i=<iterations>
    client-final  c=biws,r=<cnonce><snonce>,p=<base64 ClientProof>
    server-final  v=<base64 ServerSignature>

The server nonce is fresh for every attempt, so a client-final captured from
an earlier exchange never matches (its ``r=`` names another nonce); a server
answers one client-final only. As Kafka does, a client-final nonce of
``<cnonce><cnonce><snonce>`` is accepted too: librdkafka up to 2.x sends its
client nonce again in front of the combined one. Unknown users are carried through the
exchange with a made-up salt and fail at the proof, like a wrong password, so
the reply does not tell an attacker which names exist. Only the standard
library's ``hashlib.pbkdf2_hmac``, ``hmac`` and ``hmac.compare_digest`` do
the cryptography.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from arrowlog.errors import ArrowlogError

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# Kafka's bounds (ScramMechanism min/maxIterations). The server derives a key only for a
# PLAIN login (SCRAM clients do the PBKDF2 themselves): 8192 SHA-256 rounds measured 1.4 ms
# and 16384 SHA-512 rounds 6.0 ms (best of 20, 2 cores), so the cap bounds a login's
# event-loop time.
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384
DEFAULT_ITERATIONS = 8192
# A client message longer than this is not SCRAM (names are at most a few hundred bytes).
MAX_MESSAGE_BYTES = 4096
# Secret for the made-up salts of unknown users (per process: stable within one server run).
_FAKE_SALT_KEY = secrets.token_bytes(32)


class AuthenticationError(ArrowlogError):
    """A login was refused (wrong credentials, malformed exchange or a
    mechanism that is not enabled). The message is safe to send to the client."""


@dataclass(frozen=True)
class ScramCredential:
    """What the server stores for one user and mechanism."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def to_json(self) -> dict:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return {"salt": b64(self.salt), "iterations": self.iterations,
                "stored_key": b64(self.stored_key), "server_key": b64(self.server_key)}

    @classmethod
    def from_json(cls, obj: dict) -> ScramCredential:
        return cls(base64.b64decode(obj["salt"]), int(obj["iterations"]),
                   base64.b64decode(obj["stored_key"]), base64.b64decode(obj["server_key"]))


def hash_name(mechanism: str) -> str:
    try:
        return MECHANISMS[mechanism]
    except KeyError:
        raise AuthenticationError(f"unknown SCRAM mechanism {mechanism!r}; use one of "
                                  f"{', '.join(MECHANISMS)}") from None


def _hmac(h: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, h).digest()


def credential_from_salted(mechanism: str, salted_password: bytes, salt: bytes,
                           iterations: int) -> ScramCredential:
    h = hash_name(mechanism)
    client_key = _hmac(h, salted_password, b"Client Key")
    return ScramCredential(salt, iterations, hashlib.new(h, client_key).digest(),
                           _hmac(h, salted_password, b"Server Key"))


def make_credential(mechanism: str, password: str, *, salt: bytes | None = None,
                    iterations: int = DEFAULT_ITERATIONS) -> ScramCredential:
    """Derive the stored credential for ``password`` (a random 16-byte salt unless given)."""
    check_iterations(iterations)
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac(hash_name(mechanism), password.encode(), salt, iterations)
    return credential_from_salted(mechanism, salted, salt, iterations)


def check_iterations(iterations: int) -> None:
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise AuthenticationError(f"SCRAM iterations must be {MIN_ITERATIONS}..{MAX_ITERATIONS}, "
                                  f"got {iterations}")


def _unescape_name(name: str) -> str:
    """RFC 5802 saslname: ',' is sent as '=2C' and '=' as '=3D'; any other '=' is invalid."""
    out, i = [], 0
    while i < len(name):
        if name[i] == "=":
            code = name[i:i + 3]
            if code == "=2C":
                out.append(",")
            elif code == "=3D":
                out.append("=")
            else:
                raise AuthenticationError("malformed SCRAM user name (bad '=' escape)")
            i += 3
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def _attributes(message: str, expected: str) -> dict:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}, requiring the attributes in ``expected`` order first."""
    parts = message.split(",")
    out: dict[str, str] = {}
    for i, part in enumerate(parts):
        if len(part) < 2 or part[1] != "=":
            raise AuthenticationError("malformed SCRAM message")
        if i < len(expected) and part[0] != expected[i]:
            raise AuthenticationError(f"malformed SCRAM message: expected '{expected[i]}=' "
                                      f"at position {i + 1}")
        out.setdefault(part[0], part[2:])
    if len(parts) < len(expected):
        raise AuthenticationError("malformed SCRAM message: attributes missing")
    return out


def _decode(message: bytes) -> str:
    if len(message) > MAX_MESSAGE_BYTES:
        raise AuthenticationError(f"SCRAM message of {len(message)} bytes is over {MAX_MESSAGE_BYTES}")
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationError("SCRAM message is not UTF-8") from None


class ScramServer:
    """One SCRAM exchange: ``first(client_first)`` -> server-first,
    ``final(client_final)`` -> server-final; raises AuthenticationError on any
    failure. ``lookup(user)`` returns the user's ScramCredential or None."""

    def __init__(self, mechanism: str, lookup, *, nonce: str | None = None):
        self.mechanism = mechanism
        self._hash = hash_name(mechanism)
        self._lookup = lookup
        self._server_nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        self._state = "first"
        self.username: str | None = None
        self._credential: ScramCredential | None = None
        self._known = False

    def first(self, client_first: bytes) -> bytes:
        if self._state != "first":
            raise AuthenticationError("SCRAM client-first sent twice")
        self._state = "final"
        text = _decode(client_first)
        # gs2-header: channel binding flag, authzid, then the bare message.
        flag, _, rest = text.partition(",")
        authzid, _, bare = rest.partition(",")
        if flag not in ("n", "y"):
            raise AuthenticationError("SCRAM channel binding is not supported (gs2 flag must be 'n' or 'y')")
        attrs = _attributes(bare, "nr")
        if "m" in attrs:
            raise AuthenticationError("SCRAM extension 'm' is not supported")
        user = _unescape_name(attrs["n"])
        if authzid and _unescape_name(authzid.removeprefix("a=")) != user:
            raise AuthenticationError("SCRAM authorization id must be empty or the user name")
        cnonce = attrs["r"]
        if not cnonce or any(c == "," or not 0x21 <= ord(c) <= 0x7E for c in cnonce):
            raise AuthenticationError("malformed SCRAM client nonce")
        self.username = user
        credential = self._lookup(user)
        self._known = credential is not None
        if credential is None:
            fake_salt = _hmac("sha256", _FAKE_SALT_KEY, user.encode())[:16]
            credential = ScramCredential(fake_salt, DEFAULT_ITERATIONS, b"", b"")
        self._credential = credential
        self._cnonce = cnonce
        self._nonce = cnonce + self._server_nonce
        self._client_first_bare = bare
        self._server_first = (f"r={self._nonce},s={base64.b64encode(credential.salt).decode()},"
                              f"i={credential.iterations}")
        self._gs2_header = f"{flag},{authzid},"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        if self._state != "final":
            raise AuthenticationError("SCRAM client-final out of order" if self._state == "first"
                                      else "SCRAM exchange already finished")
        self._state = "done"
        text = _decode(client_final)
        attrs = _attributes(text, "cr")
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep or "p" not in attrs:
            raise AuthenticationError("SCRAM client-final has no proof")
        try:
            binding = base64.b64decode(attrs["c"], validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise AuthenticationError("SCRAM client-final is not valid base64") from None
        if binding != self._gs2_header.encode():
            raise AuthenticationError("SCRAM channel binding does not match the client-first message")
        # librdkafka before 2.x's fix sends r=<cnonce><cnonce><snonce>; Kafka accepts a nonce
        # that ends with the server's, so we accept exactly that form too. Either way the
        # fresh server nonce must be in it, which is what defeats a replay.
        nonce = attrs["r"].encode()
        if not (hmac.compare_digest(nonce, self._nonce.encode())
                or hmac.compare_digest(nonce, (self._cnonce + self._nonce).encode())):
            raise AuthenticationError("SCRAM nonce does not match this exchange (replayed or forged)")
        cred = self._credential
        assert cred is not None, "first() sets it before the state lets final() in"
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self._hash, cred.stored_key, auth_message)
        if len(proof) != len(signature) or not self._known:
            raise AuthenticationError("Authentication failed: invalid credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(self._hash, client_key).digest(), cred.stored_key):
            raise AuthenticationError("Authentication failed: invalid credentials")
        server_signature = _hmac(self._hash, cred.server_key, auth_message)
        return b"v=" + base64.b64encode(server_signature)
