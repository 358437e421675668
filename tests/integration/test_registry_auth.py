"""The registry listener takes the Kafka listener's security: HTTPS with its
certificate, and HTTP Basic credentials checked against its SCRAM users."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from interop.registry_server import RegistryServer
from interop.test_security import certs as certs_fixture  # noqa: F401  (a fixture: a CA, server and client certificates)
from test_registry_api import SRC, record

pytest.importorskip("aiohttp")
sr = pytest.importorskip("confluent_kafka.schema_registry")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    d = tmp_path_factory.mktemp("regauth")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "server.key", "-out", "server.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], cwd=d, check=True, capture_output=True)
    data = d / "data"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "arrowlog", "user", "add", "alice", "--password-stdin",
                        "--iterations", "4096", "--data", str(data)], input="alice-secret\n", env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    srv = RegistryServer(data, "--listener", "SASL_SSL", "--ssl-cert", str(d / "server.pem"), "--ssl-key",
                 str(d / "server.key"), "--super-users", "User:alice")
    srv.ca = str(d / "server.pem")
    yield srv
    assert srv.stop() == 0, srv.log()


def get(srv, path: str, user: str | None = None, password: str | None = None):
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    ctx = ssl.create_default_context(cafile=srv.ca)
    try:
        with urllib.request.urlopen(urllib.request.Request(srv.url + path, headers=headers), timeout=60,
                                    context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_registry_is_https_and_refuses_requests_without_valid_credentials(secured):
    assert secured.url.startswith("https://")
    status, body = get(secured, "/subjects")
    assert (status, body["error_code"]) == (401, 401) and "Basic" in body["message"]
    status, body = get(secured, "/subjects", "alice", "wrong")
    assert (status, body["error_code"]) == (401, 401) and "invalid credentials" in body["message"]
    status, body = get(secured, "/subjects", "mallory", "x")
    assert status == 401
    assert get(secured, "/subjects", "alice", "alice-secret") == (200, [])


def test_confluent_client_with_basic_auth_over_tls(secured):
    client = sr.SchemaRegistryClient({"url": secured.url, "basic.auth.user.info": "alice:alice-secret",
                                      "ssl.ca.location": secured.ca})
    sid = client.register_schema("secure-value", sr.Schema(record(("a", "int")), "AVRO"))
    assert client.get_latest_version("secure-value").schema_id == sid
    anonymous = sr.SchemaRegistryClient({"url": secured.url, "ssl.ca.location": secured.ca})
    with pytest.raises(sr.SchemaRegistryError) as info:
        anonymous.get_subjects()
    assert info.value.http_status_code == 401


@pytest.fixture(scope="module")
def pki(request):
    """A throwaway CA, and a server and a client certificate it signed (test_security's)."""
    return request.getfixturevalue("certs_fixture")


def tls_get(srv, path: str, pki, with_cert: bool):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    try:
        with urllib.request.urlopen(srv.url + path, timeout=60, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_ssl_listener_registry_serves_only_verified_client_certificates(tmp_path, pki):
    # On an SSL listener the Kafka side holds a client without a certificate to ACLs as
    # User:ANONYMOUS; the registry used to serve it everything, deletes included.
    with RegistryServer(tmp_path / "data", "--listener", "SSL", "--ssl-cert", str(pki / "server.pem"),
                        "--ssl-key", str(pki / "server.key"), "--ssl-cafile", str(pki / "ca.pem"),
                        "--ssl-client-auth", "requested") as srv:
        status, body = tls_get(srv, "/subjects", pki, with_cert=False)
        assert (status, body["error_code"]) == (401, 401) and "client certificate" in body["message"]
        assert tls_get(srv, "/subjects", pki, with_cert=True) == (200, [])


def test_an_ssl_listener_without_client_certificates_does_not_start_the_registry(tmp_path, pki):
    r = subprocess.run([sys.executable, "-m", "arrowlog.server", "--data", str(tmp_path / "d"), "--listen",
                        "127.0.0.1:0", "--registry-listen", "127.0.0.1:0", "--listener", "SSL",
                        "--ssl-cert", str(pki / "server.pem"), "--ssl-key", str(pki / "server.key")],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert r.returncode == 2, r.stderr
    assert "--ssl-client-auth required" in r.stderr
