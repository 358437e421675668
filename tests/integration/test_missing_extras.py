"""A missing optional package names the extra that installs it, in the library and in the CLI."""

import sys

import pytest
from click.testing import CliRunner

import arrowlog
from arrowlog._optional import MissingDependencyError
from arrowlog.cli import main
from arrowlog.cli.common import EXIT_UNAVAILABLE


def block(monkeypatch, *modules):
    """Make ``import module`` fail as it does when the package is not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)
    for name in ("arrowlog.backends.kafka.client", "arrowlog.backends.kafka.producer", "arrowlog.backends.kafka.consumer",
                 "arrowlog.backends.kafka.replay"):  # re-imported, so they meet the block
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "d")
    with arrowlog.Producer({"log.dir": d}) as p:
        p.produce("t", b'{"a": 1}')
    return d


@pytest.mark.parametrize("module,call,extra", [
    ("pandas", lambda r: r.to_pandas(), "pandas"),
    ("polars", lambda r: r.to_polars(), "polars"),
])
def test_replay_conversions_name_their_extra(monkeypatch, data, module, call, extra):
    block(monkeypatch, module)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'arrowlog\[{extra}\]'") as info:
        call(arrowlog.replay(data, "t"))
    assert isinstance(info.value, arrowlog.ArrowlogError) and isinstance(info.value, ImportError)


@pytest.mark.parametrize("make", [
    lambda: arrowlog.Producer({"log.dir": "kafka://127.0.0.1:9"}),
    lambda: arrowlog.Consumer({"log.dir": "kafka://127.0.0.1:9", "group.id": "g"}),
    lambda: arrowlog.replay("kafka://127.0.0.1:9", "t"),
])
def test_kafka_locations_name_the_kafka_extra(monkeypatch, make):
    block(monkeypatch, "confluent_kafka")
    with pytest.raises(MissingDependencyError, match=r"pip install 'arrowlog\[kafka\]'"):
        make()


def test_the_cli_says_which_extra_with_exit_6(monkeypatch, data, tmp_path):
    block(monkeypatch, "confluent_kafka")
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        rc = main(["mirror", data, "kafka://127.0.0.1:9", "--topics", ".*"])
    text = err.getvalue().decode()
    assert rc == EXIT_UNAVAILABLE, text
    assert text.count("\n") == 1 and "pip install 'arrowlog[kafka]'" in text and "internal error" not in text
