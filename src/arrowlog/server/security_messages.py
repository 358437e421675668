"""The security messages (SaslHandshake, SaslAuthenticate, the ACL calls and the
SCRAM credential calls) as schema tables (see schema.py). Collected in messages.APIS.
"""

from __future__ import annotations

from .schema import Api
from .schema import F as f

# ---------------------------------------------------------------- SASL (17, 36)
# Answered by the connection's security state (security/sasl.py), not the broker.
SASL_HANDSHAKE = Api(17, "SaslHandshake", (0, 1), None, request=(
    f("mechanism", "string"),
), response=(
    f("error_code", "int16"),
    f("mechanisms", ["string"]),
))

SASL_AUTHENTICATE = Api(36, "SaslAuthenticate", (0, 2), 2, request=(
    f("auth_bytes", "bytes"),
), response=(
    f("error_code", "int16"),
    f("error_message", "string", nullable="0+"),
    f("auth_bytes", "bytes"),
    f("session_lifetime_ms", "int64", "1+"),
))

# ---------------------------------------------------------------- ACLs (29, 30, 31)
_ACL_FILTER = (
    f("resource_type_filter", "int8"),
    f("resource_name_filter", "string", nullable="0+"),
    f("pattern_type_filter", "int8", "1+", default=3),
    f("principal_filter", "string", nullable="0+"),
    f("host_filter", "string", nullable="0+"),
    f("operation", "int8"),
    f("permission_type", "int8"),
)

DESCRIBE_ACLS = Api(29, "DescribeAcls", (0, 3), 2, request=_ACL_FILTER, response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
    f("error_message", "string", nullable="0+"),
    f("resources", (
        f("resource_type", "int8"),
        f("resource_name", "string"),
        f("pattern_type", "int8", "1+", default=3),
        f("acls", (
            f("principal", "string"), f("host", "string"),
            f("operation", "int8"), f("permission_type", "int8"),
        )),
    )),
))

CREATE_ACLS = Api(30, "CreateAcls", (0, 3), 2, request=(
    f("creations", (
        f("resource_type", "int8"),
        f("resource_name", "string"),
        f("resource_pattern_type", "int8", "1+", default=3),
        f("principal", "string"),
        f("host", "string"),
        f("operation", "int8"),
        f("permission_type", "int8"),
    )),
), response=(
    f("throttle_time_ms", "int32"),
    f("results", (f("error_code", "int16"), f("error_message", "string", nullable="0+"))),
))

DELETE_ACLS = Api(31, "DeleteAcls", (0, 3), 2, request=(
    f("filters", _ACL_FILTER),
), response=(
    f("throttle_time_ms", "int32"),
    f("filter_results", (
        f("error_code", "int16"),
        f("error_message", "string", nullable="0+"),
        f("matching_acls", (
            f("error_code", "int16"),
            f("error_message", "string", nullable="0+"),
            f("resource_type", "int8"),
            f("resource_name", "string"),
            f("pattern_type", "int8", "1+", default=3),
            f("principal", "string"),
            f("host", "string"),
            f("operation", "int8"),
            f("permission_type", "int8"),
        )),
    )),
))

# ---------------------------------------------------------------- SCRAM users (50, 51)
DESCRIBE_USER_SCRAM_CREDENTIALS = Api(50, "DescribeUserScramCredentials", (0, 0), 0, request=(
    f("users", (f("name", "string"),), nullable="0+"),
), response=(
    f("throttle_time_ms", "int32"),
    f("error_code", "int16"),
    f("error_message", "string", nullable="0+"),
    f("results", (
        f("user", "string"),
        f("error_code", "int16"),
        f("error_message", "string", nullable="0+"),
        f("credential_infos", (f("mechanism", "int8"), f("iterations", "int32"))),
    )),
))

ALTER_USER_SCRAM_CREDENTIALS = Api(51, "AlterUserScramCredentials", (0, 0), 0, request=(
    f("deletions", (f("name", "string"), f("mechanism", "int8"))),
    f("upsertions", (
        f("name", "string"), f("mechanism", "int8"), f("iterations", "int32"),
        f("salt", "bytes"), f("salted_password", "bytes"),
    )),
), response=(
    f("throttle_time_ms", "int32"),
    f("results", (
        f("user", "string"),
        f("error_code", "int16"),
        f("error_message", "string", nullable="0+"),
    )),
))
