"""The hand-written admin messages (CreateTopics, DeleteTopics, DescribeConfigs,
DescribeCluster) as schema tables (see schema.py); the admin APIs added later are
in generated_messages.py. Collected with the others in messages.APIS.
"""

from __future__ import annotations

from .schema import Api
from .schema import F as f

# ---------------------------------------------------------------- CreateTopics (19)
CREATE_TOPICS = Api(19, "CreateTopics", (2, 7), 5, request=(
    f("topics", (
        f("name", "string"),
        f("num_partitions", "int32"),
        f("replication_factor", "int16"),
        f("assignments", (f("partition_index", "int32"), f("broker_ids", ["int32"]))),
        f("configs", (f("name", "string"), f("value", "string", nullable="0+"))),
    )),
    f("timeout_ms", "int32", default=60000),
    f("validate_only", "bool", "1+"),
), response=(
    f("throttle_time_ms", "int32", "2+"),
    f("topics", (
        f("name", "string"),
        f("topic_id", "uuid", "7+"),
        f("error_code", "int16"),
        f("error_message", "string", "1+", nullable="0+"),
        f("num_partitions", "int32", "5+", default=-1),
        f("replication_factor", "int16", "5+", default=-1),
        f("configs", (
            f("name", "string"),
            f("value", "string", nullable="5+"),
            f("read_only", "bool"),
            f("config_source", "int8", default=-1),
            f("is_sensitive", "bool"),
        ), "5+", nullable="5+"),
    )),
))

# ---------------------------------------------------------------- DeleteTopics (20)
DELETE_TOPICS = Api(20, "DeleteTopics", (1, 6), 4, request=(
    f("topics", (f("name", "string", nullable="6+"), f("topic_id", "uuid")), "6+"),
    f("topic_names", ["string"], "0-5"),
    f("timeout_ms", "int32"),
), response=(
    f("throttle_time_ms", "int32", "1+"),
    f("responses", (
        f("name", "string", nullable="6+"),
        f("topic_id", "uuid", "6+"),
        f("error_code", "int16"),
        f("error_message", "string", "5+", nullable="5+"),
    )),
))

# ---------------------------------------------------------------- DescribeConfigs (32)
DESCRIBE_CONFIGS = Api(32, "DescribeConfigs", (1, 4), 4, request=(
    f("resources", (
        f("resource_type", "int8"),
        f("resource_name", "string"),
        f("configuration_keys", ["string"], nullable="0+"),
    )),
    f("include_synonyms", "bool", "1+"),
    f("include_documentation", "bool", "3+"),
), response=(
    f("throttle_time_ms", "int32"),
    f("results", (
        f("error_code", "int16"),
        f("error_message", "string", nullable="0+"),
        f("resource_type", "int8"),
        f("resource_name", "string"),
        f("configs", (
            f("name", "string"),
            f("value", "string", nullable="0+"),
            f("read_only", "bool"),
            f("config_source", "int8", "1+", default=-1),
            f("is_sensitive", "bool"),
            f("synonyms", (
                f("name", "string"), f("value", "string", nullable="0+"), f("source", "int8"),
            ), "1+"),
            f("config_type", "int8", "3+"),
            f("documentation", "string", "3+", nullable="0+"),
        )),
    )),
))

# ---------------------------------------------------------------- DescribeCluster (60)
DESCRIBE_CLUSTER = Api(60, "DescribeCluster", (0, 1), 0, request=(
    f("include_cluster_authorized_operations", "bool"),
    f("endpoint_type", "int8", "1+", default=1),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
    f("error_message", "string", nullable="0+"),
    f("endpoint_type", "int8", "1+", default=1),
    f("cluster_id", "string"),
    f("controller_id", "int32", default=-1),
    f("brokers", (
        f("broker_id", "int32"), f("host", "string"), f("port", "int32"),
        f("rack", "string", nullable="0+"),
    )),
    f("cluster_authorized_operations", "int32", default=-2147483648),
))
