"""``arrowlog serve`` keeps what it acknowledges: periodic fsync, recovered
producer state, CRC-checked fetches, storage errors as replies.

Each test runs its own server (``ServerProcess``) on its own directory, so
it can be killed or have its files damaged.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import struct
import time
from pathlib import Path

import pytest

from arrowlog.server import messages as M
from arrowlog.storage import LogDir

from .conftest import ServerProcess
from .test_fetch_and_limits import fetch
from .wireclient import call, high_watermark, make_batch, produce, still_serving

confluent_kafka = pytest.importorskip("confluent_kafka")

DEADLINE_S = 60.0  # generous: CI is a loaded 2-core machine


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S):
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def serve(tmp_path):
    """serve(*options) -> a running ServerProcess on tmp_path/data; all are stopped at the end."""
    started = []

    def start(*extra: str) -> ServerProcess:
        srv = ServerProcess(tmp_path / "data", *extra)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def seed_rng(request):
    seed = int(os.environ.get("ARROWLOG_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))
    request.node.user_properties.append(("seed", seed))
    return random.Random(seed)


def create_topic(srv, name: str, partitions: int = 1, **config) -> dict:
    resp = call(srv, M.CREATE_TOPICS, 7, {"topics": [{"name": name, "num_partitions": partitions,
                                                      "replication_factor": 1, "configs": [
        {"name": k.replace("_", "."), "value": str(v)} for k, v in config.items()]}]})
    return resp["topics"][0]


def test_periodic_flush_advances_the_recovery_point_without_closing(serve, topic):
    srv = serve("--flush-interval", "0.1")
    assert create_topic(srv, topic)["error_code"] == 0
    assert produce(srv, topic, make_batch(5))["error_code"] == 0
    assert produce(srv, topic, make_batch(3))["error_code"] == 0
    # the server is still running and keeps the log open: only its periodic fsync can do this
    wait_for_recovery_point(str(srv.data_dir), topic, 8)
    assert srv.proc.poll() is None


def wait_for_recovery_point(data: str, topic: str, offset: int) -> None:
    """Wait until partition 0's recovery point (the offset below which it is fsynced) reaches ``offset``."""
    d = LogDir(data)
    try:
        pl = d.topic(topic).partition(0)
        assert pl.high_watermark >= offset
        wait_for(lambda: pl.state.snapshot()["recovery_point"] >= offset, f"the recovery point to reach {offset}")
    finally:
        d.close()


def test_fetch_reports_bit_rot_and_never_resigns_it(serve, topic, group):
    srv = serve()
    assert create_topic(srv, topic, segment_bytes=64 * 1024)["error_code"] == 0
    p = confluent_kafka.Producer({"bootstrap.servers": srv.bootstrap, "linger.ms": 5})
    for i in range(3000):
        p.produce(topic, b"value-%06d" % i, partition=0)
        if i % 100 == 99:
            assert p.flush(30) == 0
    assert p.flush(30) == 0
    # bit rot in a closed segment: "value-000500" now reads "value-900500"
    segments = sorted(glob.glob(os.path.join(str(srv.data_dir), "topics", topic, "0", "*.log")))
    damaged = [f for f in segments if b"value-000500" in open(f, "rb").read()]
    assert len(damaged) == 1 and damaged[0] != segments[-1], segments
    with open(damaged[0], "r+b") as f:
        body = f.read()
        f.seek(body.index(b"value-000500") + len(b"value-"))
        f.write(b"9")

    # the wire client: intact batches up to the damaged one, then CORRUPT_MESSAGE, never the data
    offset, seen = 0, b""
    for _ in range(3000):
        part = fetch(srv, topic, offset)
        if part["error_code"] != 0:
            break
        records = bytes(part["records"] or b"")
        assert records, f"no data and no error at offset {offset}"
        seen += records
        offset = max(base_offsets_and_ends(records))
    assert part["error_code"] == 2, part  # CORRUPT_MESSAGE
    assert 0 < offset <= 500  # the batches before the damaged one were served
    assert b"value-900500" not in seen and b"value-000500" not in seen
    # a client retries the damaged frame (every ~500 ms): each retry gets the error,
    # the server log names it once (it logged an ERROR line per retry)
    for _ in range(5):
        assert fetch(srv, topic, offset)["error_code"] == 2
    logged = [line for line in srv.log().splitlines() if f"fetch of {topic}-0 at {offset}:" in line]
    assert len(logged) == 1 and " ERROR " in logged[0], logged

    # a real client with check.crcs=true gets an error, never the rotten value
    c = confluent_kafka.Consumer({"bootstrap.servers": srv.bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "check.crcs": True,
                                  "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        values, errors = [], []
        end = time.monotonic() + DEADLINE_S
        while not errors and time.monotonic() < end:
            for m in c.consume(500, 0.2):
                (errors if m.error() else values).append(m.error() or m.value())
        assert errors, "the consumer never saw an error"
        assert b"value-900500" not in values and b"value-000500" not in values
        assert all(v < b"value-000500" for v in values)
    finally:
        c.close()


def base_offsets_and_ends(records: bytes) -> list[int]:
    """The next offset after each Kafka record batch in ``records``."""
    out, pos = [], 0
    while pos + 61 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        last_delta = struct.unpack_from(">i", records, pos + 23)[0]
        out.append(base + last_delta + 1)
        pos += 12 + length
    return out


def test_partition_caps_refuse_huge_create_topics_with_a_message(serve, topic):
    srv = serve("--max-partitions-per-request", "6")
    huge = create_topic(srv, topic, 100_000)
    assert huge["error_code"] == 37, huge  # INVALID_PARTITIONS
    assert "100000 partitions" in huge["error_message"] and "1000 per topic" in huge["error_message"]
    resp = call(srv, M.CREATE_TOPICS, 7, {"topics": [
        {"name": f"{topic}-{i}", "num_partitions": 4, "replication_factor": 1} for i in range(3)]})
    codes = [t["error_code"] for t in resp["topics"]]
    assert codes == [0, 44, 44], resp  # the second would bring the request to 8 > 6: POLICY_VIOLATION
    assert "more than 6 partitions" in resp["topics"][1]["error_message"]
    assert [n for n in os.listdir(os.path.join(str(srv.data_dir), "topics")) if n.startswith(topic)] == [f"{topic}-0"]
    assert create_topic(srv, topic, 6)["error_code"] == 0  # up to the cap is allowed


def test_a_full_disk_when_a_segment_must_grow_is_a_storage_error_reply(tmp_path, topic):
    """create_topic makes each partition's first segment (storage/precreate.py),
    so a partition's first write creates no file; a batch larger than what that
    segment has allocated must grow it, and on a full disk that is a
    KAFKA_STORAGE_ERROR reply with nothing stored, not a dropped connection."""
    from fault import faultlib

    reason = faultlib.root_reason()
    if reason:
        pytest.skip(reason)
    data = tmp_path / "data"  # the mount point itself: the server's log stays outside
    with faultlib.tmpfs(str(data), "64m"):  # room for a segment once the ballast is gone
        srv = ServerProcess(data)
        try:
            assert create_topic(srv, topic, 2)["error_code"] == 0
            # fill the file system: the partition's first segment cannot grow
            ballast = os.path.join(str(data), "ballast")
            fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
            try:
                for block in (1 << 20, 4096):
                    with contextlib.suppress(OSError):
                        while True:
                            os.write(fd, b"\0" * block)
            finally:
                os.close(fd)
            failed = produce(srv, topic, make_batch(20_000))  # ~1 MB: more than the segment has allocated
            assert failed["error_code"] == 56, failed  # KAFKA_STORAGE_ERROR, not a dropped connection
            still_serving(srv)
            os.unlink(ballast)
            ok = wait_for(lambda: (r := produce(srv, topic, make_batch(3)))["error_code"] == 0 and r,
                          "appends to resume once space is free")
            assert ok["base_offset"] == 0
            srv.stop()
            assert srv.proc.returncode == 0, srv.log()
            assert "Traceback" not in srv.log()
        finally:
            srv.stop()


def kill9(srv: ServerProcess) -> None:
    srv.proc.kill()
    srv.proc.wait(30)
    assert srv.proc.returncode == -9


def test_a_resent_batch_after_kill9_is_a_duplicate_not_appended_again(serve, topic):
    srv = serve()
    assert create_topic(srv, topic)["error_code"] == 0
    init = call(srv, M.INIT_PRODUCER_ID, 2, {"transactional_id": None, "transaction_timeout_ms": 60000})
    pid, epoch = init["producer_id"], init["producer_epoch"]
    first = make_batch(3, producer_id=pid, epoch=epoch, seq=0)
    assert produce(srv, topic, first)["base_offset"] == 0
    assert produce(srv, topic, make_batch(2, producer_id=pid, epoch=epoch, seq=3))["base_offset"] == 3
    kill9(srv)
    srv = serve()
    # the producer never saw the acknowledgements and sends both again: same sequences
    again = produce(srv, topic, first)
    assert again["error_code"] == 0 and again["base_offset"] == 0
    assert produce(srv, topic, make_batch(2, producer_id=pid, epoch=epoch, seq=3))["base_offset"] == 3
    assert high_watermark(srv, topic) == 5  # nothing appended twice
    assert produce(srv, topic, make_batch(1, producer_id=pid, epoch=epoch, seq=5))["base_offset"] == 5
    gap = produce(srv, topic, make_batch(1, producer_id=pid, epoch=epoch, seq=9))
    assert gap["error_code"] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER: the sequence was remembered
    newer = call(srv, M.INIT_PRODUCER_ID, 2, {"transactional_id": None, "transaction_timeout_ms": 60000})
    assert newer["error_code"] == 0 and newer["producer_id"] > pid  # ids are not reused


def test_idempotent_confluent_producer_across_kill9_writes_no_duplicate(serve, topic, seed_rng):
    """End to end with librdkafka: after each restart the producer's retries and new
    batches are accepted against the recovered state (no fatal sequence error), and the
    log ends with every record once. (A kill between an append and its response is rare
    here; the wire-client test above makes that case deterministic.)"""
    srv = serve()
    assert create_topic(srv, topic)["error_code"] == 0
    port = srv.port
    acked, failed = set(), []

    def delivered(err, msg):
        (failed.append(err) if err else acked.add(msg.value()))

    p = confluent_kafka.Producer({"bootstrap.servers": srv.bootstrap, "enable.idempotence": True,
                                  "linger.ms": 5, "message.timeout.ms": 120000,
                                  "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 200})
    sent = 0
    for cycle in range(4):
        deadline = time.monotonic() + seed_rng.uniform(0.2, 0.6)
        while time.monotonic() < deadline:
            for _ in range(seed_rng.randint(1, 50)):
                p.produce(topic, b"r%07d" % sent, partition=0, on_delivery=delivered)
                sent += 1
            p.poll(0.001)
        kill9(srv)  # with batches in flight: sent, maybe appended, not yet acknowledged
        srv = serve("--listen", f"127.0.0.1:{port}")
    assert p.flush(DEADLINE_S) == 0 and not failed, failed
    d = LogDir(str(srv.data_dir))
    try:
        pl = d.topic(topic).partition(0)
        values = [v for fr in pl.read(0, 1 << 30) for v in fr.batch.column("value").to_pylist()]
    finally:
        d.close()
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates"
    assert set(values) == acked and len(acked) == sent


def test_producer_state_flushed_before_a_power_loss_survives_it(tmp_path):
    """The periodic flush fsyncs the producer-state journal, then the partitions: after a
    power loss (FS_IOC_SHUTDOWN, no journal flush) batches acknowledged before a flush
    started are still known, so their resend is a duplicate."""
    import gc

    from fault import faultlib

    reason = faultlib.root_reason()
    if reason:
        pytest.skip(reason)
    img = faultlib.Ext4Image(str(tmp_path / "img"), 128)
    try:
        img.mount()
        data = Path(img.mnt)  # the mount itself: the server's log file stays outside
        faultlib.open_partition(str(data))[0].close()  # small segments
        srv = ServerProcess(data, "--flush-interval", "0.1")
        try:
            init = call(srv, M.INIT_PRODUCER_ID, 2, {"transactional_id": None, "transaction_timeout_ms": 60000})
            pid, epoch = init["producer_id"], init["producer_epoch"]
            batches = [make_batch(3, producer_id=pid, epoch=epoch, seq=0),
                       make_batch(2, producer_id=pid, epoch=epoch, seq=3)]
            assert [produce(srv, faultlib.TOPIC, b)["base_offset"] for b in batches] == [0, 3]
            wait_for_recovery_point(str(data), faultlib.TOPIC, 5)
            # a flush may have run while the batches were produced; the one that syncs a later
            # batch started after they were acknowledged, so it covers their producer state
            later = make_batch(1, producer_id=pid, epoch=epoch, seq=5)
            assert produce(srv, faultlib.TOPIC, later)["base_offset"] == 5
            wait_for_recovery_point(str(data), faultlib.TOPIC, 6)
            gc.collect()  # the test's mappings of the log go before the file system does
            img.shutdown()  # power loss
        finally:
            kill9(srv)
            srv.stop()
        img.umount()
        img.mount()
        srv = ServerProcess(data)
        try:
            assert high_watermark(srv, faultlib.TOPIC) == 6
            assert [produce(srv, faultlib.TOPIC, b)["base_offset"] for b in batches] == [0, 3]
            assert high_watermark(srv, faultlib.TOPIC) == 6  # answered as duplicates, not appended
        finally:
            srv.stop()
    finally:
        gc.collect()
        img.close()


def journal_lines(data) -> list[bytes]:
    with open(os.path.join(str(data), "producers", "journal"), "rb") as f:
        return f.read().splitlines(keepends=True)


def test_a_batch_journaled_before_its_append_is_confirmed_from_the_log(serve, topic):
    """The journal says a batch is about to be appended (at the offset it should get), before
    the append: after a kill -9 a resend is compared with the log at that offset and
    answered as a duplicate if it is there, appended if it is not."""
    srv = serve()
    assert create_topic(srv, topic)["error_code"] == 0
    init = call(srv, M.INIT_PRODUCER_ID, 2, {"transactional_id": None, "transaction_timeout_ms": 60000})
    pid, epoch = init["producer_id"], init["producer_epoch"]
    first, second = (make_batch(3, producer_id=pid, epoch=epoch, seq=0),
                     make_batch(2, producer_id=pid, epoch=epoch, seq=3))
    assert produce(srv, topic, first)["base_offset"] == 0
    assert produce(srv, topic, second)["base_offset"] == 3
    kill9(srv)
    assert journal_lines(srv.data_dir)[-1].startswith(b'{"p":')  # what a kill right after the append leaves
    srv = serve()
    assert produce(srv, topic, second)["base_offset"] == 3
    assert high_watermark(srv, topic) == 5
    # and a batch journaled as about to be appended that never was is appended on resend
    kill9(srv)
    with open(os.path.join(str(srv.data_dir), "producers", "journal"), "ab") as f:
        f.write(b'{"p":["%s",0,%d,%d,5,5,5,%d]}\n' % (topic.encode(), pid, epoch, int(time.time() * 1000)))
    srv = serve()
    third = make_batch(1, producer_id=pid, epoch=epoch, seq=5)
    assert produce(srv, topic, third)["base_offset"] == 5
    assert high_watermark(srv, topic) == 6


def test_producing_to_a_damaged_partition_is_a_storage_error(tmp_path, topic):
    # A partition whose middle segment is gone: the record is fine, the partition is
    # not, so the client is told KAFKA_STORAGE_ERROR (it was INVALID_RECORD, which
    # blames the record), and the server goes on serving.
    data = tmp_path / "data"
    with LogDir(str(data)) as d:
        pl = d.create_topic(topic, 1, {"segment.bytes": 16 * 1024}).partition(0)
        while len(pl.segment_bases()) < 4:
            pl.append(make_arrow_batch(20))
        middle = pl.segment_bases()[1]
    os.remove(os.path.join(str(data), "topics", topic, "0", f"{middle:020d}.log"))
    srv = ServerProcess(data)
    try:
        r = produce(srv, topic, make_batch(3))
        assert r["error_code"] == 56, r  # KAFKA_STORAGE_ERROR
        assert "arrowlog recover" in (r.get("error_message") or ""), r
        still_serving(srv)
    finally:
        assert srv.stop() == 0, srv.log()


def make_arrow_batch(n: int):
    import pyarrow as pa

    from arrowlog.schema import PRODUCE_SCHEMA
    types = [f.type for f in PRODUCE_SCHEMA]  # timestamp, key, value, headers
    return pa.RecordBatch.from_arrays([pa.array([0] * n, types[0]), pa.nulls(n, types[1]),
                                       pa.array([b"x" * 400] * n, types[2]), pa.nulls(n, types[3])],
                                      schema=PRODUCE_SCHEMA)
