"""arrowlog's storage engine: data directory → topics → partitions → segments."""

from .logdir import LogDir, Topic, validate_topic_name
from .partition import Frame, PartitionLog
from .segment import Segment

__all__ = ["LogDir", "Topic", "PartitionLog", "Frame", "Segment", "validate_topic_name"]
