"""The schema registry's REST API as served by ``arrowlog serve --registry-listen``:
endpoints, Confluent error codes, compatibility modes, deletes, hostile bodies,
and state that survives kill -9 (it lives in the ``_schemas`` topic)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from interop.registry_server import RegistryServer  # tests/ is on sys.path (its conftest.py)

import arrowlog

pytest.importorskip("aiohttp")
pytest.importorskip("fastavro")

SRC = str(Path(arrowlog.__file__).resolve().parent.parent)
DEADLINE_S = 60.0


def http(url: str, method: str, path: str, body=None, raw: bytes | None = None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE_S) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    srv = RegistryServer(tmp_path_factory.mktemp("registry") / "data")
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture
def subject():
    return "s-" + uuid.uuid4().hex[:12]


def record(*fields, name="R"):
    """An Avro record schema string; a field is (name, type) or (name, type, default)."""
    out = []
    for f in fields:
        d = {"name": f[0], "type": f[1]}
        if len(f) > 2:
            d["default"] = f[2]
        out.append(d)
    return json.dumps({"type": "record", "name": name, "fields": out})


def register(reg, subject, schema, schema_type=None):
    body = {"schema": schema}
    if schema_type:
        body["schemaType"] = schema_type
    return http(reg.url, "POST", f"/subjects/{subject}/versions", body)


def test_register_read_back_and_ids_shared_across_subjects(reg, subject):
    s1 = record(("a", "int"))
    status, body = register(reg, subject, s1)
    assert status == 200
    sid = body["id"]
    assert register(reg, subject, s1) == (200, {"id": sid})            # identical: same id, no new version
    assert register(reg, subject + "-b", s1) == (200, {"id": sid})     # ids are global
    status, body = register(reg, subject, record(("a", "int"), ("b", "string", "x")))
    assert status == 200 and body["id"] != sid
    assert http(reg.url, "GET", f"/subjects/{subject}/versions") == (200, [1, 2])
    assert subject in http(reg.url, "GET", "/subjects")[1]
    status, v1 = http(reg.url, "GET", f"/subjects/{subject}/versions/1")
    assert (status, v1) == (200, {"subject": subject, "version": 1, "id": sid, "schema": s1})
    assert http(reg.url, "GET", f"/subjects/{subject}/versions/latest")[1]["version"] == 2
    assert http(reg.url, "GET", f"/subjects/{subject}/versions/1/schema")[1] == json.loads(s1)
    assert http(reg.url, "GET", f"/schemas/ids/{sid}") == (200, {"schema": s1})
    assert http(reg.url, "GET", f"/schemas/ids/{sid}/schema") == (200, json.loads(s1))
    assert sorted(http(reg.url, "GET", f"/schemas/ids/{sid}/subjects")[1]) == sorted([subject, subject + "-b"])
    status, found = http(reg.url, "POST", f"/subjects/{subject}", {"schema": s1})
    assert (status, found["version"], found["id"]) == (200, 1, sid)
    assert http(reg.url, "GET", "/schemas/types")[1] == ["AVRO", "JSON"]


def test_json_schema_subjects_say_their_type(reg, subject):
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}})
    status, body = register(reg, subject, schema, "JSON")
    assert status == 200
    assert http(reg.url, "GET", f"/schemas/ids/{body['id']}")[1] == {"schema": schema, "schemaType": "JSON"}
    assert http(reg.url, "GET", f"/subjects/{subject}/versions/1")[1]["schemaType"] == "JSON"


@pytest.mark.parametrize("method,path,body,status,code", [
    ("GET", "/subjects/nope-{u}/versions", None, 404, 40401),
    ("GET", "/subjects/nope-{u}/versions/1", None, 404, 40401),
    ("GET", "/schemas/ids/987654", None, 404, 40403),
    ("GET", "/schemas/ids/x", None, 404, 40403),
    ("POST", "/subjects/nope-{u}/versions", {"schema": "{not json"}, 422, 42201),
    ("POST", "/subjects/nope-{u}/versions", {"schema": '{"type": "record", "name": "R"}'}, 422, 42201),
    ("POST", "/subjects/nope-{u}/versions", {"schema": "{}", "schemaType": "JSON",
                                             "references": [{"name": "x", "subject": "y", "version": 1}]},
     422, 42201),
    ("POST", "/subjects/nope-{u}/versions", {"schema": "{}", "schemaType": "XML"}, 422, 42201),
    ("PUT", "/config/nope-{u}", {"compatibility": "SIDEWAYS"}, 422, 42203),
    ("GET", "/config/nope-{u}", None, 404, 40408),
])
def test_unknown_and_invalid_get_confluent_error_codes(reg, method, path, body, status, code):
    got_status, got = http(reg.url, method, path.format(u=uuid.uuid4().hex[:8]), body)
    assert (got_status, got["error_code"]) == (status, code), got
    assert got["message"]


def test_unknown_version_and_invalid_version(reg, subject):
    register(reg, subject, record(("a", "int")))
    assert http(reg.url, "GET", f"/subjects/{subject}/versions/9")[1]["error_code"] == 40402
    status, body = http(reg.url, "GET", f"/subjects/{subject}/versions/abc")
    assert (status, body["error_code"]) == (422, 42202)
    status, body = http(reg.url, "POST", f"/subjects/{subject}", {"schema": record(("z", "int"))})
    assert (status, body["error_code"]) == (404, 40403)


def test_soft_then_hard_deletes(reg, subject):
    register(reg, subject, record(("a", "int")))
    register(reg, subject, record(("a", "int"), ("b", "int", 0)))
    status, body = http(reg.url, "DELETE", f"/subjects/{subject}/versions/1?permanent=true")
    assert (status, body["error_code"]) == (404, 40407)                 # hard delete needs a soft one first
    assert http(reg.url, "DELETE", f"/subjects/{subject}/versions/1") == (200, 1)
    assert http(reg.url, "GET", f"/subjects/{subject}/versions") == (200, [2])
    assert http(reg.url, "GET", f"/subjects/{subject}/versions?deleted=true") == (200, [1, 2])
    assert http(reg.url, "DELETE", f"/subjects/{subject}/versions/1?permanent=true") == (200, 1)
    assert http(reg.url, "GET", f"/subjects/{subject}/versions?deleted=true") == (200, [2])
    status, body = http(reg.url, "DELETE", f"/subjects/{subject}?permanent=true")
    assert (status, body["error_code"]) == (404, 40405)
    assert http(reg.url, "DELETE", f"/subjects/{subject}") == (200, [2])
    assert http(reg.url, "GET", f"/subjects/{subject}/versions")[1]["error_code"] == 40401
    assert subject not in http(reg.url, "GET", "/subjects")[1]
    assert subject in http(reg.url, "GET", "/subjects?deleted=true")[1]
    assert http(reg.url, "DELETE", f"/subjects/{subject}?permanent=true") == (200, [2])
    assert subject not in http(reg.url, "GET", "/subjects?deleted=true")[1]


def test_config_global_default_and_per_subject(reg, subject):
    assert http(reg.url, "GET", "/config") == (200, {"compatibilityLevel": "BACKWARD"})
    assert http(reg.url, "PUT", f"/config/{subject}", {"compatibility": "full"}) == (200, {"compatibility": "FULL"})
    assert http(reg.url, "GET", f"/config/{subject}") == (200, {"compatibilityLevel": "FULL"})
    assert http(reg.url, "DELETE", f"/config/{subject}") == (200, {"compatibilityLevel": "FULL"})
    assert http(reg.url, "GET", f"/config/{subject}?defaultToGlobal=true") == (200, {"compatibilityLevel": "BACKWARD"})


# Confluent's table (docs "Schema Evolution and Compatibility"): per mode, which change
# from the versions before is allowed. Each case: (mode, earlier schemas, new schema, accepted).
A = ("a", "int")
B_OPT = ("b", "string", "x")
B_REQ = ("b", "string")
MATRIX = [
    ("BACKWARD", [record(A)], record(A, B_OPT), True),                   # add optional field
    ("BACKWARD", [record(A)], record(A, B_REQ), False),                  # add field without default
    ("BACKWARD", [record(A, B_REQ)], record(A), True),                   # delete field
    ("FORWARD", [record(A)], record(A, B_REQ), True),                    # add field
    ("FORWARD", [record(A, B_OPT)], record(A), True),                    # delete optional field
    ("FORWARD", [record(A, B_REQ)], record(A), False),                   # delete field without default
    ("FULL", [record(A)], record(A, B_OPT), True),                       # add optional field
    ("FULL", [record(A, B_OPT)], record(A), True),                       # delete optional field
    ("FULL", [record(A)], record(A, B_REQ), False),                      # add required field
    ("FULL", [record(A, B_REQ)], record(A), False),                      # delete required field
    ("NONE", [record(A)], record(("a", "string")), True),                # anything goes
    ("BACKWARD", [record(("a", "int"))], record(("a", "long")), True),   # int promotes to long
    ("BACKWARD", [record(("a", "long"))], record(("a", "int")), False),
    # _TRANSITIVE: compatible with the latest version but not with the first one
    ("BACKWARD", [record(A), record(A, B_OPT)], record(A, B_REQ), True),
    ("BACKWARD_TRANSITIVE", [record(A), record(A, B_OPT)], record(A, B_REQ), False),
    ("FORWARD", [record(A, B_REQ), record(A, B_OPT)], record(A), True),
    ("FORWARD_TRANSITIVE", [record(A, B_REQ), record(A, B_OPT)], record(A), False),
    ("FULL", [record(A), record(A, B_OPT)], record(A, B_REQ), True),
    ("FULL_TRANSITIVE", [record(A), record(A, B_OPT)], record(A, B_REQ), False),
    ("BACKWARD_TRANSITIVE", [record(A), record(A, B_OPT)], record(A, ("c", "int", 0)), True),
]


@pytest.mark.parametrize("mode,earlier,new,accepted", MATRIX)
def test_compatibility_modes_follow_confluents_table(reg, subject, mode, earlier, new, accepted):
    for schema in earlier:   # register the history under NONE, then switch to the mode
        http(reg.url, "PUT", f"/config/{subject}", {"compatibility": "NONE"})
        assert register(reg, subject, schema)[0] == 200
    http(reg.url, "PUT", f"/config/{subject}", {"compatibility": mode})
    status, body = http(reg.url, "POST", f"/compatibility/subjects/{subject}/versions/latest?verbose=true",
                        {"schema": new})
    assert status == 200 and body["is_compatible"] is accepted, body
    status, body = register(reg, subject, new)
    if accepted:
        assert status == 200 and "id" in body
    else:
        assert (status, body["error_code"]) == (409, 409), body
        assert http(reg.url, "GET", f"/subjects/{subject}/versions")[1] == list(range(1, len(earlier) + 1))


JSON_MATRIX = [
    ({"type": "object", "properties": {"a": {"type": "integer"}}},
     {"type": "object", "properties": {"a": {"type": "number"}}}, True),            # widen integer->number
    ({"type": "object", "properties": {"a": {"type": "number"}}},
     {"type": "object", "properties": {"a": {"type": "integer"}}}, False),
    ({"type": "object", "properties": {"a": {"type": "integer"}}},
     {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, False),
]


@pytest.mark.parametrize("old,new,accepted", JSON_MATRIX)
def test_json_schema_backward_compatibility(reg, subject, old, new, accepted):
    assert register(reg, subject, json.dumps(old), "JSON")[0] == 200
    status, body = register(reg, subject, json.dumps(new), "JSON")
    assert (status == 200) is accepted, body
    if not accepted:
        assert body["error_code"] == 409


def _deep_record(depth: int) -> str:
    # json.dumps recurses: build the text by hand
    text = '{"type":"record","name":"Leaf","fields":[]}'
    for i in range(depth):
        text = f'{{"type":"record","name":"R{i}","fields":[{{"name":"f","type":{text}}}]}}'
    return text


def test_a_10000_deep_schema_gets_42201_and_the_server_keeps_serving(reg, subject):
    t0 = time.monotonic()
    status, body = register(reg, subject, _deep_record(10_000))
    assert (status, body["error_code"]) == (422, 42201)
    assert "nested" in body["message"]
    deep_body = b'{"schema": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    status, body = http(reg.url, "POST", f"/subjects/{subject}/versions", raw=deep_body)
    assert (status, body["error_code"]) == (422, 42201)
    assert time.monotonic() - t0 < DEADLINE_S
    assert register(reg, subject, record(A))[0] == 200


def test_an_oversized_schema_is_refused(reg, subject):
    big = json.dumps({"type": "record", "name": "R", "doc": "x" * (1 << 20), "fields": []})
    status, body = register(reg, subject, big)
    assert (status, body["error_code"]) == (422, 42201)


def reply_head(s: socket.socket) -> bytes:
    """The bytes of an HTTP reply up to the end of its headers (or the close)."""
    reply = b""
    while b"\r\n\r\n" not in reply:
        got = s.recv(65536)
        if not got:
            break
        reply += got
    return reply


def test_a_100_mb_body_is_refused_from_its_length_without_being_read(reg, subject):
    host, port = reg.url[len("http://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as s:
        s.sendall(f"POST /subjects/{subject}/versions HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {100 << 20}\r\n\r\n".encode())
        s.sendall(b"{" + b" " * 65536)
        reply = reply_head(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert register(reg, subject, record(A))[0] == 200


def test_the_registry_survives_kill_9(tmp_path):
    srv = RegistryServer(tmp_path / "data")
    try:
        s1, s2 = record(A), record(A, B_OPT)
        id1 = register(srv, "x-value", s1)[1]["id"]
        id2 = register(srv, "x-value", s2)[1]["id"]
        register(srv, "y-value", s1)
        http(srv.url, "DELETE", "/subjects/y-value")
        http(srv.url, "PUT", "/config/x-value", {"compatibility": "FORWARD"})
    finally:
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(DEADLINE_S)
        srv.stop()
    with RegistryServer(tmp_path / "data") as again:
        assert http(again.url, "GET", "/subjects") == (200, ["x-value"])
        assert http(again.url, "GET", "/subjects/x-value/versions/2")[1]["id"] == id2
        assert http(again.url, "GET", f"/schemas/ids/{id1}") == (200, {"schema": s1})
        assert http(again.url, "GET", "/config/x-value")[1] == {"compatibilityLevel": "FORWARD"}
        assert http(again.url, "GET", "/subjects?deleted=true")[1] == ["x-value", "y-value"]
        id3 = register(again, "z-value", record(("q", "long")))[1]["id"]
        assert id3 not in (id1, id2)
    topic = arrowlog.LogDir(str(tmp_path / "data")).topic("_schemas")
    assert topic.config["cleanup.policy"] == "compact"


def test_a_chunked_body_without_a_length_stops_being_read_at_the_limit(reg, subject):
    host, port = reg.url[len("http://"):].rsplit(":", 1)
    chunk = b" " * 65536
    with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as s:
        s.sendall(f"POST /subjects/{subject}/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        try:
            for _ in range((100 << 20) // len(chunk)):    # up to 100 MB, until the server answers
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:                                    # the server answered and closed
            pass
        reply = reply_head(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert register(reg, subject, record(A))[0] == 200


def served_briefly(tmp_path, scenario) -> None:
    """Run ``scenario(port)`` against a registry app whose idle timeout is 0.2 s."""
    import asyncio

    from arrowlog.registry import app
    from arrowlog.registry.store import Registry

    async def run():
        runner, port = await app.start(Registry(arrowlog.LogDir(str(tmp_path / "d"))), "127.0.0.1", 0,
                                       idle_timeout_s=0.2)
        try:
            await scenario(port)
        finally:
            await runner.cleanup()

    asyncio.run(run())


def test_an_idle_connection_is_closed(tmp_path):
    import asyncio

    async def scenario(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), DEADLINE_S) == b""    # closed, nothing sent
        writer.close()

    served_briefly(tmp_path, scenario)


def test_a_stalled_request_body_is_closed_and_the_next_request_served(tmp_path):
    # aiohttp's keep-alive timeout does not run while a body is read: a Content-Length
    # never met held the connection (a descriptor of the Kafka server's process) forever.
    import asyncio

    async def scenario(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /subjects/s/versions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        assert b" 200 " not in await asyncio.wait_for(reader.read(), DEADLINE_S)   # closed
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /subjects HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), DEADLINE_S)).startswith(b"HTTP/1.1 200")
        writer.close()

    served_briefly(tmp_path, scenario)


def test_ids_are_never_reused_after_hard_deletes_and_restarts(tmp_path):
    with RegistryServer(tmp_path / "data") as srv:
        register(srv, "a-value", record(A))
        top = register(srv, "b-value", record(("z", "long")))[1]["id"]
        http(srv.url, "DELETE", "/subjects/b-value")
        assert http(srv.url, "DELETE", "/subjects/b-value?permanent=true")[0] == 200
        assert http(srv.url, "GET", f"/schemas/ids/{top}")[1]["error_code"] == 40403
        again = register(srv, "c-value", record(("q", "string")))[1]["id"]
        assert again > top
    with RegistryServer(tmp_path / "data") as srv:
        assert register(srv, "d-value", record(("w", "double")))[1]["id"] > again


def test_a_bad_registry_listen_address_is_a_config_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "arrowlog.server", "--data", str(tmp_path / "d"), "--listen",
                        "127.0.0.1:0", "--registry-listen", "nope"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert r.returncode == 2
    assert "--registry-listen wants HOST:PORT, got 'nope'" in r.stderr
