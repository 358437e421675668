"""kill -9 during schema evolution of a typed topic (storage/evolution.py): a writer
evolves the topic again and again (each generation adds a column) and appends
records of each generation, to partitions that already hold frames (a new segment)
and to empty ones (the empty segment re-created with the new header). It is
SIGKILLed at a random moment; after every kill the topic opens and reads in one
schema, every acknowledged record is there with its values, and the columns of
every acknowledged generation are there."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import faultlib
from fds import readable

import arrowlog
from arrowlog.storage import LogDir
from arrowlog.storage.evolution import generation

PARTITIONS = 6

WRITER = r"""
import sys, pyarrow as pa
from arrowlog.storage import LogDir
from arrowlog.storage.evolution import generation
path, cycle = sys.argv[1], int(sys.argv[2])
log = LogDir(path)
if not log.has_topic("t"):
    log.create_topic("t", %(partitions)d, {"value.schema": pa.schema([("id", pa.int64(), False)]),
                                          "segment.bytes": 1 << 16})
for p in range(%(partitions)d):
    log.topic("t").partition(p)   # empty segments of the generation of now: later ones re-create them
print("ready", flush=True)
HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
for step in range(1000):
    t = log.topic("t")
    gen = len(t.value_schema) - 1
    if step %% 3 == 0:      # a new generation: one more column
        name = f"c{gen + 1}"
        t = log.alter_topic("t", {"value.schema": pa.schema(list(t.value_schema) + [(name, pa.int64())])})
        gen += 1
        print("evolved", name, flush=True)
    part = step %% %(partitions)d
    schema = t.value_schema
    n = 50
    ids = [cycle * 1_000_000 + step * 100 + i for i in range(n)]
    rows = [{"id": i, **{f.name: i for f in list(schema)[1:]}} for i in ids]
    base = t.partition(part).append(pa.RecordBatch.from_arrays(
        [pa.array([0] * n, pa.timestamp("ms", tz="UTC")), pa.nulls(n, pa.binary()),
         pa.array(rows, pa.struct(list(schema))), pa.nulls(n, HEADERS)],
        names=["timestamp", "key", "value", "headers"]))
    print("acked", part, base, gen, ",".join(map(str, ids)), flush=True)
"""


class Writer:
    def __init__(self, path: str, cycle: int):
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER % {"partitions": PARTITIONS}, path, str(cycle)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.acked: list[tuple[int, int, int, list[int]]] = []
        self.columns: set[str] = set()

    def pump(self, until, what: str, deadline_s: float = 120.0) -> None:
        end = time.monotonic() + deadline_s
        while not until():
            assert time.monotonic() < end, f"writer never {what}: {self.proc.stderr.read() if self.proc.poll() else ''}"
            ready = readable(self.proc.stdout, timeout=1.0)
            if ready:
                line = self.proc.stdout.readline()
                assert line, f"writer exited: {self.proc.wait()} {self.proc.stderr.read()}"
                self._take(line)

    def _take(self, line: str) -> None:
        words = line.split()
        if words[0] == "acked":
            self.acked.append((int(words[1]), int(words[2]), int(words[3]), [int(x) for x in words[4].split(",")]))
        elif words[0] == "evolved":
            pass   # not acknowledged until a record of it is

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for line in self.proc.stdout:   # what it printed before dying was acknowledged
            if line.endswith("\n"):
                self._take(line)
        self.proc.stdout.close()
        self.proc.stderr.close()


def test_kill9_during_evolution_leaves_a_readable_topic(tmp_path, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "data")
    acked: list[tuple[int, int, int, list[int]]] = []
    for cycle in range(faultlib.count(10, 60)):
        w = Writer(path, cycle)
        want = rng.randint(1, 6)
        w.pump(lambda: len(w.acked) >= want, "acknowledged records")  # noqa: B023 (called before the next cycle)
        time.sleep(rng.uniform(0, 0.05))   # the moment of the kill: random by design
        w.kill()
        acked += w.acked
        with LogDir(path) as log:
            schema = log.topic("t").value_schema
        table = arrowlog.replay(path, "t").to_arrow()
        assert table.schema.names[4:-1] == schema.names, f"seed={seed} cycle={cycle}"
        rows = {r["id"]: r for r in table.select(schema.names).to_pylist()}
        by_offset = {(p, o): i for p, o, i in zip(table.column("partition").to_pylist(),
                                                     table.column("offset").to_pylist(),
                                                     table.column("id").to_pylist())}
        for part, base, gen, ids in acked:
            assert f"c{gen}" in schema.names or gen == 0, f"seed={seed}: generation {gen} lost its column"
            for k, i in enumerate(ids):
                assert by_offset.get((part, base + k)) == i, f"seed={seed}: record {i} not at {part}/{base + k}"
                row = rows[i]
                for g in range(1, gen + 1):   # columns of its generation hold its values, later ones null
                    assert row[f"c{g}"] == i, f"seed={seed}: record {i} column c{g} is {row[f'c{g}']}"
                for name in schema.names[gen + 1:]:
                    assert row[name] is None, f"seed={seed}: record {i} has {name}={row[name]}"
    # the last partition was empty when its first generation came: its first segment was re-created
    with LogDir(path) as log:
        first = log.topic("t").partition(PARTITIONS - 1).read(0, 1)
    assert first and generation(first[0].batch.schema) > 0, f"seed={seed}"
