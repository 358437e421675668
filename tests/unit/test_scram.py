"""The SCRAM server against RFC 7677's test vector and kafka-python's SCRAM client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat

import pytest
from kafka.net.sasl.scram import ScramClient

from arrowlog.server.security.scram import (
    AuthenticationError,
    ScramServer,
    make_credential,
)
from arrowlog.server.security.store import CredentialStore

# RFC 7677 section 3: user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_server(password="pencil"):
    cred = make_credential("SCRAM-SHA-256", password, salt=RFC_SALT, iterations=4096)
    return ScramServer("SCRAM-SHA-256", {"user": cred}.get, nonce=RFC_SERVER_NONCE)


def test_rfc7677_vector():
    server = rfc_server()
    assert server.first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.username == "user"


def test_rfc7677_vector_wrong_password_refused():
    server = rfc_server("pencil2")
    server.first(RFC_CLIENT_FIRST)
    with pytest.raises(AuthenticationError, match="invalid credentials"):
        server.final(RFC_CLIENT_FINAL)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_library_client_authenticates(mechanism):
    creds = {"alice": make_credential(mechanism, "s3cret")}
    client = ScramClient("alice", "s3cret", mechanism)
    server = ScramServer(mechanism, creds.get)
    client.process_server_first_message(server.first(client.first_message()))
    # The library client raises if the server's signature is wrong.
    client.process_server_final_message(server.final(client.final_message()))


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", "s3cret")])
def test_library_client_bad_login_refused(user, password):
    creds = {"alice": make_credential("SCRAM-SHA-512", "s3cret")}
    client = ScramClient(user, password, "SCRAM-SHA-512")
    server = ScramServer("SCRAM-SHA-512", creds.get)
    client.process_server_first_message(server.first(client.first_message()))
    with pytest.raises(AuthenticationError, match="invalid credentials"):
        server.final(client.final_message())


def test_unknown_user_looks_like_a_known_one():
    creds = {"alice": make_credential("SCRAM-SHA-256", "s3cret")}
    first = ScramServer("SCRAM-SHA-256", creds.get).first(b"n,,n=nobody,r=abc")
    again = ScramServer("SCRAM-SHA-256", creds.get).first(b"n,,n=nobody,r=abc")
    salt = lambda m: m.split(b",s=")[1].split(b",")[0]  # noqa: E731
    assert b",i=" in first and salt(first) == salt(again)


def test_replayed_client_final_refused():
    creds = {"alice": make_credential("SCRAM-SHA-256", "s3cret")}
    client = ScramClient("alice", "s3cret", "SCRAM-SHA-256")
    first = client.first_message()
    server = ScramServer("SCRAM-SHA-256", creds.get)
    client.process_server_first_message(server.first(first))
    final = client.final_message()
    server.final(final)
    with pytest.raises(AuthenticationError, match="already finished"):
        server.final(final)
    # A new exchange has a new server nonce: the captured proof does not fit it.
    replay = ScramServer("SCRAM-SHA-256", creds.get)
    replay.first(first)
    with pytest.raises(AuthenticationError, match="nonce"):
        replay.final(final)


@pytest.mark.parametrize("message", [
    b"", b"garbage", b"p=tls-unique,,n=a,r=b", b"n,,r=abc,n=user", b"n,,n=a=2X,r=b",
    b"n,,n=a,r=", b"\xff\xfe", b"n,,n=user,r=" + b"x" * 5000, b"n,a=bob,n=alice,r=abc",
])
def test_malformed_client_first_refused(message):
    server = ScramServer("SCRAM-SHA-256", {}.get)
    with pytest.raises(AuthenticationError):
        server.first(message)


@pytest.mark.parametrize("final", [
    b"c=biws,r=abcXYZ", b"r=abcXYZ,c=biws,p=AAAA", b"c=biws,r=abcXYZ,p=!!notbase64",
    b"c=eSws,r=abcXYZ,p=AAAA", b"c=biws,r=abcXYZ,p=AAAA",
])
def test_malformed_client_final_refused(final):
    creds = {"alice": make_credential("SCRAM-SHA-256", "s3cret")}
    server = ScramServer("SCRAM-SHA-256", creds.get, nonce="XYZ")
    server.first(b"n,,n=alice,r=abc")
    with pytest.raises(AuthenticationError):
        server.final(final)


def test_escaped_user_names():
    creds = {"a,b=c": make_credential("SCRAM-SHA-256", "pw")}
    client = ScramClient("a=2Cb=3Dc", "pw", "SCRAM-SHA-256")
    server = ScramServer("SCRAM-SHA-256", creds.get)
    client.process_server_first_message(server.first(client.first_message()))
    client.process_server_final_message(server.final(client.final_message()))
    assert server.username == "a,b=c"


def test_too_few_iterations_refused():
    with pytest.raises(AuthenticationError, match="iterations"):
        make_credential("SCRAM-SHA-256", "pw", iterations=1000)


def test_credential_store_is_private_and_has_no_password(tmp_path):
    store = CredentialStore(str(tmp_path))
    store.upsert("alice", "SCRAM-SHA-256", make_credential("SCRAM-SHA-256", "hunter2-password"))
    path = tmp_path / "security" / "scram-credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert b"hunter2" not in path.read_bytes()
    # A second store object (another process) sees the user; removing it is seen too.
    other = CredentialStore(str(tmp_path))
    assert other.users() == {"alice": {"SCRAM-SHA-256": 8192}}
    assert store.delete("alice") is True
    assert other.lookup("alice", "SCRAM-SHA-256") is None
    assert store.delete("alice") is False



def _librdkafka_final(first: bytes, server_first: bytes, password: str, prefix: bytes) -> tuple[bytes, bytes]:
    """librdkafka's client-final (r=<prefix><server nonce>) and the server signature it expects."""
    attrs = dict(kv.split(b"=", 1) for kv in server_first.split(b","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs[b"s"]), int(attrs[b"i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    without_proof = b"c=biws,r=" + prefix + attrs[b"r"]
    auth = first[3:] + b"," + server_first + b"," + without_proof
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_signature = hmac.new(hmac.new(salted, b"Server Key", "sha256").digest(), auth, "sha256").digest()
    return without_proof + b",p=" + base64.b64encode(proof), b"v=" + base64.b64encode(server_signature)


def test_librdkafka_doubled_client_nonce_accepted():
    """librdkafka 2.0 (Debian's kcat) sends r=<cnonce><cnonce><snonce>; Kafka accepts it."""
    creds = {"alice": make_credential("SCRAM-SHA-256", "s3cret")}
    first = b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL"
    server = ScramServer("SCRAM-SHA-256", creds.get)
    server_first = server.first(first)
    final, expected = _librdkafka_final(first, server_first, "s3cret", b"fyko+d2lbbFgONRv9qkxdawL")
    assert server.final(final) == expected


def test_other_nonce_prefix_refused():
    creds = {"alice": make_credential("SCRAM-SHA-256", "s3cret")}
    first = b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL"
    server = ScramServer("SCRAM-SHA-256", creds.get)
    final, _ = _librdkafka_final(first, server.first(first), "s3cret", b"other")
    with pytest.raises(AuthenticationError, match="nonce"):
        server.final(final)
