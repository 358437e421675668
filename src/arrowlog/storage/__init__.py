"""arrowlog's storage engine: data directory → topics → partitions → segments."""

from .logdir import LogDir, Topic, validate_topic_name
from .partition import ENVELOPE_SCHEMA, Frame, PartitionLog
from .segment import Segment

__all__ = ["LogDir", "Topic", "PartitionLog", "Frame", "Segment", "ENVELOPE_SCHEMA", "validate_topic_name"]
