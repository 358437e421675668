"""Schema tables printed by scripts/gen-kafka-messages (see schema.py); collected
in messages.APIS.
"""

from __future__ import annotations

from .schema import Api
from .schema import F as f

# ================================================================ generated tables
# Printed by scripts/gen-kafka-messages from Kafka's message definitions:
#   scripts/gen-kafka-messages RESOURCES CreatePartitions:0-3 AlterConfigs:0-2 \
#     IncrementalAlterConfigs:0-1 DeleteRecords:0-2 DeleteGroups:0-2 OffsetDelete:0-0 \
#     DescribeProducers:0-0 ElectLeaders:0-2 AlterPartitionReassignments:0-0 \
#     ListPartitionReassignments:0-0
# (RESOURCES: kafka-python 3's kafka/protocol/schemas/resources, or Kafka's
# clients/src/main/resources/common/message). Regenerate rather than edit.

# ---------------------------------------------------------------- CreatePartitions (37)
CREATE_PARTITIONS = Api(37, "CreatePartitions", (0, 3), 2, request=(
    f("topics", (
        f("name", "string"),
        f("count", "int32"),
        f("assignments", (
            f("broker_ids", ["int32"]),
        ), nullable="0+"),
    )),
    f("timeout_ms", "int32"),
    f("validate_only", "bool"),
), response=(
    f("throttle_time_ms", "int32"),
    f("results", (
        f("name", "string"),
        f("error_code", "int16"),
        f("error_message", "string", nullable="0+"),
    )),
))

# ---------------------------------------------------------------- AlterConfigs (33)
ALTER_CONFIGS = Api(33, "AlterConfigs", (0, 2), 2, request=(
    f("resources", (
        f("resource_type", "int8"),
        f("resource_name", "string"),
        f("configs", (
            f("name", "string"),
            f("value", "string", nullable="0+"),
        )),
    )),
    f("validate_only", "bool"),
), response=(
    f("throttle_time_ms", "int32"),
    f("responses", (
        f("error_code", "int16"),
        f("error_message", "string", nullable="0+"),
        f("resource_type", "int8"),
        f("resource_name", "string"),
    )),
))

# ---------------------------------------------------------------- IncrementalAlterConfigs (44)
INCREMENTAL_ALTER_CONFIGS = Api(44, "IncrementalAlterConfigs", (0, 1), 1, request=(
    f("resources", (
        f("resource_type", "int8"),
        f("resource_name", "string"),
        f("configs", (
            f("name", "string"),
            f("config_operation", "int8"),
            f("value", "string", nullable="0+"),
        )),
    )),
    f("validate_only", "bool"),
), response=(
    f("throttle_time_ms", "int32"),
    f("responses", (
        f("error_code", "int16"),
        f("error_message", "string", nullable="0+"),
        f("resource_type", "int8"),
        f("resource_name", "string"),
    )),
))

# ---------------------------------------------------------------- DeleteRecords (21)
DELETE_RECORDS = Api(21, "DeleteRecords", (0, 2), 2, request=(
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("offset", "int64"),
        )),
    )),
    f("timeout_ms", "int32"),
), response=(
    f("throttle_time_ms", "int32"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("low_watermark", "int64"),
            f("error_code", "int16"),
        )),
    )),
))

# ---------------------------------------------------------------- DeleteGroups (42)
DELETE_GROUPS = Api(42, "DeleteGroups", (0, 2), 2, request=(
    f("groups_names", ["string"]),
), response=(
    f("throttle_time_ms", "int32"),
    f("results", (
        f("group_id", "string"),
        f("error_code", "int16"),
    )),
))

# ---------------------------------------------------------------- OffsetDelete (47)
OFFSET_DELETE = Api(47, "OffsetDelete", (0, 0), None, request=(
    f("group_id", "string"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
        )),
    )),
), response=(
    f("error_code", "int16"),
    f("throttle_time_ms", "int32"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("error_code", "int16"),
        )),
    )),
))

# ---------------------------------------------------------------- DescribeProducers (61)
DESCRIBE_PRODUCERS = Api(61, "DescribeProducers", (0, 0), 0, request=(
    f("topics", (
        f("name", "string"),
        f("partition_indexes", ["int32"]),
    )),
), response=(
    f("throttle_time_ms", "int32"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("error_code", "int16"),
            f("error_message", "string", nullable="0+"),
            f("active_producers", (
                f("producer_id", "int64"),
                f("producer_epoch", "int32"),
                f("last_sequence", "int32", default=-1),
                f("last_timestamp", "int64", default=-1),
                f("coordinator_epoch", "int32"),
                f("current_txn_start_offset", "int64", default=-1),
            )),
        )),
    )),
))

# ---------------------------------------------------------------- ElectLeaders (43)
ELECT_LEADERS = Api(43, "ElectLeaders", (0, 2), 2, request=(
    f("election_type", "int8", "1+"),
    f("topic_partitions", (
        f("topic", "string"),
        f("partitions", ["int32"]),
    ), nullable="0+"),
    f("timeout_ms", "int32", default=60000),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16", "1+"),
    f("replica_election_results", (
        f("topic", "string"),
        f("partition_result", (
            f("partition_id", "int32"),
            f("error_code", "int16"),
            f("error_message", "string", nullable="0+"),
        )),
    )),
))

# ---------------------------------------------------------------- AlterPartitionReassignments (45)
ALTER_PARTITION_REASSIGNMENTS = Api(45, "AlterPartitionReassignments", (0, 0), 0, request=(
    f("timeout_ms", "int32", default=60000),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("replicas", ["int32"], nullable="0+"),
        )),
    )),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
    f("error_message", "string", nullable="0+"),
    f("responses", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("error_code", "int16"),
            f("error_message", "string", nullable="0+"),
        )),
    )),
))

# ---------------------------------------------------------------- ListPartitionReassignments (46)
LIST_PARTITION_REASSIGNMENTS = Api(46, "ListPartitionReassignments", (0, 0), 0, request=(
    f("timeout_ms", "int32", default=60000),
    f("topics", (
        f("name", "string"),
        f("partition_indexes", ["int32"]),
    ), nullable="0+"),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
    f("error_message", "string", nullable="0+"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("replicas", ["int32"]),
            f("adding_replicas", ["int32"]),
            f("removing_replicas", ["int32"]),
        )),
    )),
))
