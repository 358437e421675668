"""A config value of the wrong kind is named in the user's terms, not in
int()'s: from the CLI (exit 2, one line) and from the library alike."""

import pytest

import arrowlog
from arrowlog.cli import main
from arrowlog.cli.common import EXIT_USAGE


def test_topic_create_with_a_non_integer_config_value_says_an_integer_is_expected(capsys, tmp_path):
    rc = main(["--data", str(tmp_path / "d"), "topic", "create", "orders", "-c", "retention.ms=abc"])
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE, err
    assert "invalid value 'abc' for topic config 'retention.ms': expected an integer" in err
    assert "invalid literal" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("value", ["abc", "1.5x", [3]])
def test_producer_config_that_is_not_an_integer_is_a_config_error_naming_the_key(tmp_path, value):
    with pytest.raises(arrowlog.ConfigError) as exc:
        arrowlog.Producer({"log.dir": str(tmp_path / "d"), "linger.ms": value})
    assert str(exc.value) == f"invalid value {value!r} for producer config 'linger.ms': expected an integer"


@pytest.mark.parametrize("option", ["--retention-bytes", "--segment-size"])
def test_a_bad_size_names_the_option_it_was_given_to(capsys, tmp_path, option):
    rc = main(["--data", str(tmp_path / "d"), "topic", "create", "orders", option, "10XB"])
    err = capsys.readouterr().err
    assert rc == EXIT_USAGE, err
    assert f"Invalid value for '{option}': '10XB' is not a size" in err
