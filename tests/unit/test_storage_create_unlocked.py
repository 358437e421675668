"""Creating a topic (or adding partitions) makes every partition's files, which
takes seconds for a thousand partitions on a busy disk: it happens outside the
data directory's locks, in a staging directory renamed into place
(storage/precreate.py), so other threads and processes go on meanwhile. The
creation is held at one partition by a hook while the other work must finish."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from test_storage_precreate import batch, values_of

from arrowlog import Producer
from arrowlog.storage import LogDir, precreate

DEADLINE = 120.0  # seconds: generous, the machine is loaded; reached only when something is blocked


class Held:
    """create_partition, stopped before making partition ``at`` of the creation given
    ``config()`` until released."""

    def __init__(self, monkeypatch, at: int):
        self.reached, self.release = threading.Event(), threading.Event()
        real = precreate.create_partition
        stop = os.sep + str(at)

        def hooked(directory: str, config: dict, schema) -> bool:
            # (a staging directory's partitions: the topic's name is not in their path)
            if directory.endswith(stop) and config.get("retention.ms") == self.marker:
                self.reached.set()
                self.release.wait(DEADLINE)
            return real(directory, config, schema)

        self.marker = 86_400_000 + at  # only the held creation's config has it
        monkeypatch.setattr(precreate, "create_partition", hooked)

    def config(self) -> dict:
        return {"retention.ms": self.marker}


def run(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []

    def target():
        try:
            out.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            out.append(exc)

    th = threading.Thread(target=target, daemon=True)
    th.start()
    return th, out


def others_finish_while_held(held: Held, creator: threading.Thread, others: list) -> None:
    """Each of ``others`` (callables) runs in its own thread while the creation is held;
    all must finish before it is released."""
    assert held.reached.wait(DEADLINE), "the creation never reached the hook"
    threads = [run(fn) for fn in others]
    try:
        for th, out in threads:
            th.join(DEADLINE)
            assert not th.is_alive(), "blocked while a topic was being created"
            if isinstance(out[0], BaseException):
                raise out[0]
        assert creator.is_alive()  # (held: the others did not wait for it)
    finally:
        held.release.set()
        creator.join(DEADLINE)


def test_creating_a_large_topic_blocks_no_one(data_dir, monkeypatch):
    with LogDir(data_dir) as d:
        d.create_topic("old", 2).partition(0).append(batch([b"before"]))
    held = Held(monkeypatch, 700)
    d = LogDir(data_dir)  # "old" not cached in it: topic() reads topic.json under d._lock
    try:
        creator, made = run(d.create_topic, "big", 1024, held.config())

        def produce():
            p = Producer({"log.dir": data_dir})
            try:
                p.produce("old", b"during", partition=1)
                assert p.flush(DEADLINE) == 0
            finally:
                p.close()

        def other_process_creates():  # (its own LogDir: another open of topics/.lock)
            with LogDir(data_dir) as other:
                other.create_topic("small", 1)

        others_finish_while_held(held, creator, [lambda: d.topic("old"), produce, other_process_creates])
        assert not creator.is_alive() and made[0].num_partitions == 1024
        assert d.list_topics() == ["big", "old", "small"]
        assert values_of(d.topic("old").partition(1)) == [b"during"]
        assert d.topic("big").partition(1023).append(batch([b"x"])) == 0
        assert [n for n in os.listdir(d.topics_dir) if n.startswith(precreate.STAGING_PREFIX)] == []
    finally:
        d.close()


def test_a_topic_made_while_another_creation_runs_is_not_made_twice(data_dir, monkeypatch):
    held = Held(monkeypatch, 3)
    with LogDir(data_dir) as d:
        creator, made = run(d.create_topic, "t", 8, held.config())
        assert held.reached.wait(DEADLINE)
        with LogDir(data_dir) as other:
            other.create_topic("t", 2).partition(0).append(batch([b"first"]))
        held.release.set()
        creator.join(DEADLINE)
        assert isinstance(made[0], Exception) and "already exists" in str(made[0])
        assert d.create_topic("t", 8, exist_ok=True).num_partitions == 2
        assert values_of(d.topic("t").partition(0)) == [b"first"]
        assert sorted(os.listdir(d.topics_dir)) == sorted([".lock", ".notify", "t"])


def test_adding_many_partitions_blocks_no_one(data_dir, monkeypatch):
    with LogDir(data_dir) as d:
        d.create_topic("old", 1)
        d.create_topic("grow", 2, {"retention.ms": 86_400_000 + 500}).partition(1).append(batch([b"kept"]))
    held = Held(monkeypatch, 500)
    d = LogDir(data_dir)
    try:
        grower, grown = run(d.add_partitions, "grow", 600)
        others_finish_while_held(held, grower, [lambda: d.topic("old")])
        assert grown[0].num_partitions == 600
        t = d.topic("grow")
        assert values_of(t.partition(1)) == [b"kept"]
        assert [t.partition(p).append(batch([b"%d" % p])) for p in (2, 500, 599)] == [0, 0, 0]
        assert sorted(int(n) for n in os.listdir(t.directory) if n.isdigit()) == list(range(600))
        assert [n for n in os.listdir(d.topics_dir) if n.startswith(precreate.STAGING_PREFIX)] == []
    finally:
        d.close()


def test_partitions_added_while_the_topic_changed_are_made_for_its_new_config(data_dir, monkeypatch):
    with LogDir(data_dir) as d:
        d.create_topic("grow", 1, {"retention.ms": 86_400_000 + 5})
    held = Held(monkeypatch, 5)
    with LogDir(data_dir) as d:
        grower, grown = run(d.add_partitions, "grow", 8)
        assert held.reached.wait(DEADLINE)
        with LogDir(data_dir) as other:
            other.alter_topic("grow", {"segment.bytes": 1 << 20})
        held.release.set()
        grower.join(DEADLINE)
        t = grown[0]
        assert t.num_partitions == 8 and t.config["segment.bytes"] == 1 << 20
        assert [t.partition(p).append(batch([b"v"])) for p in range(8)] == [0] * 8


def test_a_deleted_topics_leftover_directory_gives_no_records_to_a_new_one(data_dir):
    with LogDir(data_dir) as d:
        d.create_topic("t", 2).partition(1).append(batch([b"deleted"]))
        # delete_topic killed after it removed topic.json, before its files
        os.unlink(os.path.join(d.topics_dir, "t", "topic.json"))
    with LogDir(data_dir) as d:
        assert d.list_topics() == []
        t = d.create_topic("t", 3)
        assert [values_of(t.partition(p)) for p in range(3)] == [[], [], []]
        assert sorted(os.listdir(d.topics_dir)) == sorted([".lock", ".notify", "t"])


CHILD = """
import os, sys, time
from arrowlog.storage import LogDir, precreate
real = precreate.create_partition
def hooked(directory, config, schema):
    if directory.endswith("/5"):
        print("H", flush=True)
        time.sleep(3600)
    return real(directory, config, schema)
precreate.create_partition = hooked
LogDir(sys.argv[1]).create_topic("t", 16)
"""


def test_a_killed_creation_leaves_nothing_visible_and_its_staging_is_removed(data_dir):
    with LogDir(data_dir):
        pass
    topics = os.path.join(data_dir, "topics")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, data_dir], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "H"
        staged = [n for n in os.listdir(topics) if n.startswith(precreate.STAGING_PREFIX)]
        assert len(staged) == 1 and sorted(os.listdir(os.path.join(topics, staged[0]))) == [str(p) for p in range(5)]
        with LogDir(data_dir) as d:  # its maker lives: this open leaves it alone
            assert d.list_topics() == [] and os.path.isdir(os.path.join(topics, staged[0]))
    finally:
        proc.kill()
        proc.wait()
    with LogDir(data_dir) as d:
        assert sorted(os.listdir(topics)) == [".lock", ".notify"]
        t = d.create_topic("t", 16)
        assert [t.partition(p).append(batch([b"v"])) for p in range(16)] == [0] * 16
