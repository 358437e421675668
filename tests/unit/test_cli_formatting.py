"""How ``consume`` prints records and how ``produce --json`` reads them back."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arrowlog.cli.formatting import (
    FormatError,
    Record,
    compile_template,
    make_formatter,
    parse_json_record,
    record_to_json,
    unescape,
)


def rec(**kw):
    base = dict(topic="orders", partition=2, offset=41, timestamp=1_714_557_600_005, key=b"k1",
                value=b"hello", headers=[("src", b"cli"), ("n", None)], log_start=3, high_watermark=99)
    base.update(kw)
    return Record(**base)


def test_json_line():
    line = make_formatter("json")(rec(), 1)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "topic": "orders", "partition": 2, "offset": 41, "timestamp": 1_714_557_600_005,
        "key": "k1", "value": "hello",
        "headers": [{"key": "src", "value": "cli"}, {"key": "n", "value": None}],
    }


@pytest.mark.parametrize(
    "r",
    [
        rec(),
        rec(key=None, value=None, headers=[]),
        rec(key=b"\xff", value="quote \" backslash \\ newline \n tab \t ünï ✓ \x00".encode(),
            headers=[("h\"x", b"\x80"), ("ok", "\u2028".encode())]),
        rec(topic="t.with-dots_1", partition=0, offset=0, timestamp=-5),
    ],
)
def test_json_formatter_matches_json_dumps(r):
    line = make_formatter("json")(r, 1)
    assert line == json.dumps(record_to_json(r), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def test_json_binary_and_null_fields():
    obj = record_to_json(rec(key=None, value=b"\xff\x00\xfe", headers=[("b", b"\x80")]))
    assert obj["key"] is None
    assert "value" not in obj and obj["value_base64"] == "/wD+"
    assert obj["headers"] == [{"key": "b", "value_base64": "gA=="}]


def test_json_round_trips_through_produce_parser():
    for r in (rec(), rec(key=None, value=b"\xff\x00"), rec(value=None, headers=[])):
        line = make_formatter("json")(r, 1)
        back = parse_json_record(line)
        assert (back.key, back.value, back.headers) == (r.key, r.value, r.headers)
        assert back.partition == r.partition and back.timestamp == r.timestamp


def test_text_is_the_value_per_line():
    assert make_formatter("text")(rec(), 1) == b"hello\n"
    assert make_formatter("TEXT")(rec(value=None), 1) == b"\n"


def test_template_tokens():
    f = compile_template(r"%t/%p@%o %k=%v (%K,%V) %T %d [%[,%]] #%i %h %H 100%%\n")
    assert f(rec(), 7) == (
        b"orders/2@41 k1=hello (2,5) 1714557600005 2024-05-01T10:00:00.005Z [3,99] #7 src=cli,n= 2 100%\n"
    )


def test_template_null_lengths_and_kcat_aliases():
    f = compile_template("%K %S %s")
    assert f(rec(key=None, value=b"ab"), 1) == b"-1 2 ab"


def test_template_escapes():
    assert unescape(r"a\tb\nc\\d\x41") == "a\tb\nc\\dA"
    assert unescape("trailing\\") == "trailing\\"
    with pytest.raises(FormatError):
        unescape(r"\xZZ")


@pytest.mark.parametrize("fmt", ["%q", "%", "value", "csv"])
def test_bad_formats(fmt):
    with pytest.raises(FormatError):
        make_formatter(fmt)


@pytest.mark.parametrize(
    ("line", "key", "value", "headers"),
    [
        ('{"value": "v"}', None, b"v", []),
        ('{"key": "k", "value": {"a": 1}}', b"k", b'{"a":1}', []),
        ('{"value": 5}', None, b"5", []),
        ('{"value_base64": "/wA="}', None, b"\xff\x00", []),
        ('{"value": "v", "headers": {"a": "1", "b": null}}', None, b"v", [("a", b"1"), ("b", None)]),
        ('{"value": "v", "headers": [{"key": "a", "value": "1"}]}', None, b"v", [("a", b"1")]),
    ],
)
def test_parse_json_record(line, key, value, headers):
    r = parse_json_record(line)
    assert (r.key, r.value, r.headers) == (key, value, headers)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("not json", "not JSON"),
        (b"\x80 not UTF-8", "not UTF-8"),
        ("[1, 2]", "expected a JSON object"),
        ('{"value": "v", "partition": -1}', "partition"),
        ('{"value": "v", "timestamp": "x"}', "timestamp"),
        ('{"value_base64": "!!"}', "base64"),
        ('{"value": "v", "headers": 3}', "headers"),
        ('{"value": "v", "headers": [{"value": "x"}]}', "key"),
    ],
)
def test_parse_json_record_errors(line, fragment):
    with pytest.raises(FormatError) as info:
        parse_json_record(line, 7)
    assert "line 7" in str(info.value) and fragment in str(info.value)


@given(st.lists(st.sampled_from(list("%\\xnt0aZkvoTph[]{}") + ["%%", "\\x4"]), max_size=30).map("".join))
def test_any_format_compiles_or_raises_format_error(fmt):
    try:
        f = make_formatter(fmt)
    except FormatError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert isinstance(f(rec(), 1), bytes)
