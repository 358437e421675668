"""The Kafka messages arrowlog serves, as schema tables (see schema.py): here the
data path and the groups; admin_messages.py, security_messages.py,
generated_messages.py and txn_messages.py hold the rest, and APIS collects them all.

Written from the protocol facts (Kafka's message definitions), limited to
the versions we advertise. Field names are snake_case; a version spec
"3+" means "from v3 on", "0-2" means "v0 to v2".
"""

from __future__ import annotations

from .admin_messages import (
    CREATE_TOPICS,
    DELETE_TOPICS,
    DESCRIBE_CLUSTER,
    DESCRIBE_CONFIGS,
)
from .commit_messages import COMMIT_RESULTS, committed_topics
from .generated_messages import (
    ALTER_CONFIGS,
    ALTER_PARTITION_REASSIGNMENTS,
    CREATE_PARTITIONS,
    DELETE_GROUPS,
    DELETE_RECORDS,
    DESCRIBE_PRODUCERS,
    ELECT_LEADERS,
    INCREMENTAL_ALTER_CONFIGS,
    LIST_PARTITION_REASSIGNMENTS,
    OFFSET_DELETE,
)
from .schema import Api
from .schema import F as f
from .security_messages import (
    ALTER_USER_SCRAM_CREDENTIALS,
    CREATE_ACLS,
    DELETE_ACLS,
    DESCRIBE_ACLS,
    DESCRIBE_USER_SCRAM_CREDENTIALS,
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
)
from .txn_messages import TXN_APIS

# ---------------------------------------------------------------- ApiVersions (18)
API_VERSIONS = Api(18, "ApiVersions", (0, 4), 3, request=(
    f("client_software_name", "string", "3+"),
    f("client_software_version", "string", "3+"),
), response=(
    f("error_code", "int16"),
    f("api_keys", (f("api_key", "int16"), f("min_version", "int16"), f("max_version", "int16"))),
    f("throttle_time_ms", "int32", "1+"),
))

# ---------------------------------------------------------------- Metadata (3)
METADATA = Api(3, "Metadata", (0, 12), 9, request=(
    f("topics", (f("topic_id", "uuid", "10+"), f("name", "string", nullable="10+")), nullable="1+"),
    f("allow_auto_topic_creation", "bool", "4+", default=True),
    f("include_cluster_authorized_operations", "bool", "8-10"),
    f("include_topic_authorized_operations", "bool", "8+"),
), response=(
    f("throttle_time_ms", "int32", "3+"),
    f("brokers", (
        f("node_id", "int32"), f("host", "string"), f("port", "int32"),
        f("rack", "string", "1+", nullable="1+"),
    )),
    f("cluster_id", "string", "2+", nullable="2+"),
    f("controller_id", "int32", "1+", default=-1),
    f("topics", (
        f("error_code", "int16"),
        f("name", "string", nullable="12+"),
        f("topic_id", "uuid", "10+"),
        f("is_internal", "bool", "1+"),
        f("partitions", (
            f("error_code", "int16"),
            f("partition_index", "int32"),
            f("leader_id", "int32"),
            f("leader_epoch", "int32", "7+", default=-1),
            f("replica_nodes", ["int32"]),
            f("isr_nodes", ["int32"]),
            f("offline_replicas", ["int32"], "5+"),
        )),
        f("topic_authorized_operations", "int32", "8+", default=-2147483648),
    )),
    f("cluster_authorized_operations", "int32", "8-10", default=-2147483648),
))

# ---------------------------------------------------------------- Produce (0)
# v0-2 are advertised (old librdkafka enables compression only when Produce 0
# is in range) but answered with UNSUPPORTED_VERSION, as Kafka 4 does.
PRODUCE = Api(0, "Produce", (0, 9), 9, request=(
    f("transactional_id", "string", "3+", nullable="3+"),
    f("acks", "int16"),
    f("timeout_ms", "int32"),
    f("topic_data", (
        f("name", "string"),
        f("partition_data", (f("index", "int32"), f("records", "records", nullable="0+"))),
    )),
), response=(
    f("responses", (
        f("name", "string"),
        f("partition_responses", (
            f("index", "int32"),
            f("error_code", "int16"),
            f("base_offset", "int64"),
            f("log_append_time_ms", "int64", "2+", default=-1),
            f("log_start_offset", "int64", "5+", default=-1),
            f("record_errors", (
                f("batch_index", "int32"),
                f("batch_index_error_message", "string", nullable="8+"),
            ), "8+"),
            f("error_message", "string", "8+", nullable="8+"),
        )),
    )),
    f("throttle_time_ms", "int32", "1+"),
))

# ---------------------------------------------------------------- Fetch (1)
FETCH = Api(1, "Fetch", (4, 12), 12, request=(
    f("replica_id", "int32", default=-1),
    f("max_wait_ms", "int32"),
    f("min_bytes", "int32"),
    f("max_bytes", "int32", "3+", default=0x7FFFFFFF),
    f("isolation_level", "int8", "4+"),
    f("session_id", "int32", "7+"),
    f("session_epoch", "int32", "7+", default=-1),
    f("topics", (
        f("topic", "string"),
        f("partitions", (
            f("partition", "int32"),
            f("current_leader_epoch", "int32", "9+", default=-1),
            f("fetch_offset", "int64"),
            f("last_fetched_epoch", "int32", "12+", default=-1),
            f("log_start_offset", "int64", "5+", default=-1),
            f("partition_max_bytes", "int32"),
        )),
    )),
    f("forgotten_topics_data", (f("topic", "string"), f("partitions", ["int32"])), "7+"),
    f("rack_id", "string", "11+"),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("error_code", "int16", "7+"),
    f("session_id", "int32", "7+"),
    f("responses", (
        f("topic", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("error_code", "int16"),
            f("high_watermark", "int64"),
            f("last_stable_offset", "int64", "4+", default=-1),
            f("log_start_offset", "int64", "5+", default=-1),
            f("aborted_transactions", (f("producer_id", "int64"), f("first_offset", "int64")),
              "4+", nullable="4+"),
            f("preferred_read_replica", "int32", "11+", default=-1),
            f("records", "records", nullable="0+", default=b""),
        )),
    )),
))

# ---------------------------------------------------------------- ListOffsets (2)
LIST_OFFSETS = Api(2, "ListOffsets", (1, 7), 6, request=(
    f("replica_id", "int32"),
    f("isolation_level", "int8", "2+"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("current_leader_epoch", "int32", "4+", default=-1),
            f("timestamp", "int64"),
        )),
    )),
), response=(
    f("throttle_time_ms", "int32", "2+"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("error_code", "int16"),
            f("timestamp", "int64", "1+", default=-1),
            f("offset", "int64", "1+", default=-1),
            f("leader_epoch", "int32", "4+", default=-1),
        )),
    )),
))

# ---------------------------------------------------------------- FindCoordinator (10)
FIND_COORDINATOR = Api(10, "FindCoordinator", (0, 3), 3, request=(
    f("key", "string"),
    f("key_type", "int8", "1+"),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("error_code", "int16"),
    f("error_message", "string", "1+", nullable="1+"),
    f("node_id", "int32"),
    f("host", "string"),
    f("port", "int32"),
))

# ---------------------------------------------------------------- JoinGroup (11)
JOIN_GROUP = Api(11, "JoinGroup", (0, 7), 6, request=(
    f("group_id", "string"),
    f("session_timeout_ms", "int32"),
    f("rebalance_timeout_ms", "int32", "1+", default=-1),
    f("member_id", "string"),
    f("group_instance_id", "string", "5+", nullable="5+"),
    f("protocol_type", "string"),
    f("protocols", (f("name", "string"), f("metadata", "bytes"))),
), response=(
    f("throttle_time_ms", "int32", "2+"),
    f("error_code", "int16"),
    f("generation_id", "int32", default=-1),
    f("protocol_type", "string", "7+", nullable="7+"),
    f("protocol_name", "string", nullable="7+"),
    f("leader", "string"),
    f("member_id", "string"),
    f("members", (
        f("member_id", "string"),
        f("group_instance_id", "string", "5+", nullable="5+"),
        f("metadata", "bytes"),
    )),
))

# ---------------------------------------------------------------- SyncGroup (14)
SYNC_GROUP = Api(14, "SyncGroup", (0, 5), 4, request=(
    f("group_id", "string"),
    f("generation_id", "int32"),
    f("member_id", "string"),
    f("group_instance_id", "string", "3+", nullable="3+"),
    f("protocol_type", "string", "5+", nullable="5+"),
    f("protocol_name", "string", "5+", nullable="5+"),
    f("assignments", (f("member_id", "string"), f("assignment", "bytes"))),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("error_code", "int16"),
    f("protocol_type", "string", "5+", nullable="5+"),
    f("protocol_name", "string", "5+", nullable="5+"),
    f("assignment", "bytes"),
))

# ---------------------------------------------------------------- Heartbeat (12)
HEARTBEAT = Api(12, "Heartbeat", (0, 4), 4, request=(
    f("group_id", "string"),
    f("generation_id", "int32"),
    f("member_id", "string"),
    f("group_instance_id", "string", "3+", nullable="3+"),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("error_code", "int16"),
))

# ---------------------------------------------------------------- LeaveGroup (13)
LEAVE_GROUP = Api(13, "LeaveGroup", (0, 4), 4, request=(
    f("group_id", "string"),
    f("member_id", "string", "0-2"),
    f("members", (
        f("member_id", "string"),
        f("group_instance_id", "string", nullable="3+"),
    ), "3+"),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("error_code", "int16"),
    f("members", (
        f("member_id", "string"),
        f("group_instance_id", "string", nullable="3+"),
        f("error_code", "int16"),
    ), "3+"),
))

# ---------------------------------------------------------------- OffsetCommit (8)
OFFSET_COMMIT = Api(8, "OffsetCommit", (2, 8), 8, request=(
    f("group_id", "string"),
    f("generation_id", "int32", "1+", default=-1),
    f("member_id", "string", "1+"),
    f("group_instance_id", "string", "7+", nullable="7+"),
    f("retention_time_ms", "int64", "2-4", default=-1),
    committed_topics(leader_epoch="6+"),
), response=(
    f("throttle_time_ms", "int32", "3+"),
    COMMIT_RESULTS,
))

# ---------------------------------------------------------------- OffsetFetch (9)
OFFSET_FETCH = Api(9, "OffsetFetch", (1, 7), 6, request=(
    f("group_id", "string"),
    f("topics", (f("name", "string"), f("partition_indexes", ["int32"])), nullable="2+"),
    f("require_stable", "bool", "7+"),
), response=(
    f("throttle_time_ms", "int32", "3+"),
    f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("committed_offset", "int64"),
            f("committed_leader_epoch", "int32", "5+", default=-1),
            f("metadata", "string", nullable="0+"),
            f("error_code", "int16"),
        )),
    )),
    f("error_code", "int16", "2+"),
))

# ---------------------------------------------------------------- InitProducerId (22)
INIT_PRODUCER_ID = Api(22, "InitProducerId", (0, 4), 2, request=(
    f("transactional_id", "string", nullable="0+"),
    f("transaction_timeout_ms", "int32"),
    f("producer_id", "int64", "3+", default=-1),
    f("producer_epoch", "int16", "3+", default=-1),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
    f("producer_id", "int64", default=-1),
    f("producer_epoch", "int16"),
))

# ---------------------------------------------------------------- DescribeGroups (15)
DESCRIBE_GROUPS = Api(15, "DescribeGroups", (0, 5), 5, request=(
    f("groups", ["string"]),
    f("include_authorized_operations", "bool", "3+"),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("groups", (
        f("error_code", "int16"),
        f("group_id", "string"),
        f("group_state", "string"),
        f("protocol_type", "string"),
        f("protocol_data", "string"),
        f("members", (
            f("member_id", "string"),
            f("group_instance_id", "string", "4+", nullable="4+"),
            f("client_id", "string"),
            f("client_host", "string"),
            f("member_metadata", "bytes"),
            f("member_assignment", "bytes"),
        )),
        f("authorized_operations", "int32", "3+", default=-2147483648),
    )),
))

# ---------------------------------------------------------------- ListGroups (16)
LIST_GROUPS = Api(16, "ListGroups", (0, 5), 3, request=(
    f("states_filter", ["string"], "4+"),
    f("types_filter", ["string"], "5+"),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("error_code", "int16"),
    f("groups", (
        f("group_id", "string"),
        f("protocol_type", "string"),
        f("group_state", "string", "4+"),
        f("group_type", "string", "5+", default="classic"),
    )),
))

APIS = {api.key: api for api in (
    API_VERSIONS, METADATA, PRODUCE, FETCH, LIST_OFFSETS, FIND_COORDINATOR, JOIN_GROUP,
    SYNC_GROUP, HEARTBEAT, LEAVE_GROUP, OFFSET_COMMIT, OFFSET_FETCH, INIT_PRODUCER_ID,
    CREATE_TOPICS, DELETE_TOPICS, DESCRIBE_CONFIGS, DESCRIBE_GROUPS, LIST_GROUPS, DESCRIBE_CLUSTER,
    SASL_HANDSHAKE, SASL_AUTHENTICATE, DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS,
    DESCRIBE_USER_SCRAM_CREDENTIALS, ALTER_USER_SCRAM_CREDENTIALS,
    CREATE_PARTITIONS, ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS, DELETE_RECORDS, DELETE_GROUPS,
    OFFSET_DELETE, DESCRIBE_PRODUCERS, ELECT_LEADERS, ALTER_PARTITION_REASSIGNMENTS,
    LIST_PARTITION_REASSIGNMENTS, *TXN_APIS,
)}

