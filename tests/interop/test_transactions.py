"""Kafka transactions against ``arrowlog serve``: confluent-kafka transactional
producers and read_committed / read_uncommitted consumers, and the transactional
APIs on the wire."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import time

import pytest

from arrowlog.server import messages as M
from arrowlog.server import txn_messages as TM

from .test_server_durability import wait_for
from .test_server_refusals import with_attributes
from .wireclient import call, commit_topics, make_batch, still_serving

confluent_kafka = pytest.importorskip("confluent_kafka")

INVALID_RECORD, INVALID_PRODUCER_ID_MAPPING, INVALID_TRANSACTION_TIMEOUT, PRODUCER_FENCED = 87, 49, 50, 90
TRANSACTIONAL = 0x10


def txn_producer(server, txn_id, **conf):
    p = confluent_kafka.Producer({"bootstrap.servers": server.bootstrap, "transactional.id": txn_id, **conf})
    p.init_transactions(30)
    return p


def read_all(server, topic, isolation, group, want, timeout=30.0):
    """Values read from ``topic`` until ``want`` arrived, or until nothing came for a while
    after the deadline-bounded wait saw the end (``want`` None: drain to the end)."""
    c = confluent_kafka.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "isolation.level": isolation,
                                  "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and (want is None or len(got) < want):
            m = c.poll(0.5)
            if m is None:
                if want is None and got_end(c, topic, isolation, server):
                    break
                continue
            assert not m.error(), m.error()
            got.append(m.value())
        # a few more polls: nothing beyond what was wanted may show up
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            m = c.poll(0.3)
            if m is not None and not m.error():
                got.append(m.value())
    finally:
        c.close()
    return got


def got_end(consumer, topic, isolation, server):
    assigned = consumer.assignment()
    if not assigned:
        return False
    end = list_offset(server, topic, isolation == "read_committed")
    return all(consumer.position([tp])[0].offset >= end for tp in assigned)


def list_offset(server, topic, committed_only, version=7):
    r = call(server, M.LIST_OFFSETS, version, {"replica_id": -1, "isolation_level": 1 if committed_only else 0,
                                               "topics": [{"name": topic, "partitions": [
                                                   {"partition_index": 0, "timestamp": -1}]}]})
    p = r["topics"][0]["partitions"][0]
    assert p["error_code"] == 0
    return p["offset"]


def test_committed_visible_aborted_hidden(server, topic, group):
    p = txn_producer(server, "tx-vis-" + topic)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=b"c%d" % i)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(2):
        p.produce(topic, value=b"a%d" % i)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, value=b"c3")
    p.commit_transaction(30)
    committed = read_all(server, topic, "read_committed", group + "-rc", want=4)
    assert committed == [b"c0", b"c1", b"c2", b"c3"]
    everything = read_all(server, topic, "read_uncommitted", group + "-ru", want=6)
    assert everything == [b"c0", b"c1", b"c2", b"a0", b"a1", b"c3"]


def test_open_transaction_holds_the_last_stable_offset(server, topic, group):
    plain = confluent_kafka.Producer({"bootstrap.servers": server.bootstrap})
    plain.produce(topic, value=b"before")
    plain.flush(30)
    p = txn_producer(server, "tx-lso-" + topic)
    p.begin_transaction()
    p.produce(topic, value=b"open")
    p.flush(30)
    plain.produce(topic, value=b"after")
    plain.flush(30)
    assert list_offset(server, topic, committed_only=False) == 3
    assert list_offset(server, topic, committed_only=True) == 1    # the open transaction's first offset
    assert read_all(server, topic, "read_committed", group, want=None, timeout=10) == [b"before"]
    p.commit_transaction(30)
    assert list_offset(server, topic, committed_only=True) == 4    # its commit marker took offset 3
    assert read_all(server, topic, "read_committed", group + "-2", want=3) == [b"before", b"open", b"after"]


def test_new_producer_fences_the_old_one(server, topic, group):
    txn_id = "tx-fence-" + topic
    old = txn_producer(server, txn_id)
    old.begin_transaction()
    old.produce(topic, value=b"old")
    old.flush(30)
    new = txn_producer(server, txn_id)   # aborts old's open transaction, bumps the epoch
    new.begin_transaction()
    new.produce(topic, value=b"new")
    new.commit_transaction(30)
    with pytest.raises(confluent_kafka.KafkaException) as info:
        old.produce(topic, value=b"late")
        old.commit_transaction(10)
    err = info.value.args[0]
    assert err.fatal() or err.code() in (confluent_kafka.KafkaError._FENCED,
                                         confluent_kafka.KafkaError.PRODUCER_FENCED,
                                         confluent_kafka.KafkaError.INVALID_PRODUCER_EPOCH), err
    assert read_all(server, topic, "read_committed", group, want=1) == [b"new"]


KILLED_PRODUCER = textwrap.dedent("""
    import sys, confluent_kafka
    p = confluent_kafka.Producer({"bootstrap.servers": sys.argv[1], "transactional.id": sys.argv[3],
                                  "transaction.timeout.ms": 2000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(sys.argv[2], value=b"doomed%d" % i)
    p.flush(30)
    print("ready", flush=True)
    sys.stdin.read()
""")


def test_producer_killed_mid_transaction_is_aborted_after_its_timeout(server, topic, group):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PRODUCER, server.bootstrap, topic, "tx-kill-" + topic],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert list_offset(server, topic, committed_only=True) == 0   # held by the open transaction
        proc.kill()
        proc.wait(30)
        # the timeout aborts it: the stable offset moves past its marker
        wait_for(lambda: list_offset(server, topic, committed_only=True) == 6, "the timeout abort")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert read_all(server, topic, "read_committed", group, want=None, timeout=10) == []
    assert len(read_all(server, topic, "read_uncommitted", group + "-ru", want=5)) == 5
    # the stuck producer was fenced: its id starts over at a higher epoch
    r = call(server, M.INIT_PRODUCER_ID, 4, {"transactional_id": "tx-kill-" + topic,
                                             "transaction_timeout_ms": 60000})
    assert r["error_code"] == 0 and r["producer_epoch"] >= 2


def committed_offset(server, group, topic):
    r = call(server, M.OFFSET_FETCH, 7, {"group_id": group, "topics": [{"name": topic, "partition_indexes": [0]}]})
    return r["topics"][0]["partitions"][0]["committed_offset"]


def test_send_offsets_to_transaction_commits_offsets_with_the_output(server, topic, group):
    source = topic + "-in"
    plain = confluent_kafka.Producer({"bootstrap.servers": server.bootstrap})
    for i in range(10):
        plain.produce(source, value=b"in%d" % i)
    plain.flush(30)
    consumer = confluent_kafka.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                         "isolation.level": "read_committed"})
    consumer.subscribe([source])
    got, deadline = [], time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            got.append(m)
    assert len(got) == 10
    p = txn_producer(server, "tx-eos-" + topic)
    positions = [confluent_kafka.TopicPartition(source, 0, got[-1].offset() + 1)]
    try:
        p.begin_transaction()
        for m in got:
            p.produce(topic, value=m.value().upper())
        p.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        p.abort_transaction(30)
        assert committed_offset(server, group, source) == -1   # aborted: the offsets were not committed
        p.begin_transaction()
        for m in got:
            p.produce(topic, value=m.value().upper())
        p.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        p.commit_transaction(30)
    finally:
        consumer.close()
    assert committed_offset(server, group, source) == 10
    assert read_all(server, topic, "read_committed", group + "-out", want=10) == [b"IN%d" % i for i in range(10)]


# ---------------------------------------------------------------- the wire, request by request
def init_txn(server, txn_id, timeout_ms=60000):
    r = call(server, M.INIT_PRODUCER_ID, 4, {"transactional_id": txn_id, "transaction_timeout_ms": timeout_ms})
    return r["error_code"], r["producer_id"], r["producer_epoch"]


def add_partition(server, txn_id, pid, epoch, topic):
    r = call(server, TM.ADD_PARTITIONS_TO_TXN, 3, {
        "v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": pid,
        "v3_and_below_producer_epoch": epoch,
        "v3_and_below_topics": [{"name": topic, "partitions": [0]}]})
    return r["results_by_topic_v3_and_below"][0]["results_by_partition"][0]["partition_error_code"]


def produce_txn(server, txn_id, topic, pid, epoch, seq, n=2):
    r = call(server, M.PRODUCE, 9, {
        "transactional_id": txn_id, "acks": -1, "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": with_attributes(
            make_batch(n, producer_id=pid, epoch=epoch, seq=seq), TRANSACTIONAL)}]}]})
    return r["responses"][0]["partition_responses"][0]


def split_batches(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 12 <= len(data):
        size = 12 + struct.unpack_from(">i", data, pos + 8)[0]
        out.append(data[pos:pos + size])
        pos += size
    return out


def fetch_batches(server, topic, isolation):
    """(the partition's Fetch response, batch_info of each batch in it) from offset 0."""
    from arrowlog._native.kafka import batch_info

    r = call(server, M.FETCH, 12, {"max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20,
                                   "isolation_level": isolation, "topics": [{"topic": topic, "partitions": [
                                       {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}]})
    p = r["responses"][0]["partitions"][0]
    return p, [batch_info(b) for b in split_batches(bytes(p["records"]))]


def end_txn(server, txn_id, pid, epoch, commit):
    return call(server, TM.END_TXN, 3, {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch,
                                        "committed": commit})["error_code"]


def test_wire_refusals(server, created):
    # a control batch is written by the coordinator, never produced
    r = call(server, M.PRODUCE, 9, {"transactional_id": None, "acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": created, "partition_data": [{"index": 0, "records": with_attributes(make_batch(1), 0x30)}]}]})
    assert r["responses"][0]["partition_responses"][0]["error_code"] == INVALID_RECORD
    # a transactional batch from a producer id no transactional id maps to
    assert produce_txn(server, "nobody", created, 12345, 0, 0)["error_code"] == INVALID_PRODUCER_ID_MAPPING
    # Kafka's transaction.max.timeout.ms (15 minutes) bounds the producer's timeout
    assert init_txn(server, "tx-too-long", timeout_ms=900_001)[0] == INVALID_TRANSACTION_TIMEOUT
    assert init_txn(server, "tx-too-long", timeout_ms=0)[0] == INVALID_TRANSACTION_TIMEOUT
    # an old epoch is fenced
    code, pid, epoch = init_txn(server, "tx-wire-" + created)
    assert code == 0
    assert init_txn(server, "tx-wire-" + created)[0] == 0
    assert add_partition(server, "tx-wire-" + created, pid, epoch, created) == PRODUCER_FENCED
    assert end_txn(server, "tx-wire-" + created, pid, epoch, True) == PRODUCER_FENCED
    still_serving(server)


def test_wire_transaction_and_fetch_isolation(server, created):
    txn_id = "tx-fetch-" + created
    code, pid, epoch = init_txn(server, txn_id)
    assert code == 0
    assert add_partition(server, txn_id, pid, epoch, created) == 0
    assert produce_txn(server, txn_id, created, pid, epoch, 0)["base_offset"] == 0
    assert end_txn(server, txn_id, pid, epoch, False) == 0             # abort: marker at 2
    assert add_partition(server, txn_id, pid, epoch, created) == 0
    assert produce_txn(server, txn_id, created, pid, epoch, 2, n=3)["base_offset"] == 3
    assert end_txn(server, txn_id, pid, epoch, True) == 0              # commit: marker at 6
    assert end_txn(server, txn_id, pid, epoch, True) == 0              # a retry of it is fine

    for isolation in (0, 1):
        p, batches = fetch_batches(server, created, isolation)
        assert (p["error_code"], p["high_watermark"], p["last_stable_offset"]) == (0, 7, 7)
        assert [b["base_offset"] for b in batches] == [0, 2, 3, 6]
        # read_committed: the aborted batch goes out as its offsets alone (no records)
        assert [b["record_count"] == 0 for b in batches] == [isolation == 1, False, False, False]
        assert [b["base_offset"] for b in batches if b["attributes"] & 0x20] == [2, 6]   # the markers


def version_case(exchange, server, topic, group, api, v):
    """test_versions' case for the transactional APIs: one transaction, each API at version ``v``."""
    import uuid

    txn_id = "vtx-" + uuid.uuid4().hex[:8]
    code, pid, epoch = init_txn(server, txn_id)
    assert code == 0
    producer = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch}
    if api.key == 24:
        r = exchange(server, api, v, {
            "v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": pid,
            "v3_and_below_producer_epoch": epoch, "v3_and_below_topics": [{"name": topic, "partitions": [0, 1]}]})
        assert [p["partition_error_code"] for p in r["results_by_topic_v3_and_below"][0]["results_by_partition"]] \
            == [0, 0]
    elif api.key == 25:
        assert exchange(server, api, v, {**producer, "group_id": group})["error_code"] == 0
    elif api.key == 28:
        assert exchange(server, TM.ADD_OFFSETS_TO_TXN, 0, {**producer, "group_id": group})["error_code"] == 0
        r = exchange(server, api, v, {**producer, "group_id": group,
                                      "topics": commit_topics(topic, {0: 4}, committed_metadata="m")})
        assert r["topics"][0]["partitions"][0]["error_code"] == 0
        assert exchange(server, TM.END_TXN, 0, {**producer, "committed": True})["error_code"] == 0
        assert committed_offset(server, group, topic) == 4
    elif api.key == 26:
        assert add_partition(server, txn_id, pid, epoch, topic) == 0
        assert exchange(server, api, v, {**producer, "committed": False})["error_code"] == 0


def test_aiokafka_transactional_producer(server, topic, group):
    """A second, independent client implementation of the transactional protocol."""
    import asyncio

    aiokafka = pytest.importorskip("aiokafka")

    async def run():
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=server.bootstrap, transactional_id="tx-aio-" + topic)
        await p.start()
        try:
            async with p.transaction():
                await p.send_and_wait(topic, b"kept")
            await p.begin_transaction()
            await p.send_and_wait(topic, b"dropped")
            await p.abort_transaction()
            async with p.transaction():
                await p.send_and_wait(topic, b"kept2")
        finally:
            await p.stop()

    asyncio.run(asyncio.wait_for(run(), 60))
    assert read_all(server, topic, "read_committed", group, want=2) == [b"kept", b"kept2"]
    assert read_all(server, topic, "read_uncommitted", group + "-ru", want=3) == [b"kept", b"dropped", b"kept2"]


def test_offset_fetch_require_stable_waits_for_an_open_transaction(server, created, group):
    """KIP-447: offsets an open transaction staged answer UNSTABLE_OFFSET_COMMIT to a
    require_stable OffsetFetch (what read_committed consumers send) until it ends."""
    txn_id = "tx-stable-" + created
    _, pid, epoch = init_txn(server, txn_id)
    producer = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch}
    assert call(server, TM.ADD_OFFSETS_TO_TXN, 3, {**producer, "group_id": group})["error_code"] == 0
    r = call(server, TM.TXN_OFFSET_COMMIT, 3, {**producer, "group_id": group,
                                               "topics": commit_topics(created, {0: 3})})
    assert r["topics"][0]["partitions"][0]["error_code"] == 0

    def fetch(stable):
        r = call(server, M.OFFSET_FETCH, 7, {"group_id": group, "require_stable": stable,
                                             "topics": [{"name": created, "partition_indexes": [0]}]})
        p = r["topics"][0]["partitions"][0]
        return p["error_code"], p["committed_offset"]

    assert fetch(True)[0] == 88          # UNSTABLE_OFFSET_COMMIT: retriable
    assert fetch(False) == (0, -1)
    assert end_txn(server, txn_id, pid, epoch, True) == 0
    assert fetch(True) == (0, 3)


def joined_consumer(server, group, topic, assigned: list, **conf):
    c = confluent_kafka.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.subscribe([topic], on_assign=lambda consumer, parts: assigned.append(len(parts)))
    return c


def poll_until(consumers, done, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        for c in consumers:
            c.poll(0.2)


def test_send_offsets_of_a_consumer_a_rebalance_left_behind_is_refused(server, created, group):
    """KIP-447 over the wire: TxnOffsetCommit v3 carries the consumer's generation; a stale one
    is refused (ILLEGAL_GENERATION, abortable) and its offsets are not committed."""
    first_assigned: list = []
    first = joined_consumer(server, group, created, first_assigned)
    second = None
    p = txn_producer(server, "tx-zombie-" + created)
    try:
        poll_until([first], lambda: first_assigned, "the first consumer never joined")
        stale = first.consumer_group_metadata()
        second_assigned: list = []
        second = joined_consumer(server, group, created, second_assigned)
        poll_until([first, second], lambda: second_assigned, "the second consumer never joined")   # a new generation
        p.begin_transaction()
        p.produce(created, value=b"out")
        with pytest.raises(confluent_kafka.KafkaException) as info:
            p.send_offsets_to_transaction([confluent_kafka.TopicPartition(created, 0, 1)], stale, 30)
        err = info.value.args[0]
        assert err.code() == confluent_kafka.KafkaError.ILLEGAL_GENERATION and err.txn_requires_abort(), err
        p.abort_transaction(30)
        assert committed_offset(server, group, created) == -1
        p.begin_transaction()                                   # with current metadata it goes through
        p.send_offsets_to_transaction([confluent_kafka.TopicPartition(created, 0, 1)],
                                      first.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        assert committed_offset(server, group, created) == 1
    finally:
        first.close()
        if second is not None:
            second.close()


def test_wire_txn_offset_commit_checks_the_member(server, created, group):
    """TxnOffsetCommit v3 against the group as the server holds it: an unknown member, a
    replaced static instance and a stale generation are refused; no member and no
    generation (a client before KIP-447) is not checked."""
    assigned: list = []
    member = joined_consumer(server, group, created, assigned, **{"group.instance.id": "inst-1"})
    try:
        poll_until([member], lambda: assigned, "the consumer never joined")
        txn_id = "tx-member-" + created
        code, pid, epoch = init_txn(server, txn_id)
        assert code == 0
        producer = {"transactional_id": txn_id, "producer_id": pid, "producer_epoch": epoch, "group_id": group}
        assert call(server, TM.ADD_OFFSETS_TO_TXN, 3, producer)["error_code"] == 0

        def commit(generation, member_id, instance=None):
            r = call(server, TM.TXN_OFFSET_COMMIT, 3, {
                **producer, "generation_id": generation, "member_id": member_id, "group_instance_id": instance,
                "topics": commit_topics(created, {0: 1}, committed_metadata=None)})
            return r["topics"][0]["partitions"][0]["error_code"]

        mid = member.memberid()
        assert commit(1, "no-such-member") == 25                      # UNKNOWN_MEMBER_ID
        assert commit(1, "an-old-incarnation", "inst-1") == 82        # FENCED_INSTANCE_ID
        assert commit(10_000, mid, "inst-1") == 22                    # ILLEGAL_GENERATION
        assert commit(-1, "") == 0
        assert end_txn(server, txn_id, pid, epoch, True) == 0
        assert committed_offset(server, group, created) == 1
    finally:
        member.close()
