"""ACLs: who may do what to which topic, group, transactional id or the cluster.

A binding is Kafka's: resource (type, name, pattern), principal
(``User:<name>`` or ``User:*``), host (``*`` or an address), operation and
permission (ALLOW or DENY). Stored by AclStore (store.py) as dicts with the
CreateAcls field names. The decision for (principal, host, operation,
resource), as Kafka's AclAuthorizer makes it:

1. a super user is allowed everything;
2. if no binding at all matches the resource, ``allow.everyone.if.no.acl.found``
   decides (default false);
3. a matching DENY for the operation (or ALL) refuses;
4. a matching ALLOW for the operation (or ALL) admits; DESCRIBE is also
   admitted by READ, WRITE, DELETE or ALTER, DESCRIBE_CONFIGS by ALTER_CONFIGS;
5. otherwise refused.

A binding matches a resource when the types are equal and its pattern is
LITERAL with the same name or ``*``, or PREFIXED with a prefix of the name.
"""

from __future__ import annotations

from .store import AclStore

# Resource types
ANY = 1
TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID = 2, 3, 4, 5
RESOURCE_TYPES = {"topic": TOPIC, "group": GROUP, "cluster": CLUSTER, "transactional_id": TRANSACTIONAL_ID}
CLUSTER_NAME = "kafka-cluster"
# Pattern types (ANY and MATCH only in filters)
MATCH, LITERAL, PREFIXED = 2, 3, 4
# Operations
ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE = 2, 3, 4, 5, 6, 7, 8
CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = 9, 10, 11, 12
OPERATIONS = {"all": ALL, "read": READ, "write": WRITE, "create": CREATE, "delete": DELETE,
              "alter": ALTER, "describe": DESCRIBE, "cluster_action": CLUSTER_ACTION,
              "describe_configs": DESCRIBE_CONFIGS, "alter_configs": ALTER_CONFIGS,
              "idempotent_write": IDEMPOTENT_WRITE}
# Permission types
DENY, ALLOW = 2, 3

_IMPLIED = {DESCRIBE: {DESCRIBE, READ, WRITE, DELETE, ALTER}, DESCRIBE_CONFIGS: {DESCRIBE_CONFIGS, ALTER_CONFIGS}}
_VALID_RESOURCES = (TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID)
_VALID_OPERATIONS = tuple(OPERATIONS.values())


class AclValidationError(ValueError):
    pass


def validate_binding(b: dict) -> None:
    """Refuse a binding CreateAcls must not store (Kafka's INVALID_REQUEST cases)."""
    if b["resource_type"] not in _VALID_RESOURCES:
        raise AclValidationError(f"resource type {b['resource_type']} is not one of TOPIC(2), GROUP(3), "
                                 "CLUSTER(4), TRANSACTIONAL_ID(5)")
    if b["pattern_type"] not in (LITERAL, PREFIXED):
        raise AclValidationError(f"pattern type {b['pattern_type']} is not LITERAL(3) or PREFIXED(4)")
    if b["operation"] not in _VALID_OPERATIONS:
        raise AclValidationError(f"operation {b['operation']} is not a valid ACL operation")
    if b["permission_type"] not in (DENY, ALLOW):
        raise AclValidationError(f"permission type {b['permission_type']} is not DENY(2) or ALLOW(3)")
    if not b["resource_name"]:
        raise AclValidationError("resource name is empty")
    if b["resource_type"] == CLUSTER and b["resource_name"] != CLUSTER_NAME:
        raise AclValidationError(f"the cluster resource is named {CLUSTER_NAME!r}")
    principal = b["principal"]
    if not principal.startswith("User:") or len(principal) == len("User:"):
        raise AclValidationError(f"principal {principal!r} is not 'User:<name>' or 'User:*'")
    if not b["host"]:
        raise AclValidationError("host is empty (use '*' for any host)")


def _pattern_matches(b: dict, rtype: int, name: str) -> bool:
    if b["resource_type"] != rtype:
        return False
    if b["pattern_type"] == PREFIXED:
        return name.startswith(b["resource_name"])
    return b["resource_name"] in (name, "*")


def filter_matches(flt: dict, b: dict) -> bool:
    """DescribeAcls/DeleteAcls filter semantics (None and ANY match everything; MATCH
    selects every binding that would apply to the named resource)."""
    rtype = flt["resource_type_filter"]
    if rtype != ANY and rtype != b["resource_type"]:
        return False
    name, ptype = flt["resource_name_filter"], flt["pattern_type_filter"]
    if ptype == MATCH:
        if name is not None and not _pattern_matches(b, b["resource_type"], name):
            return False
    else:
        if ptype != ANY and ptype != b["pattern_type"]:
            return False
        if name is not None and name != b["resource_name"]:
            return False
    for key, field in (("principal_filter", "principal"), ("host_filter", "host")):
        if flt[key] is not None and flt[key] != b[field]:
            return False
    if flt["operation"] != ANY and flt["operation"] != b["operation"]:
        return False
    return flt["permission_type"] == ANY or flt["permission_type"] == b["permission_type"]


class Authorizer:
    """Decides requests from the stored bindings. ``enabled=False`` (a PLAINTEXT
    listener: nobody is authenticated) admits everything."""

    def __init__(self, store: AclStore, *, super_users=(), allow_if_no_acl=False, enabled=True):
        self.store = store
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self.enabled = enabled
        self._indexed_from: list | None = None
        self._index: dict = {}

    def _matching(self, rtype: int, name: str) -> list[dict]:
        """The bindings whose pattern covers (rtype, name). Indexed by type and literal
        name, so a check costs a dict lookup plus the PREFIXED bindings of that type,
        not a scan of every ACL (Metadata checks each topic it lists)."""
        bindings = self.store.bindings()
        if bindings is not self._indexed_from:   # the store re-read or changed the file
            index: dict = {}
            for b in bindings:
                literal, wildcard, prefixed = index.setdefault(b["resource_type"], ({}, [], []))
                if b["pattern_type"] == PREFIXED:
                    prefixed.append(b)
                elif b["resource_name"] == "*":
                    wildcard.append(b)
                else:
                    literal.setdefault(b["resource_name"], []).append(b)
            self._index, self._indexed_from = index, bindings
        per_type = self._index.get(rtype)
        if per_type is None:
            return []
        literal, wildcard, prefixed = per_type
        return [*literal.get(name, ()), *wildcard, *(b for b in prefixed if name.startswith(b["resource_name"]))]

    def authorize(self, principal: str, host: str, operation: int, rtype: int, name: str) -> bool:
        if not self.enabled or principal in self.super_users:
            return True
        matching = self._matching(rtype, name)
        if not matching:
            return self.allow_if_no_acl
        applies = [b for b in matching if b["principal"] in (principal, "User:*")
                   and b["host"] in (host, "*")]
        if any(b["permission_type"] == DENY and b["operation"] in (operation, ALL) for b in applies):
            return False
        allowed_by = _IMPLIED.get(operation, {operation})
        return any(b["permission_type"] == ALLOW and (b["operation"] == ALL or b["operation"] in allowed_by)
                   for b in applies)

    def authorize_any_topic(self, principal: str, host: str, operation: int) -> bool:
        """True if some ALLOW binding could admit ``operation`` on some topic (Kafka's
        IDEMPOTENT_WRITE rule: WRITE on any topic is enough to get a producer id)."""
        if not self.enabled or principal in self.super_users:
            return True
        for b in self.store.bindings():
            if (b["resource_type"] == TOPIC and b["permission_type"] == ALLOW
                    and b["operation"] in (operation, ALL) and b["principal"] in (principal, "User:*")
                    and b["host"] in (host, "*")
                    and self.authorize(principal, host, operation, TOPIC, b["resource_name"])):
                return True
        return False
