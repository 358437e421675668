"""CRC-32C on read: one check per frame per process, and still every flip caught.

A frame whose CRC passed is remembered process-wide by the segment file's
identity (device, inode, ctime), its header's creation time and the
partition's recovery generation (storage/segment.py), so a new LogDir,
replay() or Consumer over an unchanged segment does not pay the pass again,
while a segment rewritten under a new inode is checked again.
"""

import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fds import readable

from arrowlog import errors
from arrowlog._native import core
from arrowlog.storage import LogDir, segment
from arrowlog.storage.segment import segment_path

TOPIC = "t"


def batch(n: int):
    acc = core.RecordAccumulator()
    for i in range(n):
        acc.append_record(b"k%d" % i, b"v" * 100, 1_700_000_000_000 + i)
    return acc.take()


@pytest.fixture(autouse=True)
def fresh_process_memory():
    segment.forget_verified()  # as in a new process
    yield
    segment.forget_verified()


@pytest.fixture
def checked(monkeypatch):
    """Counts the frames handed to the native CRC check."""
    seen: list[int] = []
    real = core.check_frame_crcs

    def counting(m, positions, limit):
        seen.extend(positions.tolist())
        return real(m, positions, limit)

    monkeypatch.setattr(core, "check_frame_crcs", counting)
    return seen


def closed_log(data_dir: str, batches: int = 20, records: int = 50) -> int:
    """A closed one-segment topic; returns the record count."""
    with LogDir(data_dir) as d:
        log = d.create_topic(TOPIC, config={"index.interval.bytes": 1024}).partition(0)
        for _ in range(batches):
            log.append(batch(records))
    return batches * records


def read_all(data_dir: str) -> int:
    with LogDir(data_dir, create=False) as d:
        log = d.topic(TOPIC).partition(0)
        frames = log.read(0, 1 << 30)
        return sum(f.record_count for f in frames)


def frame_positions(data_dir: str) -> list[tuple[int, int]]:
    with LogDir(data_dir, create=False) as d:
        log = d.topic(TOPIC).partition(0)
        seg, end = log._locate(0, log._snapshot())
        out, position = [], seg.header_size
        while position < end:
            body = core.read_frame_header(seg.log, position, end)[2]
            out.append((position, core.FRAME_HEADER_SIZE + body))
            position += core.FRAME_HEADER_SIZE + body
        return out


def flip(path: str, byte: int, *, new_inode: bool, bit: int = 0x10) -> None:
    if new_inode:  # rewrite: a copy with the flip replaces the file
        tmp = path + ".rewrite"
        shutil.copyfile(path, tmp)
        path_to_edit = tmp
    else:
        path_to_edit = path
    with open(path_to_edit, "r+b") as f:
        f.seek(byte)
        b = f.read(1)[0]
        f.seek(byte)
        f.write(bytes([b ^ bit]))
    if new_inode:
        os.replace(tmp, path)


def test_a_new_logdir_does_not_check_frames_this_process_checked(data_dir, checked):
    n = closed_log(data_dir)
    assert read_all(data_dir) == n
    first = len(checked)
    assert first == len(frame_positions(data_dir)) > 1
    assert read_all(data_dir) == n  # a new LogDir: the frames are remembered
    assert len(checked) == first
    segment.forget_verified()  # what a new process would see
    assert read_all(data_dir) == n
    assert len(checked) == 2 * first


def test_the_memory_is_bounded(data_dir, monkeypatch, checked):
    monkeypatch.setattr(segment, "MAX_REMEMBERED_FRAMES", 5)
    n = closed_log(data_dir)
    assert read_all(data_dir) == n
    assert segment._verified == {} and segment._verified_frames == 0  # 20 frames: over the bound, forgotten
    first = len(checked)
    assert read_all(data_dir) == n  # so a new LogDir checks them again
    assert len(checked) == 2 * first


@pytest.mark.parametrize("new_inode", [True, False], ids=["rewritten", "written-in-place"])
def test_a_changed_segment_is_checked_again_through_a_new_logdir(data_dir, new_inode):
    closed_log(data_dir)
    assert read_all(data_dir) > 0  # every frame checked and remembered
    path = segment_path(os.path.join(data_dir, "topics", TOPIC, "0"), 0)
    before = os.stat(path)
    position, size = frame_positions(data_dir)[7]
    flip(path, position + size - 8, new_inode=new_inode)
    after = os.stat(path)
    if new_inode:
        assert after.st_ino != before.st_ino
    elif after.st_ctime_ns == before.st_ctime_ns:
        pytest.skip("the file system's ctime did not move with the write (coarse timestamps)")
    with pytest.raises(errors.CorruptRecordError, match=f"byte position {position} .*CRC-32C"):
        read_all(data_dir)


def test_verify_checks_every_byte_whatever_reads_remember(data_dir):
    closed_log(data_dir)
    assert read_all(data_dir) > 0
    path = segment_path(os.path.join(data_dir, "topics", TOPIC, "0"), 0)
    position, size = frame_positions(data_dir)[5]
    flip(path, position + size - 16, new_inode=False)
    with LogDir(data_dir, create=False) as d:
        errs = d.topic(TOPIC).partition(0).verify()["errors"]
    assert errs and str(position) in " ".join(map(str, errs))


@pytest.mark.parametrize("which", [0, 9, 18])  # the last frame is checked when the log opens
def test_a_read_checked_on_two_threads_names_the_bad_frame(data_dir, monkeypatch, checked, which):
    monkeypatch.setattr(segment, "PARALLEL_CRC_BYTES", 1)  # split every read in two
    closed_log(data_dir)
    path = segment_path(os.path.join(data_dir, "topics", TOPIC, "0"), 0)
    positions = frame_positions(data_dir)
    position, size = positions[which]
    flip(path, position + size // 2, new_inode=False)
    with pytest.raises(errors.CorruptRecordError, match=f"byte position {position} "):
        read_all(data_dir)
    assert len(checked) == len(positions)  # both halves went through the native check
    with LogDir(data_dir, create=False) as d:  # the frames before it still read
        log = d.topic(TOPIC).partition(0)
        if which:
            frames = log.read(0, sum(s for _, s in positions[:which]))
            assert sum(f.record_count for f in frames) == 50 * which
        else:
            with pytest.raises(errors.CorruptRecordError):
                log.read(0, 1)


@pytest.fixture
def shut_down_helper(monkeypatch):
    """The helper thread's executor after shutdown() (as at the interpreter's
    exit): its submit() raises RuntimeError."""
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    monkeypatch.setattr(segment, "helper_thread", lambda: pool)
    monkeypatch.setattr(segment, "PARALLEL_CRC_BYTES", 1)  # every read would be split in two
    return pool


def test_a_helper_that_takes_no_more_work_leaves_the_whole_check_to_the_caller(data_dir, checked,
                                                                                   shut_down_helper):
    n = closed_log(data_dir)
    assert read_all(data_dir) == n
    assert sorted(checked) == [p for p, _ in frame_positions(data_dir)]  # each frame checked, once
    position, size = frame_positions(data_dir)[9]
    flip(segment_path(os.path.join(data_dir, "topics", TOPIC, "0"), 0), position + size // 2, new_inode=True)
    with pytest.raises(errors.CorruptRecordError, match=f"byte position {position} "):
        read_all(data_dir)


def test_a_rotten_length_is_named_as_the_frame_that_fails_its_crc(data_dir):
    """A length that is still plausible (a multiple of 8 that fits) sends the
    header walk to a wrong position: the error names the frame whose
    length rotted, not the garbage found after it."""
    closed_log(data_dir)
    path = segment_path(os.path.join(data_dir, "topics", TOPIC, "0"), 0)
    position, _ = frame_positions(data_dir)[3]
    flip(path, position + 16, new_inode=False, bit=0x08)  # body_length ± 8
    with pytest.raises(errors.CorruptRecordError, match=f"byte position {position} .*CRC-32C"):
        read_all(data_dir)


def test_one_frame_at_least_whatever_max_bytes(data_dir):
    closed_log(data_dir)
    with LogDir(data_dir, create=False) as d:
        log = d.topic(TOPIC).partition(0)
        for max_bytes in (0, 1):
            frames = log.read(0, max_bytes)
            assert [f.base_offset for f in frames] == [0]
        assert [f.base_offset for f in log.read(50, 0)] == [50]


def test_a_forked_child_checks_on_two_threads_too(data_dir, monkeypatch):
    """The helper thread does not survive a fork: the child starts its own
    instead of waiting forever on the parent's."""
    monkeypatch.setattr(segment, "PARALLEL_CRC_BYTES", 1)
    n = closed_log(data_dir)
    assert read_all(data_dir) == n  # the parent's helper thread exists now
    segment.forget_verified()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read everything again, report the count
        try:
            os.write(w, str(read_all(data_dir)).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        got = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready = readable(r, timeout=1.0)
            if ready:
                chunk = os.read(r, 64)
                if not chunk:
                    break
                got += chunk
        assert got == str(n).encode(), f"the child read {got!r}"
    finally:
        os.close(r)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


CRC_PATHS_CHECK = """
import random, sys
import crc32c as oracle
from arrowlog._native import core

blob = random.Random(7).randbytes(200_000)
lengths = {0, 1, 7, 8, 63, 64, 255, 256, 257, 511, 512, 513, 767, 768, 769}
for block in (256, 3 * 256, 3 * 8192):
    for k in (1, 2, 5):
        lengths.update(k * block + d for d in (-9, -8, -1, 0, 1, 8, 64, 255, 2047, 2048, 2049))
for start in (0, 3):
    for n in sorted(x for x in lengths if 0 <= x <= len(blob) - start):
        view = memoryview(blob)[start:start + n]
        for seed in (0, 0xDEADBEEF):
            assert core.crc32c(view, seed) == oracle.crc32c(bytes(view), seed), (start, n, seed)
print(core.crc32c_hardware_accelerated())
"""


@pytest.mark.parametrize("path", ["default", "lanes"])
def test_crc32c_paths_agree_with_the_crc32c_package_around_every_boundary(path):
    """The hardware CRC (_native/include/crc32c.h) folds long inputs with
    VPCLMULQDQ where the CPU has it (by 256 bytes, then a tail), and otherwise
    (or with ARROWLOG_CRC32C=lanes) runs three 8 KiB then three 256-byte crc32
    lanes with prefetching: every split point, tail, misalignment and seed
    agrees with an independent implementation on both paths."""
    import subprocess
    import sys

    env = dict(os.environ)
    env.pop("ARROWLOG_CRC32C", None)
    if path == "lanes":
        env["ARROWLOG_CRC32C"] = "lanes"
    r = subprocess.run([sys.executable, "-c", CRC_PATHS_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(core.crc32c_hardware_accelerated())
