"""A staged flush over many partitions is written by two threads at once,
the caller's and the process's helper (core.StagePass, _native/core/stage.pxi;
ProducerCore._append_staged): the log holds byte for byte what the
per-partition accumulators write whichever thread wrote which partition,
and a write that fails on either thread is the same error, with the same
partitions published, as the one-thread flush gives."""

from __future__ import annotations

import os
from concurrent.futures import Future

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_producer_stage import CONFIG, partition_files, steady_rounds

import arrowlog
from arrowlog.backends.local import producer as producer_module
from arrowlog.errors import StorageError
from arrowlog.storage import LogDir
from arrowlog.storage import helper as helper_module
from arrowlog.storage.helper import helper_thread


class EagerHelper:
    """Runs a job inside submit(), before the caller starts its share: the
    helper thread's code writes every partition."""

    def __init__(self):
        self.jobs: list = []

    def submit(self, job) -> Future:
        self.jobs.append(job)
        job()
        done: Future = Future()
        done.set_result(None)
        return done


class IdleHelper:
    """Never runs a job (a helper busy elsewhere): the caller writes every
    partition, and cancels the job."""

    def __init__(self):
        self.jobs: list = []
        self.futures: list[Future] = []

    def submit(self, job) -> Future:
        self.jobs.append(job)
        self.futures.append(Future())
        return self.futures[-1]


class RealHelper:
    """The process's helper thread, counting the jobs it is given."""

    def __init__(self):
        self.jobs: list = []

    def submit(self, job) -> Future:
        self.jobs.append(job)
        pool = helper_thread()
        assert pool is not None
        return pool.submit(job)


class ClosedHelper:
    """An executor shut down (at the interpreter's exit): submit() raises."""

    def __init__(self):
        self.jobs: list = []

    def submit(self, job) -> Future:
        self.jobs.append(job)
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")


HELPERS = {"eager": EagerHelper, "idle": IdleHelper, "real": RealHelper, "closed": ClosedHelper}

# segments that grow and roll now and then, not at every flush as CONFIG's do
ROOMY = {"segment.bytes": 256 << 10, "index.interval.bytes": 600, "retention.ms": -1}


def no_periodic_sync(monkeypatch) -> None:
    """The linger thread's periodic sync holds each log's lock in turn: a
    flush then leaves that partition to its one-thread loop, which would
    make the counts of partitions the helper wrote depend on timing."""
    monkeypatch.setattr(producer_module.Producer, "_time_to_sync", lambda self, last_sync: False)


def produce_rounds(path: str, partitions: int, rounds: list, helper, monkeypatch, fault=None,
                   config: dict | None = None) -> dict:
    """Produce ``rounds`` (lists of (key, value, partition, timestamp, callback)) into a
    new staged topic of ``partitions``, each round flushed; the two-thread
    pass at any size with ``helper`` (None: one thread). ``fault(producer)``
    runs after the first round; returns the reports, each flush's error and
    every partition's high watermark after each round."""
    monkeypatch.setattr(producer_module, "STAGE_PARTITIONS", 16)
    monkeypatch.setattr(producer_module, "PARALLEL_FLUSH_BYTES", 0)
    monkeypatch.setattr(producer_module, "spare_helper", lambda: helper)
    no_periodic_sync(monkeypatch)
    with LogDir(path) as d:
        d.create_topic("t", partitions, config=config or CONFIG)
    reports: list = []
    errors: list = []
    marks: list = []
    p = arrowlog.Producer({"log.dir": path, "linger.ms": 600_000})
    undo = None
    try:
        for i, records in enumerate(rounds):
            if i == 1 and fault is not None:
                undo = fault(p)
            for key, value, part, ts, callback in records:
                kw = {"on_delivery": lambda err, msg: reports.append((msg.partition(), msg.offset(), msg.value()))} \
                    if callback else {}
                # (a null key's sticky partition is random: given here)
                p.produce("t", value, key=key, partition=part if key is None else -1, timestamp=ts, **kw)
            try:
                assert p.flush() == 0
                errors.append(None)
            except StorageError as exc:
                errors.append((type(exc).__name__, str(exc).replace(path, "DIR")))
            marks.append([log.state.next_offset() if log is not None else 0 for log in p._slots["t"].logs])
    finally:
        if undo is not None:
            undo()
        p.close()
    return {"reports": reports, "errors": errors, "watermarks": marks}


record = st.tuples(
    st.one_of(st.none(), st.binary(max_size=12)),                    # key
    st.one_of(st.none(), st.binary(max_size=300)),                   # value
    st.integers(0, 15),                                              # the partition of a null key
    st.integers(1, 2_000_000_000_000),                               # timestamp
    st.sampled_from([False] * 9 + [True]),                           # a delivery callback now and then
)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(16, 64), st.sampled_from(sorted(HELPERS)),
       st.lists(st.lists(record, min_size=1, max_size=400), min_size=1, max_size=3))
def test_two_threads_write_what_the_accumulators_write(tmp_path_factory, monkeypatch, partitions, mode, rounds):
    base = str(tmp_path_factory.mktemp("threads"))
    with monkeypatch.context() as m:
        m.setattr(producer_module, "STAGE_PARTITIONS", 1 << 30)  # no stage: each partition's accumulator
        want = produce_rounds(os.path.join(base, "a"), partitions, rounds, None, m)
    with monkeypatch.context() as m:
        got = produce_rounds(os.path.join(base, "s"), partitions, rounds, HELPERS[mode](), m)
    assert got == want
    assert partition_files(os.path.join(base, "s"), "t") == partition_files(os.path.join(base, "a"), "t")


def keyed_rounds(n: int, rounds: int, spread: int = 200) -> list:
    return [[(b"key-%d" % i, b"v%d-" % i + b"x" * (i % spread), -1, 1_700_000_000_000 + i, False)
             for i in range(r * n, (r + 1) * n)] for r in range(rounds)]


@pytest.mark.parametrize("mode", sorted(HELPERS))
def test_either_thread_writes_every_partition_byte_for_byte(tmp_path, monkeypatch, mode):
    """64 partitions, 6 flushes with segments growing and rolling: the
    eager helper writes every partition a pass can write, the idle one none
    (its job is cancelled), nor the closed one (submit() raises), the real
    one some; the files are the one-thread flush's in each case."""
    rounds = keyed_rounds(12_000, 6)
    with monkeypatch.context() as m:
        want = produce_rounds(str(tmp_path / "one"), 64, rounds, None, m, config=ROOMY)
    helper = HELPERS[mode]()
    with monkeypatch.context() as m:
        got = produce_rounds(str(tmp_path / "two"), 64, rounds, helper, m, config=ROOMY)
    assert got == want
    assert partition_files(str(tmp_path / "two"), "t") == partition_files(str(tmp_path / "one"), "t")
    assert len(partition_files(str(tmp_path / "one"), "t")) > 64 * 3  # segments rolled on the way
    assert len(helper.jobs) >= 3  # (a flush whose segments all roll or start has no pass)
    helped = [job.helped for job in helper.jobs]
    if mode == "eager":
        assert sum(helped) >= 2 * 64  # (a segment to grow or roll is left to the caller's loop)
    elif mode in ("idle", "closed"):
        assert helped == [0] * len(helped)
    if mode == "idle":
        assert all(f.cancelled() for f in helper.futures)


def test_segments_that_must_grow_are_grown_between_two_passes(tmp_path, monkeypatch):
    """Steady rounds whose frames outgrow their segments' allocated room:
    the growth is done between two passes (as append_at does it), so every
    partition of every round after the first is written by the two-thread
    pass (here all by the eager helper), none by the general path; the files
    and allocated sizes are the one-thread flush's."""
    helper = EagerHelper()
    with monkeypatch.context() as m:
        m.setattr(producer_module, "STAGE_PARTITIONS", 16)
        m.setattr(producer_module, "PARALLEL_FLUSH_BYTES", 0)
        m.setattr(producer_module, "spare_helper", lambda: helper)
        no_periodic_sync(m)
        general, sizes = steady_rounds(str(tmp_path / "two"), 32, 8, 32 * 40, 300, m)
    assert general[1:] == [0] * 7
    assert min(sizes) > 64 << 10  # every segment grew on the way
    assert sum(job.helped for job in helper.jobs) == 32 * 7
    assert len(helper.jobs) > 7  # growth took a second pass in some rounds
    with monkeypatch.context() as m:
        m.setattr(producer_module, "STAGE_PARTITIONS", 16)
        m.setattr(producer_module, "spare_helper", lambda: None)
        _, want_sizes = steady_rounds(str(tmp_path / "one"), 32, 8, 32 * 40, 300, m)
    assert sizes == want_sizes
    assert partition_files(str(tmp_path / "two"), "t") == partition_files(str(tmp_path / "one"), "t")


def full_disk(partitions: list[int]):
    """A fault: every write into the active segment of ``partitions`` fails
    with ENOSPC (their log descriptors then point at /dev/full); returns
    the fault, which returns its undo."""
    def fault(p) -> object:
        saved = []
        full = os.open("/dev/full", os.O_WRONLY)
        for part in partitions:
            seg = p._slots["t"].logs[part]._writer
            saved.append((seg.log_fd, os.dup(seg.log_fd)))
            os.dup2(full, seg.log_fd)
        os.close(full)

        def undo() -> None:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
        return undo
    return fault


@pytest.mark.parametrize("mode", sorted(HELPERS))
def test_a_full_disk_on_either_thread_fails_as_the_one_thread_flush_does(tmp_path, monkeypatch, mode):
    """Writes into 21 of 64 partitions fail (ENOSPC): on the helper thread
    (eager), on the caller's (idle) or on both (real), the flush raises the
    StorageError of the first of them in partition order after writing the
    others, as the one-thread flush does: the same message, the same
    partitions published, the same files; the failed partitions' records
    are not written."""
    rounds = keyed_rounds(3_000, 3, spread=40)
    failing = list(range(3, 64, 3))
    with monkeypatch.context() as m:
        want = produce_rounds(str(tmp_path / "one"), 64, rounds, None, m, full_disk(failing))
    helper = HELPERS[mode]()
    with monkeypatch.context() as m:
        got = produce_rounds(str(tmp_path / "two"), 64, rounds, helper, m, full_disk(failing))
    assert want["errors"][0] is None and want["errors"][1] is not None
    assert "disk is full" in want["errors"][1][1] and "/3/" in want["errors"][1][1], want["errors"][1]
    assert got == want
    assert partition_files(str(tmp_path / "two"), "t") == partition_files(str(tmp_path / "one"), "t")
    marks = want["watermarks"]
    assert all(marks[2][q] == marks[0][q] for q in failing)  # nothing published after the fault
    assert all(marks[2][q] > marks[0][q] for q in range(64) if q not in failing)
    helped = [job.helped for job in helper.jobs]
    if mode == "eager":
        assert min(helped) >= 64 - len(failing)  # every partition that could be written, by the helper


def test_no_helper_while_every_cpu_looks_busy(monkeypatch):
    """The helper's share waits for a CPU on a busy machine, and the caller
    for it: the flush takes the helper only while fewer tasks are runnable
    than this process has CPUs (/proc/loadavg; this test's own thread is one)."""
    monkeypatch.setattr(helper_module.os, "sched_getaffinity", lambda pid: {0})
    assert helper_module.spare_core() is False
    assert helper_module.spare_helper() is None
    monkeypatch.setattr(helper_module.os, "sched_getaffinity", lambda pid: set(range(1 << 20)))
    assert helper_module.spare_core() is True
    assert helper_module.spare_helper() is helper_thread()
