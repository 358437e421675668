"""The security admin APIs: DescribeAcls (29), CreateAcls (30), DeleteAcls (31),
DescribeUserScramCredentials (50) and AlterUserScramCredentials (51).

Each needs a cluster permission (DESCRIBE to read, ALTER to change); a
principal without it gets CLUSTER_AUTHORIZATION_FAILED. On a PLAINTEXT
listener (no authentication) they are open to every client, like every
other API there. Changes are written durably before the answer (store.py).
"""

from __future__ import annotations

import logging

from .. import errors as E
from . import acl as A
from .scram import MAX_ITERATIONS, MECHANISMS, MIN_ITERATIONS, credential_from_salted
from .store import SecurityStateError

log = logging.getLogger("arrowlog.server.security")

# Kafka's ScramMechanism ids on the wire.
MECHANISM_IDS = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
MECHANISM_CODES = {v: k for k, v in MECHANISM_IDS.items()}
_DIGEST_BYTES = {"SCRAM-SHA-256": 32, "SCRAM-SHA-512": 64}
assert set(MECHANISM_CODES) == set(MECHANISMS)


def _cluster_allowed(security, conn, op) -> bool:
    return security.authorizer.authorize(conn.principal, conn.peer_host, op, A.CLUSTER, A.CLUSTER_NAME)


def _binding_from_creation(c: dict) -> dict:
    return {"resource_type": c["resource_type"], "resource_name": c["resource_name"],
            "pattern_type": c["resource_pattern_type"], "principal": c["principal"], "host": c["host"],
            "operation": c["operation"], "permission_type": c["permission_type"]}


def describe_acls(security, conn, ctx, req):
    if not _cluster_allowed(security, conn, A.DESCRIBE):
        return {"error_code": E.CLUSTER_AUTHORIZATION_FAILED, "error_message": "not authorised to describe ACLs",
                "resources": []}
    try:
        found = [b for b in security.acls.bindings() if A.filter_matches(req, b)]
    except SecurityStateError as exc:
        return {"error_code": E.UNKNOWN_SERVER_ERROR, "error_message": str(exc), "resources": []}
    resources: dict = {}
    for b in found:
        key = (b["resource_type"], b["resource_name"], b["pattern_type"])
        resources.setdefault(key, []).append({k: b[k] for k in ("principal", "host", "operation",
                                                                "permission_type")})
    return {"error_code": E.NONE, "error_message": None, "resources": [
        {"resource_type": t, "resource_name": n, "pattern_type": p, "acls": acls}
        for (t, n, p), acls in resources.items()]}


def create_acls(security, conn, ctx, req):
    if not _cluster_allowed(security, conn, A.ALTER):
        return {"results": [{"error_code": E.CLUSTER_AUTHORIZATION_FAILED,
                             "error_message": "not authorised to create ACLs"} for _ in req["creations"]]}
    results, valid = [], []
    for c in req["creations"]:
        b = _binding_from_creation(c)
        try:
            A.validate_binding(b)
        except A.AclValidationError as exc:
            results.append({"error_code": E.INVALID_REQUEST, "error_message": str(exc)})
            continue
        valid.append(b)
        results.append({"error_code": E.NONE, "error_message": None})
    if valid:
        try:
            security.acls.add(valid)
        except (OSError, SecurityStateError) as exc:
            log.error("storing ACLs failed: %s", exc)
            return {"results": [{"error_code": E.KAFKA_STORAGE_ERROR, "error_message": str(exc)}
                                for _ in req["creations"]]}
        log.info("%s created %d ACL(s)", conn.principal, len(valid))
    return {"results": results}


def delete_acls(security, conn, ctx, req):
    filters = req["filters"]
    if not _cluster_allowed(security, conn, A.ALTER):
        return {"filter_results": [{"error_code": E.CLUSTER_AUTHORIZATION_FAILED,
                                    "error_message": "not authorised to delete ACLs", "matching_acls": []}
                                   for _ in filters]}
    try:
        gone = security.acls.remove(lambda b: any(A.filter_matches(f, b) for f in filters))
    except (OSError, SecurityStateError) as exc:
        return {"filter_results": [{"error_code": E.KAFKA_STORAGE_ERROR, "error_message": str(exc),
                                    "matching_acls": []} for _ in filters]}
    return {"filter_results": [{"error_code": E.NONE, "error_message": None, "matching_acls": [
        {"error_code": E.NONE, "error_message": None, **b} for b in gone if A.filter_matches(f, b)]}
        for f in filters]}


def describe_user_scram_credentials(security, conn, ctx, req):
    if not _cluster_allowed(security, conn, A.DESCRIBE):
        return {"error_code": E.CLUSTER_AUTHORIZATION_FAILED,
                "error_message": "not authorised to describe users", "results": []}
    try:
        users = security.credentials.users()
    except SecurityStateError as exc:
        return {"error_code": E.UNKNOWN_SERVER_ERROR, "error_message": str(exc), "results": []}
    wanted = [u["name"] for u in req["users"] or []] or sorted(users)
    results = []
    for name in dict.fromkeys(wanted):
        mechs = users.get(name)
        if mechs is None:
            results.append({"user": name, "error_code": E.RESOURCE_NOT_FOUND,
                            "error_message": f"user {name!r} has no SCRAM credentials", "credential_infos": []})
            continue
        results.append({"user": name, "error_code": E.NONE, "error_message": None, "credential_infos": [
            {"mechanism": MECHANISM_CODES[m], "iterations": i} for m, i in mechs.items() if m in MECHANISM_CODES]})
    return {"error_code": E.NONE, "error_message": None, "results": results}


def _upsert_error(u: dict) -> tuple[int, str] | None:
    mechanism = MECHANISM_IDS.get(u["mechanism"])
    if mechanism is None:
        return E.UNSUPPORTED_SASL_MECHANISM, f"mechanism {u['mechanism']} is not SCRAM-SHA-256 (1) or SCRAM-SHA-512 (2)"
    if not MIN_ITERATIONS <= u["iterations"] <= MAX_ITERATIONS:
        return E.UNACCEPTABLE_CREDENTIAL, f"iterations must be {MIN_ITERATIONS}..{MAX_ITERATIONS}"
    if not u["salt"] or len(u["salt"]) > 1024:
        return E.UNACCEPTABLE_CREDENTIAL, "salt must be 1..1024 bytes"
    if len(u["salted_password"]) != _DIGEST_BYTES[mechanism]:
        return E.UNACCEPTABLE_CREDENTIAL, f"salted password must be {_DIGEST_BYTES[mechanism]} bytes for {mechanism}"
    return None


def alter_user_scram_credentials(security, conn, ctx, req):
    names = [d["name"] for d in req["deletions"]] + [u["name"] for u in req["upsertions"]]
    if not _cluster_allowed(security, conn, A.ALTER):
        return {"results": [{"user": n, "error_code": E.CLUSTER_AUTHORIZATION_FAILED,
                             "error_message": "not authorised to alter users"} for n in dict.fromkeys(names)]}
    errors: dict = {}
    seen: dict = {}
    for op in [*req["deletions"], *req["upsertions"]]:
        key = (op["name"], op["mechanism"])
        if key in seen:
            errors.setdefault(op["name"], (E.DUPLICATE_RESOURCE, "a user and mechanism appear twice"))
        seen[key] = True
        if not op["name"]:
            errors.setdefault(op["name"], (E.UNACCEPTABLE_CREDENTIAL, "user name is empty"))
    for u in req["upsertions"]:
        bad = _upsert_error(u)
        if bad:
            errors.setdefault(u["name"], bad)
    try:
        for d in req["deletions"]:
            if d["name"] in errors:
                continue
            mechanism = MECHANISM_IDS.get(d["mechanism"])
            if mechanism is None:
                errors[d["name"]] = (E.UNSUPPORTED_SASL_MECHANISM, f"mechanism {d['mechanism']} is unknown")
            elif not security.credentials.delete(d["name"], mechanism):
                errors[d["name"]] = (E.RESOURCE_NOT_FOUND, f"user {d['name']!r} has no {mechanism} credential")
        for u in req["upsertions"]:
            if u["name"] in errors:
                continue
            mechanism = MECHANISM_IDS[u["mechanism"]]
            security.credentials.upsert(u["name"], mechanism, credential_from_salted(
                mechanism, bytes(u["salted_password"]), bytes(u["salt"]), u["iterations"]))
    except (OSError, SecurityStateError) as exc:
        log.error("storing SCRAM credentials failed: %s", exc)
        return {"results": [{"user": n, "error_code": E.KAFKA_STORAGE_ERROR, "error_message": str(exc)}
                            for n in dict.fromkeys(names)]}
    return {"results": [{"user": n, "error_code": errors.get(n, (E.NONE, None))[0],
                         "error_message": errors.get(n, (E.NONE, None))[1]} for n in dict.fromkeys(names)]}


SECURITY_APIS = {29: describe_acls, 30: create_acls, 31: delete_acls,
                 50: describe_user_scram_credentials, 51: alter_user_scram_credentials}
