"""A kafka:// client whose cluster does not answer fails fast, with one clear error, and
librdkafka's log lines go to Python logging (``arrowlog.kafka``), not to stderr."""

import logging
import socket
import time

import pytest

import arrowlog
from arrowlog.backends.kafka.client import ClusterUnreachableError

BOUND_MS = 2000


@pytest.fixture
def nowhere():
    """kafka:// on a 127.0.0.1 port nobody listens on (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"kafka://127.0.0.1:{port}"


CLIENTS = {
    "producer": lambda where, **kw: arrowlog.Producer({"log.dir": where, **kw}),
    "consumer": lambda where, **kw: arrowlog.Consumer({"log.dir": where, "group.id": "g", **kw}),
    "replay": lambda where, **kw: arrowlog.replay(where, "orders", **{k.replace(".", "_"): v for k, v in kw.items()}),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_an_unreachable_cluster_is_one_error_after_the_bound(client, nowhere, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="arrowlog.kafka")
    start = time.monotonic()
    with pytest.raises(ClusterUnreachableError) as info:
        CLIENTS[client](nowhere, **{"socket.connection.setup.timeout.ms": BOUND_MS})
    elapsed = time.monotonic() - start
    assert elapsed < 10, elapsed  # the bound (2 s) and some slack, not librdkafka's endless retries
    message = str(info.value)
    assert "cannot reach the Kafka cluster at 127.0.0.1:" in message and "Connection refused" in message
    assert isinstance(info.value, arrowlog.ArrowlogError) and isinstance(info.value, arrowlog.KafkaException)
    assert info.value.args[0].code() == arrowlog.KafkaError._ALL_BROKERS_DOWN
    lines = [r for r in caplog.records if r.name == "arrowlog.kafka"]
    assert lines and any("Connection refused" in r.getMessage() for r in lines)
    assert "Connection refused" not in capfd.readouterr().err  # librdkafka wrote nothing to stderr itself


def test_a_logger_in_the_config_gets_librdkafkas_lines(nowhere):
    got = []

    class Collect(logging.Handler):
        def emit(self, record):
            got.append(record.getMessage())

    mine = logging.getLogger("test.mine")
    mine.addHandler(Collect())
    mine.setLevel(logging.DEBUG)
    with pytest.raises(ClusterUnreachableError):
        arrowlog.Producer({"log.dir": nowhere, "logger": mine, "socket.connection.setup.timeout.ms": BOUND_MS})
    assert any("Connection refused" in line for line in got)
