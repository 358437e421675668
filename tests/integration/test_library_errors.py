"""The library as Kafka users expect it (issue 13): a bad record fails alone,
where a client points is never guessed, every mistake is an ArrowlogError
that says what to do."""

import errno
import json
import logging
import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

import arrowlog
from arrowlog import Consumer, KafkaError, Producer, errors
from arrowlog.storage import LogDir

WAIT_S = 20.0
ORDER_SCHEMA = pa.schema([("orderId", pa.int64()), ("item", pa.int64())])


def typed_topic(data_dir: str, name: str = "orders") -> str:
    with LogDir(data_dir) as d:
        d.create_topic(name, 1, {"value.schema": ORDER_SCHEMA})
    return name


def stored(data_dir: str, topic: str) -> list:
    table = arrowlog.replay(data_dir, topic).to_arrow()
    if "value" in table.column_names:
        return table.column("value").to_pylist()
    return table.select([f.name for f in ORDER_SCHEMA]).to_pylist()   # a typed topic's fields, as columns


# -- 1. a typed topic never loses good records with a bad one ------------------------------


def test_bad_record_fails_its_own_produce_and_never_its_neighbours(data_dir):
    topic = typed_topic(data_dir)
    delivered = []
    with Producer({"log.dir": data_dir}) as p:
        report = lambda err, msg: delivered.append((err, msg.offset()))  # noqa: E731
        p.produce(topic, b'{"orderId": 1, "item": 3}', on_delivery=report)
        p.produce(topic, b'{"orderId": 2, "item": 4}', on_delivery=report)
        with pytest.raises(errors.InvalidRecordError, match=r"orderId.*Could not convert 'x'.*not queued"):
            p.produce(topic, b'{"orderId": "x", "item": 3}', on_delivery=report)
        with pytest.raises(errors.InvalidRecordError, match="orders"):
            p.produce(topic, b"not json")
        p.produce(topic, b'{"orderId": 3, "item": 5}', on_delivery=report)
        assert p.flush() == 0
    assert delivered == [(None, 0), (None, 1), (None, 2)]
    assert stored(data_dir, topic) == [{"orderId": 1, "item": 3}, {"orderId": 2, "item": 4},
                                       {"orderId": 3, "item": 5}]


def test_a_fraction_for_an_integer_field_is_refused_not_truncated(data_dir):
    topic = typed_topic(data_dir)
    with Producer({"log.dir": data_dir}) as p:
        with pytest.raises(errors.InvalidRecordError, match=r"orderId.*2\.7.*fraction"):
            p.produce(topic, b'{"orderId": 2.7, "item": 3}')
        with pytest.raises(errors.InvalidRecordError, match="row 0 of produce_batch"):
            p.produce_batch(topic, [{"orderId": 2.5, "item": 3}])
        p.produce(topic, b'{"orderId": 2.0, "item": 3}')   # a whole number converts exactly
        assert p.flush() == 0
    assert stored(data_dir, topic) == [{"orderId": 2, "item": 3}]


def test_bad_row_fails_produce_batch_before_anything_is_appended(data_dir):
    topic = typed_topic(data_dir)
    rows = [b'{"orderId": 1, "item": 3}', b'{"orderId": 2, "item": 3}', b'{"orderId": "x", "item": 3}']
    with Producer({"log.dir": data_dir}) as p:
        with pytest.raises(errors.InvalidRecordError, match=r"row 2 of produce_batch .*orderId.*x"):
            p.produce_batch(topic, rows)
        table = pa.table({"orderId": pa.array(["1", "two"]), "item": pa.array([1, 2])})
        with pytest.raises(errors.InvalidRecordError, match="row 1 of produce_batch"):
            p.produce_batch(topic, table)
        assert p.produce_batch(topic, rows[:2]) == 2
    assert stored(data_dir, topic) == [{"orderId": 1, "item": 3}, {"orderId": 2, "item": 3}]


def test_a_bad_record_that_slips_past_produce_fails_alone_through_its_report(data_dir, monkeypatch):
    """The safety net behind produce()'s check: if a record that does not
    convert ever reaches a batch, only it fails (its own delivery report,
    INVALID_RECORD) and its neighbours are appended."""
    import arrowlog.backends.local.producer as producer_module
    monkeypatch.setattr(producer_module, "record_validator", lambda topic, schema: (lambda value: None))
    topic = typed_topic(data_dir)
    reports = []
    with Producer({"log.dir": data_dir}) as p:
        for v in (b'{"orderId": 1, "item": 3}', b'{"orderId": "x"}', b'{"orderId": 2, "item": 4}'):
            p.produce(topic, v, on_delivery=lambda err, msg: reports.append((err, msg.value(), msg.offset())))
        assert p.flush() == 0
    assert [(e if e is None else e.code(), v, o) for e, v, o in reports] == [
        (KafkaError.INVALID_RECORD, b'{"orderId": "x"}', None),   # not appended: no offset
        (None, {"orderId": 1, "item": 3}, 0), (None, {"orderId": 2, "item": 4}, 1)]   # typed reports hold rows
    assert stored(data_dir, topic) == [{"orderId": 1, "item": 3}, {"orderId": 2, "item": 4}]


EDGE_SCHEMA = pa.schema([("a", pa.int8()), ("s", pa.string()), ("f", pa.float64()), ("b", pa.bool_())])
EDGE_GOOD = [b'{"a": 1, "s": "x", "f": 2, "b": true}', b'{"a": 1.0, "s": "\\u00e9"}', '{"s": "caf\u00e9"}', None,
             b'{"a": 5, "extra": [1]}', b'{\n  "a": 2\n}']
EDGE_BAD = [b'{"a": 2.7}', b'{"a": NaN}', b'{"a": 300}', b'{"s": "\\ud800"}', b'{"b": 1}', b"[1]", b"5", b'{"a": 99999999999999999999}', b"",
            b'{"f": "x"}', b'{"a": true}']


def test_produce_and_produce_batch_agree_on_every_edge_case(tmp_path):
    """produce() checks each record quickly; the batch is decoded by
    pyarrow.json or, when it cannot, row by row: all three agree on what
    fits and on what is stored."""
    one, bulk = str(tmp_path / "one"), str(tmp_path / "bulk")
    for where in (one, bulk):
        with LogDir(where) as d:
            d.create_topic("t", 1, {"value.schema": EDGE_SCHEMA})
    with Producer({"log.dir": one}) as p:
        for v in EDGE_GOOD:
            p.produce("t", v)
        for v in EDGE_BAD:
            with pytest.raises(errors.InvalidRecordError):
                p.produce("t", v)
    with Producer({"log.dir": bulk}) as p:
        assert p.produce_batch("t", EDGE_GOOD) == len(EDGE_GOOD)
        assert p.produce_batch("t", [v for v in EDGE_GOOD if v is not None]) == len(EDGE_GOOD) - 1
        for v in EDGE_BAD:
            with pytest.raises(errors.InvalidRecordError, match="row 1 of produce_batch"):
                p.produce_batch("t", [EDGE_GOOD[0], v])

    def rows(where):
        return arrowlog.replay(where, "t").to_arrow().select(EDGE_SCHEMA.names).to_pylist()
    assert rows(one)[1] == {"a": 1, "s": "\u00e9", "f": None, "b": None}
    assert rows(bulk) == rows(one) + [r for r, v in zip(rows(one), EDGE_GOOD) if v is not None]


# -- 2. where a client points is never guessed ----------------------------------------------


def test_bootstrap_servers_means_a_cluster_and_creates_no_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from arrowlog.backends.kafka.client import ClusterUnreachableError
    # the kafka:// backend is chosen (it fails fast: nobody listens there), no directory is made
    with pytest.raises(ClusterUnreachableError, match="cannot reach the Kafka cluster at 127.0.0.1:1"):
        Producer({"bootstrap.servers": "127.0.0.1:1", "socket.connection.setup.timeout.ms": 1000})
    assert os.listdir(tmp_path) == []
    with pytest.raises(errors.ConfigError, match="looks like a Kafka broker address"):
        Producer({"log.dir": "localhost:9092"})
    with pytest.raises(errors.ConfigError, match="use {'bootstrap.servers': 'localhost:9092'}"):
        Consumer("localhost:9092", group_id="g")
    with pytest.raises(errors.ConfigError, match="use {'log.dir': './data'}"):
        Producer({"bootstrap.servers": "./data"})
    assert os.listdir(tmp_path) == []


def test_consumer_never_creates_a_data_directory(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(errors.NotADataDirectoryError, match="not an arrowlog data directory: .*missing"):
        Consumer({"log.dir": str(missing), "group.id": "g"})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(errors.NotADataDirectoryError, match="not an arrowlog data directory"):
        Consumer({"log.dir": str(foreign)})
    assert not missing.exists()
    assert os.listdir(foreign) == ["notes.txt"]


def test_producer_creates_a_new_directory_with_a_notice_and_refuses_a_foreign_one(tmp_path, caplog):
    new = tmp_path / "new"
    with caplog.at_level(logging.INFO, logger="arrowlog"):
        with Producer({"log.dir": str(new)}) as p:
            p.produce("t", b"x")
    assert [r.getMessage() for r in caplog.records] == [f"arrowlog: created data directory {new}"]
    caplog.clear()
    mine = logging.getLogger("test.mine")
    with caplog.at_level(logging.INFO, logger="test.mine"):
        Producer({"log.dir": str(tmp_path / "other"), "logger": mine}).close()
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("test.mine", f"arrowlog: created data directory {tmp_path / 'other'}")]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(errors.NotADataDirectoryError, match=r"holds other files \(notes.txt\)"):
        Producer({"log.dir": str(foreign)})
    assert os.listdir(foreign) == ["notes.txt"]


def test_logdir_never_turns_a_foreign_directory_into_a_data_directory(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(errors.NotADataDirectoryError, match=r"holds other files \(notes.txt\)"):
        LogDir(str(foreign))
    assert os.listdir(foreign) == ["notes.txt"]
    with pytest.raises(errors.NotADataDirectoryError, match="is a file"):
        LogDir(str(foreign / "notes.txt"))
    # a directory holding only arrowlog's own entries (a server's producers/) is fine
    ours = tmp_path / "ours"
    (ours / "producers").mkdir(parents=True)
    (ours / "lost+found").mkdir()   # a file system mounted there
    LogDir(str(ours)).close()
    assert sorted(os.listdir(ours)) == ["groups", "lost+found", "producers", "topics"]


@pytest.mark.parametrize("reader", ["replay", "dataset"])
def test_replay_and_dataset_of_a_non_data_directory_say_so_as_the_consumer_does(tmp_path, reader):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for where in (foreign, tmp_path / "missing"):
        with pytest.raises(errors.NotADataDirectoryError, match="not an arrowlog data directory"):
            getattr(arrowlog, reader)(str(where), "t")
    assert os.listdir(foreign) == ["notes.txt"] and not (tmp_path / "missing").exists()


def test_subscribing_to_an_unknown_topic_delivers_an_error_event(data_dir):
    with Producer({"log.dir": data_dir}) as p:
        p.produce("known", b"x")
    with Consumer({"log.dir": data_dir, "group.id": "g", "auto.offset.reset": "earliest"}) as c:
        c.subscribe(["known", "missing"])
        event = c.poll(WAIT_S)
        assert event is not None and event.error() is not None
        assert event.error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        assert event.topic() == "missing"
        msg = c.poll(WAIT_S)
        assert msg.error() is None and msg.value() == b"x"   # the known topic is still read
        with Producer({"log.dir": data_dir}) as p:
            p.produce("missing", b"late")
        msg = c.poll(WAIT_S)                                  # the subscription stayed
        assert msg is not None and (msg.topic(), msg.value()) == ("missing", b"late")
        c.subscribe(["missing-too"])
        c.unsubscribe()                                       # nothing left to report
        assert c.poll(0.2) is None


# -- 3. confluent-kafka's config surface ----------------------------------------------------


@pytest.mark.parametrize(("config", "message"), [
    ({"durabilty": "fsync"}, "did you mean 'durability'"),
    ({"linger.msx": 5}, "did you mean 'linger.ms'"),
    ({"group.id": "g"}, "'group.id' is a consumer config key"),
    ({"error.cb": print}, "did you mean 'error_cb'"),
    ({"error_cb": 3}, "'error_cb': expected a function"),
    ({"oauth_cb": print}, "'oauth_cb' is not supported"),
    ({"linger.ms": float("inf")}, "'linger.ms': expected a whole number"),
])
def test_config_mistakes_get_the_right_hint(data_dir, config, message):
    with pytest.raises(errors.ConfigError, match=message):
        Producer({"log.dir": data_dir, **config})


def test_hints_show_the_key_as_written(data_dir):
    with pytest.raises(errors.ConfigError, match=r"unknown producer config key 'linger_msx' \(did you mean 'linger.ms'"):
        Producer(data_dir, linger_msx=5)
    with pytest.raises(errors.ConfigError, match="invalid value 'soon' for producer config 'linger_ms'"):
        Producer(data_dir, linger_ms="soon")


def test_consumer_key_hints(data_dir):
    LogDir(data_dir).close()
    with pytest.raises(errors.ConfigError, match="'linger.ms' is a producer config key"):
        Consumer({"log.dir": data_dir, "linger.ms": 5})
    with pytest.raises(errors.ConfigError, match="did you mean 'auto.offset.reset'"):
        Consumer({"log.dir": data_dir, "auto.ofset.reset": "earliest"})


def test_callback_keys_and_librdkafka_aliases_are_accepted(data_dir):
    delivered = []
    with Producer({"log.dir": data_dir, "error_cb": print, "throttle_cb": print, "logger": logging.getLogger("x"),
                   "queue.buffering.max.ms": 7, "on_delivery": lambda err, msg: delivered.append(msg.value())}) as p:
        assert p.config["linger.ms"] == 7
        p.produce("t", b"a")
    assert delivered == [b"a"]


def test_message_max_bytes_and_topic_max_message_bytes_are_enforced(data_dir):
    with Producer({"log.dir": data_dir, "message.max.bytes": 1000}) as p:
        with pytest.raises(errors.MessageSizeTooLargeError, match="1,000,000 bytes .* larger than 1,000"):
            p.produce("t", b"x" * 1_000_000)
        with pytest.raises(errors.MessageSizeTooLargeError, match="row 1 of produce_batch"):
            p.produce_batch("t", [b"x", b"y" * 990], keys=[b"k", b"k" * 20])
        p.produce("t", b"x" * 990, key=b"k" * 10)   # exactly at the limit
    with LogDir(data_dir) as d:
        d.create_topic("small", 1, {"max.message.bytes": 2000})
    with Producer({"log.dir": data_dir}) as p:
        with pytest.raises(errors.MessageSizeTooLargeError, match="topic 'small'"):
            p.produce("small", b"x" * 2001)
        p.produce("small", b"x" * 2000)
    assert [len(v) for v in stored(data_dir, "t")] == [990]
    assert [len(v) for v in stored(data_dir, "small")] == [2000]
    assert issubclass(errors.MessageSizeTooLargeError, errors.ArrowlogError)


def test_message_max_bytes_counts_header_bytes(data_dir):
    """As in Kafka, a record's size includes its headers' keys and values."""
    with Producer({"log.dir": data_dir, "message.max.bytes": 1000}) as p:
        with pytest.raises(errors.MessageSizeTooLargeError, match="2,008 bytes .* larger than 1,000"):
            p.produce("t", b"x", headers={"h": b"y" * 2000, "big": None, "é": b""}, key=b"k")
        with pytest.raises(errors.MessageSizeTooLargeError, match="row 1 of produce_batch"):
            p.produce_batch("t", [b"x", b"y"], headers=[None, [("h", b"z" * 2000)]])
        p.produce("t", b"x" * 980, headers=[("hh", b"v" * 10), ("n", None)], key=b"kkkkkkk")   # exactly 1,000
        p.produce_batch("t", [b"x" * 990], headers=[{"key": b"v" * 6}])
    assert [len(v) for v in stored(data_dir, "t")] == [980, 990]


def test_statistics_are_librdkafka_shaped(data_dir):
    stats = []
    with Producer({"log.dir": data_dir, "stats_cb": stats.append, "statistics.interval.ms": 10,
                   "linger.ms": 60_000, "num.partitions": 2}) as p:
        for i in range(5):
            p.produce("t", b"v%d" % i, partition=i % 2)
        deadline = time.monotonic() + WAIT_S
        while not stats and time.monotonic() < deadline:
            time.sleep(0.01)
            p.poll(0)
        doc = json.loads(stats[-1])
        assert doc["type"] == "producer" and doc["msg_cnt"] == 5
        parts = doc["topics"]["t"]["partitions"]
        assert (parts["0"]["msgq_cnt"], parts["1"]["msgq_cnt"]) == (3, 2)
        p.flush()
        stats.clear()
        while not stats and time.monotonic() < deadline:
            time.sleep(0.01)
            p.poll(0)
        parts = json.loads(stats[-1])["topics"]["t"]["partitions"]
        assert [(parts[k]["msgq_cnt"], parts[k]["txmsgs"], parts[k]["hi_offset"]) for k in "01"] == [(0, 3, 3),
                                                                                                      (0, 2, 2)]


def test_background_append_error_goes_to_error_cb(data_dir, monkeypatch):
    from arrowlog.storage.partition import PartitionLog
    attempted = threading.Event()

    def failing_append(self, *args, **kwargs):
        try:
            raise errors.StorageError(errno.ENOSPC, "disk full (injected)")
        finally:
            attempted.set()

    seen = []
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"warm-up")
        p.flush()
        monkeypatch.setattr(PartitionLog, "append", failing_append)
        monkeypatch.setattr(PartitionLog, "append_records", failing_append)  # the producer's small batches
        p2 = Producer({"log.dir": data_dir, "linger.ms": 0, "error_cb": seen.append})
        p2.produce("t", b"x")
        assert attempted.wait(WAIT_S)   # the linger thread tried, and failed
        deadline = time.monotonic() + WAIT_S
        while not seen and time.monotonic() < deadline:
            p2.poll(0.01)                # served here, not raised
        assert len(seen) == 1 and "disk full (injected)" in seen[0].str()
        monkeypatch.undo()
        p2.close()


# -- 4. raw errors become ArrowlogErrors -----------------------------------------------------


def test_reserved_topic_name_is_an_invalid_topic(data_dir):
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"x")
        for name in (".notify", ".lock"):
            with pytest.raises(errors.InvalidTopicError, match="reserved"):
                p.produce(name, b"x")


def test_group_consumer_on_a_read_only_directory_raises_storage_error(data_dir, monkeypatch):
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"x")
    from arrowlog.groups.store import GroupDir

    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system", self.path)
    monkeypatch.setattr(GroupDir, "ensure", read_only)
    c = Consumer({"log.dir": data_dir, "group.id": "g"})
    with pytest.raises(errors.StorageError, match="consumer group 'g' cannot use its files .*read-only"):
        c.subscribe(["t"])
    c.close()



def test_argument_mistakes_are_arrowlog_errors_and_still_python_ones(data_dir):
    with Producer({"log.dir": data_dir}) as p:
        with pytest.raises(errors.InvalidArgumentError, match="key and value must be bytes") as bad_value:
            p.produce("t", 12345)
        assert isinstance(bad_value.value, TypeError)
        with pytest.raises(errors.InvalidArgumentError, match="headers must be"):
            p.produce("t", b"x", headers=[("k",)])
        for partition in ("0", 1 << 40, 1.0):
            with pytest.raises(errors.UnknownPartitionError, match="there is no partition"):
                p.produce("t", b"x", partition=partition)
        with pytest.raises(errors.InvalidArgumentError, match="timestamps has 1 entries"):
            p.produce_batch("t", [b"a", b"b"], timestamps=[0])
    with Consumer({"log.dir": data_dir}) as c:
        with pytest.raises(errors.InvalidArgumentError) as bad_count:
            c.consume(-1)
        assert isinstance(bad_count.value, ValueError)
        assert c.consume(0) == []   # as confluent-kafka answers it


def test_consumer_arguments_of_the_wrong_type_are_arrowlog_errors(data_dir):
    """A str where a number or a TopicPartition belongs says which argument
    and what it takes, instead of a TypeError from inside the consumer."""
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"x")
    with Consumer({"log.dir": data_dir}) as c:
        c.assign([arrowlog.TopicPartition("t", 0, arrowlog.OFFSET_BEGINNING)])
        for call, message in [(lambda: c.poll("1"), "timeout must be a number of seconds"),
                              (lambda: c.consume(1, timeout="1"), "timeout must be a number of seconds"),
                              (lambda: c.consume("10"), "num_messages must be an int"),
                              (lambda: c.consume(None), "num_messages must be an int"),
                              (lambda: c.seek("t"), r"seek\(\) takes TopicPartition objects, not str"),
                              (lambda: c.position(["t"]), r"position\(\) takes TopicPartition"),
                              (lambda: c.get_watermark_offsets(("t", 0)), r"get_watermark_offsets\(\) takes")]:
            with pytest.raises(errors.InvalidArgumentError, match=message) as bad:
                call()
            assert isinstance(bad.value, TypeError)
        numpy = pytest.importorskip("numpy")
        assert [m.value() for m in c.consume(numpy.int64(5), timeout=numpy.float64(WAIT_S))] == [b"x"]


def _read_only_mount_works(tmp_path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {probe} {probe} && "
                            f"mount -o remount,ro,bind {probe} && ! touch {probe}/x"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def test_group_consumer_on_a_real_read_only_mount(data_dir, tmp_path):
    """The same as above on a real read-only bind mount, where the machine
    allows one (a private mount namespace: root, or user namespaces)."""
    if not _read_only_mount_works(tmp_path):
        pytest.skip("this machine cannot make a private read-only bind mount (unshare -m)")
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"x")
    program = ("import arrowlog\n"
               f"c = arrowlog.Consumer({{'log.dir': {data_dir!r}, 'group.id': 'g'}})\n"
               "try:\n"
               "    c.subscribe(['t'])\n"
               "except arrowlog.StorageError as exc:\n"
               "    print('StorageError:', exc)\n"
               "c.close()\n")
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {data_dir} {data_dir} && "
                        f"mount -o remount,ro,bind {data_dir} && exec {sys.executable} -c \"$0\"", program],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "consumer group 'g' cannot use its files" in r.stdout, r.stdout + r.stderr
    assert r.stdout.startswith("StorageError:") and "the file system is read-only" in r.stdout


def test_an_unreachable_cluster_logs_its_error_once_not_every_retry(caplog):
    """librdkafka retries a refused connection every few ms: the line it
    logs each time reaches the arrowlog.kafka logger once, then the one
    ClusterUnreachableError says what is wrong."""
    pytest.importorskip("confluent_kafka")
    from arrowlog.backends.kafka.client import ClusterUnreachableError
    with caplog.at_level(logging.WARNING, logger="arrowlog.kafka"):
        with pytest.raises(ClusterUnreachableError, match="127.0.0.1:1"):
            Producer({"bootstrap.servers": "127.0.0.1:1", "socket.connection.setup.timeout.ms": 3000})
    lines = [r.getMessage() for r in caplog.records if r.name == "arrowlog.kafka"]
    assert 1 <= len(lines) <= 3, lines


def test_producer_timeouts_of_the_wrong_type_are_arrowlog_errors(data_dir):
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"x")
        for call in (lambda: p.poll("1"), lambda: p.flush("1")):
            with pytest.raises(errors.InvalidArgumentError, match="timeout must be a number of seconds or None, not str"):
                call()
        assert p.flush(None) == 0
    assert stored(data_dir, "t") == [b"x"]


def test_a_closed_logdir_refuses_changes_with_log_closed_error(data_dir):
    """Not a ValueError about a negative file descriptor: the closed LogDir
    gave its lock file back, and a change needs it."""
    log = LogDir(data_dir)
    log.create_topic("t")
    log.close()
    for change in (lambda: log.create_topic("u"), lambda: log.delete_topic("t"),
                   lambda: log.alter_topic("t", {"retention.ms": 1000})):
        with pytest.raises(errors.LogClosedError, match="is closed: open a new LogDir"):
            change()
    with LogDir(data_dir) as again:
        assert again.list_topics() == ["t"]
        assert again.topic("t").config["retention.ms"] == -1


def test_replay_and_dataset_of_something_not_a_location_say_what_they_take(data_dir):
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"x")
    with pytest.raises(errors.InvalidArgumentError, match=r"replay\(\) takes a data directory .* or kafka://host:port, "
                                                          "not int"):
        arrowlog.replay(5, "t")
    with pytest.raises(errors.InvalidArgumentError, match=r"dataset\(\) takes a data directory \(a path, file:// URL "
                                                          r"or LogDir\), not NoneType"):
        arrowlog.dataset(None, "t")
    import pathlib
    assert arrowlog.replay(pathlib.Path(data_dir), "t").num_records == 1
    assert arrowlog.dataset(pathlib.Path(data_dir), "t").count_rows() == 1
