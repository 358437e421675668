"""A topic's value schema from its JSON form: a bad field type is a ConfigError naming the field
and the type, from the library and from the CLI (exit 2), and nothing is created."""

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from arrowlog.errors import ConfigError
from arrowlog.storage import LogDir
from arrowlog.storage.topicschema import value_schema_from_config


def test_known_types_make_the_schema():
    spec = {"fields": [{"name": "id", "type": "int64"}, {"name": "name", "type": "string", "nullable": False},
                       {"name": "at", "type": "timestamp[ms]"}]}
    assert value_schema_from_config(spec) == pa.schema([("id", pa.int64()), pa.field("name", pa.string(), False),
                                                       ("at", pa.timestamp("ms"))])


def test_an_unknown_type_names_the_field_and_the_type(tmp_path):
    spec = {"fields": [{"name": "id", "type": "int64"}, {"name": "name", "type": "strng"}]}
    with pytest.raises(ConfigError, match=r"field 'name' has the unknown type 'strng' \(types are pyarrow's names"):
        value_schema_from_config(spec)
    with LogDir(str(tmp_path)) as ld, pytest.raises(ConfigError, match="'strng'"):
        ld.create_topic("t", config={"value.schema": spec})
    with LogDir(str(tmp_path)) as ld:
        assert not ld.has_topic("t") and ld.list_topics() == []


def test_the_cli_says_which_field_and_exits_2(tmp_path):
    data = str(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "arrowlog", "--data", data, "topic", "create", "t",
                           "--value-schema", "id:int64,name:strng"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "field 'name' has the unknown type 'strng'" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.isdir(os.path.join(data, "topics", "t"))
