"""``arrowlog serve`` and ``python -m arrowlog.server`` take the same options (one table)."""

import re

import pytest

from arrowlog.cli import main
from arrowlog.server import main as server_main
from arrowlog.server.options import OPTIONS, serve_kwargs


def flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", text))


def test_both_entry_points_list_every_option(capsys):
    with pytest.raises(SystemExit):
        server_main(["--help"])
    module_help = capsys.readouterr().out
    main(["serve", "--help"])
    cli_help = capsys.readouterr().out
    table = {o.flag for o in OPTIONS}
    assert {"--max-frame-bytes", "--max-connections", "--idle-timeout", "--advertised-host",
            "--partitions", "--flush-interval"} <= table
    assert table <= flags(module_help)
    assert table <= flags(cli_help)
    # nothing one entry point has that the other lacks (--help itself aside; --data is global in the CLI)
    assert flags(module_help) - {"--help"} == flags(cli_help) - {"--help"}


def test_option_values_become_serve_keywords():
    kw = serve_kwargs({"no_auto_create": True, "max_connections": 7, "idle_timeout": 2.5})
    assert kw["auto_create_topics"] is False
    assert kw["max_connections"] == 7 and kw["idle_timeout_s"] == 2.5
    assert kw["default_partitions"] == 1  # defaults fill the rest
    assert "log_level" not in kw


def test_a_bad_option_value_is_one_clear_line_and_exit_2(tmp_path, capsys):
    rc = server_main(["--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--partitions", "5000",
                      "--log-level", "ERROR"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "partitions of auto-created topics must be 1..1000" in err and "Traceback" not in err
