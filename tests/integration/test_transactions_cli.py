"""``arrowlog txn list|abort``: see a transaction that holds the last stable offset
back, and abort it, with the server running (--bootstrap) or not (the directory)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from test_cli_processes import env, run

from arrowlog.cli.common import EXIT_NOT_FOUND

confluent_kafka = pytest.importorskip("confluent_kafka")

TOPIC, TXN_ID = "orders", "orders-etl"


def start_server(data: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "arrowlog.server", "--data", data, "--listen", "127.0.0.1:0",
                             "--partitions", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env())
    line = proc.stdout.readline().strip()
    assert line, "arrowlog server did not start"
    return proc, line


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    proc.send_signal(sig)
    proc.wait(60)


def stable_and_end(bootstrap: str) -> tuple[int, int]:
    """(last stable offset, high watermark) of orders-0, as a read_committed client sees them."""
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "probe",
                                  "isolation.level": "read_committed"})
    try:
        tp = confluent_kafka.TopicPartition(TOPIC, 0)
        _, stable = c.get_watermark_offsets(tp, timeout=30)
    finally:
        c.close()
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "probe",
                                  "isolation.level": "read_uncommitted"})
    try:
        _, end = c.get_watermark_offsets(tp, timeout=30)
    finally:
        c.close()
    return stable, end


def open_transaction(bootstrap: str):
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "transactional.id": TXN_ID})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(3):
        p.produce(TOPIC, value=b"pending%d" % i)
    p.flush(30)
    return p


def listed(data: str) -> dict:
    res = run(data, "txn", "list", "--json")
    assert res.returncode == 0, res.stderr
    return {t["transactional_id"]: t for t in json.loads(res.stdout)}


def test_txn_list_and_abort_over_the_wire(tmp_path):
    data = str(tmp_path / "data")
    proc, bootstrap = start_server(data)
    try:
        producer = open_transaction(bootstrap)
        assert stable_and_end(bootstrap) == (0, 3)
        t = listed(data)[TXN_ID]
        assert t["state"] == "Ongoing" and t["first_offsets"] == {f"{TOPIC}-0": 0}
        table = run(data, "txn", "list")
        assert TXN_ID in table.stdout.decode() and f"{TOPIC}-0@0" in table.stdout.decode()
        res = run(data, "txn", "abort", TXN_ID, "--bootstrap", bootstrap)
        assert res.returncode == 0, res.stderr
        assert stable_and_end(bootstrap) == (4, 4)    # its ABORT marker took offset 3
        after = listed(data)[TXN_ID]                  # a new epoch, no transaction open
        assert after["state"] == "Empty" and after["producer_epoch"] > t["producer_epoch"]
        with pytest.raises(confluent_kafka.KafkaException):
            producer.commit_transaction(10)           # fenced
    finally:
        stop(proc)


def test_txn_abort_on_the_directory_after_a_crash(tmp_path):
    data = str(tmp_path / "data")
    proc, bootstrap = start_server(data)
    try:
        open_transaction(bootstrap)
    finally:
        stop(proc, signal.SIGKILL)
    assert listed(data)[TXN_ID]["state"] == "Ongoing"
    res = run(data, "txn", "abort", "no-such-id")
    assert res.returncode == EXIT_NOT_FOUND
    res = run(data, "txn", "abort", TXN_ID)
    assert res.returncode == 0, res.stderr
    assert listed(data)[TXN_ID]["state"] == "CompleteAbort"
    proc, bootstrap = start_server(data)
    try:
        assert stable_and_end(bootstrap) == (4, 4)
    finally:
        stop(proc)


def test_txn_abort_on_the_directory_while_the_server_runs(tmp_path):
    """No --bootstrap: the abort changes the shared state; the running server sees it, and a
    read_committed consumer stalled behind the transaction gets past it."""
    data = str(tmp_path / "data")
    proc, bootstrap = start_server(data)
    try:
        producer = open_transaction(bootstrap)                  # 0-2, open
        plain = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
        plain.produce(TOPIC, value=b"after")                    # 3, behind the open transaction
        plain.flush(30)
        assert stable_and_end(bootstrap) == (0, 4)
        consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "stalled",
                                             "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
        consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
        try:
            assert consumer.poll(1.0) is None                   # held back by the open transaction
            res = run(data, "txn", "abort", TXN_ID)
            assert res.returncode == 0, res.stderr
            assert b"aborted" in res.stderr
            got, deadline = [], time.monotonic() + 60
            while not got and time.monotonic() < deadline:
                m = consumer.poll(0.5)
                if m is not None and not m.error():
                    got.append((m.offset(), m.value()))
            assert got == [(3, b"after")]                       # past the aborted records, none of them
        finally:
            consumer.close()
        assert stable_and_end(bootstrap) == (5, 5)              # its ABORT marker took offset 4
        assert listed(data)[TXN_ID]["state"] == "CompleteAbort"
        with pytest.raises(confluent_kafka.KafkaException):
            producer.commit_transaction(10)                     # fenced by the abort
    finally:
        stop(proc)
