"""TLS, SASL (PLAIN, SCRAM-SHA-256/512) and ACLs of arrowlog serve, with
confluent-kafka and kcat, plus a strict suite of refused logins on raw sockets.

Each listener kind runs in its own server process on 127.0.0.1:0 with a
throwaway CA and certificates made by the openssl CLI. Users are added with
``arrowlog user add`` before the servers start; ACLs are created over the
wire by a super user with confluent-kafka's AdminClient.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid

import pytest

from arrowlog.server import messages as M
from arrowlog.server.wire import Reader, Writer

from .conftest import SRC, ServerProcess

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import (  # noqa: E402
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka.net.sasl.scram import ScramClient  # noqa: E402

USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")


# ---------------------------------------------------------------- fixtures
def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=arrowlog-test-ca", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subject, ext in (("server", "/CN=localhost", ["-extfile", "server.ext"]),
                               ("client", "/O=arrowlog-tests/CN=carol", [])):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)
    return d


def _arrowlog(*args, input=None):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "arrowlog", *args], input=input, capture_output=True,
                          text=True, env=env, timeout=60)


def _start(tmp_path_factory, name, *args):
    data = tmp_path_factory.mktemp(name) / "data"
    for user, password in USERS.items():
        r = _arrowlog("user", "add", user, "--password-stdin", "--iterations", "4096", "--data", str(data),
                      input=password + "\n")
        assert r.returncode == 0, r.stderr
    return ServerProcess(data, *args)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, certs):
    tls = ["--ssl-cert", str(certs / "server.pem"), "--ssl-key", str(certs / "server.key")]
    common = ["--super-users", "User:admin", "--sasl-mechanisms", "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"]
    started = {}
    try:
        started["SSL"] = _start(tmp_path_factory, "ssl", "--listener", "SSL", *tls,
                                "--allow-everyone-if-no-acl-found")
        started["MTLS"] = _start(tmp_path_factory, "mtls", "--listener", "SSL", *tls, "--ssl-cafile",
                                 str(certs / "ca.pem"), "--ssl-client-auth", "required",
                                 "--super-users", "User:CN=carol,O=arrowlog-tests")
        started["SASL_SSL"] = _start(tmp_path_factory, "saslssl", "--listener", "SASL_SSL", *tls, *common)
        started["SASL_PLAINTEXT"] = _start(tmp_path_factory, "saslplain", "--listener", "SASL_PLAINTEXT",
                                           *common)
        for kind in ("SASL_SSL", "SASL_PLAINTEXT"):
            _grant_alice(started[kind], certs)
        yield started
    finally:
        for srv in started.values():
            code = srv.stop()
            assert code == 0, "server did not shut down cleanly:\n" + srv.log()


def client_config(srv, certs, kind, mechanism=None, user="alice", password=None):
    conf = {"bootstrap.servers": srv.bootstrap, "security.protocol": "SSL" if kind == "MTLS" else kind}
    if kind in ("SSL", "SASL_SSL", "MTLS"):
        conf["ssl.ca.location"] = str(certs / "ca.pem")
    if kind == "MTLS":
        conf["ssl.certificate.location"] = str(certs / "client.pem")
        conf["ssl.key.location"] = str(certs / "client.key")
    if kind.startswith("SASL"):
        conf.update({"sasl.mechanisms": mechanism, "sasl.username": user,
                     "sasl.password": USERS.get(user, "") if password is None else password})
    return conf


def _grant_alice(srv, certs):
    """As the super user: alice may do anything with topics and groups named t-*/g-*."""
    admin = AdminClient(client_config(srv, certs, "SASL_SSL" if "ssl" in str(srv.data_dir) else "SASL_PLAINTEXT",
                                      "SCRAM-SHA-512", "admin"))
    bindings = [AclBinding(rtype, prefix, ResourcePatternType.PREFIXED, "User:alice", "*",
                           AclOperation.ALL, AclPermissionType.ALLOW)
                for rtype, prefix in ((ResourceType.TOPIC, "t-"), (ResourceType.GROUP, "g-"))]
    for fut in admin.create_acls(bindings).values():
        fut.result(20)


# ---------------------------------------------------------------- clients
def confluent_roundtrip(conf, topic, n=50):
    p = ck.Producer({**conf, "acks": "all", "enable.idempotence": True})
    errors = []
    for i in range(n):
        p.produce(topic, value=b"v-%d" % i, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert errors == [None] * n
    c = ck.Consumer({**conf, "group.id": "g-" + topic, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        for m in c.consume(100, 0.5):
            assert m.error() is None, m.error()
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    assert got == [b"v-%d" % i for i in range(n)]


def kcat_args(conf):
    out = []
    for k, v in conf.items():
        out += ["-X", f"{k}={v}"]
    return out


def kcat_roundtrip(kcat, conf, topic, n=20):
    lines = "".join(f"k{i}:line-{i}\n" for i in range(n))
    r = subprocess.run([kcat, *kcat_args(conf), "-P", "-t", topic, "-K", ":"], input=lines,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([kcat, *kcat_args(conf), "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k=%s\n"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"k{i}=line-{i}" for i in range(n)]


CASES = [("SSL", None), ("MTLS", None), ("SASL_SSL", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"),
         ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
         ("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "PLAIN")]


@pytest.mark.parametrize("kind,mechanism", CASES, ids=[f"{k}-{m or 'cert'}" for k, m in CASES])
def test_confluent_produce_consume(servers, certs, kind, mechanism):
    topic = "t-" + uuid.uuid4().hex[:10]
    confluent_roundtrip(client_config(servers[kind], certs, kind, mechanism), topic)


@pytest.mark.parametrize("kind,mechanism", CASES, ids=[f"{k}-{m or 'cert'}" for k, m in CASES])
def test_kcat_produce_consume(servers, certs, kcat, kind, mechanism):
    topic = "t-" + uuid.uuid4().hex[:10]
    kcat_roundtrip(kcat, client_config(servers[kind], certs, kind, mechanism), topic)


def test_kcat_wrong_password_is_refused(servers, certs, kcat):
    conf = client_config(servers["SASL_SSL"], certs, "SASL_SSL", "SCRAM-SHA-256", password="nope")
    r = subprocess.run([kcat, *kcat_args(conf), "-L", "-m", "5"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Authentication failed" in r.stderr or "authentication" in r.stderr.lower(), r.stderr


def test_mtls_without_client_certificate_is_refused(servers, certs):
    srv = servers["MTLS"]
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection((srv.host, srv.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                WireConn(s).call(M.API_VERSIONS, 0, {})


# ---------------------------------------------------------------- ACLs
def test_acl_denies_a_topic_to_one_user_and_allows_it_to_another(servers, certs):
    srv = servers["SASL_SSL"]
    topic = "secret-" + uuid.uuid4().hex[:8]
    admin = AdminClient(client_config(srv, certs, "SASL_SSL", "SCRAM-SHA-256", "admin"))
    for fut in admin.create_topics([ck.admin.NewTopic(topic, 1, 1)]).values():
        fut.result(20)
    bob = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:bob", "*",
                     AclOperation.ALL, AclPermissionType.ALLOW)
    for fut in admin.create_acls([bob]).values():
        fut.result(20)
    described = admin.describe_acls(AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.ANY, None, None, AclOperation.ANY,
        AclPermissionType.ANY)).result(20)
    assert [(b.principal, b.operation) for b in described] == [("User:bob", AclOperation.ALL)]

    # bob writes; alice (whose ACLs cover t-* only) is refused by the broker, not by a timeout.
    bob_p = ck.Producer({**client_config(srv, certs, "SASL_SSL", "SCRAM-SHA-256", "bob")})
    res = []
    bob_p.produce(topic, b"for-bob", on_delivery=lambda err, msg: res.append(err))
    assert bob_p.flush(30) == 0 and res == [None]

    alice_p = ck.Producer({**client_config(srv, certs, "SASL_SSL", "SCRAM-SHA-256", "alice"),
                           "message.timeout.ms": 10000})
    res = []
    alice_p.produce(topic, b"from-alice", on_delivery=lambda err, msg: res.append(err))
    alice_p.flush(30)
    assert len(res) == 1 and res[0].code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, res

    for user, want in (("bob", None), ("alice", 29)):
        with sasl_conn(srv, certs, "SCRAM-SHA-512", user) as conn:
            r = conn.call(M.FETCH, 12, {"max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20, "topics": [
                {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                                 "partition_max_bytes": 1 << 20}]}]})
            part = r["responses"][0]["partitions"][0]
            if want is None:
                assert part["error_code"] == 0 and part["high_watermark"] == 1
            else:
                assert part["error_code"] == want and not part["records"]
            listed = conn.call(M.METADATA, 12, {"topics": None})
            assert (topic in {t["name"] for t in listed["topics"]}) == (user == "bob")

    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:bob", None, AclOperation.ANY,
        AclPermissionType.ANY)])
    assert [len(f.result(20)) for f in deleted.values()] == [1]


def test_acl_apis_need_cluster_permission(servers, certs):
    with sasl_conn(servers["SASL_PLAINTEXT"], certs, "SCRAM-SHA-256", "alice") as conn:
        r = conn.call(M.CREATE_ACLS, 3, {"creations": [
            {"resource_type": 2, "resource_name": "x", "resource_pattern_type": 3, "principal": "User:alice",
             "host": "*", "operation": 2, "permission_type": 3}]})
        assert r["results"][0]["error_code"] == 31  # CLUSTER_AUTHORIZATION_FAILED
        r = conn.call(M.DELETE_TOPICS, 6, {"topics": [{"name": "secret-anything", "topic_id": bytes(16)}],
                                           "timeout_ms": 1000})
        assert r["responses"][0]["error_code"] == 29
        r = conn.call(M.JOIN_GROUP, 5, {"group_id": "not-alices", "session_timeout_ms": 10000,
                                        "rebalance_timeout_ms": 10000, "member_id": "",
                                        "protocol_type": "consumer", "protocols": []})
        assert r["error_code"] == 30  # GROUP_AUTHORIZATION_FAILED
        r = conn.call(M.ALTER_USER_SCRAM_CREDENTIALS, 0, {"deletions": [{"name": "admin", "mechanism": 1}]})
        assert r["results"][0]["error_code"] == 31


def test_users_managed_over_the_wire(servers, certs):
    srv = servers["SASL_SSL"]
    admin = AdminClient(client_config(srv, certs, "SASL_SSL", "SCRAM-SHA-512", "admin"))
    user = "dave-" + uuid.uuid4().hex[:6]
    up = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                      b"dave-secret", b"saltsaltsalt")
    for fut in admin.alter_user_scram_credentials([up]).values():
        fut.result(20)
    desc = admin.describe_user_scram_credentials([user])[user].result(20)
    assert [(i.mechanism, i.iterations) for i in desc.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_512, 4096)]
    with sasl_conn(srv, certs, "SCRAM-SHA-512", user, "dave-secret") as conn:
        assert conn.call(M.API_VERSIONS, 0, {})["error_code"] == 0
    r = _arrowlog("user", "list", "--json", "--data", str(srv.data_dir))
    assert user in r.stdout


# ---------------------------------------------------------------- refused logins (raw wire)
class WireConn:
    """One Kafka connection: requests written with the server's schema tables."""

    def __init__(self, sock):
        self.sock = sock
        self.ids = itertools.count(1)

    def send(self, api, version, body):
        w = Writer()
        api.encode_request(body, w, version)
        cid = next(self.ids)
        header = struct.pack(">hhih", api.key, version, cid, 4) + b"test"
        if api.is_flexible(version):
            header += b"\x00"
        payload = header + bytes(w.buf)
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        return cid

    def recv(self, api, version, cid):
        raw = self.recv_frame()
        r = Reader(raw)
        assert r.int32() == cid
        if api.is_flexible(version) and api.key != M.API_VERSIONS.key:
            r.skip_tags()
        out = api.decode_response(r, version)
        assert r.remaining() == 0
        if "auth_bytes" in out:
            out["auth_bytes"] = bytes(out["auth_bytes"])  # the reader hands out memoryviews
        return out

    def call(self, api, version, body):
        return self.recv(api, version, self.send(api, version, body))

    def recv_frame(self):
        (size,) = struct.unpack(">i", self._exact(4))
        return self._exact(size)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the server")
            buf += chunk
        return buf

    def assert_closed(self):
        """The server closed the connection: a further request gets no answer."""
        try:
            self.send(M.METADATA, 1, {"topics": None})
            self.recv_frame()
        except (ConnectionError, OSError, ssl.SSLError):
            return
        raise AssertionError("the server answered on a connection it should have closed")

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(srv, certs, tls):
    raw = socket.create_connection((srv.host, srv.port), timeout=20)
    if not tls:
        return WireConn(raw)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    return WireConn(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))


def scram_exchange(conn, mechanism, user, password, client=None):
    """Handshake + two SaslAuthenticate rounds; returns (final response, client-first, client-final)."""
    hs = conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": mechanism})
    assert hs["error_code"] == 0, hs
    client = client or ScramClient(user, password, mechanism)
    first = client.first_message()
    r1 = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": first})
    assert r1["error_code"] == 0, r1
    client.process_server_first_message(r1["auth_bytes"])
    final = client.final_message()
    r2 = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": final})
    if r2["error_code"] == 0:
        client.process_server_final_message(r2["auth_bytes"])  # raises on a wrong server signature
    return r2, first, final


class sasl_conn:
    """An authenticated raw connection (context manager)."""

    def __init__(self, srv, certs, mechanism, user, password=None):
        self.conn = connect(srv, certs, tls="ssl" in str(srv.data_dir))
        r, _, _ = scram_exchange(self.conn, mechanism, user, USERS.get(user) if password is None else password)
        assert r["error_code"] == 0, r

    def __enter__(self):
        return self.conn

    def __exit__(self, *exc):
        self.conn.close()


@pytest.fixture(params=["SASL_PLAINTEXT", "SASL_SSL"])
def sasl_server(request, servers):
    return servers[request.param], request.param == "SASL_SSL"


@pytest.mark.parametrize("mechanism", SCRAM)
@pytest.mark.parametrize("user,password", [("alice", "wrong-password"), ("nobody", "alice-secret")],
                         ids=["wrong-password", "unknown-user"])
def test_bad_scram_login_refused_then_closed(sasl_server, certs, mechanism, user, password):
    srv, tls = sasl_server
    with connect(srv, certs, tls) as conn:
        r, _, _ = scram_exchange(conn, mechanism, user, password)
        assert r["error_code"] == 58 and "invalid credentials" in r["error_message"]
        conn.assert_closed()


@pytest.mark.parametrize("user,password", [("alice", "wrong-password"), ("nobody", "x"), ("", "x")])
def test_bad_plain_login_refused_then_closed(sasl_server, certs, user, password):
    srv, tls = sasl_server
    with connect(srv, certs, tls) as conn:
        assert conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})["error_code"] == 0
        r = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": f"\0{user}\0{password}".encode()})
        assert r["error_code"] == 58, r
        conn.assert_closed()


def test_wrong_mechanism_refused_then_closed(sasl_server, certs):
    srv, tls = sasl_server
    with connect(srv, certs, tls) as conn:
        r = conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": "GSSAPI"})
        assert r["error_code"] == 33  # UNSUPPORTED_SASL_MECHANISM
        assert sorted(r["mechanisms"]) == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        conn.assert_closed()


def test_replayed_scram_proof_refused(sasl_server, certs):
    srv, tls = sasl_server
    with connect(srv, certs, tls) as conn:
        r, first, final = scram_exchange(conn, "SCRAM-SHA-256", "alice", USERS["alice"])
        assert r["error_code"] == 0
        # Replayed on the same, authenticated connection: SASL is over there.
        again = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": final})
        assert again["error_code"] == 34
    with connect(srv, certs, tls) as conn:
        assert conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": "SCRAM-SHA-256"})["error_code"] == 0
        r1 = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": first})
        assert r1["error_code"] == 0 and r1["auth_bytes"].startswith(b"r=")
        r2 = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": final})
        assert r2["error_code"] == 58 and "nonce" in r2["error_message"]
        conn.assert_closed()


def test_truncated_client_final_refused(sasl_server, certs):
    srv, tls = sasl_server
    with connect(srv, certs, tls) as conn:
        assert conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": "SCRAM-SHA-512"})["error_code"] == 0
        client = ScramClient("alice", USERS["alice"], "SCRAM-SHA-512")
        r1 = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": client.first_message()})
        client.process_server_first_message(r1["auth_bytes"])
        r2 = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": client.final_message()[:-20]})
        assert r2["error_code"] == 58
        conn.assert_closed()


@pytest.mark.parametrize("api,version,body", [
    (M.METADATA, 12, {"topics": None}),
    (M.PRODUCE, 9, {"acks": 1, "timeout_ms": 1000, "topic_data": []}),
    (M.DELETE_TOPICS, 6, {"topics": [{"name": "t-anything", "topic_id": bytes(16)}], "timeout_ms": 1000}),
    (M.CREATE_ACLS, 3, {"creations": []}),
], ids=["Metadata", "Produce", "DeleteTopics", "CreateAcls"])
def test_request_before_authentication_closes(sasl_server, certs, api, version, body):
    srv, tls = sasl_server
    with connect(srv, certs, tls) as conn:
        assert conn.call(M.API_VERSIONS, 3, {"client_software_name": "t",
                                             "client_software_version": "1"})["error_code"] == 0
        conn.send(api, version, body)
        with pytest.raises((ConnectionError, OSError, ssl.SSLError)):
            conn.recv_frame()


def test_request_after_failed_handshake_closes(sasl_server, certs):
    srv, tls = sasl_server
    with connect(srv, certs, tls) as conn:
        assert conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": "KERBEROS-9"})["error_code"] == 33
        conn.assert_closed()
    with connect(srv, certs, tls) as conn:
        r = conn.call(M.SASL_AUTHENTICATE, 2, {"auth_bytes": b"n,,n=alice,r=abc"})
        assert r["error_code"] == 34  # ILLEGAL_SASL_STATE: no handshake yet
        conn.assert_closed()


def test_handshake_v0_raw_tokens(servers, certs):
    """SaslHandshake v0: the SASL tokens travel as bare size-prefixed frames."""
    srv = servers["SASL_PLAINTEXT"]
    with connect(srv, certs, False) as conn:
        assert conn.call(M.SASL_HANDSHAKE, 0, {"mechanism": "SCRAM-SHA-256"})["error_code"] == 0
        client = ScramClient("alice", USERS["alice"], "SCRAM-SHA-256")
        first = client.first_message()
        conn.sock.sendall(struct.pack(">i", len(first)) + first)
        client.process_server_first_message(conn.recv_frame())
        final = client.final_message()
        conn.sock.sendall(struct.pack(">i", len(final)) + final)
        client.process_server_final_message(conn.recv_frame())
        assert conn.call(M.METADATA, 12, {"topics": None})["cluster_id"]
    with connect(srv, certs, False) as conn:
        assert conn.call(M.SASL_HANDSHAKE, 0, {"mechanism": "PLAIN"})["error_code"] == 0
        token = b"\0alice\0wrong"
        conn.sock.sendall(struct.pack(">i", len(token)) + token)
        with pytest.raises((ConnectionError, OSError)):
            conn.recv_frame()


def test_sasl_on_a_plaintext_listener_is_refused(server):
    with WireConn(socket.create_connection((server.host, server.port), timeout=20)) as conn:
        assert conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})["error_code"] == 34
        # The PLAINTEXT listener needs no login, so the connection stays usable.
        assert conn.call(M.METADATA, 12, {"topics": None})["cluster_id"]


def test_tls_listener_refuses_plaintext_clients(servers, certs):
    srv = servers["SASL_SSL"]
    with WireConn(socket.create_connection((srv.host, srv.port), timeout=20)) as conn:
        with pytest.raises((ConnectionError, OSError)):
            conn.call(M.API_VERSIONS, 0, {})
    assert "Traceback" not in srv.log()


# ---------------------------------------------------------------- Python clients
PY_CASES = [("SASL_SSL", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-512"), ("SASL_PLAINTEXT", "SCRAM-SHA-256")]


def python_client_conf(srv, kind, mechanism, **tls):
    """kafka-python / aiokafka settings for alice; ``tls`` is each library's CA option."""
    conf = {"bootstrap_servers": srv.bootstrap, "security_protocol": kind, "sasl_mechanism": mechanism,
            "sasl_plain_username": "alice", "sasl_plain_password": USERS["alice"]}
    return {**conf, **tls} if kind == "SASL_SSL" else conf


@pytest.mark.parametrize("kind,mechanism", PY_CASES, ids=[f"{k}-{m}" for k, m in PY_CASES])
def test_kafka_python_authenticates(servers, certs, kind, mechanism):
    from kafka import KafkaConsumer, KafkaProducer

    topic = "t-" + uuid.uuid4().hex[:10]
    conf = python_client_conf(servers[kind], kind, mechanism, ssl_cafile=str(certs / "ca.pem"))
    p = KafkaProducer(**conf)
    offsets = [p.send(topic, b"py-%d" % i).get(20).offset for i in range(10)]
    p.close()
    assert offsets == list(range(10))
    c = KafkaConsumer(topic, group_id="g-" + topic, auto_offset_reset="earliest",
                      consumer_timeout_ms=15000, **conf)
    got = [m.value for _, m in zip(range(10), c)]
    c.close()
    assert got == [b"py-%d" % i for i in range(10)]


@pytest.mark.parametrize("kind,mechanism", PY_CASES, ids=[f"{k}-{m}" for k, m in PY_CASES])
def test_aiokafka_authenticates(servers, certs, kind, mechanism):
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    topic = "t-" + uuid.uuid4().hex[:10]
    conf = python_client_conf(servers[kind], kind, mechanism,
                              ssl_context=create_ssl_context(cafile=str(certs / "ca.pem")))

    async def main():
        p = AIOKafkaProducer(**conf)
        await p.start()
        try:
            sent = [(await p.send_and_wait(topic, b"aio-%d" % i)).offset for i in range(10)]
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, group_id="g-" + topic, auto_offset_reset="earliest", **conf)
        await c.start()
        try:
            got = [(await asyncio.wait_for(c.getone(), 20)).value for _ in range(10)]
        finally:
            await c.stop()
        return sent, got

    sent, got = asyncio.run(main())
    assert sent == list(range(10)) and got == [b"aio-%d" % i for i in range(10)]


def test_arrowlog_serve_passes_the_security_options(tmp_path):
    """`arrowlog serve` (the click command) lists the options in --help and hands them to the server."""
    r = _arrowlog("serve", "--help")
    assert all(flag in r.stdout for flag in ("--listener", "--ssl-cert", "--sasl-mechanisms", "--super-users",
                                             "--allow-everyone-if-no-acl-found", "--ssl-client-auth"))
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "arrowlog", "serve", "--data", str(tmp_path / "d"),
                             "--listen", "127.0.0.1:0", "--listener", "SASL_PLAINTEXT",
                             "--sasl-mechanisms", "SCRAM-SHA-512", "--super-users", "User:admin"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        host, port = proc.stdout.readline().strip().rsplit(":", 1)
        with WireConn(socket.create_connection((host, int(port)), timeout=20)) as conn:
            r = conn.call(M.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})
            assert r["error_code"] == 33 and r["mechanisms"] == ["SCRAM-SHA-512"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "listener SASL_PLAINTEXT" in err


def test_acl_cli_on_a_running_server(servers, certs):
    """`arrowlog acl add` on the data directory of a running server takes effect at once."""
    from .wireclient import make_batch

    srv = servers["SASL_PLAINTEXT"]
    topic = "cli-" + uuid.uuid4().hex[:8]
    with sasl_conn(srv, certs, "SCRAM-SHA-256", "admin") as conn:
        r = conn.call(M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                                       "replication_factor": 1}]})
        assert r["topics"][0]["error_code"] == 0
    produce = {"acks": 1, "timeout_ms": 1000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 0, "records": make_batch(2)}]}]}

    def produce_code():
        with sasl_conn(srv, certs, "SCRAM-SHA-256", "alice") as conn:
            return conn.call(M.PRODUCE, 9, produce)["responses"][0]["partition_responses"][0]["error_code"]

    assert produce_code() == 29
    r = _arrowlog("acl", "add", "--principal", "User:alice", "-o", "write", "--topic", topic,
                  "--data", str(srv.data_dir))
    assert r.returncode == 0, r.stderr
    assert produce_code() == 0
    r = _arrowlog("acl", "list", "--json", "--data", str(srv.data_dir))
    stored = [b for b in json.loads(r.stdout) if b["resource_name"] == topic]
    assert [(b["principal"], b["operation"], b["permission_type"]) for b in stored] == [("User:alice", 4, 3)]
    r = _arrowlog("acl", "remove", "--principal", "User:alice", "--topic", topic, "--data", str(srv.data_dir))
    assert r.returncode == 0, r.stderr
    assert produce_code() == 29
