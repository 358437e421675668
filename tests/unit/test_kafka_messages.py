"""The server's schema tables agree with Kafka's own message definitions.

kafka-python 3 bundles Apache Kafka's JSON message definitions; they are the
test-only oracle here. For every API and every version arrowlog advertises,
the non-tagged fields it reads and writes must be the same fields, in the
same order, with the same types and nullability.
"""

import json
import re
from pathlib import Path

import pytest

kafka = pytest.importorskip("kafka")

from arrowlog.server.messages import APIS  # noqa: E402
from arrowlog.server.schema import parse_versions  # noqa: E402
from arrowlog.server.wire import Reader, Writer  # noqa: E402

RESOURCES = Path(kafka.__file__).parent / "protocol" / "schemas" / "resources"
ALIASES = {"generation_id_or_member_epoch": "generation_id", "timeout_ms": "timeout_ms"}


def snake(name):
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    return ALIASES.get(s, s)


def load(name):
    text = re.sub(r"//.*", "", (RESOURCES / f"{name}.json").read_text())
    return json.loads(text)


def in_range(spec, v):
    rng = parse_versions(spec) if spec and spec != "none" else None
    return rng is not None and rng[0] <= v <= rng[1]


def kafka_layout(fields, v, structs):
    out = []
    for fd in fields:
        if not in_range(fd["versions"], v) or "taggedVersions" in fd:
            continue
        t = fd["type"]
        nullable = in_range(fd.get("nullableVersions"), v)
        if t.startswith("[]"):
            inner = t[2:]
            sub = fd.get("fields") or structs.get(inner)
            kind = ("array", kafka_layout(sub, v, structs)) if sub else ("array", inner)
        elif "fields" in fd:
            kind = ("struct", kafka_layout(fd["fields"], v, structs))
        else:
            kind = t
        out.append((snake(fd["name"]), kind, nullable))
    return out


def our_layout(fields, v):
    out = []
    for fd in fields:
        if not fd.present(v):
            continue
        t = fd.type
        if isinstance(t, tuple):
            kind = ("array", our_layout(t, v))
        elif isinstance(t, list):
            kind = ("array", t[0])
        else:
            kind = t
        out.append((fd.name, kind, fd.is_nullable(v)))
    return out


CASES = [(api, v, side) for api in APIS.values()
         for v in range(api.min_version, api.max_version + 1) for side in ("Request", "Response")]


@pytest.mark.parametrize("api,version,side", CASES,
                         ids=[f"{a.name}{s}-v{v}" for a, v, s in CASES])
def test_schema_matches_kafka_definition(api, version, side):
    spec = load(api.name + side)
    assert spec["apiKey"] == api.key
    flex = parse_versions(spec["flexibleVersions"]) if spec["flexibleVersions"] != "none" else None
    assert api.is_flexible(version) == (flex is not None and flex[0] <= version)
    structs = {s["name"]: s["fields"] for s in spec.get("commonStructs", [])}
    ours = our_layout(api.request if side == "Request" else api.response, version)
    assert ours == kafka_layout(spec["fields"], version, structs)


def test_flexible_round_trip_with_unknown_tags_skipped():
    api = APIS[3]
    w = Writer()
    api.encode_request({"topics": [{"name": "a"}, {"name": "b"}], "allow_auto_topic_creation": False},
                       w, 12)
    # Append an unknown tagged field to the top-level tag buffer: count 1, tag 7, 2 bytes.
    body = bytes(w.buf[:-1]) + b"\x01\x07\x02xy"
    req = api.decode_request(Reader(body), 12)
    assert [t["name"] for t in req["topics"]] == ["a", "b"]
    assert req["allow_auto_topic_creation"] is False


def test_generated_tables_are_what_the_generator_prints():
    # generated_messages.py must be regenerated, not edited by hand: the command it
    # names, run on these definitions, prints exactly the tables it holds.
    import subprocess
    import sys

    import arrowlog.server.generated_messages as generated

    root = Path(__file__).resolve().parents[2]
    source = Path(generated.__file__).read_text()
    section = source[source.index("# ================================================================ generated tables"):]
    command = re.search(r"scripts/gen-kafka-messages RESOURCES (.*?)\n# \(RESOURCES", section, re.S).group(1)
    names = command.replace("\\", " ").replace("#", " ").split()
    printed = subprocess.run([sys.executable, str(root / "scripts" / "gen-kafka-messages"), str(RESOURCES),
                              *names], capture_output=True, text=True, check=True).stdout
    tables = section[section.index("# ----"):]
    assert tables.strip() == printed.strip()
