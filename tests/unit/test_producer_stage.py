"""produce() into a topic of many partitions stages its records in one
sequential buffer (core.RecordStage, _native/core/stage.pxi) and flush()
writes each partition's frame from there: the log holds exactly what the
per-partition accumulators write, each partition's records stay in order
whatever goes around the stage (headers, delivery callbacks, batch.size,
linger.ms, other threads), and the statistics count staged records."""

from __future__ import annotations

import os
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arrowlog
from arrowlog._native import core
from arrowlog.backends.local import producer as producer_module
from arrowlog.storage import LogDir

# small segments and a dense index: frames that do not fit take the general path (rolls)
CONFIG = {"segment.bytes": 16 << 10, "index.interval.bytes": 600, "retention.ms": -1}


def partition_files(path: str, topic: str) -> dict[str, bytes]:
    """Every file of every partition but the state, lock and open marker,
    without preallocated room, and without the times the segments were
    created (in the state and each segment's header, with its CRC)."""
    out = {}
    root = os.path.join(path, "topics", topic)
    for part in sorted(os.listdir(root)):
        pdir = os.path.join(root, part)
        if not os.path.isdir(pdir):
            continue
        for name in sorted(os.listdir(pdir)):
            if name in ("partition.state", "partition.lock", "partition.open"):
                continue
            with open(os.path.join(pdir, name), "rb") as f:
                data = f.read().rstrip(b"\0")
            if name.endswith(".log"):  # header: CRC at 12, created_ms at 24 (docs/FORMAT.md)
                data = data[:12] + bytes(4) + data[16:24] + bytes(8) + data[32:]
            out[f"{part}/{name}"] = data
    return out


def produce_all(path: str, partitions: int, rounds: list, staged: bool, monkeypatch) -> list:
    """Produce ``rounds`` (each a list of records, flushed at its end) into a
    new topic; returns the delivery reports as (partition, offset, value)."""
    monkeypatch.setattr(producer_module, "STAGE_PARTITIONS", 16 if staged else 1 << 30)
    with LogDir(path) as d:
        d.create_topic("t", partitions, config=CONFIG)
    reports: list = []
    p = arrowlog.Producer({"log.dir": path, "linger.ms": 600_000})
    try:
        for records in rounds:
            for key, value, part, ts, headers, callback in records:
                kw = {"on_delivery": lambda err, msg: reports.append((msg.partition(), msg.offset(), msg.value()))} \
                    if callback else {}
                p.produce("t", value, key=key, partition=part, timestamp=ts, headers=headers, **kw)
            assert (p._slots["t"].stage is not None) == staged
            assert p.flush() == 0
    finally:
        p.close()
    return reports


record = st.tuples(
    st.one_of(st.none(), st.binary(max_size=12)),           # key
    st.one_of(st.none(), st.binary(max_size=300)),          # value
    st.integers(0, 15),                                     # partition (when the key is null or it is forced)
    st.booleans(),                                          # force the partition
    st.integers(1, 2_000_000_000_000),                      # timestamp (0 means now)
    st.sampled_from([None, None, None, [("h", b"x")]]),     # headers now and then
    st.sampled_from([False, False, False, True]),           # a delivery callback now and then
)


def as_produced(r) -> tuple:
    key, value, part, force, ts, headers, callback = r
    return key, value, part if key is None or force else -1, ts, headers, callback


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.lists(record.map(as_produced), min_size=1, max_size=400), min_size=1, max_size=3))
def test_staged_flush_writes_what_the_accumulators_write(tmp_path_factory, monkeypatch, rounds):
    base = str(tmp_path_factory.mktemp("stage"))
    with monkeypatch.context() as m:
        want_reports = produce_all(os.path.join(base, "accumulators"), 16, rounds, False, m)
    with monkeypatch.context() as m:
        got_reports = produce_all(os.path.join(base, "staged"), 16, rounds, True, m)
    assert got_reports == want_reports
    got = partition_files(os.path.join(base, "staged"), "t")
    want = partition_files(os.path.join(base, "accumulators"), "t")
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name


def test_many_partitions_and_rolls_match_byte_for_byte(tmp_path, monkeypatch):
    """200 partitions, 40,000 keyed records in 4 flushes, segments rolling."""
    rounds = [[(b"key-%d" % i, b"v%d" % i * 4, -1, 1_700_000_000_000 + i, None, False)
               for i in range(r * 10_000, (r + 1) * 10_000)] for r in range(4)]
    with monkeypatch.context() as m:
        produce_all(str(tmp_path / "a"), 200, rounds, False, m)
    with monkeypatch.context() as m:
        produce_all(str(tmp_path / "s"), 200, rounds, True, m)
    got, want = partition_files(str(tmp_path / "s"), "t"), partition_files(str(tmp_path / "a"), "t")
    assert len([n for n in want if n.endswith(".log")]) > 200  # rolls happened on the way
    assert got == want


def staged_topic(tmp_path, monkeypatch, partitions: int, config: dict | None = None) -> str:
    """A data directory with topic "t" of ``partitions`` partitions, which producers stage (16 or more)."""
    monkeypatch.setattr(producer_module, "STAGE_PARTITIONS", 16)
    path = str(tmp_path)
    with LogDir(path) as d:
        d.create_topic("t", partitions, config=config)
    return path


def by_partition(path: str) -> dict[int, list[bytes]]:
    table = arrowlog.replay(path, "t").to_arrow()
    out: dict[int, list[bytes]] = {}
    for part, value in zip(table.column("partition").to_pylist(), table.column("value").to_pylist()):
        out.setdefault(part, []).append(value)
    return out


def test_batch_size_sends_without_a_flush(tmp_path, monkeypatch):
    """A partition whose staged records reach batch.size is appended by produce() itself."""
    path = staged_topic(tmp_path, monkeypatch, 32)
    with arrowlog.Producer({"log.dir": path, "linger.ms": 600_000, "batch.size": 5_000}) as p:
        for i in range(2000):
            p.produce("t", b"%05d" % i + b"x" * 95, partition=i % 32)
        assert p._slots["t"].stage is not None
        written = sum(p._slots["t"].topic.partition(q).high_watermark for q in range(32))
        # 41 records of 124 bytes make a partition's batch full: record 1,280 fills
        # partition 0's, and the stage (every partition's batch) is appended
        assert written == 1281
        assert len(p) == 2000 - written
    got = by_partition(path)
    assert got == {q: [b"%05d" % i + b"x" * 95 for i in range(q, 2000, 32)] for q in range(32)}


def test_linger_thread_appends_staged_records(tmp_path, monkeypatch):
    path = staged_topic(tmp_path, monkeypatch, 20)
    with arrowlog.Producer({"log.dir": path, "linger.ms": 1}) as p:
        for i in range(100):
            p.produce("t", b"%d" % i, key=b"k%d" % i)
        topic = p._slots["t"].topic
        deadline = time.monotonic() + 60
        while sum(topic.partition(q).high_watermark for q in range(20)) < 100:  # no flush(): the linger thread
            assert time.monotonic() < deadline, "the linger thread did not append the staged records"
            time.sleep(0.01)
        assert p._slots["t"].stage.count == 0 and len(p) == 0


def test_statistics_count_staged_records(tmp_path, monkeypatch):
    path = staged_topic(tmp_path, monkeypatch, 16)
    with arrowlog.Producer({"log.dir": path, "linger.ms": 600_000}) as p:
        p.produce("t", b"v" * 10, key=b"k", partition=3)
        p.produce("t", b"v" * 20, partition=3)
        topics, totals = p._statistics()
        assert topics["t"][3]["msgq_cnt"] == 2
        assert topics["t"][3]["msgq_bytes"] == 1 + 10 + 20 + 2 * 24
        assert topics["t"][4]["msgq_cnt"] == 0
        assert totals["msg_size"] == 1 + 10 + 20 + 2 * 24
        assert p._slots["t"].stage.count == 2  # counted where they are, not moved


def test_threads_keep_each_partitions_order(tmp_path, monkeypatch):
    """Two threads produce (some records with headers, which go around the
    stage) while a third flushes and the linger thread appends: every
    partition holds each thread's records in the order it produced them."""
    path = staged_topic(tmp_path, monkeypatch, 24)
    n = 6000
    done = threading.Event()
    with arrowlog.Producer({"log.dir": path, "linger.ms": 2}) as p:
        def writer(name: bytes) -> None:
            for i in range(n):
                p.produce("t", name + b"%06d" % i, key=b"%d" % (i % 97),
                          headers=[("h", b"1")] if i % 50 == 0 else None)

        def flusher() -> None:
            while not done.is_set():
                p.flush()

        threads = [threading.Thread(target=writer, args=(w,)) for w in (b"a", b"b")]
        f = threading.Thread(target=flusher)
        f.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        f.join()
        assert p.flush() == 0
    got = by_partition(path)
    assert sum(len(v) for v in got.values()) == 2 * n
    for values in got.values():
        for w in (b"a", b"b"):
            seq = [int(v[1:]) for v in values if v[:1] == w]
            assert seq == sorted(seq)


def test_a_record_around_the_stage_drains_it_keeping_the_batch_age(tmp_path, monkeypatch):
    """A record with headers for a partition with staged records moves the
    stage into the accumulators first (order), and the batches keep the
    time their first record came (linger.ms counts from there)."""
    path = staged_topic(tmp_path, monkeypatch, 16)
    with arrowlog.Producer({"log.dir": path, "linger.ms": 600_000}) as p:
        p.produce("t", b"1", partition=3)
        p.produce("t", b"2", partition=5)
        slot = p._slots["t"]
        first = slot.stage.oldest
        assert slot.stage.count == 2 and slot.accumulators[3].count == 0
        deadline = time.monotonic() + 10
        while time.monotonic() == first and time.monotonic() < deadline:
            pass
        p.produce("t", b"3", partition=3, headers={"h": b"x"})
        assert slot.stage.count == 0
        assert (slot.accumulators[3].count, slot.accumulators[5].count) == (2, 1)
        assert slot.accumulators[3].created == first
        p.produce("t", b"4", partition=3)  # behind the accumulator's records, not staged
        assert slot.stage.count == 0 and slot.accumulators[3].count == 3
    assert by_partition(path) == {3: [b"1", b"3", b"4"], 5: [b"2"]}


def test_two_threads_opening_a_topic_share_one_slot(tmp_path):
    """Two threads' first produce() into a topic both open it (the GIL is
    released while the topic is read): the second gets the first one's
    slot; before, its own slot replaced the other's, and the records
    queued in the replaced one were never sent."""
    path = str(tmp_path)
    with LogDir(path) as d:
        d.create_topic("t", 2)
    with arrowlog.Producer({"log.dir": path}) as p:
        opened = p._log.topic
        calls = []

        def topic(name):
            t = opened(name)
            calls.append(name)
            if len(calls) == 1:  # the first opener is overtaken by another thread's produce() calls
                other = threading.Thread(target=lambda: [p.produce("t", b"b%d" % i, partition=i % 2) for i in range(10)])
                other.start()
                other.join()
            return t

        p._log.topic = topic
        p.produce("t", b"a", partition=0)
        assert len(calls) == 2
        assert p.flush() == 0
    got = by_partition(path)
    assert sorted(got[0] + got[1]) == sorted([b"a"] + [b"b%d" % i for i in range(10)])


def test_a_periodic_sync_during_a_flush_never_sees_its_set_change(tmp_path, monkeypatch):
    """The linger thread's periodic sync swaps the producer's set of written
    logs and syncs the old one while a flush on another thread may be
    appending (the GIL released): the flush's logs go to the new set, never
    into the one being synced ("Set changed size during iteration")."""
    path = staged_topic(tmp_path, monkeypatch, 16)
    with arrowlog.Producer({"log.dir": path, "linger.ms": 600_000, "fsync.interval.ms": 0}) as p:
        for q in range(16):
            p.produce("t", b"x", partition=q)
        p.flush()
        for q in range(16):
            p.produce("t", b"y", partition=q)
        log = p._slots["t"].logs[0]
        taken: list = []

        def append_target():  # the sync takes the set just as partition 0 is appended
            taken.append(p._dirty)
            p._dirty = set()
            return type(log).append_target(log)

        log.append_target = append_target
        p.flush()
        assert len(taken) == 1 and len(taken[0]) == 16  # (the first flush's logs) unchanged since it was taken
        assert len(p._dirty) == 16


def test_a_compacted_topic_is_staged_and_appended_through_the_general_path(tmp_path, monkeypatch):
    """A compacted topic has no native append target: each staged partition's
    scratch batch goes through PartitionLog.append_records' pyarrow path."""
    path = staged_topic(tmp_path, monkeypatch, 16, {"cleanup.policy": "compact"})
    with arrowlog.Producer({"log.dir": path, "linger.ms": 600_000}) as p:
        for r in range(3):
            for i in range(200):
                p.produce("t", b"%d-%d" % (r, i), key=b"k%d" % i)
            assert p._slots["t"].stage.count == 200
            assert p.flush() == 0
    got = by_partition(path)
    want: dict[int, list[bytes]] = {}
    for r in range(3):
        for i in range(200):
            want.setdefault(core.murmur2_partition(b"k%d" % i, 16), []).append(b"%d-%d" % (r, i))
    assert got == want


def steady_rounds(path: str, partitions: int, rounds: int, per_round: int, value_bytes: int, monkeypatch) -> list:
    """Keyed records produced into a new staged topic and flushed ``rounds``
    times by one Producer; returns how many frames took the general path
    (PartitionLog._append_frame) in each round, and each partition's
    allocated segment size before the close gives the tail back."""
    from arrowlog.storage.appending import AppendMixin
    calls: list = []
    original = AppendMixin._append_frame

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AppendMixin, "_append_frame", counting)
    with LogDir(path) as d:
        d.create_topic("t", partitions, config={"retention.ms": -1})
    general = []
    with arrowlog.Producer({"log.dir": path, "linger.ms": 600_000}) as p:
        for r in range(rounds):
            before = len(calls)
            for i in range(per_round):
                p.produce("t", b"%d-" % r + b"v" * value_bytes, key=b"k%d" % i, timestamp=1_700_000_000_000 + r)
            assert p.flush() == 0
            general.append(len(calls) - before)
        sizes = [log._writer.file_size for log in p._slots["t"].logs]
    return [general, sizes]


def test_steady_rounds_stay_native_while_the_segments_grow(tmp_path, monkeypatch):
    """A frame that ends beyond a segment's allocated room is appended
    natively: append_at grows the segment through its target's ``grow``
    (Segment.ensure_allocated, under the append lock) instead of declining
    to the general path every time a partition's file grows. The files are
    those the general path writes."""
    with monkeypatch.context() as m:
        m.setattr(producer_module, "STAGE_PARTITIONS", 16)
        general, sizes = steady_rounds(str(tmp_path / "native"), 32, 8, 32 * 40, 300, m)
    assert general[0] == 32  # the first frame into each empty segment: the general path
    assert general[1:] == [0] * 7
    assert min(sizes) > 64 << 10  # every segment grew past its first allocation on the way
    with monkeypatch.context() as m:
        from arrowlog.storage.appending import AppendMixin
        m.setattr(producer_module, "STAGE_PARTITIONS", 16)
        m.setattr(AppendMixin, "append_target", lambda self: None)  # every frame through _append_frame
        steady_rounds(str(tmp_path / "general"), 32, 8, 32 * 40, 300, m)
    got, want = partition_files(str(tmp_path / "native"), "t"), partition_files(str(tmp_path / "general"), "t")
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name


def test_a_stage_of_many_megabytes_over_many_partitions_writes_what_the_accumulators_write(tmp_path, monkeypatch):
    """A stage above 2 MiB (its buffers then in huge pages, stage.pxi) over
    300 partitions: the same files as the accumulators' path."""
    rounds = [[(b"key-%d" % (i % 5000), b"%d" % i + b"x" * (i % 200), -1, 1_700_000_000_000 + i, None, False)
               for i in range(r * 30_000, (r + 1) * 30_000)] for r in range(2)]
    with monkeypatch.context() as m:
        produce_all(str(tmp_path / "a"), 300, rounds, False, m)
    with monkeypatch.context() as m:
        produce_all(str(tmp_path / "s"), 300, rounds, True, m)
    assert partition_files(str(tmp_path / "s"), "t") == partition_files(str(tmp_path / "a"), "t")


@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(16, 400), st.lists(st.lists(st.tuples(st.binary(max_size=10), st.integers(0, 400)),
                                                min_size=1, max_size=3000), min_size=1, max_size=3))
def test_many_partitions_staged_write_what_the_accumulators_write(tmp_path_factory, monkeypatch, partitions, rounds):
    base = str(tmp_path_factory.mktemp("many"))
    records = [[(key, key * (size // max(len(key), 1)) if key else b"v" * size, -1, 1_700_000_000_000 + size, None,
                 False) for key, size in batch] for batch in rounds]
    with monkeypatch.context() as m:
        produce_all(os.path.join(base, "a"), partitions, records, False, m)
    with monkeypatch.context() as m:
        produce_all(os.path.join(base, "s"), partitions, records, True, m)
    assert partition_files(os.path.join(base, "s"), "t") == partition_files(os.path.join(base, "a"), "t")
