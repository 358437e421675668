"""`arrowlog serve` on a data directory whose server state files are damaged (review8): it starts and serves,
and a topic whose metadata is damaged answers KAFKA_STORAGE_ERROR for that topic only.

Found by writing garbage into each state file of a served directory: a file of 100,000 "[" (JSON nested too
deep to parse) raised RecursionError, which no loader caught, and the server did not start; a damaged
topics/<t>/topic.json made every Metadata request (even for all topics) close the connection with an
internal error."""

from __future__ import annotations

import socket

import pytest
from inproc_server import frame, recv_frame
from inproc_server import served as serve_in_thread

from arrowlog.server import messages as M
from arrowlog.server.security.store import AclStore, SecurityStateError
from arrowlog.server.wire import Reader

DEEP = b"[" * 100_000
STORAGE_ERROR = 56


def call(port: int, api, version: int, body: dict) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(frame(api, version, body))
        r = Reader(recv_frame(s))
    assert r.int32() == 1
    if api.is_flexible(version):
        r.skip_tags()
    return api.decode_response(r, version)


def create(port: int, name: str) -> None:
    resp = call(port, M.CREATE_TOPICS, 7, {"topics": [{"name": name, "num_partitions": 1, "replication_factor": 1,
                                                       "configs": [{"name": "min.insync.replicas", "value": "1"}]}]})
    assert resp["topics"][0]["error_code"] == 0


def metadata(port: int) -> dict[str, int]:
    resp = call(port, M.METADATA, 12, {"topics": None, "allow_auto_topic_creation": False})
    return {t["name"]: t["error_code"] for t in resp["topics"]}


@pytest.fixture
def data(tmp_path):
    """A data directory a server wrote its state files into: a topic with a Kafka-only config, an
    idempotent and a transactional producer."""
    path = tmp_path / "data"
    with serve_in_thread(path) as (server, _run):
        create(server.port, "t")
        assert call(server.port, M.INIT_PRODUCER_ID, 4, {"transactional_id": None,
                                                          "transaction_timeout_ms": 60000})["error_code"] == 0
        assert call(server.port, M.INIT_PRODUCER_ID, 4, {"transactional_id": "tx",
                                                          "transaction_timeout_ms": 60000})["error_code"] == 0
    return path


@pytest.mark.parametrize("name", ["producers/snapshot.json", "producers/journal", "transactions/snapshot.json",
                                  "transactions/journal", "kafka-topic-configs.json"])
def test_a_state_file_nested_too_deep_to_parse_is_skipped_and_the_server_serves(data, name):
    path = data / name
    assert path.exists()
    path.write_bytes(DEEP)
    with serve_in_thread(data) as (server, _run):
        assert metadata(server.port) == {"t": 0}
        create(server.port, "after")


def test_a_topic_with_damaged_metadata_answers_a_storage_error_and_the_others_are_served(data):
    with serve_in_thread(data) as (server, _run):
        create(server.port, "other")
    (data / "topics" / "t" / "topic.json").write_bytes(b"")
    with serve_in_thread(data) as (server, _run):
        assert metadata(server.port) == {"t": STORAGE_ERROR, "other": 0}
        listed = call(server.port, M.LIST_OFFSETS, 7, {"replica_id": -1, "topics": [
            {"name": n, "partitions": [{"partition_index": 0, "timestamp": -1}]} for n in ("t", "other")]})
        assert [t["partitions"][0]["error_code"] for t in listed["topics"]] == [STORAGE_ERROR, 0]


def test_an_acl_file_nested_too_deep_is_a_security_state_error(tmp_path):
    store = AclStore(str(tmp_path))
    (tmp_path / "security").mkdir(exist_ok=True)
    with open(store._file.path, "wb") as f:
        f.write(DEEP)
    with pytest.raises(SecurityStateError, match="is damaged"):
        store.bindings()
