"""Transactions of the in-process Producer on a data directory (no server): confluent-kafka's
five methods, read_committed readers, fencing across processes, the timeout of a producer
killed mid-transaction, kill -9 and reopen, send_offsets_to_transaction, and one shared
coordinator with ``arrowlog serve`` on the same directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from test_cli_processes import env

from arrowlog import Consumer, KafkaError, KafkaException, Producer, TopicPartition, replay

TOPIC = "orders"
DEADLINE_S = 60.0


def txn_producer(data: str, txn_id: str = "etl", **conf) -> Producer:
    p = Producer({"log.dir": data, "transactional.id": txn_id, **conf})
    p.init_transactions(10)
    return p


def replayed(data: str, isolation: str = "read_committed") -> list[bytes]:
    with replay(data, TOPIC, isolation=isolation) as r:
        return r.to_arrow().column("value").to_pylist()


def consumed(data: str, isolation: str, want: int) -> tuple[list[bytes], int]:
    """(values, final position) an in-process Consumer reads from orders-0 once ``want`` came
    and a poll found nothing more."""
    with Consumer({"log.dir": data, "isolation.level": isolation}) as c:
        tp = TopicPartition(TOPIC, 0, 0)
        c.assign([tp])
        got: list[bytes] = []
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value())
            elif m is None and len(got) >= want:
                break
        return got, c.position([tp])[0].offset


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def expect_line(proc: subprocess.Popen, want: str) -> None:
    line = proc.stdout.readline().strip()
    assert line == want, f"child said {line!r}: {proc.stderr.read() if proc.poll() is not None else ''}"


def test_committed_visible_aborted_not_uncommitted_sees_both(data_dir):
    p = txn_producer(data_dir)
    p.begin_transaction()
    p.produce(TOPIC, b"c0")
    p.produce(TOPIC, b"c1")                                    # 0-1, COMMIT at 2
    p.commit_transaction()
    reports = []
    p.begin_transaction()
    p.produce(TOPIC, b"a0")
    p.flush()                                                  # 3 appended, ABORT at 4
    p.produce(TOPIC, b"purged", on_delivery=lambda err, msg: reports.append(err))
    p.abort_transaction()
    assert [e.code() for e in reports] == [KafkaError._PURGE_QUEUE]   # queued, never appended
    p.begin_transaction()
    p.produce(TOPIC, b"open")                                  # 5, still open
    p.flush()
    assert replayed(data_dir) == [b"c0", b"c1"]                # replay's default: read_committed
    assert replayed(data_dir, "read_uncommitted") == [b"c0", b"c1", b"a0", b"open"]
    assert consumed(data_dir, "read_committed", 2) == ([b"c0", b"c1"], 5)   # stopped at the open transaction
    assert consumed(data_dir, "read_uncommitted", 4) == ([b"c0", b"c1", b"a0", b"open"], 6)
    p.commit_transaction()
    assert consumed(data_dir, "read_committed", 3) == ([b"c0", b"c1", b"open"], 7)
    p.close()


def test_calls_out_of_order_are_state_errors(data_dir):
    plain = Producer({"log.dir": data_dir})
    with pytest.raises(KafkaException, match="no transactional.id"):
        plain.begin_transaction()
    plain.close()
    p = Producer({"log.dir": data_dir, "transactional.id": "etl"})
    with pytest.raises(KafkaException, match="call init_transactions"):
        p.produce(TOPIC, b"x")
    with pytest.raises(KafkaException, match="init_transactions"):
        p.begin_transaction()
    p.init_transactions()
    with pytest.raises(KafkaException, match="begin_transaction") as info:
        p.produce(TOPIC, b"x")
    assert info.value.args[0].code() == KafkaError._STATE and not info.value.args[0].fatal()
    with pytest.raises(KafkaException, match="no transaction is begun"):
        p.commit_transaction()
    p.begin_transaction()
    with pytest.raises(KafkaException, match="already begun"):
        p.begin_transaction()
    p.produce(TOPIC, b"ok")
    p.commit_transaction()
    with pytest.raises(KafkaException, match="begin_transaction"):   # between transactions again
        p.produce(TOPIC, b"late")
    p.close()
    assert replayed(data_dir) == [b"ok"]
    with pytest.raises(KafkaException) as info:
        txn_producer(data_dir, "slow", **{"transaction.timeout.ms": 900_001})
    assert info.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT


FENCED_CHILD = """
    import sys
    from arrowlog import Producer
    p = Producer({"log.dir": sys.argv[1], "transactional.id": "etl"})
    p.init_transactions()
    p.begin_transaction()
    p.produce("orders", b"zombie")
    p.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        p.commit_transaction()
        print("committed", flush=True)
    except Exception as exc:
        err = exc.args[0]
        print(err.code(), err.fatal(), flush=True)
    try:
        p.begin_transaction()
    except Exception as exc:
        print(exc.args[0].code(), exc.args[0].fatal(), flush=True)
"""


def test_a_second_init_in_another_process_fences_the_first_and_aborts_its_transaction(data_dir):
    child = spawn(FENCED_CHILD, data_dir)
    try:
        expect_line(child, "ready")
        assert replayed(data_dir, "read_uncommitted") == [b"zombie"]
        p = txn_producer(data_dir)                             # fences the child, aborts its transaction
        assert replayed(data_dir) == []
        p.begin_transaction()
        p.produce(TOPIC, b"new")
        p.commit_transaction()
        out, _ = child.communicate("go\n", timeout=DEADLINE_S)
        assert out.split("\n")[:2] == ["90 True", "90 True"]      # PRODUCER_FENCED, fatal, and stays so
        assert replayed(data_dir) == [b"new"]
        assert replayed(data_dir, "read_uncommitted") == [b"zombie", b"new"]
        p.close()
    finally:
        child.kill()
        child.wait(30)


STUCK_CHILD = """
    import sys, time
    from arrowlog import Producer
    p = Producer({"log.dir": sys.argv[1], "transactional.id": "stuck", "transaction.timeout.ms": 1000})
    p.init_transactions()
    p.begin_transaction()
    p.produce("orders", b"stuck")
    p.flush()
    print("ready", flush=True)
    time.sleep(600)
"""


def txn_state(data: str, txn_id: str) -> dict:
    from arrowlog.server.txn_state import TxnState

    txns = TxnState(data, read_only=True).describe()
    return next(t for t in txns if t["transactional_id"] == txn_id)


def test_a_producer_killed_mid_transaction_is_aborted_after_its_timeout(data_dir):
    child = spawn(STUCK_CHILD, data_dir)
    try:
        expect_line(child, "ready")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    stuck = txn_state(data_dir, "stuck")
    assert stuck["state"] == "Ongoing"
    with Producer({"log.dir": data_dir}) as plain:             # not transactional: enforces no timeout
        plain.produce(TOPIC, b"after")
    assert consumed(data_dir, "read_committed", 0) == ([], 0)   # the killed one holds the stable offset
    assert txn_state(data_dir, "stuck")["state"] == "Ongoing"
    # no server: the next transactional operation on the directory after the timeout aborts it
    p = txn_producer(data_dir, "other")
    deadline = time.monotonic() + DEADLINE_S
    while txn_state(data_dir, "stuck")["state"] == "Ongoing":
        assert time.monotonic() < deadline, "the timed-out transaction was never aborted"
        p.begin_transaction()
        p.abort_transaction()
        time.sleep(0.05)
    aborted = txn_state(data_dir, "stuck")
    assert aborted["state"] == "CompleteAbort"
    assert aborted["producer_epoch"] == stuck["producer_epoch"] + 1   # fenced
    assert consumed(data_dir, "read_committed", 1) == ([b"after"], 3)   # past the marker of the abort
    p.close()


KILLED_CHILD = """
    import os, signal, sys
    from arrowlog import Producer
    p = Producer({"log.dir": sys.argv[1], "transactional.id": "etl"})
    p.init_transactions()
    p.begin_transaction(); p.produce("orders", b"committed"); p.commit_transaction()
    p.begin_transaction(); p.produce("orders", b"aborted"); p.flush(); p.abort_transaction()
    p.begin_transaction(); p.produce("orders", b"open"); p.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_state_survives_kill_9_and_reopen(data_dir):
    child = spawn(KILLED_CHILD, data_dir)
    child.communicate(timeout=DEADLINE_S)
    assert child.returncode == -signal.SIGKILL
    assert consumed(data_dir, "read_committed", 1) == ([b"committed"], 4)   # stops at the open one
    assert replayed(data_dir, "read_uncommitted") == [b"committed", b"aborted", b"open"]
    assert txn_state(data_dir, "etl")["state"] == "Ongoing"
    p = txn_producer(data_dir)                                 # the restarted producer aborts it (ABORT at 5)
    assert txn_state(data_dir, "etl")["state"] == "Empty"
    assert consumed(data_dir, "read_committed", 1) == ([b"committed"], 6)
    p.begin_transaction()
    p.produce(TOPIC, b"again")
    p.commit_transaction()
    p.close()
    assert replayed(data_dir) == [b"committed", b"again"]
    assert consumed(data_dir, "read_committed", 2) == ([b"committed", b"again"], 8)


def test_send_offsets_commits_the_group_offsets_with_the_transaction(data_dir):
    with Producer({"log.dir": data_dir}) as plain:
        for i in range(4):
            plain.produce("in", b"%d" % i)
    consumer = Consumer({"log.dir": data_dir, "group.id": "etl-group", "enable.auto.commit": False})
    consumer.assign([TopicPartition("in", 0, 0)])
    p = txn_producer(data_dir)

    def committed() -> int:
        return consumer.committed([TopicPartition("in", 0)])[0].offset

    p.begin_transaction()
    p.produce(TOPIC, b"out-aborted")
    p.send_offsets_to_transaction([TopicPartition("in", 0, 2)], consumer.consumer_group_metadata())
    p.abort_transaction()
    assert committed() < 0                                     # dropped with the transaction
    p.begin_transaction()
    p.produce(TOPIC, b"out")
    p.send_offsets_to_transaction([TopicPartition("in", 0, 3)], consumer.consumer_group_metadata())
    assert committed() < 0                                     # staged, not yet committed
    p.commit_transaction()
    assert committed() == 3
    assert replayed(data_dir) == [b"out"]
    with pytest.raises(KafkaException, match="consumer_group_metadata"):
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition("in", 0, 4)], "etl-group")
    p.abort_transaction()
    p.close()
    consumer.close()


def test_close_aborts_an_open_transaction(data_dir):
    p = txn_producer(data_dir)
    p.begin_transaction()
    p.produce(TOPIC, b"a")
    p.flush()
    p.close()
    assert txn_state(data_dir, "etl")["state"] == "CompleteAbort"
    assert consumed(data_dir, "read_committed", 0) == ([], 2)  # not held back: past the record and its marker


def test_one_coordinator_with_arrowlog_serve_on_the_same_directory(data_dir):
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from test_transactions_cli import stable_and_end, start_server, stop

    proc, bootstrap = start_server(data_dir)
    try:
        wire = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "transactional.id": "shared"})
        wire.init_transactions(30)
        wire.begin_transaction()
        wire.produce(TOPIC, value=b"wire-1")
        wire.commit_transaction(30)                            # 0, COMMIT at 1
        local = txn_producer(data_dir, "local")
        local.begin_transaction()
        local.produce(TOPIC, b"local-open")
        local.flush()                                          # 2, open
        assert stable_and_end(bootstrap) == (2, 3)             # the server sees the local transaction
        local.commit_transaction()                             # COMMIT at 3
        assert stable_and_end(bootstrap) == (4, 4)
        # the same id from both sides: the local init fences the wire producer and aborts its transaction
        wire.begin_transaction()
        wire.produce(TOPIC, value=b"wire-zombie")
        wire.flush(30)                                         # 4
        fencer = txn_producer(data_dir, "shared")              # ABORT at 5
        with pytest.raises(confluent_kafka.KafkaException) as info:
            wire.commit_transaction(30)
        assert info.value.args[0].fatal()
        # and the wire side fences a local producer
        again = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "transactional.id": "shared"})
        again.init_transactions(30)
        with pytest.raises(KafkaException) as local_info:
            fencer.begin_transaction()
        assert local_info.value.args[0].code() == KafkaError.PRODUCER_FENCED
        c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "check",
                                      "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
        c.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
        got, deadline = [], time.monotonic() + DEADLINE_S
        while len(got) < 2 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
        c.close()
        assert got == [b"wire-1", b"local-open"]
        assert replayed(data_dir) == [b"wire-1", b"local-open"]
        listed = subprocess.run([sys.executable, "-m", "arrowlog", "txn", "list", "--json", "--data", data_dir],
                                capture_output=True, text=True, env=env(), timeout=60)
        assert {t["transactional_id"] for t in json.loads(listed.stdout)} == {"shared", "local"}
        local.close()
        fencer.close()
    finally:
        stop(proc)


def test_produce_batch_goes_into_the_transaction(data_dir):
    p = txn_producer(data_dir)
    p.begin_transaction()
    assert p.produce_batch(TOPIC, [b"x0", b"x1"]) == 2
    p.abort_transaction()
    p.begin_transaction()
    assert p.produce_batch(TOPIC, [b"b0", b"b1", b"b2"]) == 3
    assert replayed(data_dir) == []                            # appended, not yet committed
    p.commit_transaction()
    p.close()
    assert replayed(data_dir) == [b"b0", b"b1", b"b2"]
    assert replayed(data_dir, "read_uncommitted") == [b"x0", b"x1", b"b0", b"b1", b"b2"]


def test_transaction_state_that_cannot_be_opened_is_a_clear_storage_error(data_dir):
    from arrowlog.errors import StorageError

    Producer({"log.dir": data_dir}).close()
    with open(f"{data_dir}/transactions", "w") as f:            # in the way of the state's directory
        f.write("not a directory")
    p = Producer({"log.dir": data_dir, "transactional.id": "etl"})
    with pytest.raises(StorageError, match="cannot open the transaction state .*writable data directory"):
        p.init_transactions()
    p.close()
