"""The on-disk format is pinned: tests/golden/v1 was written by arrowlog
(tests/golden/make_golden.py) and is read back here, record by record, by
every later version. A change that breaks this is a format change: bump the
format deliberately (a new golden directory, FORMAT.md), never by accident."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil

import pytest

import arrowlog
from arrowlog import Consumer, TopicPartition
from arrowlog.storage import LogDir

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")


def load_maker():
    spec = importlib.util.spec_from_file_location("make_golden", os.path.join(GOLDEN, "make_golden.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


maker = load_maker()


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """A copy of tests/golden/v1 (opening a directory may rebuild an index
    or add lock files: the committed one stays as written)."""
    path = str(tmp_path_factory.mktemp("golden") / "v1")
    shutil.copytree(os.path.join(GOLDEN, "v1"), path)
    return path


def stored(record: dict) -> dict:
    """A produced record as replay() gives it back (its offset aside)."""
    value = record["value"]
    out = {"partition": record["partition"],
           "timestamp": dt.datetime.fromtimestamp(record["timestamp"] / 1000, dt.timezone.utc),
           "key": record["key"],
           "headers": [{"key": k, "value": v} for k, v in record["headers"]] if record.get("headers") else None}
    if isinstance(value, dict):
        out.update(value)
    else:
        out["value"] = value
    return out


@pytest.mark.parametrize("topic", sorted(maker.TOPICS))
def test_golden_topic_reads_back_exactly(golden, topic):
    records = maker.expected()[topic]
    got = arrowlog.replay(golden, topic).to_arrow().to_pylist()
    assert len(got) == len(records)
    next_offset: dict[int, int] = {}
    by_partition = sorted(records, key=lambda r: r["partition"])  # replay goes partition by partition
    for want, row in zip(by_partition, got):
        offset = next_offset.get(want["partition"], 0)
        next_offset[want["partition"]] = offset + 1
        assert row.pop("offset") == offset
        row["timestamp"] = row["timestamp"].astimezone(dt.timezone.utc)
        assert row == stored(want), f"{topic} offset {offset}"


def test_golden_layout(golden):
    with LogDir(golden, create=False) as d:
        assert d.list_topics() == sorted(maker.TOPICS)
        for name, (partitions, config) in maker.TOPICS.items():
            t = d.topic(name)
            assert t.num_partitions == partitions
            for p in range(partitions):
                assert t.partition(p).verify()["errors"] == []
        assert len(d.topic("segments").partition(0).segment_bases()) >= 5, "the golden log should span segments"
        assert d.topic("zstd").partition(0).compression == "zstd"


def test_golden_group_offsets(golden):
    c = Consumer({"log.dir": golden, "group.id": maker.GROUP})
    try:
        got = c.committed([TopicPartition("plain", p) for p in maker.COMMITTED])
        assert {tp.partition: tp.offset for tp in got} == maker.COMMITTED
    finally:
        c.close()
