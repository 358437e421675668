"""``arrowlog acl add|remove|list``: the ACLs of ``arrowlog serve``, offline.

The same bindings the Kafka ACL APIs manage (``kafka-acls``, AdminClient),
kept in ``<data>/security/acls.json``; a running server sees a change at its
next check. Useful to give the first principals their rights without a super
user. Decision rules: docs/SECURITY.md.
"""

from __future__ import annotations

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


def _acl():
    from arrowlog.server.security import acl

    return acl


def _store(data: str | None, *, create: bool = False):
    """The directory's ACL store; only 'acl add' may make the directory."""
    from arrowlog.server.security.store import AclStore

    path = resolve_data_dir(data)
    return AclStore(path if create else existing_data_dir(path))


def _resource(topic, group, cluster, transactional_id) -> tuple[int, str]:
    A = _acl()
    chosen = [(t, n) for t, n in ((A.TOPIC, topic), (A.GROUP, group), (A.TRANSACTIONAL_ID, transactional_id))
              if n is not None] + ([(A.CLUSTER, A.CLUSTER_NAME)] if cluster else [])
    if len(chosen) != 1:
        raise CliError("name exactly one resource: --topic, --group, --transactional-id or --cluster", EXIT_USAGE)
    return chosen[0]


def _names(table: dict) -> dict:
    return {v: k.upper() for k, v in table.items()}


def resource_options(fn):
    for decorator in reversed((
        click.option("--principal", required=True, help="'User:<name>', 'User:*' or a certificate DN principal."),
        click.option("--topic", default=None, help="A topic name (or prefix with --prefixed; '*' = all)."),
        click.option("--group", default=None, help="A consumer group name."),
        click.option("--transactional-id", default=None, help="A transactional id."),
        click.option("--cluster", is_flag=True, help="The cluster (for admin and IDEMPOTENT_WRITE rights)."),
        click.option("--prefixed", is_flag=True, help="The name is a prefix (PREFIXED pattern)."),
        click.option("--host", default="*", show_default=True, help="Client address the binding applies to."),
        click.option("--deny", is_flag=True, help="A DENY binding (DENY beats ALLOW)."),
    )):
        fn = decorator(fn)
    return fn


def _bindings(principal, topic, group, transactional_id, cluster, prefixed, host, deny, operations):
    A = _acl()
    rtype, name = _resource(topic, group, cluster, transactional_id)
    out_ = []
    for op in operations:
        b = {"resource_type": rtype, "resource_name": name, "pattern_type": A.PREFIXED if prefixed else A.LITERAL,
             "principal": principal, "host": host, "operation": A.OPERATIONS[op],
             "permission_type": A.DENY if deny else A.ALLOW}
        try:
            A.validate_binding(b)
        except A.AclValidationError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        out_.append(b)
    return out_


_OPERATION = click.Choice(["all", "read", "write", "create", "delete", "alter", "describe", "describe_configs",
                           "alter_configs", "idempotent_write", "cluster_action"], case_sensitive=False)


@click.group("acl", epilog="""\b
Examples:
  arrowlog acl add --principal User:app --operation read --operation write --topic orders
  arrowlog acl add --principal User:app --operation read --group app- --prefixed
  arrowlog acl list
""")
def acl_group() -> None:
    """Manage the ACLs of 'arrowlog serve' (see docs/SECURITY.md)."""


@acl_group.command("add", epilog="""\b
Examples:
  arrowlog acl add --principal User:app -o read -o write --topic orders
  arrowlog acl add --principal 'User:*' -o describe --topic '*'
  arrowlog acl add --principal User:ops -o alter --cluster
""")
@resource_options
@click.option("-o", "--operation", "operations", multiple=True, required=True, type=_OPERATION,
              help="Operation to allow or deny (repeat).")
@command_body
def acl_add(principal, topic, group, transactional_id, cluster, prefixed, host, deny, operations, data) -> None:
    """Add ACL bindings."""
    bindings = _bindings(principal, topic, group, transactional_id, cluster, prefixed, host, deny,
                         [o.lower() for o in operations])
    _store(data, create=True).add(bindings)
    note(f"{len(bindings)} ACL binding{'s' if len(bindings) != 1 else ''} stored")


@acl_group.command("remove", epilog="""\b
Example:
  arrowlog acl remove --principal User:app --topic orders     # every operation
""")
@resource_options
@click.option("-o", "--operation", "operations", multiple=True, type=_OPERATION,
              help="Only these operations [default: every operation].")
@command_body
def acl_remove(principal, topic, group, transactional_id, cluster, prefixed, host, deny, operations, data) -> None:
    """Remove the ACL bindings that match exactly (any operation unless -o is given)."""
    A = _acl()
    rtype, name = _resource(topic, group, cluster, transactional_id)
    ops = {A.OPERATIONS[o.lower()] for o in operations}
    want = {"resource_type": rtype, "resource_name": name, "pattern_type": A.PREFIXED if prefixed else A.LITERAL,
            "principal": principal, "host": host, "permission_type": A.DENY if deny else A.ALLOW}
    gone = _store(data).remove(lambda b: all(b.get(k) == v for k, v in want.items())
                               and (not ops or b["operation"] in ops))
    if not gone:
        raise CliError("no ACL binding matches; see 'arrowlog acl list'", EXIT_NOT_FOUND)
    note(f"{len(gone)} ACL binding{'s' if len(gone) != 1 else ''} removed")


@list_command(acl_group, "Print the bindings as JSON (Kafka's numeric codes).")
def acl_list(data: str | None) -> Listing:
    """List ACL bindings."""
    A = _acl()
    bindings = _store(data).bindings()
    rtypes, ops = _names(A.RESOURCE_TYPES), _names(A.OPERATIONS)
    return bindings, ["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE", "NAME", "PATTERN", "HOST"], lambda: [
        [b["principal"], "DENY" if b["permission_type"] == A.DENY else "ALLOW",
         ops.get(b["operation"], b["operation"]), rtypes.get(b["resource_type"], b["resource_type"]),
         b["resource_name"], "PREFIXED" if b["pattern_type"] == A.PREFIXED else "LITERAL", b["host"]]
        for b in bindings]
