"""Owner lock files are named from topic names: a name that is not a topic name
never makes a path outside the group's owners/ directory."""

from __future__ import annotations

import os

import pytest

from arrowlog.errors import InvalidTopicError, UnknownPartitionError
from arrowlog.groups.membership import OwnerLocks, current_owners, owner_path
from arrowlog.groups.store import GroupDir

HOSTILE = ["../x", "../../etc/passwd", "a/b", "/abs", "t\x00x", "..", ".", "", "x" * 250]


@pytest.fixture
def gdir(tmp_path):
    g = GroupDir(str(tmp_path / "groups"), "g")
    yield g
    g.close()


def test_a_topic_name_gives_a_plain_lock_file_name_in_owners(gdir):
    path = owner_path(gdir, "orders.v2_x-1", 3)
    assert os.path.dirname(path) == gdir.owners_dir
    assert os.path.basename(path) == "orders.v2_x-1-3.lock"


@pytest.mark.parametrize("topic", HOSTILE)
def test_a_hostile_topic_name_is_refused_naming_it(gdir, topic):
    with pytest.raises(InvalidTopicError, match="topic name"):
        owner_path(gdir, topic, 0)


@pytest.mark.parametrize("partition", [-1, -2**31, True, "0", 1.0, None])
def test_a_partition_that_is_not_a_number_from_zero_is_refused(gdir, partition):
    with pytest.raises(UnknownPartitionError, match="partition"):
        owner_path(gdir, "t", partition)


def test_locks_never_create_a_file_outside_owners(gdir, tmp_path):
    locks = OwnerLocks(gdir, "m-1")
    try:
        for topic in ["../x", "../../escaped", "a/b"]:
            with pytest.raises(InvalidTopicError, match="topic name"):
                locks.try_acquire((topic, 0))
        with pytest.raises(UnknownPartitionError):
            locks.try_acquire(("t", -1))
        assert locks.try_acquire(("t", 0))
        assert current_owners(gdir) == {("t", 0): "m-1"}
        outside = [os.path.join(root, name) for root, _, names in os.walk(tmp_path) for name in names
                   if name.endswith(".lock") and os.path.dirname(os.path.join(root, name)) != gdir.owners_dir]
        assert outside == []
        assert sorted(os.listdir(gdir.owners_dir)) == ["t-0.lock"]
    finally:
        locks.release_all()
