"""The CLI's offset grammar (rpk's ``-o``) and its resolution against a partition."""

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arrowlog.cli.offsets import (
    AFTER_START,
    BEFORE_END,
    END,
    OFFSET,
    START,
    TIME,
    Bound,
    OffsetRange,
    OffsetSpec,
    OffsetSyntaxError,
    format_ms,
    parse_duration_ms,
    parse_offset_spec,
    parse_time_ms,
    resolve_range,
)

NOW = 1_714_557_600_000  # 2024-05-01T10:00:00Z
MAY_1 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def ms(y, mo, d, h=0, mi=0, s=0):
    return int(dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc).timestamp()) * 1000


@pytest.mark.parametrize(
    ("expr", "spec"),
    [
        ("start", OffsetSpec(Bound(START))),
        ("beginning", OffsetSpec(Bound(START))),
        ("oldest", OffsetSpec(Bound(START))),
        ("end", OffsetSpec(Bound(END))),
        ("latest", OffsetSpec(Bound(END))),
        (":end", OffsetSpec(Bound(START), Bound(END))),
        ("42", OffsetSpec(Bound(OFFSET, 42))),
        ("42:", OffsetSpec(Bound(OFFSET, 42))),
        (":42", OffsetSpec(Bound(START), Bound(OFFSET, 42))),
        ("10:20", OffsetSpec(Bound(OFFSET, 10), Bound(OFFSET, 20))),
        ("10:end", OffsetSpec(Bound(OFFSET, 10), Bound(END))),
        ("+5", OffsetSpec(Bound(AFTER_START, 5))),
        ("-5", OffsetSpec(Bound(BEFORE_END, 5))),
        ("@1714557600000", OffsetSpec(Bound(TIME, NOW))),
        ("@1714557600", OffsetSpec(Bound(TIME, NOW))),
        ("@2024-05-01", OffsetSpec(Bound(TIME, MAY_1))),
        ("@2024-05-01T10:00:00Z", OffsetSpec(Bound(TIME, NOW))),
        ("@2024-05-01T12:00:00+02:00", OffsetSpec(Bound(TIME, NOW))),
        ("@2024-05-01T10:00:00.250Z", OffsetSpec(Bound(TIME, NOW + 250))),
        ("@2024-05-01T10:00:00", OffsetSpec(Bound(TIME, NOW))),  # no zone: UTC
        ("@-1h", OffsetSpec(Bound(TIME, NOW - 3_600_000))),
        ("@-1h30m", OffsetSpec(Bound(TIME, NOW - 5_400_000))),
        ("@1714557600000:", OffsetSpec(Bound(TIME, NOW))),
        ("@:2024-05-01", OffsetSpec(Bound(START), Bound(TIME, MAY_1))),
        ("@:-1h", OffsetSpec(Bound(START), Bound(TIME, NOW - 3_600_000))),
        ("@-48h:-24h", OffsetSpec(Bound(TIME, NOW - 48 * 3_600_000), Bound(TIME, NOW - 24 * 3_600_000))),
        ("@-1m:end", OffsetSpec(Bound(TIME, NOW - 60_000), Bound(END))),
        ("@2024-05-01:2024-05-02", OffsetSpec(Bound(TIME, MAY_1), Bound(TIME, MAY_1 + 86_400_000))),
        (
            "@2024-05-01T10:00:00Z:2024-05-01T11:30:00Z",
            OffsetSpec(Bound(TIME, NOW), Bound(TIME, NOW + 5_400_000)),
        ),
        ("@2024-05-01:+2h", OffsetSpec(Bound(TIME, MAY_1), Bound(TIME, MAY_1 + 7_200_000))),
        ("@1714557600000:1714557660000", OffsetSpec(Bound(TIME, NOW), Bound(TIME, NOW + 60_000))),
        ("  start  ", OffsetSpec(Bound(START))),
    ],
)
def test_parse(expr, spec):
    assert parse_offset_spec(expr, now=NOW) == spec


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("", "empty"),
        ("bogus", "expected start, end"),
        ("1x", "expected start"),
        ("+", "not an offset"),
        ("-x", "not an offset"),
        ("20:10", "before start"),
        ("a:b", "not an offset"),
        ("@", "bad offset expression"),
        ("@yesterday", "bad time"),
        ("@12345", "ambiguous epoch"),
        ("@-1y", "bad"),
        ("@2024-13-01", "bad date"),
        ("@:", "bad offset expression"),
    ],
)
def test_parse_errors_name_the_problem(expr, fragment):
    with pytest.raises(OffsetSyntaxError) as info:
        parse_offset_spec(expr, now=NOW)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90_000), ("15m", 900_000), ("1h30m", 5_400_000), ("2d", 172_800_000), ("1w", 604_800_000),
     ("250ms", 250), ("1.5h", 5_400_000)],
)
def test_durations(text, expected):
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1", "1hh", "1h 30m", "-1h"])
def test_bad_durations(text):
    with pytest.raises(OffsetSyntaxError):
        parse_duration_ms(text)


def test_time_words_and_end_only_for_t2():
    assert parse_time_ms("now", now=NOW) == NOW
    assert parse_time_ms("end", now=NOW, end=True) == NOW
    with pytest.raises(OffsetSyntaxError):
        parse_time_ms("end", now=NOW)


def test_times_are_kept_within_1970_and_9999():
    assert parse_time_ms("0001-01-01") == 0
    assert parse_time_ms("-999999999999w", now=NOW) == 0
    assert parse_time_ms("+999999999999w", now=NOW) == 253_402_300_799_999


def test_plus_duration_is_relative_to_t1():
    assert parse_time_ms("+10m", now=NOW, base=MAY_1) == MAY_1 + 600_000
    assert parse_time_ms("+10m", now=NOW) == NOW + 600_000


def test_format_ms_round_trips_through_parse():
    for t in (0, MAY_1, NOW + 123, ms(2031, 12, 31, 23, 59, 59) + 999):
        assert parse_time_ms(format_ms(t)) == t
    assert format_ms(NOW + 5) == "2024-05-01T10:00:00.005Z"


# --------------------------------------------------------------- resolution


class FakePartition:
    """Offsets 100..199 with timestamps NOW + 1000 * (offset - 100)."""

    log_start = 100
    hwm = 200

    @staticmethod
    def offset_for_time(t):
        for off in range(100, 200):
            if NOW + 1000 * (off - 100) >= t:
                return off
        return None


def resolve(expr, stop_at_end=False):
    p = FakePartition
    return resolve_range(parse_offset_spec(expr, now=NOW), p.log_start, p.hwm, p.offset_for_time,
                         stop_at_end=stop_at_end)


@pytest.mark.parametrize(
    ("expr", "stop", "expected"),
    [
        ("start", False, OffsetRange(100, None)),
        ("start", True, OffsetRange(100, 200)),
        ("end", False, OffsetRange(200, None)),
        ("end", True, OffsetRange(200, 200)),
        (":end", False, OffsetRange(100, 200)),
        ("150", True, OffsetRange(150, 200)),
        ("50", True, OffsetRange(100, 200, clamped=True)),
        ("250", True, OffsetRange(250, 250)),
        ("250", False, OffsetRange(250, None)),
        (":120", False, OffsetRange(100, 120)),
        ("110:130", False, OffsetRange(110, 130)),
        ("110:130", True, OffsetRange(110, 130)),
        ("+5", True, OffsetRange(105, 200)),
        ("-5", True, OffsetRange(195, 200)),
        ("-500", True, OffsetRange(100, 200)),
        ("@1714557610000", True, OffsetRange(110, 200)),
        ("@1714557610000:1714557620000", False, OffsetRange(110, 120)),
        ("@:1714557620000", False, OffsetRange(100, 120)),
        ("@2030-01-01", True, OffsetRange(200, 200)),  # after every record: the end
        ("@2020-01-01", True, OffsetRange(100, 200)),  # before every record: the start
        ("@1714557610000:2030-01-01", False, OffsetRange(110, 200)),
    ],
)
def test_resolve(expr, stop, expected):
    assert resolve(expr, stop) == expected


def test_resolve_empty_partition():
    r = resolve_range(parse_offset_spec("-10"), 0, 0, lambda t: None, stop_at_end=True)
    assert r == OffsetRange(0, 0)


# --------------------------------------------------------------- any text



GRAMMAR_ALPHABET = st.sampled_from(list("0123456789@:+-.TZtzsmhdw ") + ["start", "end", "now", "2024-05-01"])


@given(st.one_of(st.text(max_size=40), st.lists(GRAMMAR_ALPHABET, max_size=12).map("".join)))
def test_any_text_parses_or_raises_offset_syntax_error(text):
    try:
        spec = parse_offset_spec(text, now=NOW)
    except OffsetSyntaxError as e:
        assert str(e) and "\n" not in str(e)
        return
    r = resolve_range(spec, 100, 200, FakePartition.offset_for_time, stop_at_end=True)
    assert 100 <= r.start and r.end is not None and r.start <= r.end
    for bound in (spec.start, spec.end):
        if bound is not None:
            assert bound.describe()


@given(st.integers(min_value=0, max_value=253_402_300_799_999))  # up to 9999-12-31
def test_every_epoch_ms_round_trips_as_rfc3339(t):
    assert parse_time_ms(format_ms(t)) == t
