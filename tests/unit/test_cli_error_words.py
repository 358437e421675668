"""A command's error is one line that always says something: an OSError
raised without words (a bare ``TimeoutError()``, as ``Future.result(timeout)``
raises) is named by its type instead of printing 'arrowlog: error: '."""

from __future__ import annotations

import pytest

from arrowlog.cli.common import EXIT_ERROR, translate_error


@pytest.mark.parametrize("exc, said", [
    (TimeoutError(), "TimeoutError"),
    (ConnectionResetError(), "ConnectionResetError"),
    (OSError(), "OSError"),
    (TimeoutError("the broker did not answer"), "the broker did not answer"),
    (OSError(28, "No space left on device", "/d/x"), "No space left on device: /d/x"),
])
def test_an_os_error_always_says_something(exc, said):
    err = translate_error(exc)
    assert err is not None and err.exit_code == EXIT_ERROR
    assert err.format_message() == said
