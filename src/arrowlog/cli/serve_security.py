"""The security options of ``arrowlog serve`` (docs/SECURITY.md).

They are declared here so that ``arrowlog serve --help`` lists them, and are
passed on unchanged to the server's own argument parser
(``python -m arrowlog.server``), which validates them and says what is wrong.
The server is imported only when ``serve`` runs, so the CLI starts fast and
works in a build without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

# (flag, metavar or None for an on/off flag, help)
_OPTIONS = (
    ("--listener", "PROTOCOL", "Listener security protocol: PLAINTEXT (default: no TLS, no login), SSL, "
                               "SASL_PLAINTEXT or SASL_SSL."),
    ("--ssl-cert", "FILE", "PEM certificate (chain) of the server, for SSL and SASL_SSL."),
    ("--ssl-key", "FILE", "PEM private key of --ssl-cert."),
    ("--ssl-cafile", "FILE", "PEM CA bundle that signs client certificates."),
    ("--ssl-client-auth", "none|requested|required", "Ask for client certificates (principal = DN)."),
    ("--sasl-mechanisms", "LIST", "Enabled SASL mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 "
                                  "[default: both SCRAM]; PLAIN only over TLS or on loopback."),
    ("--super-users", "'User:a;User:b'", "Principals allowed everything."),
    ("--allow-everyone-if-no-acl-found", None, "A resource without ACLs is open to every "
                                               "authenticated principal (default: refused)."),
)


def _dest(flag: str) -> str:
    return "security_" + flag.lstrip("-").replace("-", "_")


def security_options(fn: Callable) -> Callable:
    """Add the security options to a command and put them back into ``ctx.args``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        passed: list[str] = []
        for flag, metavar, _ in _OPTIONS:
            value = kwargs.pop(_dest(flag))
            if metavar is None and value:
                passed.append(flag)
            elif metavar is not None and value is not None:
                passed += [flag, value]
        ctx = click.get_current_context()
        ctx.args = [*passed, *ctx.args]
        return fn(*args, **kwargs)

    for flag, metavar, help_text in reversed(_OPTIONS):
        if metavar is None:
            wrapper = click.option(flag, _dest(flag), is_flag=True, help=help_text)(wrapper)
        else:
            wrapper = click.option(flag, _dest(flag), metavar=metavar, default=None, help=help_text)(wrapper)
    return wrapper
