"""Argument parsing, exit codes and the pure helpers behind the commands."""

import io

import click
import pytest

from arrowlog.cli import main
from arrowlog.cli.common import EXIT_NOT_FOUND, EXIT_USAGE, parse_size
from arrowlog.cli.export import export_spec, format_for
from arrowlog.cli.group import SHIFT_BY, TO_DATETIME, TO_EARLIEST, TO_LATEST, TO_OFFSET, plan_reset
from arrowlog.cli.offsets import END, OFFSET, START, TIME, Bound, OffsetSpec
from arrowlog.cli.ops import parse_listen
from arrowlog.cli.produce import json_blocks, line_blocks, parse_header, read_lines
from arrowlog.cli.store import CliError, parse_partitions


def run(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["consume", "t", "-o", "nope"], "bad offset expression 'nope'"),
        (["consume", "t", "-o", "@12345"], "ambiguous epoch"),
        (["consume", "t", "-f", "-e"], "contradict"),
        (["consume", "t", "--format", "%q"], "unknown token %q"),
        (["consume", "t", "-c", "0"], "-c"),
        (["consume"], "Missing argument 'TOPIC'"),
        (["produce", "t", "-k", "a", "-K", ":"], "cannot be used together"),
        (["produce", "t", "-H", "novalue"], "KEY=VALUE"),
        (["topic", "create", "t", "--segment-size", "lots"], "not a size"),
        (["topic", "create", "t", "--retention", "soon"], "bad duration"),
        (["topic", "alter", "t"], "nothing to change"),
        (["group", "reset", "g", "-t", "t"], "exactly one of"),
        (["group", "reset", "g", "--to-earliest"], "--all-topics"),
        (["group", "reset", "g", "-t", "t", "--to-datetime", "whenever"], "bad time"),
        (["export", "t", "--to", "x.xlsx"], "cannot tell the format"),
        (["export", "t", "--to", "x.parquet", "-o", "start", "--start", "5"], "either -o or --start"),
        (["export", "t", "--to", "-", "--format", "parquet"], "stdout"),
        (["serve", "--listen", "nowhere"], "HOST:PORT"),
        (["demo", "--data", "precious"], "takes no --data"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(capsys, argv, fragment):
    rc, out, err = run(capsys, *argv)
    assert rc == EXIT_USAGE, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("arrowlog: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_missing_data_directory_is_not_found(capsys, tmp_path):
    rc, out, err = run(capsys, "topic", "list", "--data", str(tmp_path / "none"))
    assert rc == EXIT_NOT_FOUND
    assert "no data directory" in err and out == ""


def test_data_directory_from_root_option_and_environment(capsys, tmp_path, monkeypatch):
    missing = str(tmp_path / "from-env")
    monkeypatch.setenv("ARROWLOG_DATA", missing)
    rc, _, err = run(capsys, "topic", "list")
    assert rc == EXIT_NOT_FOUND and missing in err
    other = str(tmp_path / "from-root")
    rc, _, err = run(capsys, "--data", other, "topic", "list")
    assert rc == EXIT_NOT_FOUND and other in err


def test_every_command_has_help_with_an_example(capsys):
    from arrowlog.cli import cli

    def walk(cmd, path):
        yield cmd, path
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])

    seen = 0
    for _, path in walk(cli, []):
        rc, out, _ = run(capsys, *path, "--help")
        assert rc == 0
        assert "Example" in out, f"arrowlog {' '.join(path)} --help has no example"
        assert "arrowlog" in out.split("Example", 1)[1]
        seen += 1
    assert seen >= 18


def test_version(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.startswith("arrowlog")


@pytest.mark.parametrize(
    ("text", "n"),
    [("4096", 4096), ("64MiB", 64 << 20), ("1GB", 10**9), ("1.5KiB", 1536), ("2 kib", 2048), ("10b", 10)],
)
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "MiB", "12xb", "1..2k"])
def test_parse_size_errors(text):
    with pytest.raises(click.BadParameter):
        parse_size(text)


def test_parse_partitions():
    assert parse_partitions(("0", "2,3", "5-7")) == [0, 2, 3, 5, 6, 7]
    assert parse_partitions(()) == []
    with pytest.raises(CliError):
        parse_partitions(("x",))


def test_parse_header():
    assert parse_header("a=b=c") == ("a", b"b=c")
    assert parse_header("a=") == ("a", b"")
    for bad in ("a", "=b"):
        with pytest.raises(click.BadParameter):
            parse_header(bad)


def test_parse_listen():
    assert parse_listen("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:19092") == ("::1", 19092)


def reads(text):
    return list(read_lines(io.BytesIO(text)))


def test_read_lines_keeps_empty_lines_and_a_last_unterminated_one():
    assert reads(b"a\n\nb\r\nc") == [[b"a", b"", b"b\r"], [b"c"]]
    assert reads(b"") == []


def test_read_lines_yields_what_each_read_brought():
    class Trickle(io.BytesIO):
        def read1(self, n=-1):
            return super().read1(4)

    assert list(read_lines(Trickle(b"ab\ncd\nef"))) == [[b"ab"], [b"cd"], [b"ef"]]


def columns(block):
    return block.values, block.keys, block.headers, block.timestamps, block.partition


def test_line_blocks_plain_fixed_key_and_delimiter():
    (b,) = line_blocks([[b"x", b"y"]], key=None, key_delim=None, headers=[], partition=None)
    assert columns(b) == ([b"x", b"y"], None, None, None, None)
    (b,) = line_blocks([[b"x"]], key=b"k", key_delim=None, headers=[("h", b"1")], partition=2)
    assert columns(b) == ([b"x"], [b"k"], [[("h", b"1")]], None, 2)
    blocks = list(line_blocks([[b"u1:a:b"], [b"u2:c"]], key=None, key_delim=b":", headers=[], partition=None))
    assert [(b.keys, b.values) for b in blocks] == [([b"u1"], [b"a:b"]), ([b"u2"], [b"c"])]


def test_line_blocks_missing_delimiter_names_the_line():
    with pytest.raises(CliError) as info:
        list(line_blocks([[b"a:1"], [b"b:2", b"nodelim"]], key=None, key_delim=b":", headers=[], partition=None))
    assert "line 3" in str(info.value)


def test_json_blocks_split_runs_by_partition_and_merge_cli_defaults():
    lines = [b'{"value": "v", "headers": {"x": "y"}}', b"", b'{"value": "w", "key": "k", "partition": 0}',
             b'{"value": "z", "partition": 0, "timestamp": 5}']
    blocks = list(json_blocks([lines], key=b"fixed", headers=[("h", b"1")], partition=2))
    assert [columns(b) for b in blocks] == [
        ([b"v"], [b"fixed"], [[("h", b"1"), ("x", b"y")]], [None], 2),
        ([b"w", b"z"], [b"k", b"fixed"], [[("h", b"1")], [("h", b"1")]], [None, 5], 0),
    ]
    with pytest.raises(CliError) as info:
        list(json_blocks([[b'{"value": 1}'], [b"", b"nope"]], key=None, headers=[], partition=None))
    assert "line 3" in str(info.value)


def test_export_spec_and_format():
    assert export_spec(None, None, None) == OffsetSpec(Bound(START))
    assert export_spec(None, "5", "@1714557600000") == OffsetSpec(Bound(OFFSET, 5), Bound(TIME, 1714557600000))
    assert export_spec(":end", None, None) == OffsetSpec(Bound(START), Bound(END))
    assert format_for("a/b.PARQUET", None) == "parquet"
    assert format_for("x.arrow", None) == "arrow"
    assert format_for("x.ndjson", None) == "jsonl"
    assert format_for("x.bin", "csv") == "csv"


def never(_t):
    raise AssertionError("no time lookup expected")


@pytest.mark.parametrize(
    ("mode", "value", "current", "expected"),
    [
        (TO_EARLIEST, None, 50, 10),
        (TO_LATEST, None, 50, 100),
        (TO_OFFSET, 42, 50, 42),
        (TO_OFFSET, 5, 50, 10),  # clamped to the log start
        (TO_OFFSET, 500, 50, 100),  # clamped to the high watermark
        (SHIFT_BY, -20, 50, 30),
        (SHIFT_BY, 20, 50, 70),
        (SHIFT_BY, -100, 50, 10),
        (SHIFT_BY, 5, None, 15),  # nothing committed: from the log start
    ],
)
def test_plan_reset(mode, value, current, expected):
    assert plan_reset(mode, value, current, 10, 100, never) == expected


def test_plan_reset_to_datetime():
    assert plan_reset(TO_DATETIME, 123, 50, 10, 100, lambda t: 77) == 77
    assert plan_reset(TO_DATETIME, 123, 50, 10, 100, lambda t: None) == 100
