"""The registry's errors: each carries the HTTP status and Confluent error code it answers with."""

from __future__ import annotations

from arrowlog.errors import ArrowlogError

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_LEVEL_CONFIG_NOT_FOUND = 40408
INCOMPATIBLE_SCHEMA = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY = 42203
UNPROCESSABLE = 422
STORE_ERROR = 50001


class RegistryError(ArrowlogError):
    """A registry request that cannot be served; ``status`` is the HTTP status and
    ``error_code`` the Confluent code (40401, 409, 42201, ...)."""

    def __init__(self, status: int, error_code: int, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def not_found(code: int, message: str) -> RegistryError:
    return RegistryError(404, code, message)


def invalid_schema(message: str) -> RegistryError:
    return RegistryError(422, INVALID_SCHEMA, message)
