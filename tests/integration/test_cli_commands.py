"""The ``arrowlog`` commands end to end, in-process, on temporary data directories."""

import json
import os

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from arrowlog.cli import main
from arrowlog.cli.common import EXIT_CORRUPT, EXIT_EXISTS, EXIT_NOT_FOUND, EXIT_USAGE

T0 = 1_714_557_600_000  # 2024-05-01T10:00:00Z


class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err.decode()

    @property
    def lines(self):
        return self.out.decode().splitlines()

    @property
    def json(self):
        return [json.loads(line) for line in self.lines]

    def __repr__(self):
        return f"Result(rc={self.rc}, out={self.out[:300]!r}, err={self.err[:300]!r})"


@pytest.fixture
def cli(tmp_path):
    """Run ``arrowlog ARGS --data <tmp>`` in-process with stdin, capturing stdout/stderr."""
    data = str(tmp_path / "data")

    def run(*args, input=None, data_dir=data):
        runner = CliRunner()
        with runner.isolation(input=input) as (out, err, _):
            rc = main([*args, "--data", data_dir])
        return Result(rc, out.getvalue(), err.getvalue())

    run.data = data
    return run


def ok(res):
    assert res.rc == 0, res
    return res


def timed_records(n, key=lambda i: f"k{i}"):
    """``produce --json`` input with timestamps T0, T0+1s, ..."""
    return "".join(
        json.dumps({"key": key(i), "value": f"v{i}", "timestamp": T0 + 1000 * i}) + "\n" for i in range(n)
    )


# ------------------------------------------------------------------ topics


def test_topic_create_refuses_a_directory_holding_other_files(cli, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = cli("topic", "create", "x", data_dir=str(foreign))
    assert res.rc == 1 and "holds other files (notes.txt)" in res.err, res
    assert os.listdir(foreign) == ["notes.txt"]


def test_topic_create_list_describe_alter_delete(cli):
    res = ok(cli("topic", "create", "orders", "-p", "3", "--retention", "2d", "--segment-size", "1MiB"))
    assert "created topic orders with 3 partitions" in res.err and res.out == b""
    ok(cli("topic", "create", "audit"))

    assert ok(cli("topic", "list", "--names")).lines == ["audit", "orders"]
    listing = ok(cli("topic", "list", "--json")).json[0]
    assert {r["name"]: r["partitions"] for r in listing} == {"audit": 1, "orders": 3}
    table = ok(cli("topic", "list")).lines
    assert table[0].split() == ["TOPIC", "PARTITIONS", "RECORDS"]

    ok(cli("produce", "orders", "-p", "1", input="a\nb\n"))
    info = ok(cli("topic", "describe", "orders", "--json")).json[0]
    assert info["config"]["retention.ms"] in (172_800_000, "172800000")
    assert info["config"]["segment.bytes"] in (1 << 20, str(1 << 20))
    parts = {p["partition"]: p for p in info["partitions"]}
    assert parts[1]["high_watermark"] == 2 and parts[1]["records"] == 2 and parts[0]["records"] == 0
    assert parts[1]["size_bytes"] > 0 and parts[1]["segments"] >= 1
    text = ok(cli("topic", "describe", "orders")).out.decode()
    assert "HIGH-WATERMARK" in text and "SEGMENTS" in text

    ok(cli("topic", "alter", "orders", "--retention", "3d"))
    info = ok(cli("topic", "describe", "orders", "--json")).json[0]
    assert info["config"]["retention.ms"] in (259_200_000, "259200000")

    res = cli("topic", "create", "orders")
    assert res.rc == EXIT_EXISTS and "already exists" in res.err

    ok(cli("topic", "delete", "orders"))
    assert ok(cli("topic", "list", "--names")).lines == ["audit"]
    res = cli("topic", "delete", "orders")
    assert res.rc == EXIT_NOT_FOUND and "unknown topic 'orders'" in res.err
    ok(cli("topic", "delete", "orders", "--if-exists"))


def test_topic_create_and_describe_print_the_retention_in_force(cli):
    res = ok(cli("topic", "create", "history"))
    assert "retention: forever (retention.ms=-1, retention.bytes=-1)" in res.err
    assert "RETENTION   forever" in ok(cli("topic", "describe", "history")).out.decode()
    assert ok(cli("topic", "describe", "history", "--json")).json[0]["config"]["retention.ms"] == -1

    res = ok(cli("topic", "create", "recent", "--retention", "7d", "--retention-bytes", "1GiB"))
    assert "records older than 7d are deleted" in res.err and "1.0 GiB per partition" in res.err
    text = ok(cli("topic", "describe", "recent")).out.decode()
    assert "RETENTION   records older than 7d are deleted" in text and "retention.ms=604800000" in text
    res = ok(cli("topic", "alter", "recent", "--retention", "forever", "--retention-bytes", "-1"))
    assert "retention: forever" in res.err


def test_produce_creates_a_missing_topic_as_the_producer_does(cli, tmp_path):
    import arrowlog

    res = ok(cli("produce", "fresh", input="a\nb\n"))
    assert "created topic fresh with 1 partition" in res.err and "retention: forever" in res.err
    assert "produced 2 records to fresh" in res.err
    assert ok(cli("consume", "fresh", "-e", "--format", "text")).lines == ["a", "b"]
    res = ok(cli("produce", "fresh", input="c\n"))
    assert "created" not in res.err  # only the first time
    with arrowlog.Producer({"log.dir": str(tmp_path / "lib")}) as p:  # the library agrees
        p.produce("fresh", b"a")
    with arrowlog.LogDir(str(tmp_path / "lib")) as lib, arrowlog.LogDir(cli.data) as made:
        assert lib.topic("fresh").num_partitions == made.topic("fresh").num_partitions == 1
        assert lib.topic("fresh").config == made.topic("fresh").config

    res = cli("produce", "absent", "--no-create", input="x\n")
    assert res.rc == EXIT_NOT_FOUND and "unknown topic 'absent'" in res.err


def test_topic_names_complete_in_the_shell(cli):
    import click

    from arrowlog.cli import cli as root
    from arrowlog.cli.store import complete_topics

    for name in ("orders", "other", "zeta"):
        ok(cli("topic", "create", name))
    ctx = click.Context(root)
    ctx.params = {"data": cli.data}
    assert complete_topics(ctx, None, "o") == ["orders", "other"]
    ctx.params = {"data": cli.data + "-missing"}
    assert complete_topics(ctx, None, "") == []


# ------------------------------------------------------------------ produce → consume


def test_round_trip_lines_are_identical(cli):
    ok(cli("topic", "create", "lines"))
    lines = ["first", "", "  spaces  ", "tab\there", "ünïcödé ✓", '{"json": true}', "last"]
    res = ok(cli("produce", "lines", input="\n".join(lines) + "\n"))
    assert "produced 7 records to lines" in res.err and res.out == b""
    out = ok(cli("consume", "lines", "--format", "text")).lines
    assert out == lines


def test_round_trip_many_partitions_and_json_default(cli):
    ok(cli("topic", "create", "multi", "-p", "3"))
    sent = [f"line-{i}" for i in range(300)]
    ok(cli("produce", "multi", "-K", "-", input="".join(f"k{i % 17}-{v}\n" for i, v in enumerate(sent))))
    recs = ok(cli("consume", "multi")).json  # stdout is not a terminal: JSON lines
    assert sorted(r["value"] for r in recs) == sorted(sent)
    by_part = {}
    for r in recs:
        by_part.setdefault(r["partition"], []).append(r)
        assert r["topic"] == "multi" and isinstance(r["timestamp"], int)
    for p, rs in by_part.items():
        assert [r["offset"] for r in rs] == list(range(len(rs))), p
    # the same key always lands in the same partition
    key_parts = {}
    for r in recs:
        key_parts.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(ps) == 1 for ps in key_parts.values())
    assert len(by_part) > 1


def test_keys_headers_and_templates(cli):
    ok(cli("topic", "create", "t"))
    ok(cli("produce", "t", "-K", r"\t", "-H", "src=cli", "-H", "v=2", input="alice\t42\nbob\t7\n"))
    ok(cli("produce", "t", "-k", "fixed", input="x\n"))
    recs = ok(cli("consume", "t", "--format", "json")).json
    assert [(r["key"], r["value"]) for r in recs] == [("alice", "42"), ("bob", "7"), ("fixed", "x")]
    assert recs[0]["headers"] == [{"key": "src", "value": "cli"}, {"key": "v", "value": "2"}]
    assert recs[2]["headers"] == []
    out = ok(cli("consume", "t", "--format", r"%k=%v@%p/%o %h\n")).lines
    assert out == ["alice=42@0/0 src=cli,v=2", "bob=7@0/1 src=cli,v=2", "fixed=x@0/2 "]


def test_json_round_trip_copies_a_topic_exactly(cli):
    ok(cli("topic", "create", "src", "-p", "2"))
    ok(cli("topic", "create", "dst", "-p", "2"))
    payload = "".join(json.dumps(o) + "\n" for o in [
        {"key": "a", "value": "1", "partition": 0, "timestamp": T0, "headers": {"h": "x"}},
        {"key": None, "value_base64": "/wD+", "partition": 1, "timestamp": T0 + 5},
        {"value": {"nested": [1, 2]}, "partition": 1, "timestamp": T0 + 9},
    ])
    ok(cli("produce", "src", "--json", input=payload))
    dumped = ok(cli("consume", "src", "--format", "json")).out
    ok(cli("produce", "dst", "--json", input=dumped))
    a = ok(cli("consume", "src", "--format", "json")).json
    b = ok(cli("consume", "dst", "--format", "json")).json
    for r in a + b:
        r.pop("topic")
    key = lambda r: (r["partition"], r["offset"])  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)
    vals = {r["offset"]: r for r in a if r["partition"] == 1}
    assert vals[0]["value_base64"] == "/wD+" and vals[1]["value"] == '{"nested":[1,2]}'


# ------------------------------------------------------------------ offset grammar


@pytest.fixture
def ten(cli):
    """Topic ``ten``: offsets 0-9 with timestamps T0 + i seconds in partition 0, none in 1."""
    ok(cli("topic", "create", "ten", "-p", "2"))
    ok(cli("produce", "ten", "--json", "-p", "0", input=timed_records(10)))
    return cli


def offsets(cli, *args):
    return [r["offset"] for r in ok(cli("consume", "ten", "--format", "json", *args)).json]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("start", list(range(10))),
        ("beginning", list(range(10))),
        ("end", []),
        (":end", list(range(10))),
        ("3", [3, 4, 5, 6, 7, 8, 9]),
        ("3:6", [3, 4, 5]),
        (":2", [0, 1]),
        ("+7", [7, 8, 9]),
        ("-2", [8, 9]),
        ("-50", list(range(10))),
        ("42", []),
        (f"@{T0 + 4000}", [4, 5, 6, 7, 8, 9]),
        (f"@{T0 + 3500}", [4, 5, 6, 7, 8, 9]),
        (f"@{T0 + 2000}:{T0 + 5000}", [2, 3, 4]),
        (f"@:{T0 + 2000}", [0, 1]),
        (f"@{(T0 + 8000) // 1000}", [8, 9]),  # epoch seconds
        ("@2024-05-01T10:00:07Z", [7, 8, 9]),
        ("@2024-05-01T12:00:07+02:00", [7, 8, 9]),
        ("@2024-05-01T10:00:02Z:2024-05-01T10:00:04Z", [2, 3]),
        ("@2024-05-01T10:00:06Z:+2s", [6, 7]),
        ("@2024-05-01", list(range(10))),
        ("@2024-05-02", []),
        ("@-1h", []),  # the records are from 2024
    ],
)
def test_offset_grammar(ten, expr, expected):
    assert offsets(ten, "-o", expr) == expected


def test_count_partition_and_exit_at_end(ten):
    assert offsets(ten, "-c", "3") == [0, 1, 2]
    assert offsets(ten, "-o", "5", "-c", "2", "-e") == [5, 6]
    assert offsets(ten, "-p", "1") == []
    assert offsets(ten, "-p", "0", "-o", "-1") == [9]
    res = ten("consume", "ten", "-p", "7")
    assert res.rc == EXIT_NOT_FOUND and "no partition 7" in res.err


def test_topic_offsets_by_time(ten):
    table = ok(ten("topic", "offsets", "ten", "--at", "2024-05-01T10:00:04Z")).lines
    assert table[0].split() == ["TOPIC", "PARTITION", "LOG-START-OFFSET", "HIGH-WATERMARK", "OFFSET-AT-TIME"]
    assert [line.split() for line in table[1:]] == [["ten", "0", "0", "10", "4"], ["ten", "1", "0", "0", "0"]]
    rows = ok(ten("topic", "offsets", "ten", "--json")).json[0]
    assert rows[0] == {"topic": "ten", "partition": 0, "log_start_offset": 0, "high_watermark": 10}
    res = ten("topic", "offsets", "ten", "--at", "whenever")
    assert res.rc == EXIT_USAGE and "bad time" in res.err


def test_follow_stops_at_an_explicit_end(ten):
    # -f with a closed range ends by itself once the range is read
    assert offsets(ten, "-f", "-p", "0", "-o", "2:4") == [2, 3]
    assert offsets(ten, "-f", "-p", "0", "-o", ":end") == list(range(10))


# ------------------------------------------------------------------ groups


def test_group_consume_commits_and_resumes(ten):
    first = offsets(ten, "-g", "billing", "-c", "4")
    assert first == [0, 1, 2, 3]
    assert offsets(ten, "-g", "billing", "-c", "3") == [4, 5, 6]
    assert ok(ten("group", "list")).lines == ["billing"]
    rows = ok(ten("group", "describe", "billing", "--json")).json[0]
    by_p = {r["partition"]: r for r in rows}
    assert by_p[0]["current_offset"] == 7 and by_p[0]["log_end_offset"] == 10 and by_p[0]["lag"] == 3
    table = ok(ten("group", "describe", "billing")).lines
    assert table[0].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "OWNER"]
    assert table[1].split()[:6] == ["billing", "ten", "0", "7", "10", "3"]
    offsets(ten, "-g", "audit", "-c", "1")
    every = ok(ten("group", "describe", "--json")).json[0]
    assert sorted({r["group"] for r in every}) == ["audit", "billing"]


def test_group_start_position_applies_only_before_the_first_commit(ten):
    assert offsets(ten, "-g", "late", "-o", "-2") == [8, 9]
    ok(ten("produce", "ten", "-p", "0", input="ten\neleven\n"))
    assert offsets(ten, "-g", "late", "-o", "-2") == [10, 11]  # resumes; -o is not applied again
    assert offsets(ten, "-g", "timed", "-o", f"@{T0 + 7000}") == [7, 8, 9, 10, 11]
    for args, fragment in ((["-p", "0"], "-p cannot be used with -g"), (["-o", "2:4"], "start position")):
        res = ten("consume", "ten", "-g", "x", *args)
        assert res.rc == EXIT_USAGE and fragment in res.err


def committed(cli, group):
    rows = ok(cli("group", "describe", group, "--json")).json[0]
    return {r["partition"]: r["current_offset"] for r in rows}


def test_group_reset_is_a_dry_run_unless_execute(ten):
    offsets(ten, "-g", "g", "-c", "6")
    assert committed(ten, "g")[0] == 6

    plan = ok(ten("group", "reset", "g", "-t", "ten", "--to-earliest"))
    assert plan.lines[0].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]
    assert plan.lines[1].split() == ["g", "ten", "0", "6", "0"]
    assert "dry run" in plan.err
    assert committed(ten, "g")[0] == 6  # unchanged

    ok(ten("group", "reset", "g", "-t", "ten", "-p", "0", "--to-earliest", "--execute"))
    assert committed(ten, "g")[0] == 0
    ok(ten("group", "reset", "g", "-t", "ten", "-p", "0", "--shift-by", "4", "--execute"))
    assert committed(ten, "g")[0] == 4
    ok(ten("group", "reset", "g", "-t", "ten", "-p", "0", "--to-datetime", "2024-05-01T10:00:08Z", "--execute"))
    assert committed(ten, "g")[0] == 8
    ok(ten("group", "reset", "g", "-t", "ten", "-p", "0", "--to-offset", "99", "--execute"))
    assert committed(ten, "g")[0] == 10  # kept at the high watermark
    ok(ten("group", "reset", "g", "--all-topics", "--to-offset", "1", "--execute"))
    assert committed(ten, "g") == {0: 1, 1: 0}
    # the group then resumes from where it was reset
    assert offsets(ten, "-g", "g", "-c", "2") == [1, 2]


def test_group_errors(ten):
    res = ten("group", "describe", "nobody")
    assert res.rc == EXIT_NOT_FOUND and "unknown group 'nobody'" in res.err
    res = ten("group", "reset", "nobody", "-t", "missing", "--to-earliest")
    assert res.rc == EXIT_NOT_FOUND and "unknown topic 'missing'" in res.err


# ------------------------------------------------------------------ export


@pytest.fixture
def exported(cli, tmp_path):
    ok(cli("topic", "create", "ex", "-p", "2"))
    ok(cli("produce", "ex", "--json", input="".join(
        json.dumps({"key": f"k{i}", "value": f"value {i}", "partition": i % 2, "timestamp": T0 + i,
                    "headers": {"n": str(i)}}) + "\n" for i in range(50))))
    ok(cli("produce", "ex", "-p", "1", input="plain\n"))
    return cli, tmp_path


def expected_rows(cli):
    recs = ok(cli("consume", "ex", "--format", "json")).json
    return sorted((r["partition"], r["offset"], r["timestamp"], r["key"], r["value"]) for r in recs)


def table_rows(table):
    d = table.to_pydict()
    ts = [int(t.timestamp() * 1000) if hasattr(t, "timestamp") else t for t in d["timestamp"]]
    dec = lambda b: None if b is None else (b.decode() if isinstance(b, bytes) else b)  # noqa: E731
    return sorted(zip(d["partition"], d["offset"], ts, map(dec, d["key"]), map(dec, d["value"]), strict=True))


@pytest.mark.parametrize("ext", ["parquet", "arrow", "csv"])
def test_export_reads_back_with_pyarrow(exported, ext):
    cli, tmp = exported
    path = str(tmp / f"out.{ext}")
    res = ok(cli("export", "ex", "--to", path))
    assert "exported 51 records" in res.err and res.out == b""
    if ext == "parquet":
        table = pq.read_table(path)
    elif ext == "arrow":
        with pa.memory_map(path) as src:
            table = pa.ipc.open_file(src).read_all()
    else:
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types={"key": pa.string(), "value": pa.string(), "timestamp": pa.timestamp("ms", tz="UTC")},
            strings_can_be_null=True, quoted_strings_can_be_null=False))  # a null key is an unquoted empty
    assert table.num_rows == 51
    assert table.column_names[:5] == ["partition", "offset", "timestamp", "key", "value"]
    assert table_rows(table) == expected_rows(cli)
    if ext != "csv":
        hs = [h for h in table.column("headers").to_pylist() if h]
        assert {"key": "n", "value": b"3"} in [x for h in hs for x in h]
    assert not [f for f in os.listdir(tmp) if f.endswith(".partial")]


def test_export_jsonl_and_ranges(exported):
    cli, tmp = exported
    path = str(tmp / "out.jsonl")
    ok(cli("export", "ex", "--to", path, "-p", "0", "--start", "5", "--end", "10"))
    with open(path) as f:
        recs = [json.loads(line) for line in f]
    assert [r["offset"] for r in recs] == [5, 6, 7, 8, 9]
    assert recs[0]["value"] == "value 10" and recs[0]["headers"] == [{"key": "n", "value": "10"}]

    ok(cli("export", "ex", "--to", str(tmp / "t.parquet"), "-o", f"@{T0 + 40}:{T0 + 44}"))
    got = pq.read_table(str(tmp / "t.parquet")).to_pydict()
    assert sorted(v.decode() for v in got["value"]) == ["value 40", "value 41", "value 42", "value 43"]

    empty = str(tmp / "empty.parquet")
    ok(cli("export", "ex", "--to", empty, "-o", "end"))
    assert pq.read_table(empty).num_rows == 0

    res = ok(cli("export", "ex", "--to", "-", "-p", "1", "-o", "-1"))
    assert [r["value"] for r in res.json] == ["plain"]


# ------------------------------------------------------------------ verify / recover


def test_verify_and_recover_on_a_clean_log(ten):
    res = ok(ten("verify"))
    assert res.lines[0].split() == ["TOPIC", "PARTITION", "BATCHES", "RECORDS", "STATUS"]
    assert res.lines[1].split()[:2] == ["ten", "0"] and res.lines[1].split()[-1] == "ok"
    report = ok(ten("verify", "--json")).json[0]
    assert report[0]["records"] == 10 and report[0]["ok"]
    res = ok(ten("recover"))
    assert "recovered 2 partitions" in res.err
    assert offsets(ten) == list(range(10))


def test_verify_reports_damage_with_exit_5(ten):
    part = ok(ten("topic", "describe", "ten", "--json")).json[0]["partitions"][0]
    assert part["segments"] == 1
    seg_dir = os.path.join(ten.data, "topics", "ten", "0")
    seg = os.path.join(seg_dir, [f for f in os.listdir(seg_dir) if f.endswith(".log")][0])
    with open(seg, "r+b") as f:  # flip a byte inside the last stored batch (size_bytes: where data ends)
        f.seek(part["size_bytes"] - 16)
        b = f.read(1)
        f.seek(part["size_bytes"] - 16)
        f.write(bytes([b[0] ^ 0xFF]))
    res = ten("verify")
    assert res.rc == EXIT_CORRUPT, res
    assert "DAMAGED" in res.out.decode() and "damaged" in res.err
    assert [line.split()[-1] for line in res.lines[2:]] == ["ok"]  # partition 1 is intact


# ------------------------------------------------------------------ error paths


def test_unknown_topic_is_exit_3_with_one_line(cli):
    ok(cli("topic", "create", "real"))
    for args in (["consume", "nope"], ["produce", "nope", "--no-create"], ["export", "nope", "--to", "x.parquet"],
                 ["topic", "describe", "nope"], ["topic", "alter", "nope", "--retention", "1d"]):
        res = cli(*args, input="x\n")
        assert res.rc == EXIT_NOT_FOUND, (args, res)
        assert res.err.count("\n") == 1 and "unknown topic 'nope' (topics: real)" in res.err
        assert res.out == b""


def test_bad_offset_expression_is_exit_2(ten):
    for expr in ("soon", "@nope", "5:2", "@123"):
        res = ten("consume", "ten", "-o", expr)
        assert res.rc == EXIT_USAGE, res
        assert res.err.count("\n") == 1, res
        assert "bad" in res.err or "ambiguous" in res.err


def test_unwritable_data_directory(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = cli("topic", "create", "t", data_dir=str(blocker / "data"))
    assert res.rc == 1, res
    assert res.err.startswith("arrowlog: error: ") and res.err.count("\n") == 1
    assert "Traceback" not in res.err


def test_unwritable_export_destination(ten, tmp_path):
    res = ten("export", "ten", "--to", str(tmp_path / "missing-dir" / "x.parquet"))
    assert res.rc == 1 and "does not exist" in res.err


def test_produce_errors(ten):
    res = ten("produce", "ten", "-p", "5", input="x\n")
    assert res.rc == EXIT_NOT_FOUND and "no partition 5" in res.err
    res = ten("produce", "ten", "--json", input='{"value": "ok"}\nnot json\n')
    assert res.rc == EXIT_USAGE and "line 2" in res.err
    res = ten("produce", "ten", "-K", ":", input="no delimiter\n")
    assert res.rc == EXIT_USAGE and "line 1" in res.err


# ------------------------------------------------------------------ group store interface


class MemoryGroupStore:
    """A GroupStore with live members, standing in for a running group."""

    def __init__(self):
        self.offsets = {"busy": {("ten", 0): 2}, "idle": {("ten", 0): 5}}
        self.owners = {"busy": {("ten", 0): "consumer-1"}}

    def list_groups(self):
        return sorted(self.offsets)

    def committed(self, group):
        return dict(self.offsets.get(group, {}))

    def commit(self, group, offsets):
        self.offsets.setdefault(group, {}).update(offsets)

    def members(self, group):
        return dict(self.owners.get(group, {}))

    def delete(self, group):
        del self.offsets[group]


@pytest.fixture
def memory_store(ten, monkeypatch):
    import arrowlog.cli.group as group_cmds

    store = MemoryGroupStore()
    monkeypatch.setattr(group_cmds, "open_group_store", lambda data_dir: store)
    return ten, store


def test_live_members_show_as_owner_and_block_reset_and_delete(memory_store):
    cli, store = memory_store
    table = ok(cli("group", "describe", "busy")).lines
    assert table[1].split() == ["busy", "ten", "0", "2", "10", "8", "consumer-1"]
    assert table[2].split() == ["busy", "ten", "1", "-", "0", "-", "-"]
    ok(cli("group", "reset", "busy", "-t", "ten", "--to-latest"))  # a dry run is always fine
    res = cli("group", "reset", "busy", "-t", "ten", "--to-latest", "--execute")
    assert res.rc == 1 and "live members (consumer-1)" in res.err
    assert store.offsets["busy"] == {("ten", 0): 2}
    res = cli("group", "delete", "busy")
    assert res.rc == 1 and "live members" in res.err
    ok(cli("group", "delete", "idle"))
    assert ok(cli("group", "list")).lines == ["busy"]


# ------------------------------------------------------------------ typed values


def test_topic_with_a_value_schema(cli, tmp_path):
    ok(cli("topic", "create", "typed", "--value-schema", "id:int64,name:string"))
    info = ok(cli("topic", "describe", "typed", "--json")).json[0]
    assert [f["name"] for f in info["config"]["value.schema"]["fields"]] == ["id", "name"]
    ok(cli("produce", "typed", input='{"id": 0, "name": "z"}\n'))  # each line a JSON object of the fields
    res = cli("produce", "typed", input='{"id": "not a number"}\n')
    assert res.rc == EXIT_USAGE and "stdin line 1" in res.err and "value schema" in res.err

    from arrowlog.storage import LogDir

    with LogDir(cli.data) as d:  # typed records written through the storage layer
        t = d.topic("typed")
        values = pa.array([{"id": 1, "name": "a"}, {"id": 2, "name": None}], pa.struct(list(t.value_schema)))
        t.partition(0).append(pa.RecordBatch.from_arrays(
            [pa.array([T0, T0 + 1], t.schema.field("timestamp").type), pa.array([b"k", None], pa.binary()),
             values, pa.nulls(2, t.schema.field("headers").type)],
            names=["timestamp", "key", "value", "headers"]))
    assert ok(cli("consume", "typed", "--format", "text")).lines == [
        '{"id":0,"name":"z"}', '{"id":1,"name":"a"}', '{"id":2,"name":null}']
    ok(cli("export", "typed", "--to", str(tmp_path / "typed.parquet")))
    assert pq.read_table(str(tmp_path / "typed.parquet")).column("value").to_pylist() == [
        {"id": 0, "name": "z"}, {"id": 1, "name": "a"}, {"id": 2, "name": None}]


def test_create_with_config_keys_and_bad_values(cli):
    ok(cli("topic", "create", "c", "-p", "2", "-c", "retention.ms=60000", "--compression", "zstd",
           "--retention-bytes", "1MiB"))
    cfg = ok(cli("topic", "describe", "c", "--json")).json[0]["config"]
    assert (cfg["retention.ms"], cfg["compression.type"], cfg["retention.bytes"]) == (60000, "zstd", 1 << 20)
    res = cli("topic", "create", "d", "-c", "no.such.key=1")
    assert res.rc == EXIT_USAGE and "no.such.key" in res.err
    res = cli("topic", "create", "bad name")
    assert res.rc == EXIT_USAGE and "only letters" in res.err
    res = cli("topic", "alter", "c", "--partitions", "1")
    assert res.rc == EXIT_USAGE and "can only be added" in res.err
    ok(cli("topic", "alter", "c", "--partitions", "5"))
    assert len(ok(cli("topic", "describe", "c", "--json")).json[0]["partitions"]) == 5


# ------------------------------------------------------------------ demo


def run_demo(*args):
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        rc = main(["demo", *args])
    return Result(rc, out.getvalue(), err.getvalue())


def test_demo_refuses_a_directory_it_did_not_make(tmp_path):
    foreign = tmp_path / "work"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    res = run_demo(str(foreign))
    assert res.rc == 1, res
    assert "not made by the demo" in res.err and "arrowlog demo DIR" in res.err
    assert (foreign / "thesis.tex").read_text() == "years of work"
    assert sorted(os.listdir(foreign)) == ["thesis.tex"]

    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    res = run_demo(str(a_file))
    assert res.rc == 1 and "not a directory" in res.err, res
    assert a_file.read_text() == "keep"


def test_demo_runs_in_a_new_directory_and_again_in_its_own(tmp_path, monkeypatch):
    import arrowlog.demo

    monkeypatch.setattr(arrowlog.demo, "N_ORDERS", 3000)
    target = tmp_path / "tour"
    for _ in range(2):  # the second run replaces the demo's own directory
        res = run_demo(str(target))
        assert res.rc == 0, res
        text = res.out.decode()
        assert "published 3,000 OrderPlaced events" in text
        assert "value_format='json'" in text and "quantity: int64" in text and "total: double" in text
        assert (target / arrowlog.demo.MARKER).is_file()
    assert arrowlog.replay(str(target), "orders").num_records == 3000  # replaced, not appended to


@pytest.mark.parametrize("args", [["topic", "list"], ["topic", "delete", "orders"], ["serve"], ["user", "list"]])
def test_an_empty_data_option_is_a_usage_error_not_the_default_directory(cli, tmp_path, monkeypatch, args):
    """``--data "$DIR"`` with DIR unset must not act on $ARROWLOG_DATA or ./arrowlog-data."""
    ok(cli("topic", "create", "orders"))
    monkeypatch.setenv("ARROWLOG_DATA", cli.data)
    for argv in ([*args, "--data", ""], ["--data", "", *args]):
        runner = CliRunner()
        with runner.isolation() as (_, err, _):
            rc = main(argv)
        assert rc == EXIT_USAGE, argv
        assert err.getvalue().decode().splitlines() == [
            "arrowlog: error: Invalid value for '--data': is empty: give a directory, or leave --data out for "
            f"$ARROWLOG_DATA (else ./arrowlog-data) (see 'arrowlog {' '.join(a for a in args if a != 'orders')} "
            "--help')"]
    assert [t["name"] for t in ok(cli("topic", "list", "--json")).json[0]] == ["orders"]


def test_user_add_without_a_terminal_says_to_use_password_stdin(cli):
    res = cli("user", "add", "alice", input="")
    assert res.rc == EXIT_USAGE, res
    assert res.err.splitlines() == [
        "arrowlog: error: no terminal to ask for the password on: pipe it in with --password-stdin"]
    assert ok(cli("user", "add", "alice", "--password-stdin", input="s3cret\n")).rc == 0


def test_the_demo_suggests_a_command_that_runs_without_an_activated_environment(tmp_path, monkeypatch):
    """After ``make demo`` the venv is not activated: the closing hint names
    .venv/bin/arrowlog, and the bare name once arrowlog is on PATH."""
    import sys

    from arrowlog.demo import cli_command

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "arrowlog"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cli_command() == os.path.join(".venv", "bin", "arrowlog")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli_command() == str(script)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert cli_command() == "arrowlog"


@pytest.mark.parametrize("args", [["consume", "orders", "-e", "-g", "{}"], ["group", "describe", "{}"],
                                  ["group", "reset", "{}", "-t", "orders", "--to-earliest", "--execute"],
                                  ["group", "delete", "{}"]])
@pytest.mark.parametrize("group, says", [("", "a group id must be a non-empty str, not ''"),
                                         ("g" * 201, "group id is 201 characters long; the limit is 200")])
def test_a_group_id_the_store_cannot_take_is_a_usage_error(cli, args, group, says):
    ok(cli("produce", "orders", input="a\n"))
    res = cli(*[group if a == "{}" else a for a in args])
    assert res.rc == EXIT_USAGE, res
    assert len(res.err.splitlines()) == 1 and says in res.err, res
    assert not os.path.exists(os.path.join(cli.data, "groups")) or os.listdir(os.path.join(cli.data, "groups")) == []


def test_a_group_id_with_a_slash_is_a_name_not_a_path(cli):
    """Kafka allows any group id; '../x' stays inside groups/."""
    ok(cli("produce", "orders", input="a\n"))
    ok(cli("consume", "orders", "-e", "-g", "../x"))
    rows = ok(cli("group", "describe", "../x", "--json")).json[0]
    assert [(r["group"], r["lag"]) for r in rows] == [("../x", 0)]
    assert not os.path.exists(os.path.join(os.path.dirname(cli.data), "x"))


@pytest.mark.parametrize("args", [["user", "list"], ["user", "remove", "u"], ["acl", "list"],
                                  ["acl", "remove", "--principal", "User:x", "--topic", "t"],
                                  ["txn", "list"], ["txn", "abort", "x"], ["metrics", "--once"]])
def test_reading_and_removing_commands_never_make_a_data_directory(cli, args):
    res = cli(*args)
    assert res.rc == EXIT_NOT_FOUND, res
    assert res.err.splitlines() == [
        f"arrowlog: error: no data directory at {cli.data} (use --data DIR, or create a topic first)"]
    assert not os.path.exists(cli.data)


def test_user_add_and_acl_add_make_the_directory_a_server_will_serve(cli):
    ok(cli("user", "add", "u", "--password-stdin", input="pw\n"))
    ok(cli("acl", "add", "--principal", "User:u", "-o", "read", "--topic", "t"))
    assert list(ok(cli("user", "list", "--json")).json[0]) == ["u"]
