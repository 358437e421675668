"""The schema registry's Avro compatibility check costs in proportion to the
schemas, not their square.

A schema may be a union of named records (each referring to the one before by
name). Checking a union against a union tried every reader branch against every
writer branch: 2,000 records (160 KB, well under the 1 MiB schema limit) took
10 s of CPU, 5,000 over a minute, and the check runs on the event loop that
also serves the Kafka port under ``arrowlog serve --registry-listen``, so two
such registrations stalled every Kafka client for minutes. A writer branch of a
named type is now checked only against the reader branches of its kind and
name (the others could never match), so the work counted here (``resolve``
calls) grows linearly."""

from __future__ import annotations

import json

import pytest

from arrowlog.registry import compat
from arrowlog.registry.schemas import parse


def chain(n: int, extra: bool = False) -> list:
    """A union of ``n`` records, each with a field of the one before (by name);
    ``extra``: the last has an optional field more (BACKWARD compatible)."""
    union = [{"type": "record", "name": "R0", "fields": [{"name": "a", "type": "int"}]}]
    for i in range(1, n):
        union.append({"type": "record", "name": f"R{i}", "fields": [{"name": "x", "type": f"R{i - 1}"}]})
    if extra:
        union[-1]["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    parse(json.dumps(union), "AVRO")   # a valid schema, as the registry would take it
    return union


@pytest.fixture
def resolves(monkeypatch):
    count = [0]
    real = compat._Names.resolve

    def counting(self, s):
        count[0] += 1
        return real(self, s)

    monkeypatch.setattr(compat._Names, "resolve", counting)
    return count


@pytest.mark.parametrize("mode", ["BACKWARD", "FORWARD", "FULL"])
def test_a_union_of_many_named_records_is_checked_in_linear_work(resolves, mode):
    n = 1_000
    old, new = chain(n), chain(n, extra=True)
    assert compat.compatible(mode, "AVRO", new, [old]) == []
    assert resolves[0] < 40 * n, resolves[0]   # was about n * n


def test_the_fast_path_keeps_the_answers():
    old = chain(3)
    renamed = json.loads(json.dumps(old))
    renamed[2]["name"] = "S2"                          # a writer branch no reader branch names
    assert compat.can_read("AVRO", renamed, old) is False
    renamed[2]["aliases"] = ["R2"]                     # a reader branch that knows it by an alias
    assert compat.can_read("AVRO", renamed, old) is True
    missing = json.loads(json.dumps(old))
    missing[2]["fields"].append({"name": "new", "type": "int"})   # no default: cannot read old data
    assert compat.can_read("AVRO", missing, old) is False
    assert compat.can_read("AVRO", ["null", "long", "string"], "int") is True     # promotion into a union
    assert compat.can_read("AVRO", ["null", "string"], ["int", "null"]) is False
