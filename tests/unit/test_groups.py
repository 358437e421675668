"""Consumer groups within one process: commits, membership, hand-over, admin.

Several consumers in one process are separate group members (flock locks
belong to open files, not processes), so the protocol is exercised here
without subprocesses; tests/integration/test_groups_processes.py does it
across processes.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

import arrowlog
from arrowlog import Consumer, Producer, TopicPartition
from arrowlog._types import OFFSET_INVALID
from arrowlog.errors import GroupError, KafkaException, OffsetOutOfRangeError
from arrowlog.groups import (
    GroupAdmin,
    GroupDir,
    UnknownGroupError,
    open_group_store,
    range_assign,
    roundrobin_assign,
)
from arrowlog.groups.store import group_dirname, group_from_dirname


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    with arrowlog.LogDir(d) as log:
        log.create_topic("t", partitions=6)
    return d


def produce(data, n, topic="t", start=0, **kw):
    with Producer({"log.dir": data}) as p:
        for i in range(start, start + n):
            p.produce(topic, b"%d" % i, key=b"k%d" % i, **kw)
    return n


def fill(data, per_partition, partitions=6):
    """Records in every partition, so that commits up to ``per_partition`` are in range."""
    for p in range(partitions):
        produce(data, per_partition, partition=p)


def consumer(data, group="g", **conf):
    c = {"log.dir": data, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    c.update(conf)
    return Consumer(c)


def drain(consumers, want=None, rounds=200):
    """Poll the consumers in turn (each poll runs its group heartbeat) until
    ``want`` data messages arrived or ``rounds`` rounds passed."""
    got = {id(c): [] for c in consumers}
    for _ in range(rounds):
        for c in consumers:
            got[id(c)].extend(m for m in c.consume(1000, 0.01) if m.error() is None)
        if want is not None and sum(len(v) for v in got.values()) >= want:
            break
    return [got[id(c)] for c in consumers]


def settle(consumers, rounds=100):
    """Poll until every partition is owned and nobody is waiting for one."""
    for _ in range(rounds):
        for c in consumers:
            c.consume(1, 0.005)
        owned = [set(c._assigned) for c in consumers]
        if sum(len(o) for o in owned) == 6 and not any(c._group._pending for c in consumers):
            return owned
    raise AssertionError(f"group did not settle: {[sorted(c._assigned) for c in consumers]}")


# -- assignment ----------------------------------------------------------------------


def test_range_assignment_gives_contiguous_runs_and_the_remainder_to_the_first():
    a = range_assign({"a": {"t"}, "b": {"t"}, "c": {"t"}, "d": {"t"}}, {"t": 6})
    assert a == {"a": [("t", 0), ("t", 1)], "b": [("t", 2), ("t", 3)], "c": [("t", 4)], "d": [("t", 5)]}


def test_range_assignment_only_to_subscribers_of_a_topic():
    a = range_assign({"a": {"t", "u"}, "b": {"t"}}, {"t": 2, "u": 2})
    assert a == {"a": [("t", 0), ("u", 0), ("u", 1)], "b": [("t", 1)]}


def test_roundrobin_assignment_deals_partitions_in_turn():
    a = roundrobin_assign({"a": {"t", "u"}, "b": {"t", "u"}}, {"t": 3, "u": 1})
    assert a == {"a": [("t", 0), ("t", 2)], "b": [("t", 1), ("u", 0)]}


def test_every_partition_has_exactly_one_owner_for_any_membership():
    for n in range(1, 9):
        members = {f"m{i}": {"t", "u"} for i in range(n)}
        for fn in (range_assign, roundrobin_assign):
            owned = [tp for tps in fn(members, {"t": 6, "u": 5}).values() for tp in tps]
            assert sorted(owned) == sorted([("t", p) for p in range(6)] + [("u", p) for p in range(5)])


def test_group_ids_become_safe_directory_names():
    for g in ["billing", "a/b", "..", ".hidden", "spaces and ünïcode", "%41"]:
        name = group_dirname(g)
        assert "/" not in name and not name.startswith(".")
        assert group_from_dirname(name) == g
    with pytest.raises(GroupError):
        group_dirname("")


# -- committed offsets --------------------------------------------------------------


def test_commit_message_stores_next_offset_and_survives_reopen(data):
    produce(data, 20)
    c = consumer(data)
    c.assign([TopicPartition("t", p, 0) for p in range(6)])
    msgs = [m for m in c.consume(100, 1.0) if m.error() is None]
    last = msgs[-1]
    assert c.commit(message=last, asynchronous=False) == [TopicPartition("t", last.partition(), last.offset() + 1)]
    c.close()
    c2 = consumer(data)
    [tp] = c2.committed([TopicPartition("t", last.partition())])
    assert tp.offset == last.offset() + 1
    c2.assign([TopicPartition("t", last.partition())])  # OFFSET_INVALID: resume at the commit
    assert c2.position([TopicPartition("t", last.partition())])[0].offset == last.offset() + 1
    c2.close()


def test_commit_explicit_offsets_with_metadata_and_committed_of_unknown(data):
    fill(data, 10)
    c = consumer(data)
    c.commit(offsets=[TopicPartition("t", 2, 7, metadata="checkpoint-a")], asynchronous=False)
    got = c.committed([TopicPartition("t", 2), TopicPartition("t", 3)])
    assert (got[0].offset, got[0].metadata) == (7, "checkpoint-a")
    assert got[1].offset == OFFSET_INVALID
    with pytest.raises(KafkaException):
        c.commit(offsets=[TopicPartition("t", 2, -2)], asynchronous=False)
    c.close()


def test_async_commits_are_coalesced_and_visible_after_committed(data):
    fill(data, 200, partitions=1)
    c = consumer(data)
    for off in range(1, 200):
        assert c.commit(offsets=[TopicPartition("t", 0, off)], asynchronous=True) is None
    assert c.committed([TopicPartition("t", 0)])[0].offset == 199
    c.close()


@pytest.mark.parametrize("thread_runs", [False, True])
def test_close_commits_when_the_committer_thread_was_interrupted_while_starting(data, monkeypatch, thread_runs):
    """The CLI's SIGTERM handler raises SystemExit wherever the main thread is, also inside
    Thread.start() of the first asynchronous commit, before or after the new thread runs:
    close() still writes what was submitted instead of failing to join a thread that never started."""
    fill(data, 10, partitions=1)
    c = consumer(data)
    start = threading.Thread.start

    def interrupted(thread):
        if thread.name != "arrowlog-committer":
            start(thread)
            return
        if thread_runs:
            start(thread)
        raise SystemExit(143)

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(SystemExit):
        c.commit(offsets=[TopicPartition("t", 0, 5)], asynchronous=True)
    monkeypatch.undo()
    c.close()
    again = consumer(data)
    assert again.committed([TopicPartition("t", 0)])[0].offset == 5
    again.close()


def test_sync_commit_with_nothing_stored_raises_no_offset(data):
    c = consumer(data)
    with pytest.raises(KafkaException) as e:
        c.commit(asynchronous=False)
    assert e.value.args[0].code() == arrowlog.KafkaError._NO_OFFSET
    c.close()


def test_offsets_file_is_replaced_whole(data):
    fill(data, 10)
    c = consumer(data)
    c.commit(offsets=[TopicPartition("t", 0, 5), TopicPartition("t", 1, 6)], asynchronous=False)
    c.commit(offsets=[TopicPartition("t", 1, 9)], asynchronous=False)
    gdir = GroupDir(os.path.join(data, "groups"), "g", create=False)
    assert {p: e.offset for (_, p), e in gdir.read_offsets().items()} == {0: 5, 1: 9}   # from the journal
    c.close()
    gdir.drop_offsets([])   # a fold: the journal's records into offsets.json
    with open(gdir.offsets_path) as f:
        doc = json.load(f)
    assert doc["format"] == 1 and doc["group"] == "g"
    assert {p: e["offset"] for p, e in doc["offsets"]["t"].items()} == {"0": 5, "1": 9}
    assert not os.path.exists(gdir.offsets_path + ".tmp")


def test_auto_offset_reset_earliest_latest_error(data):
    produce(data, 12)
    for reset, expect in (("earliest", "low"), ("latest", "high")):
        c = consumer(data, group=f"g-{reset}", **{"auto.offset.reset": reset})
        c.assign([TopicPartition("t", 0)])
        low, high = c.get_watermark_offsets(TopicPartition("t", 0))
        assert c.position([TopicPartition("t", 0)])[0].offset == (low if expect == "low" else high)
        c.close()
    c = consumer(data, group="g-error", **{"auto.offset.reset": "error"})
    with pytest.raises(OffsetOutOfRangeError):
        c.assign([TopicPartition("t", 0)])
    c.close()


def test_two_groups_read_the_same_topic_independently(data):
    produce(data, 300)
    a, b = consumer(data, "ga"), consumer(data, "gb")
    a.subscribe(["t"])
    b.subscribe(["t"])
    got_a, = drain([a], want=300)
    got_b, = drain([b], want=300)
    assert len(got_a) == len(got_b) == 300
    a.commit(asynchronous=False)
    a.close()
    b.close()
    admin = GroupAdmin(data)
    assert admin.list_groups() == ["ga"]   # gb never committed and has no members
    assert admin.describe("ga").total_lag == 0


def test_auto_commit_commits_what_earlier_polls_returned(data):
    produce(data, 60)
    c = consumer(data, **{"enable.auto.commit": True, "auto.commit.interval.ms": 0})
    c.assign([TopicPartition("t", p) for p in range(6)])
    first = [m for m in c.consume(1000, 1.0) if m.error() is None]
    assert c.committed([TopicPartition("t", p) for p in range(6)])[0].offset == OFFSET_INVALID
    c.consume(1000, 0.01)     # the next poll commits what the first one returned
    committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition("t", p) for p in range(6)])}
    last = {}
    for m in first:
        last[m.partition()] = m.offset() + 1
    assert committed == {p: last.get(p, OFFSET_INVALID) for p in range(6)}
    c.close()


def test_store_offsets_needs_manual_store_and_close_commits_stored(data):
    produce(data, 30)
    c = consumer(data, **{"enable.auto.commit": True})
    c.assign([TopicPartition("t", 0)])
    m = next(m for m in c.consume(100, 1.0) if m.error() is None)
    with pytest.raises(KafkaException):
        c.store_offsets(m)
    c.close()
    c = consumer(data, **{"enable.auto.commit": True, "enable.auto.offset.store": False})
    c.assign([TopicPartition("t", 0, 0)])
    msgs = [m for m in c.consume(100, 1.0) if m.error() is None]
    c.store_offsets(msgs[0])
    c.close()
    c = consumer(data)
    assert c.committed([TopicPartition("t", 0)])[0].offset == msgs[0].offset() + 1
    c.close()


def test_returned_stores_the_end_of_each_partition_run(data):
    produce(data, 600)
    c = consumer(data)
    c.assign([TopicPartition("t", p, 0) for p in range(6)])
    msgs = []
    while len(msgs) < 600:
        msgs += [m for m in c.consume(1000, 1.0) if m.error() is None]
    last = {}
    for m in msgs:
        last[(m.topic(), m.partition())] = m.offset() + 1
    assert {k: v[0] for k, v in c._group._stored.items()} == last
    c.close()


# -- membership and hand-over ------------------------------------------------------------


def test_members_split_partitions_and_take_over_on_close(data):
    events = []

    def member(name):
        c = consumer(data, **{"client.id": name})
        c.subscribe(["t"], on_assign=lambda cons, ps: events.append((name, "assign", sorted(p.partition for p in ps))),
                    on_revoke=lambda cons, ps: events.append((name, "revoke", sorted(p.partition for p in ps))))
        return c

    a = member("a")
    assert a._assigned == {} and events == []      # callbacks run inside poll, not subscribe
    a.consume(1, 0)
    assert set(a._assigned) == {("t", p) for p in range(6)} and events == [("a", "assign", list(range(6)))]
    b = member("b")
    c = member("c")
    owned = settle([a, b, c])
    assert [len(o) for o in owned] == [2, 2, 2]
    assert set().union(*owned) == {("t", p) for p in range(6)}
    b.close()
    owned = settle([a, c])
    assert [len(o) for o in owned] == [3, 3]
    assert any(e[0] == "b" and e[1] == "revoke" for e in events)
    a.close()
    c.close()


def test_no_gap_and_resume_at_commit_after_hand_over(data):
    produce(data, 600)
    a = consumer(data)
    a.subscribe(["t"])
    got_a, = drain([a], want=300, rounds=1)
    a.commit(asynchronous=False)
    committed_by_a = {(m.partition(), m.offset()) for m in got_a}
    b = consumer(data)
    b.subscribe(["t"])
    got_a2, got_b = drain([a, b], want=600 - len(got_a))
    seen = committed_by_a | {(m.partition(), m.offset()) for m in got_a2 + got_b}
    assert len(seen) == 600          # nothing skipped
    a.close()
    b.close()


def test_on_lost_when_the_group_is_deleted_under_a_member(data):
    lost = []
    c = consumer(data)
    c.subscribe(["t"], on_lost=lambda cons, ps: lost.extend(ps))
    settle([c])
    old_id = c.memberid()
    GroupDir(os.path.join(data, "groups"), "g", create=False).remove()
    for _ in range(50):
        c.consume(1, 0.01)
        if lost:
            break
    assert len(lost) == 6 and c.memberid() != old_id
    settle([c])
    c.close()


def test_commit_refused_for_a_partition_moved_away(data):
    a = consumer(data)
    a.subscribe(["t"])
    b = consumer(data)
    b.subscribe(["t"])
    owned = settle([a, b])
    theirs = sorted(owned[1])[0]
    with pytest.raises(KafkaException) as e:
        a.commit(offsets=[TopicPartition(theirs[0], theirs[1], 1)], asynchronous=False)
    assert "no longer assigned" in str(e.value)
    a.close()
    b.close()


def test_subscribe_to_a_regex_and_a_topic_created_later(data):
    c = consumer(data)
    c.subscribe(["^ev-.*"])
    assert c.assignment() == []
    with arrowlog.LogDir(data) as log:
        log.create_topic("ev-1", partitions=2)
    produce(data, 5, topic="ev-1")
    got, = drain([c], want=5)
    assert len(got) == 5 and {m.topic() for m in got} == {"ev-1"}
    c.close()


# -- administration ---------------------------------------------------------------------


def test_describe_shows_lag_and_owner(data):
    produce(data, 60)
    c = consumer(data, **{"client.id": "worker-1"})
    c.subscribe(["t"])
    drain([c], want=60)
    c.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
    d = GroupAdmin(data).describe("g")
    assert d.state == "Stable" and len(d.members) == 1
    row = next(r for r in d.partitions if r.partition == 0)
    assert row.committed == 1 and row.lag == row.log_end_offset - 1
    assert row.owner == c.memberid() and row.client_id == "worker-1" and row.pid == os.getpid()
    assert d.members[0].assignment == [("t", p) for p in range(6)]
    c.close()
    d = GroupAdmin(data).describe("g")
    assert d.state == "Empty" and all(r.owner is None for r in d.partitions)
    assert d.to_dict()["total_lag"] == d.total_lag


def test_reset_offsets_plans_then_executes_and_refuses_live_members(data):
    produce(data, 60)
    c = consumer(data)
    c.commit(offsets=[TopicPartition("t", p, 5) for p in range(6)], asynchronous=False)
    admin = GroupAdmin(data)
    plan = admin.reset_offsets("g", to="shift", value=-2)
    assert [(r.current, r.new) for r in plan] == [(5, 3)] * 6
    assert admin.committed("g")[("t", 0)] == 5      # a dry run changes nothing
    c.subscribe(["t"])
    with pytest.raises(GroupError, match="live members"):
        admin.reset_offsets("g", to="earliest", execute=True)
    with pytest.raises(GroupError, match="live members"):
        admin.delete_group("g")
    c.close()
    admin.reset_offsets("g", ["t"], to="offset", value=10 ** 9, execute=True)   # clamped to the end
    ends = {p: arrowlog.LogDir(data).topic("t").partition(p).high_watermark for p in range(6)}
    assert admin.committed("g") == {("t", p): ends[p] for p in range(6)}
    admin.reset_offsets("g", to="earliest", partitions=[0], execute=True)
    assert admin.committed("g")[("t", 0)] == 0
    with pytest.raises(GroupError):
        admin.reset_offsets("g", to="sideways")


def test_reset_to_timestamp(data):
    with Producer({"log.dir": data}) as p:
        for i in range(10):
            p.produce("t", b"%d" % i, partition=0, timestamp=1_000_000 + i * 1000)
    admin = GroupAdmin(data)
    [row] = admin.reset_offsets("g", ["t"], to="timestamp", value=1_004_500, partitions=[0], execute=True)
    assert row.new == 5
    [row] = admin.reset_offsets("g", ["t"], to="timestamp", value=9_999_999_999, partitions=[0])
    assert row.new == 10    # after the last record: the end


def test_delete_group_and_list(data):
    fill(data, 1, partitions=1)
    c = consumer(data, group="gone")
    c.commit(offsets=[TopicPartition("t", 0, 1)], asynchronous=False)
    c.close()
    store = open_group_store(data)
    assert "gone" in store.list_groups()
    store.delete("gone")
    assert "gone" not in store.list_groups()
    with pytest.raises(UnknownGroupError):
        store.describe("gone")
    with pytest.raises(UnknownGroupError):
        store.delete_group("gone")


def test_cli_group_store_protocol(data):
    from arrowlog.cli.groups import GroupStore
    from arrowlog.cli.groups import open_group_store as cli_open
    store = cli_open(data)
    assert isinstance(store, GroupStore) and isinstance(store, GroupAdmin)
    store.commit("cli", {("t", 0): 4})
    assert store.committed("cli") == {("t", 0): 4}
    assert store.members("cli") == {}


def test_a_raising_callback_propagates_from_poll_and_the_hand_over_completes_later(data):
    calls = []

    def on_assign(cons, parts):
        calls.append(len(parts))
        if len(calls) == 1:
            raise RuntimeError("not ready")

    c = consumer(data)
    c.subscribe(["t"], on_assign=on_assign)
    with pytest.raises(RuntimeError):
        c.consume(1, 0)
    assert c.assignment() == []
    settle([c])
    assert calls == [6, 6]
    c.close()


def test_roundrobin_strategy_across_members(data):
    cs = [consumer(data, **{"partition.assignment.strategy": "roundrobin"}) for _ in range(2)]
    for c in cs:
        c.subscribe(["t"])
    owned = settle(cs)
    first = min(range(2), key=lambda i: cs[i].memberid())
    assert sorted(p for _, p in owned[first]) == [0, 2, 4]
    for c in cs:
        c.close()


def test_a_commit_of_the_stored_offsets_writes_only_the_partitions_that_moved(data):
    from arrowlog.groups.journal import journal_gen, read_journal

    fill(data, 10)
    c = consumer(data)
    c.subscribe(["t"])
    assert len(drain([c], want=60)[0]) == 60
    c.commit(asynchronous=False)
    produce(data, 5, partition=2)
    assert len(drain([c], want=5)[0]) == 5
    done = c.commit(asynchronous=False)
    # it returns every stored offset, as before...
    assert {(tp.partition, tp.offset) for tp in done} == {(p, 15 if p == 2 else 10) for p in range(6)}
    gpath = os.path.join(data, "groups", "g")
    records = [r for name in sorted(os.listdir(gpath)) if journal_gen(name) is not None
               for r in read_journal(os.path.join(gpath, name))]
    # ...but the record it wrote holds only the partition that moved
    assert [(e[1], e[2]) for e in records[-1][1]] == [(2, 15)]
    assert c.commit(asynchronous=False) == done     # nothing moved: no record at all
    assert len([r for name in sorted(os.listdir(gpath)) if journal_gen(name) is not None
                for r in read_journal(os.path.join(gpath, name))]) == len(records)
    c.close()
    assert {p: e.offset for (_, p), e in GroupDir(os.path.join(data, "groups"), "g").read_offsets().items()} == \
        {p: 15 if p == 2 else 10 for p in range(6)}
