"""``arrowlog`` as real processes: follow mode across processes, pipes, signals, terminals."""

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time

import confluent_kafka
import pytest
from fds import readable

import arrowlog.cli

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(arrowlog.cli.__file__))))
READ_TIMEOUT_S = 30  # a generous bound so a broken follower fails the test instead of hanging it


def env(**extra):
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.pop("NO_COLOR", None)
    e.update(extra)
    return e


def arrowlog_cmd(data, *args):
    return [sys.executable, "-m", "arrowlog", *args, "--data", data]


def run(data, *args, input=None, **kw):
    return subprocess.run(arrowlog_cmd(data, *args), input=input, capture_output=True, env=env(**kw), timeout=120)


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    assert run(d, "topic", "create", "events", "-p", "2").returncode == 0
    return d


def read_line(proc):
    ready = readable(proc.stdout, timeout=READ_TIMEOUT_S)
    assert ready, "no output from the follower"
    line = proc.stdout.readline()
    assert line, f"the follower ended early: {proc.stderr.read()!r}"
    return line.decode().rstrip("\n")


@contextlib.contextmanager
def background(data, *args):
    """A background ``arrowlog`` process, killed if the test leaves it running."""
    proc = subprocess.Popen(arrowlog_cmd(data, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env(), bufsize=0)  # unbuffered: select() sees every line
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_python_m_arrowlog_help():
    res = subprocess.run([sys.executable, "-m", "arrowlog", "--help"], capture_output=True, env=env(), timeout=60)
    assert res.returncode == 0
    assert b"Usage: arrowlog" in res.stdout and res.stderr == b""


def test_bench_runs_the_harness_from_the_source_tree(tmp_path):
    res = run(str(tmp_path), "bench", "--", "--help")
    assert res.returncode == 0 and b"python -m bench" in res.stdout and b"--quick" in res.stdout


def test_follow_picks_up_records_from_another_process(data):
    assert run(data, "produce", "events", "-p", "0", input=b"one\ntwo\n").returncode == 0
    with background(data, "consume", "events", "-f", "-c", "5", "--format", "%p %v\\n") as proc:
        assert [read_line(proc), read_line(proc)] == ["0 one", "0 two"]
        # the follower is now waiting at the end; another process appends
        assert run(data, "produce", "events", "-p", "1", input=b"three\n").returncode == 0
        assert read_line(proc) == "1 three"
        assert run(data, "produce", "events", "-p", "0", input=b"four\nfive\n").returncode == 0
        assert [read_line(proc), read_line(proc)] == ["0 four", "0 five"]
        assert proc.wait(timeout=READ_TIMEOUT_S) == 0  # -c 5 reached


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopped_group_follower_commits_what_it_printed(data, sig, code):
    assert run(data, "produce", "events", "-p", "0", input=b"a\nb\nc\n").returncode == 0
    with background(data, "consume", "events", "-f", "-g", "tail", "--format", "text") as proc:
        assert [read_line(proc) for _ in range(3)] == ["a", "b", "c"]
        proc.send_signal(sig)
        assert proc.wait(timeout=READ_TIMEOUT_S) == code
        err = proc.stderr.read().decode()
        assert "Traceback" not in err
    rows = json.loads(run(data, "group", "describe", "tail", "--json").stdout)
    assert {r["partition"]: r["current_offset"] for r in rows} == {0: 3, 1: 0}


def test_closed_pipe_exits_quietly(data):
    lines = b"".join(b"record %d with some padding to fill the pipe\n" % i for i in range(20000))
    assert run(data, "produce", "events", "-p", "0", input=lines).returncode == 0
    proc = subprocess.Popen(arrowlog_cmd(data, "consume", "events", "--format", "text"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), bufsize=0)
    assert read_line(proc) == "record 0 with some padding to fill the pipe"
    proc.stdout.close()  # like `| head -1`
    assert proc.wait(timeout=READ_TIMEOUT_S) == 0
    err = proc.stderr.read()
    assert b"Traceback" not in err and b"Broken pipe" not in err


def test_exit_codes_of_a_real_process(data, tmp_path):
    assert run(data, "consume", "missing").returncode == 3
    assert run(data, "consume", "events", "-o", "@soon").returncode == 2
    assert run(data, "topic", "create", "events").returncode == 4
    res = run(str(tmp_path / "nowhere"), "topic", "list")
    assert res.returncode == 3 and res.stdout == b""
    assert res.stderr.decode().count("\n") == 1


COLOR_SGR = re.compile(rb"\x1b\[(?:[0-9;]*;)?(?:3[0-7]|9[0-7]|38;[25];[0-9;]+)m")


def export_on_a_terminal(data, dest, **extra):
    """Run export with stderr on a pseudo-terminal; returns what the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(arrowlog_cmd(data, "export", "events", "--to", dest),
                            stdout=subprocess.PIPE, stderr=slave, env=env(TERM="xterm-256color", **extra))
    os.close(slave)
    shown = b""
    while True:
        ready = readable(master, timeout=READ_TIMEOUT_S)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=READ_TIMEOUT_S) == 0
    assert proc.stdout.read() == b""
    return shown


def test_progress_bar_on_a_terminal_respects_no_color(data, tmp_path):
    assert run(data, "produce", "events", "-K", ":", input=b"".join(b"k%d:v\n" % i for i in range(2000))).returncode == 0
    shown = export_on_a_terminal(data, str(tmp_path / "a.parquet"))
    assert b"export" in shown and b"2,000/2,000" in shown and b"records" in shown and b"ETA" in shown
    assert COLOR_SGR.search(shown)
    plain = export_on_a_terminal(data, str(tmp_path / "b.parquet"), NO_COLOR="1")
    assert b"2,000/2,000" in plain
    assert not COLOR_SGR.search(plain)
    # without a terminal: no bar, just the summary line
    res = run(data, "export", "events", "--to", str(tmp_path / "c.parquet"))
    assert res.returncode == 0 and res.stderr.decode().count("\n") == 1
    assert b"\x1b[" not in res.stderr


def test_serve_on_an_ephemeral_port_then_stop(data):
    with background(data, "serve", "--listen", "127.0.0.1:0", "--log-level", "WARNING") as proc:
        address = read_line(proc)  # the bound HOST:PORT is the one line serve prints on stdout
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address) and not address.endswith(":0")
        producer = confluent_kafka.Producer({"bootstrap.servers": address})
        producer.produce("events", b"over the wire", key=b"k", partition=1)
        assert producer.flush(30) == 0
        # the CLI reads what a Kafka client wrote, while the server runs
        res = run(data, "consume", "events", "-p", "1", "--format", "%k=%v\\n")
        assert res.returncode == 0 and res.stdout == b"k=over the wire\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=READ_TIMEOUT_S) in (0, 130)
        assert b"Traceback" not in proc.stderr.read()


def collect(procs, count):
    """Lines printed by these processes until ``count`` in all, per process."""
    out = {p: [] for p in procs}
    bufs = {p.stdout.fileno(): b"" for p in procs}
    by_fd = {p.stdout.fileno(): p for p in procs}
    deadline = time.monotonic() + READ_TIMEOUT_S
    while sum(map(len, out.values())) < count and (left := deadline - time.monotonic()) > 0:
        ready = readable(*by_fd, timeout=left)
        for fd in ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"a member ended early: {by_fd[fd].stderr.read()!r}"
            *done, bufs[fd] = (bufs[fd] + chunk).split(b"\n")
            out[by_fd[fd]].extend(x.decode() for x in done)
    return [out[p] for p in procs]


def owners(data, group):
    res = run(data, "group", "describe", group, "--json")
    return {r["partition"]: r["owner"] for r in json.loads(res.stdout)} if res.returncode == 0 else {}


def test_two_group_members_share_the_partitions(data):
    fmt = ("--format", "%p %v\\n")
    with background(data, "consume", "events", "-f", "-g", "pair", *fmt) as a, \
            background(data, "consume", "events", "-f", "-g", "pair", *fmt) as b:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not ((o := owners(data, "pair")) and o.get(0) and o.get(1) and o[0] != o[1]):
            assert time.monotonic() < deadline, f"the members never split the partitions: {o}"
            time.sleep(0.1)
        lines = "".join(f"r{i}\n" for i in range(10)).encode()
        for p in (0, 1):
            assert run(data, "produce", "events", "-p", str(p), input=lines).returncode == 0
        got_a, got_b = collect([a, b], 20)
    assert sorted(got_a + got_b) == sorted(f"{p} r{i}" for i in range(10) for p in (0, 1))
    parts_a, parts_b = {line[0] for line in got_a}, {line[0] for line in got_b}
    assert len(parts_a) == len(parts_b) == 1 and parts_a != parts_b  # one partition each
