"""Committer processes for the group fault tests: each commits a counter
(in the metadata of its own partition) synchronously in a loop and prints
``A <counter>`` once commit() returned. ``kind``: ``member`` (an in-process
Consumer) or ``server`` (the Kafka server's offset store, as OffsetCommit
and TxnOffsetCommit use it)."""

from __future__ import annotations

import os
import subprocess
import sys

import faultlib
from fds import readable

COMMITTER = r"""
import os, sys
from arrowlog import Consumer, TopicPartition
data, part = sys.argv[1], int(sys.argv[2])
c = Consumer({"log.dir": data, "group.id": "g", "enable.auto.commit": False})
start = c.committed([TopicPartition("t", part)])[0].metadata
i = int(start or 0)
os.write(1, b"R %d\n" % i)
while True:
    i += 1
    c.commit(offsets=[TopicPartition("t", part, 0, str(i))], asynchronous=False)
    os.write(1, b"A %d\n" % i)
"""
SERVER_COMMITTER = r"""
import os, sys
from arrowlog.server.offsets import GroupOffsetStore
data, part = sys.argv[1], int(sys.argv[2])
store = GroupOffsetStore(data)
start = store.load("g").get("t", {}).get(part, {}).get("metadata")
i = int(start or 0)
os.write(1, b"R %d\n" % i)
while True:
    i += 1
    store.commit("g", {"t": {part: {"offset": 0, "metadata": str(i), "leader_epoch": -1}}})
    os.write(1, b"A %d\n" % i)
"""
SCRIPTS = {"member": COMMITTER, "server": SERVER_COMMITTER}
PARTS = 3
# the committers of the fault tests: in-process members only, then members and the server's store together
MIXES = [("member",) * PARTS, ("server", "member", "server")]


class Committer:
    def __init__(self, data: str, part: int, kind: str = "member"):
        self.proc = subprocess.Popen([sys.executable, "-c", SCRIPTS[kind], data, str(part)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=faultlib.writer_env())
        self.start: int | None = None
        self.acked = 0
        self._rest = b""

    def read(self, timeout: float) -> None:
        if self.proc.stdout.closed:
            return   # killed: kill() read the rest
        fd = self.proc.stdout.fileno()
        r = readable(fd, timeout=timeout)
        if r:
            chunk = os.read(fd, 65536)
            *lines, self._rest = (self._rest + chunk).split(b"\n")
            for line in lines:
                kind, _, n = line.partition(b" ")
                if kind == b"R":
                    self.start = int(n)
                elif kind == b"A":
                    self.acked = int(n)

    def kill(self) -> str:
        if self.proc.stdout.closed:
            return ""
        self.proc.kill()
        out, err = self.proc.communicate(timeout=60)
        self._rest += out
        *lines, _torn = self._rest.split(b"\n")
        for line in lines:
            if line.startswith(b"A "):
                self.acked = int(line[2:])
        return err.decode(errors="replace")


def committed(data: str) -> dict[int, int]:
    from arrowlog.groups import GroupDir

    got = GroupDir(os.path.join(data, "groups"), "g", create=False).read_offsets()
    return {p: int(e.metadata) for (_, p), e in got.items()}
