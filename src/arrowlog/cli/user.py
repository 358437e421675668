"""``arrowlog user add|remove|list``: SCRAM users of ``arrowlog serve``.

Credentials live in ``<data>/security/scram-credentials.json`` (0600) as
salt, iterations, StoredKey and ServerKey per mechanism; the password itself
is never written. A running server sees a change at the next login. The
same users are managed over the wire by Kafka's AlterUserScramCredentials
(``kafka-configs --alter --add-config 'SCRAM-SHA-256=[password=...]'``).
"""

from __future__ import annotations

import sys

import click

from .common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    command_body,
    existing_data_dir,
    note,
    resolve_data_dir,
)
from .listing import Listing, list_command

MECHANISM_CHOICES = ("SCRAM-SHA-256", "SCRAM-SHA-512")


def _stores(data: str | None, *, create: bool = False):
    """The directory's credential store; only 'user add' may make the directory."""
    from arrowlog.server.security.store import CredentialStore

    path = resolve_data_dir(data)
    return CredentialStore(path if create else existing_data_dir(path))


@click.group("user", epilog="""\b
Examples:
  arrowlog user add alice                      # asks for the password twice
  printf '%s' "$PW" | arrowlog user add alice --password-stdin
  arrowlog user list
  arrowlog user remove alice
""")
def user_group() -> None:
    """Manage the SASL/SCRAM users of 'arrowlog serve' (see docs/SECURITY.md)."""


@user_group.command("add", epilog="""\b
Examples:
  arrowlog user add alice                      # asks for the password twice
  printf '%s' "$PW" | arrowlog user add alice --password-stdin -m SCRAM-SHA-512

Adding an existing user replaces their password. PLAIN logins are checked
against the same stored keys, so every user can log in with PLAIN too
(where PLAIN is enabled: over TLS or on loopback).""")
@click.argument("name")
@click.option("--password", "password", default=None, help="The password (visible to 'ps': prefer the prompt "
              "or --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("-m", "--mechanism", "mechanisms", multiple=True, type=click.Choice(MECHANISM_CHOICES),
              help="Mechanism to store (repeat) [default: both].")
@click.option("--iterations", type=int, default=8192, show_default=True, help="PBKDF2 rounds (4096 or more).")
@command_body
def user_add(name: str, password: str | None, password_stdin: bool, mechanisms: tuple[str, ...],
             iterations: int, data: str | None) -> None:
    """Add a user or set their password."""
    from arrowlog.server.security.scram import AuthenticationError, make_credential

    if not name or any(c in name for c in "\0\n"):
        raise CliError("a user name must be non-empty and hold no NUL or newline", EXIT_USAGE)
    if password is not None and password_stdin:
        raise CliError("give --password or --password-stdin, not both", EXIT_USAGE)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        if not sys.stdin.isatty():
            raise CliError("no terminal to ask for the password on: pipe it in with --password-stdin", EXIT_USAGE)
        password = click.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        raise CliError("the password is empty", EXIT_USAGE)
    store = _stores(data, create=True)
    for mechanism in mechanisms or MECHANISM_CHOICES:
        try:
            credential = make_credential(mechanism, password, iterations=iterations)
        except AuthenticationError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        store.upsert(name, mechanism, credential)
    note(f"user {name} stored ({', '.join(mechanisms or MECHANISM_CHOICES)}, {iterations} iterations)")


@user_group.command("remove", epilog="""\b
Examples:
  arrowlog user remove alice
  arrowlog user remove alice -m SCRAM-SHA-256   # keep SCRAM-SHA-512
""")
@click.argument("name")
@click.option("-m", "--mechanism", type=click.Choice(MECHANISM_CHOICES), default=None,
              help="Remove only this mechanism's credential [default: the whole user].")
@command_body
def user_remove(name: str, mechanism: str | None, data: str | None) -> None:
    """Remove a user (their open connections stay; new logins are refused)."""
    if not _stores(data).delete(name, mechanism):
        what = f"a {mechanism} credential" if mechanism else "credentials"
        raise CliError(f"user {name!r} has no {what}; see 'arrowlog user list'", EXIT_NOT_FOUND)
    note(f"user {name} removed" + (f" ({mechanism})" if mechanism else ""))


@list_command(user_group, "Print JSON: {user: {mechanism: iterations}}.")
def user_list(data: str | None) -> Listing:
    """List users and their SCRAM mechanisms."""
    users = _stores(data).users()
    return users, ["USER", "MECHANISMS", "ITERATIONS"], lambda: [
        [u, ",".join(m), ",".join(str(i) for i in m.values())] for u, m in users.items()]
