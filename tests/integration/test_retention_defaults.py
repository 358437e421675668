"""Safe defaults: a topic nobody configured keeps its records, however old they are."""

import time

import pytest

import arrowlog

DAY_MS = 86_400_000
N = 300


def backfill(d, topic, config=None):
    """300 events dated 30 days ago (Kafka's 7-day default would delete them) into a topic with
    small segments, so the log rolls many times while they are written."""
    log = arrowlog.LogDir(d)
    log.create_topic(topic, partitions=1, config={"segment.bytes": 4096, **(config or {})})
    log.close()
    then = int(time.time() * 1000) - 30 * DAY_MS
    with arrowlog.Producer({"log.dir": d, "linger.ms": 0}) as p:
        for i in range(N):
            p.produce(topic, b"x" * 200 + str(i).encode(), timestamp=then + i)
            p.flush()  # one stored batch each: the segment fills and rolls every ~15 events
    log = arrowlog.LogDir(d)
    part = log.topic(topic).partition(0)
    log.enforce_retention()
    return log, part


def test_a_default_topic_keeps_30_day_old_events_across_rolls(tmp_path):
    log, part = backfill(str(tmp_path / "d"), "history")
    try:
        assert part.config["retention.ms"] == -1 and part.config["retention.bytes"] == -1
        assert part.log_start_offset == 0 and part.high_watermark == N
        t = arrowlog.replay(log, "history").to_arrow()
        assert t.num_rows == N
    finally:
        log.close()
    assert len(list((tmp_path / "d" / "topics" / "history" / "0").glob("*.log"))) > 5  # it did roll


def test_kafkas_seven_days_is_one_option_away_and_deletes_them(tmp_path):
    log, part = backfill(str(tmp_path / "d"), "week", {"retention.ms": 7 * DAY_MS})
    try:
        assert part.log_start_offset > 0  # old segments went; the active one stays
        assert arrowlog.replay(log, "week").num_records < N
    finally:
        log.close()


def test_a_topic_the_producer_creates_keeps_records_forever(tmp_path):
    d = str(tmp_path / "d")
    with arrowlog.Producer({"log.dir": d}) as p:
        p.produce("auto", b"v")
    log = arrowlog.LogDir(d)
    try:
        config = log.topic("auto").config
        assert config["retention.ms"] == -1 and config["retention.bytes"] == -1
    finally:
        log.close()


@pytest.mark.parametrize("key", ["retention.ms", "retention.bytes"])
def test_the_config_table_says_keep_forever(key):
    from arrowlog.config import TOPIC

    assert {k.name: k.default for k in TOPIC}[key] == -1


def test_topics_created_over_the_wire_keep_records_forever_unless_asked(tmp_path):
    import sys
    from pathlib import Path

    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from interop.conftest import ServerProcess

    srv = ServerProcess(tmp_path / "data")
    try:
        admin = AdminClient({"bootstrap.servers": srv.bootstrap})
        futures = admin.create_topics([NewTopic("plain", 1, 1), NewTopic("week", 1, 1,
                                                                          config={"retention.ms": "604800000"})])
        for f in futures.values():
            f.result(30)
        described = admin.describe_configs([ConfigResource("topic", "plain"), ConfigResource("topic", "week")])
        got = {res.name: f.result(30)["retention.ms"].value for res, f in described.items()}
        assert got == {"plain": "-1", "week": "604800000"}
    finally:
        assert srv.stop() == 0, srv.log()
    with arrowlog.LogDir(str(tmp_path / "data")) as log:
        assert log.topic("plain").config["retention.ms"] == -1
        assert log.topic("week").config["retention.ms"] == 604_800_000
