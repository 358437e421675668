"""The console's answers to hostile query strings and forms: a clear 400 or
403 page, never a 500 from an exception deep inside (Flask's test client)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("flask")
pytest.importorskip("duckdb")

from arrowlog import Producer  # noqa: E402
from arrowlog.console import create_app  # noqa: E402
from arrowlog.console.browse import MAX_TIME_MS, iso_ms, parse_time  # noqa: E402
from arrowlog.errors import ConfigError  # noqa: E402

HOST = {"Host": "127.0.0.1"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("console") / "d")
    with Producer({"log.dir": d}) as p:
        for i in range(3):
            p.produce("t", value=b"v%d" % i)
    return create_app(d).test_client()


@pytest.mark.parametrize("text", ["99999999999999999999999", "9999999999999999", "9" * 5000,
                                  "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "²", "-5"])
def test_a_time_outside_1970_to_9999_or_not_a_time_is_a_config_error(text):
    with pytest.raises(ConfigError, match="want ISO 8601"):
        parse_time(text)


def test_the_times_at_both_ends_are_accepted_and_shown():
    assert parse_time("0") == 0
    assert parse_time(str(MAX_TIME_MS)) == MAX_TIME_MS
    assert iso_ms(parse_time("9999-12-31T23:59:59.999Z")) == "9999-12-31T23:59:59.999+00:00"


@pytest.mark.parametrize("time", ["99999999999999999999999", "9999999999999999", "0001-01-01T00:00:00%2B14:00"])
def test_seeking_to_an_impossible_time_is_a_400_page(client, time):
    r = client.get(f"/topics/t?mode=time&time={time}", headers=HOST)
    assert r.status_code == 400, r.data[:300]
    assert b"want ISO 8601" in r.data


def test_a_csrf_token_with_non_ascii_characters_is_a_403(client):
    page = client.get("/sql", headers=HOST)
    assert re.search(rb'name="csrf_token" value="[^"]+"', page.data)   # the session has its token
    r = client.post("/sql", data={"query": "select 1", "csrf_token": "\xff"}, headers=HOST)
    assert r.status_code == 403, r.data[:300]
    assert b"CSRF token" in r.data


def test_records_stamped_outside_years_1_to_9999_are_shown(tmp_path):
    d = str(tmp_path / "d")
    with Producer({"log.dir": d}) as p:
        p.produce("t", value=b"late", timestamp=2**63 - 1)   # any int64 is a valid Kafka timestamp
        p.produce("t", value=b"early", timestamp=-(2**63) + 1)
        p.produce("t", value=b"now")
    r = create_app(d).test_client().get("/topics/t?offset=0", headers=HOST)
    assert r.status_code == 200, r.data[:300]
    assert b"9223372036854775807 ms (outside years 1..9999)" in r.data
    assert b"-9223372036854775807 ms (outside years 1..9999)" in r.data
