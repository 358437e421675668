"""The security options of ``arrowlog serve`` / ``python -m arrowlog.server``
(Kafka's config names, with dots as dashes, where Kafka has one)."""

from __future__ import annotations

import argparse

from . import CLIENT_AUTH, PROTOCOLS, SASL_MECHANISMS, SecurityConfig


def add_security_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("security (docs/SECURITY.md)")
    g.add_argument("--listener", "--security-protocol", dest="listener", default="PLAINTEXT",
                   type=str.upper, choices=PROTOCOLS,
                   help="listener security protocol (default PLAINTEXT: no TLS, no authentication)")
    g.add_argument("--ssl-cert", help="PEM certificate (chain) of the server, for SSL and SASL_SSL")
    g.add_argument("--ssl-key", help="PEM private key of --ssl-cert")
    g.add_argument("--ssl-cafile", help="PEM CA bundle that signs client certificates")
    g.add_argument("--ssl-client-auth", default="none", type=str.lower, choices=CLIENT_AUTH,
                   help="ssl.client.auth: ask for client certificates (principal = certificate DN)")
    g.add_argument("--sasl-mechanisms", default="SCRAM-SHA-256,SCRAM-SHA-512",
                   help=f"sasl.enabled.mechanisms, comma-separated, of {', '.join(SASL_MECHANISMS)} "
                        "(PLAIN only over TLS or to loopback peers)")
    g.add_argument("--super-users", default="",
                   help="super.users: principals allowed everything, 'User:admin;User:ops'")
    g.add_argument("--allow-everyone-if-no-acl-found", action="store_true",
                   help="allow.everyone.if.no.acl.found: a resource without ACLs is open to every "
                        "authenticated principal (default: refused)")


def security_config_from_args(args) -> SecurityConfig:
    """Raises ConfigError with a message for the user."""
    return SecurityConfig(listener=args.listener, ssl_cert=args.ssl_cert, ssl_key=args.ssl_key,
                          ssl_cafile=args.ssl_cafile, ssl_client_auth=args.ssl_client_auth,
                          sasl_mechanisms=args.sasl_mechanisms, super_users=args.super_users,
                          allow_everyone_if_no_acl_found=args.allow_everyone_if_no_acl_found)
