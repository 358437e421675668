"""How much of the server's CPU does scraping /metrics once a second cost, at 100 partitions?

``arrowlog serve --metrics-listen`` runs as its own process on a data
directory of 10 topics x 10 partitions (records in each) and consumer
groups reading all of them with committed offsets behind the high
watermark: 2 groups for the target row (two services consuming), 10 for a
second row that shows how the cost grows (each group adds 3 samples per
partition). Scrapes ask for gzip, as Prometheus does. The server's CPU
time (utime + stime from /proc/<pid>/stat) is read around a burst of
scrapes; its idle CPU rate over the same length of time, measured first, is
subtracted. One scrape's CPU seconds x 1 scrape/s x 100 is the percentage of
one core that a Prometheus scraping every second costs. Target (issue 18):
under 1 %.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from .harness import Row

TOPICS = 10
PARTITIONS = 10
GROUPS = 2          # the target row
MANY_GROUPS = 10    # the row that shows the growth
RECORDS_PER_PARTITION = 200


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_data(path: str, groups: int) -> None:
    import arrowlog
    from arrowlog.groups.admin import GroupAdmin

    with arrowlog.Producer({"log.dir": path, "num.partitions": PARTITIONS, "linger.ms": 0}) as p:
        for t in range(TOPICS):
            for part in range(PARTITIONS):
                for i in range(RECORDS_PER_PARTITION):
                    p.produce(f"topic-{t}", value=b"x" * 100, partition=part)
        p.flush()
    with GroupAdmin(path) as admin:
        for g in range(groups):
            admin.commit(f"group-{g}", {(f"topic-{t}", part): RECORDS_PER_PARTITION // 2
                                        for t in range(TOPICS) for part in range(PARTITIONS)})


class Server:
    def __init__(self, data: str):
        self.metrics_port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arrowlog.server", "--data", data, "--listen", "127.0.0.1:0",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if not self.proc.stdout.readline().strip():
            raise RuntimeError("arrowlog serve did not start")
        self.url = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def scrape(self) -> bytes:
        req = urllib.request.Request(self.url, headers={
            "Accept": "text/plain;version=0.0.4;q=0.9,*/*;q=0.1", "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            return gzip.decompress(body) if r.headers.get("Content-Encoding") == "gzip" else body

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def scrape_cost_pct(server: Server, scrapes: int) -> float:
    """Percent of one core that one scrape per second costs the server."""
    pid = server.proc.pid
    body = server.scrape()  # warm: partitions opened, groups read once
    if b"kafka_consumergroup_lag{" not in body:
        raise AssertionError("the scrape has no consumer group lag")
    idle_s = 1.0
    c0, t0 = _cpu_seconds(pid), time.perf_counter()
    time.sleep(idle_s)   # the idle rate is measured over wall time: nothing else to wait for
    idle_rate = (_cpu_seconds(pid) - c0) / (time.perf_counter() - t0)
    c0, t0 = _cpu_seconds(pid), time.perf_counter()
    for _ in range(scrapes):
        server.scrape()
    elapsed = time.perf_counter() - t0
    per_scrape = max(0.0, _cpu_seconds(pid) - c0 - idle_rate * elapsed) / scrapes
    return per_scrape * 100.0


def measure(runs: int, scrapes: int, groups: int) -> list[float]:
    root = tempfile.mkdtemp(prefix="arrowlog-bench-metrics-")
    try:
        data = os.path.join(root, "data")
        make_data(data, groups)
        server = Server(data)
        try:
            return [scrape_cost_pct(server, scrapes) for _ in range(runs)]
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(ctx) -> list[Row]:
    scrapes = 20 if ctx.quick else 60
    parts = TOPICS * PARTITIONS
    wl = "scrape /metrics every second"
    return [ctx.row(Row(f"metrics.scrape_cpu{'' if groups == GROUPS else '_many_groups'}.arrowlog", wl,
                        "arrowlog", f"arrowlog serve, {parts} partitions, {groups} lagging groups: server CPU "
                        "per gzip scrape x 1/s", kind="latency", unit="% CPU"),
                    lambda groups=groups: measure(ctx.runs, scrapes, groups))
            for groups in (GROUPS, MANY_GROUPS)]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for groups in (GROUPS, MANY_GROUPS):
        samples = measure(2 if quick else 3, 20 if quick else 60, groups)
        print(f"{groups} groups:", " ".join(f"{s:.3f}" for s in samples), "% of one core at 1 scrape/s")
