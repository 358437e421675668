"""The registry listener's security follows the Kafka listener's (docs/SECURITY.md).

- A TLS listener (SSL, SASL_SSL): the REST API is HTTPS with the same
  certificate and the same client-certificate policy.
- A SASL listener (SASL_PLAINTEXT, SASL_SSL): every request carries HTTP Basic
  credentials (confluent-kafka's ``basic.auth.user.info``), checked against the
  same SCRAM credentials as SASL/PLAIN; like PLAIN, a password is accepted only
  over TLS or from a loopback peer. Any authenticated user may use the
  registry (it has no ACLs of its own).
- SSL with required client certificates: the certificate authenticates.
- PLAINTEXT: no authentication (listen on loopback).

A verified (user, password) is remembered for ``CACHE_S`` seconds, so each
request does not pay the key derivation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time

from aiohttp import web

from arrowlog.server.security.sasl import PlainMechanism
from arrowlog.server.security.scram import AuthenticationError

CACHE_S = 60.0
_MAX_CACHE = 1024


class BasicAuth:
    def __init__(self, security):
        self.security = security
        self._verified: dict[bytes, float] = {}   # sha256(user NUL password) -> expiry

    @staticmethod
    def _refuse(message: str) -> web.Response:
        return web.Response(status=401, text=json.dumps({"error_code": 401, "message": message}),
                            content_type="application/vnd.schemaregistry.v1+json",
                            headers={"WWW-Authenticate": 'Basic realm="arrowlog schema registry"'})

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request may go on, else the 401 answer."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return self._refuse("this registry needs HTTP Basic credentials (basic.auth.user.info)")
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return self._refuse("malformed Basic credentials")
        if not sep or not user or not password:
            return self._refuse("Basic credentials need user:password")
        peer = request.remote or ""
        if request.transport is None or (request.transport.get_extra_info("sslcontext") is None
                                         and not self.security.is_loopback(peer)):
            return self._refuse("send credentials over TLS (an SSL or SASL_SSL listener), or from loopback")
        key = hashlib.sha256(user.encode() + b"\0" + password.encode()).digest()
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return None
        try:
            PlainMechanism(self.security.credentials.lookup).step(
                b"\0" + user.encode() + b"\0" + password.encode())
        except AuthenticationError:
            return self._refuse("authentication failed: invalid credentials")
        if len(self._verified) >= _MAX_CACHE:
            self._verified = {k: t for k, t in self._verified.items() if t > now}
            if len(self._verified) >= _MAX_CACHE:
                self._verified.clear()
        self._verified[key] = now + CACHE_S
        return None


def listener_security(security) -> tuple[object | None, BasicAuth | None]:
    """(ssl context or None, BasicAuth or None) for the registry listener of ``security``."""
    if security is None:
        return None, None
    auth = BasicAuth(security) if security.config.uses_sasl else None
    return security.ssl_context, auth
