"""Many partitions under a small open-files limit: the descriptor budget
(storage/handles.py) keeps a process that writes and reads 10,000
partitions inside RLIMIT_NOFILE=1024, and a limit that is truly reached is a
StorageError from the call that hit it, never a traceback from a thread."""

import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, os, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    import arrowlog
    from arrowlog import Producer
    from arrowlog.storage import LogDir, handles
    data, n = sys.argv[1], int(sys.argv[2])
    handles.set_budget(None)  # from the limit just set
    errors = []
    with LogDir(data) as d:
        d.create_topic("t", n)
    with Producer({"log.dir": data, "error_cb": errors.append}) as p:
        for i in range(n):
            p.produce("t", key=b"k%d" % i, value=b"v%d" % i, partition=i)
            if i % 997 == 0:
                p.flush()
        p.flush()
    with LogDir(data) as d:
        t = d.topic("t")
        got = {}
        for i in range(n):
            log = t.partition(i)
            frames = log.read(0)
            got[i] = [v for f in frames for v in f.batch.column("value").to_pylist()]
        rows = arrowlog.replay(d, "t").to_arrow().num_rows
        fds = len(os.listdir("/proc/self/fd"))
    bad = [i for i in range(n) if got[i] != [b"v%d" % i]]
    print(json.dumps({"bad": bad[:5], "rows": rows, "fds": fds, "errors": [str(e) for e in errors],
                      "budget": handles.BUDGET.limit}))
""")


def test_ten_thousand_partitions_under_a_1024_open_files_limit(tmp_path):
    n = 10_000
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "data"), str(n)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bad"] == [] and out["errors"] == []
    assert out["rows"] == n
    assert out["budget"] == 1024 // 2 // 8
    assert out["fds"] < 1024


LIMITED = textwrap.dedent("""
    import resource, sys
    from arrowlog import errors
    from arrowlog.storage import LogDir
    data = sys.argv[1]
    held = []

    def fill():  # descriptors the budget does not know of, up to the limit, less one
        try:
            while True:
                held.append(open("/dev/null"))
        except OSError:
            held.pop().close()

    with LogDir(data) as d:
        t = d.create_topic("t", 4)
        first = t.partition(0)
        first.high_watermark  # open, and parkable
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        fill()
        # EMFILE: the open partition is parked and the open retried
        second = t.partition(1)
        print("PARKED", first._parked, second.high_watermark)
        second.close()
        fill()
        try:  # nothing left to park
            t.partition(2)
            print("OPENED")
        except errors.StorageError as exc:
            print("STORAGE", exc)
        for f in held:
            f.close()
""")


def test_a_limit_truly_reached_is_a_storage_error_naming_it(tmp_path):
    proc = subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "PARKED True 0" in proc.stdout, proc.stdout
    assert "STORAGE" in proc.stdout and "too many open files" in proc.stdout and "ulimit -n" in proc.stdout, \
        proc.stdout
    assert os.path.isdir(tmp_path / "data" / "topics" / "t")
