"""Security policy without sockets: ACL decisions, the SASL state machine's
gate, PLAIN's transport rule, listener configuration and start-up warnings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from arrowlog.errors import ConfigError
from arrowlog.server.security import Security, SecurityConfig, certificate_dn, is_loopback
from arrowlog.server.security import acl as A
from arrowlog.server.security.scram import make_credential
from arrowlog.server.wire import ProtocolError


def binding(name, principal, op, perm=A.ALLOW, pattern=A.LITERAL, rtype=A.TOPIC, host="*"):
    return {"resource_type": rtype, "resource_name": name, "pattern_type": pattern, "principal": principal,
            "host": host, "operation": op, "permission_type": perm}


@pytest.fixture
def security(tmp_path):
    sec = Security(str(tmp_path), SecurityConfig(listener="SASL_PLAINTEXT", super_users="User:root",
                                                 sasl_mechanisms="PLAIN,SCRAM-SHA-256"))
    for user in ("alice", "bob"):
        sec.credentials.upsert(user, "SCRAM-SHA-256", make_credential("SCRAM-SHA-256", f"{user}-pw"))
    return sec


def test_acl_decisions(security, tmp_path):
    security.acls.add([
        binding("orders", "User:alice", A.READ),
        binding("orders", "User:*", A.ALL, A.DENY, host="10.0.0.9"),
        binding("logs-", "User:bob", A.WRITE, pattern=A.PREFIXED),
        binding("logs-secret", "User:bob", A.WRITE, A.DENY),
        binding("*", "User:carol", A.DESCRIBE),
        binding("g1", "User:alice", A.READ, rtype=A.GROUP),
    ])
    ok = security.authorizer.authorize
    assert ok("User:alice", "127.0.0.1", A.READ, A.TOPIC, "orders")
    assert ok("User:alice", "127.0.0.1", A.DESCRIBE, A.TOPIC, "orders")        # READ implies DESCRIBE
    assert not ok("User:alice", "127.0.0.1", A.WRITE, A.TOPIC, "orders")
    assert not ok("User:alice", "10.0.0.9", A.READ, A.TOPIC, "orders")         # DENY beats ALLOW
    assert not ok("User:bob", "127.0.0.1", A.READ, A.TOPIC, "orders")
    assert ok("User:bob", "127.0.0.1", A.WRITE, A.TOPIC, "logs-app")           # PREFIXED
    assert not ok("User:bob", "127.0.0.1", A.WRITE, A.TOPIC, "logs-secret")
    assert ok("User:carol", "127.0.0.1", A.DESCRIBE, A.TOPIC, "anything")      # LITERAL '*'
    assert not ok("User:carol", "127.0.0.1", A.READ, A.TOPIC, "anything")
    assert ok("User:alice", "127.0.0.1", A.READ, A.GROUP, "g1")
    assert not ok("User:alice", "127.0.0.1", A.READ, A.GROUP, "g2")            # no ACL: refused
    assert ok("User:root", "127.0.0.1", A.DELETE, A.CLUSTER, A.CLUSTER_NAME)   # super user
    assert security.authorizer.authorize_any_topic("User:bob", "127.0.0.1", A.WRITE)
    assert not security.authorizer.authorize_any_topic("User:alice", "127.0.0.1", A.WRITE)
    # Changes are seen at once, also those another process makes to the file.
    security.acls.remove(lambda b: b["principal"] == "User:alice" and b["resource_type"] == A.TOPIC)
    assert not ok("User:alice", "127.0.0.1", A.READ, A.TOPIC, "orders")
    from arrowlog.server.security.store import AclStore
    AclStore(str(tmp_path)).add([binding("orders", "User:alice", A.READ)])
    assert ok("User:alice", "127.0.0.1", A.READ, A.TOPIC, "orders")


def test_allow_everyone_if_no_acl_found(tmp_path):
    cfg = SecurityConfig(listener="SASL_PLAINTEXT", allow_everyone_if_no_acl_found=True)
    sec = Security(str(tmp_path), cfg)
    assert sec.authorizer.authorize("User:x", "h", A.WRITE, A.TOPIC, "free")
    sec.acls.add([binding("locked", "User:y", A.READ)])
    assert not sec.authorizer.authorize("User:x", "h", A.READ, A.TOPIC, "locked")


def test_plaintext_listener_checks_nothing(tmp_path):
    sec = Security(str(tmp_path))
    sec.acls.add([binding("t", "User:someone", A.READ)])
    conn = sec.connection("10.1.2.3", None)
    assert conn.authenticated and conn.principal == "User:ANONYMOUS"
    assert sec.authorizer.authorize(conn.principal, "10.1.2.3", A.READ, A.TOPIC, "t")


def test_acl_binding_validation():
    A.validate_binding(binding("t", "User:a", A.READ))
    for bad in (binding("t", "alice", A.READ), binding("", "User:a", A.READ), binding("t", "User:a", 99),
                binding("t", "User:a", A.READ, perm=1), binding("x", "User:a", A.ALTER, rtype=A.CLUSTER),
                binding("t", "User:a", A.READ, pattern=A.MATCH)):
        with pytest.raises(A.AclValidationError):
            A.validate_binding(bad)


def plain(user, password):
    return {"auth_bytes": f"\0{user}\0{password}".encode()}


def test_plain_refused_to_a_remote_peer_without_tls(security):
    conn = security.connection("10.1.2.3", None)
    assert conn.offered_mechanisms() == ["SCRAM-SHA-256"]
    r = conn.handshake(1, {"mechanism": "PLAIN"})
    assert r["error_code"] == 33 and r["mechanisms"] == ["SCRAM-SHA-256"]
    assert conn.close_after_reply and not conn.authenticated


def test_plain_over_loopback_authenticates(security):
    conn = security.connection("127.0.0.1", None)
    assert conn.handshake(1, {"mechanism": "PLAIN"})["error_code"] == 0
    assert conn.authenticate(plain("alice", "alice-pw"))["error_code"] == 0
    assert conn.authenticated and conn.principal == "User:alice" and not conn.close_after_reply


@pytest.mark.parametrize("token", [b"\0alice\0wrong", b"\0nobody\0x", b"alice\0alice-pw", b"bob\0alice\0alice-pw",
                                   b"\0alice\0", b"\xff\0\xfe\0x"])
def test_plain_bad_logins(security, token):
    conn = security.connection("127.0.0.1", None)
    conn.handshake(1, {"mechanism": "PLAIN"})
    r = conn.authenticate({"auth_bytes": token})
    assert r["error_code"] == 58 and conn.close_after_reply and not conn.authenticated


def test_requests_before_authentication_are_refused(security):
    conn = security.connection("127.0.0.1", None)
    with pytest.raises(ProtocolError, match="before SASL authentication"):
        conn.check_admitted("Metadata")
    conn.handshake(1, {"mechanism": "SCRAM-SHA-256"})
    with pytest.raises(ProtocolError):
        conn.check_admitted("Produce")


def test_sasl_out_of_order(security):
    conn = security.connection("127.0.0.1", None)
    r = conn.authenticate(plain("alice", "alice-pw"))
    assert r["error_code"] == 34 and conn.close_after_reply


def test_start_up_warnings(tmp_path):
    open_cfg = Security(str(tmp_path))
    assert open_cfg.startup_warnings("127.0.0.1") == []
    assert open_cfg.startup_warnings("::1") == []
    [warning] = open_cfg.startup_warnings("0.0.0.0")
    assert "WITHOUT authentication" in warning and "SASL_SSL" in warning
    sasl = Security(str(tmp_path), SecurityConfig(listener="SASL_PLAINTEXT", sasl_mechanisms="PLAIN",
                                                  super_users="User:admin"))
    assert any("without TLS" in w and "PLAIN" in w for w in sasl.startup_warnings("192.168.1.5"))
    locked = Security(str(tmp_path / "locked"), SecurityConfig(listener="SASL_PLAINTEXT"))
    assert any("every request will be refused" in w for w in locked.startup_warnings("127.0.0.1"))
    locked.acls.add([binding("t", "User:a", A.READ)])
    assert locked.startup_warnings("127.0.0.1") == []


@pytest.mark.parametrize("kwargs,message", [
    ({"listener": "KERBEROS"}, "not one of"),
    ({"listener": "SSL"}, "--ssl-cert"),
    ({"listener": "SASL_PLAINTEXT", "sasl_mechanisms": "GSSAPI"}, "GSSAPI"),
    ({"listener": "SASL_PLAINTEXT", "sasl_mechanisms": ""}, "at least one"),
    ({"listener": "SASL_PLAINTEXT", "ssl_client_auth": "required", "ssl_cafile": "ca.pem"}, "TLS listener"),
    ({"listener": "SSL", "ssl_cert": "c", "ssl_key": "k", "ssl_client_auth": "required"}, "--ssl-cafile"),
    ({"super_users": "admin"}, "User:"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SecurityConfig(**kwargs)


def test_unloadable_certificate_is_a_config_error(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
        Security(str(tmp_path), SecurityConfig(listener="SSL", ssl_cert=str(tmp_path / "cert.pem"),
                                               ssl_key=str(tmp_path / "cert.pem")))


def test_serve_refuses_a_bad_security_configuration(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "arrowlog", "serve", "--data", str(tmp_path / "d"),
                        "--listen", "127.0.0.1:0", "--listener", "SASL_SSL"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "needs --ssl-cert and --ssl-key" in r.stderr, r.stderr


def test_certificate_dn_is_rfc2253():
    cert = {"subject": ((("countryName", "US"),), (("organizationName", "Acme, Inc"),),
                        (("commonName", "alice"),))}
    assert certificate_dn(cert) == "CN=alice,O=Acme\\, Inc,C=US"


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("10.0.0.1")


def test_every_start_logs_the_warning(tmp_path, monkeypatch, caplog):
    """The server logs the no-authentication warning each time it starts off loopback
    (simulated: 127.0.0.1 is treated as a public address, so nothing leaves the machine)."""
    import asyncio
    import logging

    import arrowlog.server.security as S
    from arrowlog.server import KafkaServer

    monkeypatch.setattr(S, "is_loopback", lambda host: False)

    async def start_and_stop():
        server = KafkaServer(str(tmp_path / "data"), "127.0.0.1", 0)
        await server.start()
        await server.stop()

    with caplog.at_level(logging.WARNING, logger="arrowlog.server"):
        for _ in range(2):
            asyncio.run(start_and_stop())
    warnings = [r.getMessage() for r in caplog.records if "WITHOUT authentication" in r.getMessage()]
    assert len(warnings) == 2
