"""The registry listener's security follows the Kafka listener's (docs/SECURITY.md).

- A TLS listener (SSL, SASL_SSL): the REST API is HTTPS with the same
  certificate and the same client-certificate policy.
- A SASL listener (SASL_PLAINTEXT, SASL_SSL): every request carries HTTP Basic
  credentials (confluent-kafka's ``basic.auth.user.info``), checked against the
  same SCRAM credentials as SASL/PLAIN; like PLAIN, a password is accepted only
  over TLS or from a loopback peer. Any authenticated user may use the
  registry (it has no ACLs of its own).
- SSL: every request needs a client certificate that the TLS handshake
  verified (``--ssl-client-auth requested`` or ``required``); a request
  without one gets 401. An SSL listener that asks for no certificate
  (``--ssl-client-auth none``) cannot tell anyone apart, so the server does
  not start the registry on it: it would be open to every TLS client, while
  the Kafka listener holds those same clients to ACLs as ``User:ANONYMOUS``.
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

from arrowlog.errors import ConfigError
from arrowlog.server.security.sasl import PlainMechanism
from arrowlog.server.security.scram import AuthenticationError

CACHE_S = 60.0
_MAX_CACHE = 1024


def _refuse(message: str, basic: bool = True) -> web.Response:
    return web.Response(status=401, text=json.dumps({"error_code": 401, "message": message}),
                        content_type="application/vnd.schemaregistry.v1+json",
                        headers={"WWW-Authenticate": 'Basic realm="arrowlog schema registry"'} if basic else None)


class Auth:
    """What the registry checks before each request (app.py's middleware)."""

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request may go on, else the 401 answer."""
        raise NotImplementedError


class CertificateAuth(Auth):
    """An SSL listener's registry: a request goes on only over a connection whose
    client certificate the TLS handshake verified."""

    def check(self, request: web.Request) -> web.Response | None:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport is not None else None
        if ssl_object is None or not ssl_object.getpeercert():   # {} or None: no verified certificate
            return _refuse("this registry needs a client certificate signed by the listener's CA "
                           "(ssl.certificate.location)", basic=False)
        return None


class BasicAuth(Auth):
    def __init__(self, security):
        self.security = security
        self._verified: dict[bytes, float] = {}   # sha256(user NUL password) -> expiry

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request may go on, else the 401 answer."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            return _refuse("this registry needs HTTP Basic credentials (basic.auth.user.info)")
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _refuse("malformed Basic credentials")
        if not sep or not user or not password:
            return _refuse("Basic credentials need user:password")
        peer = request.remote or ""
        if request.transport is None or (request.transport.get_extra_info("sslcontext") is None
                                         and not self.security.is_loopback(peer)):
            return _refuse("send credentials over TLS (an SSL or SASL_SSL listener), or from loopback")
        key = hashlib.sha256(user.encode() + b"\0" + password.encode()).digest()
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return None
        try:
            PlainMechanism(self.security.credentials.lookup).step(
                b"\0" + user.encode() + b"\0" + password.encode())
        except AuthenticationError:
            return _refuse("authentication failed: invalid credentials")
        if len(self._verified) >= _MAX_CACHE:
            self._verified = {k: t for k, t in self._verified.items() if t > now}
            if len(self._verified) >= _MAX_CACHE:
                self._verified.clear()
        self._verified[key] = now + CACHE_S
        return None


def listener_security(security) -> tuple[object | None, Auth | None]:
    """(ssl context or None, Auth or None) for the registry listener of ``security``;
    ConfigError for an SSL listener that verifies no client certificate."""
    if security is None:
        return None, None
    config = security.config
    auth: Auth | None = None
    if config.uses_sasl:
        auth = BasicAuth(security)
    elif config.uses_tls:
        if config.ssl_client_auth == "none":
            raise ConfigError("the schema registry on an SSL listener needs client certificates to tell its "
                              "users apart: add --ssl-client-auth required (or requested) with --ssl-cafile, "
                              "or use a SASL_SSL listener")
        auth = CertificateAuth()
    return security.ssl_context, auth
