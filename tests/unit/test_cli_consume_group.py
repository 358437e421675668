"""``arrowlog consume -g`` stopped by a signal: the read ends between batches, so the
signal never lands inside the group's commit machinery."""

import json
import signal
import threading

import pytest

import arrowlog
from arrowlog.cli import main


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    with arrowlog.LogDir(d) as log:
        log.create_topic("events", partitions=2)
    with arrowlog.Producer({"log.dir": d}) as p:
        for v in (b"a", b"b", b"c"):
            p.produce("events", v, partition=0)
    return d


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGTERM, SystemExit), (signal.SIGINT, None)])
def test_a_signal_inside_the_first_async_commit_stops_and_commits(data, monkeypatch, capsys, sig, expected):
    """The signal arrives while the committer thread starts (where SIGTERM used to raise
    SystemExit, leaving close() an unstarted thread to join: exit 1, nothing committed)."""
    start = threading.Thread.start

    def start_under_a_signal(thread):
        if thread.name == "arrowlog-committer":
            signal.raise_signal(sig)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_under_a_signal)
    args = ["consume", "events", "-f", "-g", "tail", "--format", "text", "--data", data]
    if expected is SystemExit:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 143
    else:
        assert main(args) == 130
    monkeypatch.undo()
    out = capsys.readouterr()
    assert out.out.splitlines() == ["a", "b", "c"] and "Traceback" not in out.err
    assert main(["group", "describe", "tail", "--json", "--data", data]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["partition"]: r["current_offset"] for r in rows} == {0: 3, 1: 0}
