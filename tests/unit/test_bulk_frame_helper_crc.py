"""A large bulk frame's CRC-32C computed on the helper thread while the
writer writes (include/bulk_crc.h): the slices' CRCs combine into the
one-pass CRC, the stored bytes are the same whoever checksums which slice
(the helper, the writer taking a slice back, or the writer alone), and a
failed write leaves no slice with the helper."""

import os
import threading

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowlog._native import core
from arrowlog.schema import HEADERS_TYPE
from arrowlog.storage import LogDir
from arrowlog.storage.appending import _bulk_layout, null_column
from arrowlog.storage.helper import helper_thread

from test_bulk_frame_native import appends, stored_bytes, without_native, write

STEP = 2 << 20  # include/pwrite_crc.h's ARROWLOG_CRC_STEP: the combine's cached length


@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=300), b=st.binary(max_size=300))
def test_combine_is_the_one_pass_crc(a, b):
    assert core.crc32c_combine(core.crc32c(a), core.crc32c(b), len(b)) == core.crc32c(a + b)


@settings(max_examples=10, deadline=None)
@given(head=st.binary(max_size=64), seed=st.integers(0, 2**32 - 1), length=st.sampled_from([STEP, STEP - 8, STEP + 1]))
def test_combine_over_a_slice_length(head, seed, length):
    body = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    assert core.crc32c_combine(core.crc32c(head), core.crc32c(body), len(body)) == core.crc32c(head + body)


def test_combine_rejects_a_negative_length():
    with pytest.raises(ValueError, match="negative"):
        core.crc32c_combine(1, 2, -1)


@pytest.fixture
def every_frame_to_the_helper():
    """Frames of any size go to the helper; restored after."""
    if helper_thread() is None:
        pytest.skip("one CPU: the writer checksums every frame")
    old = core.bulk_crc_threshold(0)
    yield
    core.bulk_crc_threshold(old)


def helper_idle(timeout: float = 60.0) -> None:
    """The helper thread has finished every job given to it so far."""
    helper_thread().submit(lambda: None).result(timeout)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_helper_checksummed_frames_are_byte_identical(tmp_path_factory, monkeypatch, every_frame_to_the_helper, seed):
    batches = appends(seed)
    with monkeypatch.context() as m:
        without_native(m)
        general = write(str(tmp_path_factory.mktemp("general")), batches)
    core.bulk_crc_threshold(0, steal=False)  # the writer waits: every slice by the helper
    before = core.bulk_crc_counts()
    by_helper = write(str(tmp_path_factory.mktemp("helper")), batches)
    after = core.bulk_crc_counts()
    core.bulk_crc_threshold(0)
    assert by_helper == general
    assert after[0] > before[0] and after[1] == before[1]


def large_batches(n: int = 200_000) -> list:
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 120, n)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    data = rng.integers(0, 256, int(offsets[-1]), dtype=np.uint8).tobytes()
    values = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])
    keys = pa.array([b"%d" % i for i in range(n)], pa.binary())
    stamps = pa.array(np.arange(n, dtype=np.int64) + 10, pa.timestamp("ms"))
    # several slices, generated parts (rebased offsets, the offset column) over many scratch fills
    return [(keys.slice(5, n - 10), values.slice(3, n - 10), stamps.slice(2, n - 10), 12, n - 9, 0),
            (keys, values, 77, 77, 77, n + 5)]


def test_slices_the_helper_never_took_are_checksummed_by_the_writer(tmp_path, every_frame_to_the_helper):
    batches = large_batches()
    alone = core.bulk_crc_threshold(-1)
    reference = write(str(tmp_path / "alone"), batches)
    core.bulk_crc_threshold(alone)
    busy, release = threading.Event(), threading.Event()

    def occupy():
        busy.set()
        release.wait(120)
    helper_thread().submit(occupy)
    assert busy.wait(60)
    before = core.bulk_crc_counts()
    data_dir = str(tmp_path / "taken-back")
    try:
        with LogDir(data_dir) as d:  # the helper is busy all along
            d.create_topic("t", partitions=1)
            log = d.topic("t").partition(0)
            for keys, values, stamps, lo, hi, rows in batches:
                log.append_bulk(keys, values, stamps, min_timestamp=lo, max_timestamp=hi, timestamp_rows=rows)
    finally:
        release.set()  # (reading the segment back checks its CRCs on the helper too)
    after = core.bulk_crc_counts()
    assert stored_bytes(data_dir) == reference
    assert after[0] == before[0] and after[1] > before[1] + 10
    helper_idle()


def test_large_frames_by_the_helper_are_byte_identical(tmp_path, every_frame_to_the_helper):
    batches = large_batches()
    alone = core.bulk_crc_threshold(-1)
    reference = write(str(tmp_path / "alone"), batches)
    core.bulk_crc_threshold(alone, steal=False)
    try:
        helped = write(str(tmp_path / "helped"), batches)
    finally:
        core.bulk_crc_threshold(alone)
    assert helped == reference


def test_a_failed_write_leaves_nothing_with_the_helper(tmp_path, every_frame_to_the_helper):
    (keys, values, stamps, lo, hi, _), _ = large_batches()
    assert _bulk_layout()
    frame = core.bulk_frame(len(values), lo, hi, stamps, keys, values, null_column(len(values), HEADERS_TYPE))
    assert frame is not None and frame.frame_size() > 4 * STEP
    path = str(tmp_path / "f")
    with open(path, "wb"):
        pass
    fd = os.open(path, os.O_RDONLY)  # every pwritev fails (EBADF), after the first slice went to the helper
    try:
        with pytest.raises(OSError) as failed:
            frame.write_frame(fd, 0, 0)
    finally:
        os.close(fd)
    assert failed.value.errno == 9
    helper_idle()  # the helper's job ended: the frame no longer reaches it
    assert os.path.getsize(path) == 0
