"""Security for ``arrowlog serve``: TLS, SASL (PLAIN, SCRAM-SHA-256/512) and ACLs.

The server makes one ``Security`` from a ``SecurityConfig`` and asks it for
a ``ConnectionSecurity`` per accepted connection; every decoded request then
goes through ``Security.dispatch``, which answers the SASL APIs itself,
closes connections that send anything else before authenticating, checks
ACLs and calls the broker's handler. See docs/SECURITY.md.

Listener security protocols (Kafka's names)::

    PLAINTEXT       no TLS, no authentication, no ACL checks (the loopback default)
    SSL             TLS; principal = client certificate DN, or User:ANONYMOUS
    SASL_PLAINTEXT  SASL, no TLS (PLAIN only to loopback peers)
    SASL_SSL        TLS, then SASL
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass, field

from arrowlog.errors import ConfigError

from ..messages import APIS
from .acl import Authorizer
from .authorize import authorize_and_handle
from .handlers import SECURITY_APIS
from .sasl import ConnectionSecurity
from .scram import MECHANISMS
from .store import AclStore, CredentialStore

log = logging.getLogger("arrowlog.server.security")

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", *MECHANISMS)
CLIENT_AUTH = ("none", "requested", "required")
_DN_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
             "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
             "domainComponent": "DC", "emailAddress": "EMAILADDRESS"}


def _split(value, sep: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(sep)
    return [v.strip() for v in value if v and v.strip()]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass
class SecurityConfig:
    """Broker security settings (Kafka config names in the comments)."""

    listener: str = "PLAINTEXT"                     # listener security protocol
    ssl_cert: str | None = None                     # ssl.keystore (PEM certificate chain)
    ssl_key: str | None = None                      # ssl.key (PEM private key)
    ssl_cafile: str | None = None                   # ssl.truststore (PEM CAs for client certs)
    ssl_client_auth: str = "none"                   # ssl.client.auth
    # a list, or one string ("A,B"; super users "User:a;User:b"): a list after __post_init__
    sasl_mechanisms: list[str] | str = field(default_factory=lambda: ["SCRAM-SHA-256", "SCRAM-SHA-512"])
    super_users: list[str] | str = field(default_factory=list)  # super.users
    allow_everyone_if_no_acl_found: bool = False     # allow.everyone.if.no.acl.found

    def __post_init__(self):
        self.listener = self.listener.upper()
        self.ssl_client_auth = self.ssl_client_auth.lower()
        self.sasl_mechanisms = [m.upper() for m in _split(self.sasl_mechanisms, ",")]
        self.super_users = _split(self.super_users, ";")  # ";" as Kafka: a DN holds commas
        self.validate()

    @property
    def uses_tls(self) -> bool:
        return self.listener in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.listener in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def authenticates(self) -> bool:
        return self.listener != "PLAINTEXT"

    def validate(self) -> None:
        if self.listener not in PROTOCOLS:
            raise ConfigError(f"listener security protocol {self.listener!r} is not one of {', '.join(PROTOCOLS)}")
        if self.ssl_client_auth not in CLIENT_AUTH:
            raise ConfigError(f"ssl client auth {self.ssl_client_auth!r} is not one of {', '.join(CLIENT_AUTH)}")
        bad = [m for m in self.sasl_mechanisms if m not in SASL_MECHANISMS]
        if bad:
            raise ConfigError(f"SASL mechanism(s) {', '.join(bad)} not supported; use "
                              f"{', '.join(SASL_MECHANISMS)}")
        if self.uses_sasl and not self.sasl_mechanisms:
            raise ConfigError(f"{self.listener} needs at least one SASL mechanism")
        if self.uses_tls and not (self.ssl_cert and self.ssl_key):
            raise ConfigError(f"{self.listener} needs --ssl-cert and --ssl-key (PEM files)")
        if self.ssl_client_auth != "none" and not self.ssl_cafile:
            raise ConfigError("--ssl-client-auth needs --ssl-cafile (the CA that signs client certificates)")
        if self.ssl_client_auth != "none" and not self.uses_tls:
            raise ConfigError(f"--ssl-client-auth needs a TLS listener (SSL or SASL_SSL), not {self.listener}")
        for u in self.super_users:
            if not u.startswith("User:") or u == "User:":
                raise ConfigError(f"super user {u!r} is not 'User:<name>'")


class Security:
    """The server's security: TLS context, credential and ACL stores, authorizer."""

    def __init__(self, data_dir: str, config: SecurityConfig | None = None):
        self.config = config or SecurityConfig()
        self.credentials = CredentialStore(data_dir)
        self.acls = AclStore(data_dir)
        self.authorizer = Authorizer(self.acls, super_users=self.config.super_users,
                                     allow_if_no_acl=self.config.allow_everyone_if_no_acl_found,
                                     enabled=self.config.authenticates)
        self.ssl_context = self._ssl_context() if self.config.uses_tls else None
        self.is_loopback = is_loopback

    def _ssl_context(self) -> ssl.SSLContext:
        c = self.config
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            assert c.ssl_cert is not None, "SecurityConfig refuses TLS without a certificate"
            ctx.load_cert_chain(c.ssl_cert, c.ssl_key)
            if c.ssl_cafile:
                ctx.load_verify_locations(c.ssl_cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the TLS certificate/key/CA ({c.ssl_cert}, {c.ssl_key}, "
                              f"{c.ssl_cafile}): {exc}") from None
        ctx.verify_mode = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL,
                           "required": ssl.CERT_REQUIRED}[c.ssl_client_auth]
        return ctx

    def startup_warnings(self, host: str) -> list[str]:
        """Warnings printed on every start (the server logs them)."""
        out = []
        c = self.config
        if not is_loopback(host) and not c.authenticates:
            out.append(f"listening on {host or '0.0.0.0'} WITHOUT authentication or TLS: anyone who "
                       "can reach this port can read, write and delete every topic. Use --listener "
                       "SASL_SSL (see docs/SECURITY.md) or listen on 127.0.0.1")
        if not is_loopback(host) and c.uses_sasl and not c.uses_tls:
            out.append(f"SASL on {host or '0.0.0.0'} without TLS: traffic is readable on the network"
                       + ("; PLAIN is offered to loopback peers only" if "PLAIN" in c.sasl_mechanisms else ""))
        if not is_loopback(host) and c.listener == "SSL" and c.ssl_client_auth != "required":
            out.append("SSL listener without required client certificates: clients are not "
                       "authenticated (principal User:ANONYMOUS)")
        if (c.authenticates and not c.super_users and not c.allow_everyone_if_no_acl_found
                and not self.acls.bindings()):
            out.append("no --super-users and no ACLs: every request will be refused "
                       "(add --super-users User:admin, then create ACLs as admin)")
        return out

    def connection(self, peer_host: str, ssl_object) -> ConnectionSecurity:
        principal = None
        if ssl_object is not None and not self.config.uses_sasl:
            cert = ssl_object.getpeercert()
            if cert:
                principal = "User:" + certificate_dn(cert)
        return ConnectionSecurity(self, peer_host, ssl_object is not None, principal)

    def dispatch(self, conn: ConnectionSecurity, ctx, req: dict, broker):
        """Answer one request on ``conn`` (a dict, None, or an awaitable of a dict)."""
        key = ctx.api_key
        if key == 17:
            return conn.handshake(ctx.version, req)
        if key == 36:
            return conn.authenticate(req)
        if key != 18 and not conn.authenticated:
            conn.check_admitted(APIS[key].name)
        if key in SECURITY_APIS:
            return SECURITY_APIS[key](self, conn, ctx, req)
        return authorize_and_handle(self.authorizer, conn.principal, conn.peer_host, ctx, req, broker)


def certificate_dn(cert: dict) -> str:
    """The subject of a peer certificate as an RFC 2253 DN ("CN=alice,O=acme,C=US"),
    as Kafka's default SSL principal builder names it."""
    parts = []
    for rdn in reversed(cert.get("subject", ())):
        for name, value in rdn:
            value = value.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")
            parts.append(f"{_DN_NAMES.get(name, name)}={value}")
    return ",".join(parts)


__all__ = ["Security", "SecurityConfig", "PROTOCOLS", "SASL_MECHANISMS", "is_loopback", "certificate_dn"]
