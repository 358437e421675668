"""Model-based test: random sequences of produce, flush, read/seek, commit,
kill, reopen and retention, checked against an in-memory model.

The model is a dict offset -> value and the committed offset of one group.
"kill" abandons the open log the way a dying process does (its file
descriptors close, releasing its locks; its mappings go; nothing is synced
or marked clean; the page cache keeps what was written), then reopens the
data directory, which must recover exactly the model: a process crash
loses nothing that append() returned for, and a commit that returned is
there. Retention (by bytes, run at every roll and on demand) may only move
the log start forward to a segment boundary; everything above it is
unchanged.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import faultlib
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from arrowlog.errors import OffsetOutOfRangeError
from arrowlog.groups.store import GroupDir

# batches stay well under segment.bytes: a batch larger than what is left of an
# empty segment is refused (EFBIG), which is not what this test is about
CONFIG = {"segment.bytes": 16384, "retention.ms": -1, "retention.bytes": 60000, "index.interval.bytes": 700}
GROUP = "model"


class LogModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = self._make_root()
        self.data = os.path.join(self.root, "data")
        self.values: dict[int, bytes] = {}
        self.hw = 0
        self.synced_hw = 0  # offsets below it were fsynced: they survive power loss
        self.log_start = 0
        self.committed: int | None = None
        self.batches = 0
        self.generation = 0
        self._open()

    # -- plumbing -----------------------------------------------------------------

    def _make_root(self) -> str:
        return faultlib.fast_scratch("arrowlog-model-")

    def _open(self) -> None:
        self.dir, self.pl = faultlib.open_partition(self.data, CONFIG)
        self.groups = GroupDir(os.path.join(self.data, "groups"), GROUP)

    def _abandon(self) -> None:
        """What process death does to an open log: fds closed (locks
        released), mappings dropped; no sync, no clean mark."""
        faultlib.abandon(self.dir, self.pl)
        self.groups.close()

    def _check_all(self) -> None:
        contents = faultlib.read_log(self.pl)
        assert contents.high_watermark == self.hw
        assert contents.log_start >= self.log_start, "the log start went back"
        self.log_start = contents.log_start
        for off in range(self.log_start, self.hw):
            assert contents.values[off] == self.values[off], f"offset {off} differs from the model"
        faultlib.check_log(contents, {})
        got = self.groups.read_offsets().get((faultlib.TOPIC, 0))
        assert (got.offset if got else None) == self.committed

    def teardown(self) -> None:
        try:
            self.dir.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- rules -----------------------------------------------------------------------

    @rule(n=st.integers(1, 30), filler=st.integers(0, 300), fsync=st.booleans())
    def produce(self, n, filler, fsync):
        vals = faultlib.batch_values(self.generation, self.batches, n, filler)
        self.batches += 1
        base = self.pl.append(faultlib.make_batch(vals), fsync=fsync)
        assert base == self.hw, f"append returned base {base}, the model expects {self.hw}"
        self.values.update((base + j, v) for j, v in enumerate(vals))
        self.hw += n
        if fsync:
            self.synced_hw = self.hw

    @rule(fsync=st.booleans())
    def flush(self, fsync):
        self.pl.flush(fsync=fsync)
        if fsync:
            self.synced_hw = self.hw

    @rule(data=st.data())
    def seek_and_read(self, data):
        start = self.pl.log_start_offset
        assert start >= self.log_start
        self.log_start = start
        offset = data.draw(st.integers(max(0, start - 3), self.hw + 2), label="offset")
        if offset < start or offset > self.hw:
            with pytest.raises(OffsetOutOfRangeError):
                self.pl.read(offset, 1 << 16)
            return
        frames = self.pl.read(offset, data.draw(st.integers(1, 1 << 16), label="max_bytes"))
        if offset == self.hw:
            assert frames == []
            return
        assert frames and frames[0].base_offset <= offset < frames[0].base_offset + frames[0].record_count
        for fr in frames:
            for j, v in enumerate(fr.batch.column(3).to_pylist()):
                assert self.values[fr.base_offset + j] == v

    @rule(data=st.data())
    def commit(self, data):
        offset = data.draw(st.integers(0, self.hw), label="commit")
        self.groups.write_offsets({(faultlib.TOPIC, 0): (offset, None)})
        self.committed = offset

    @rule()
    def kill(self):
        self._abandon()
        self.generation += 1
        self._open()
        self._check_all()

    @rule()
    def reopen(self):
        self.dir.close()  # the last one out syncs
        self.synced_hw = self.hw
        self.generation += 1
        self._open()
        self._check_all()

    @rule()
    def retention(self):
        self.pl.enforce_retention()
        start = self.pl.log_start_offset
        assert start >= self.log_start
        assert start == self.hw or start in self.pl.segment_bases(), f"log start {start} is not a segment base"
        self.log_start = start

    @precondition(lambda self: self.hw > 0)
    @rule()
    def read_everything(self):
        self._check_all()

    @invariant()
    def watermarks_match(self):
        assert self.pl.high_watermark == self.hw


class PowerLossModel(LogModel):
    """The same, on a loop-mounted ext4 image, plus power loss: the file
    system is shut down without flushing its journal, then remounted. What
    was synced (append/flush with fsync, a clean close) must come back; what
    was only written may come back as a whole-batch prefix of it, never as
    anything else; committed group offsets come back exactly. Retention
    that was never synced may be undone (its records reappear, intact)."""

    image: faultlib.Ext4Image | None = None

    def _make_root(self) -> str:
        return tempfile.mkdtemp(prefix="model-", dir=self.image.mnt)

    @rule()
    def power_loss(self):
        self.image.shutdown()
        self._abandon()
        del self.dir, self.pl, self.groups  # their mappings keep the file system busy
        self.image.umount()
        self.image.mount()
        self.generation += 1
        self._open()
        contents = faultlib.read_log(self.pl)
        hw = contents.high_watermark
        assert self.synced_hw <= hw <= self.hw, f"after power loss: {hw}, synced {self.synced_hw}, written {self.hw}"
        for off, v in contents.values.items():
            assert self.values[off] == v, f"offset {off} differs from the model after power loss"
        faultlib.check_log(contents, {})
        got = self.groups.read_offsets().get((faultlib.TOPIC, 0))
        assert (got.offset if got else None) == self.committed, "a committed offset was lost"
        for off in range(hw, self.hw):  # the lost unsynced tail leaves the model
            del self.values[off]
        self.hw = hw
        self.log_start = contents.log_start

    def teardown(self) -> None:
        # a closed LogDir keeps its state mappings until it is collected, and
        # hypothesis may keep this machine: let go of them, or the next power
        # loss cannot unmount
        try:
            if hasattr(self, "dir"):
                self.dir.close()
                del self.dir, self.pl, self.groups
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def test_power_loss_matches_its_model(ext4):
    PowerLossModel.image = ext4(128)
    PowerLossModel.image.mount()
    try:
        run_state_machine_as_test(PowerLossModel, settings=settings(
            max_examples=faultlib.count(8, 100), stateful_step_count=faultlib.count(25, 60), deadline=None,
            suppress_health_check=list(HealthCheck)))
    finally:
        PowerLossModel.image = None


LogModel.TestCase.settings = settings(
    max_examples=faultlib.count(40, 400), stateful_step_count=faultlib.count(40, 100), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_log_matches_its_model = LogModel.TestCase
