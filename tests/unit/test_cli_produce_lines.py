"""``arrowlog produce`` names a line that does not fit a typed topic by its
stdin line number, not by a produce_batch row, and exits 2 (bad input), as a
line that is not JSON for --json does."""

import subprocess
import sys

from arrowlog.cli.common import EXIT_USAGE, CliError
from arrowlog.cli.produce import Block, produce_blocks
from arrowlog.storage import LogDir

SCHEMA = {"fields": [{"name": "id", "type": "int64"}]}


def typed_topic(tmp_path) -> str:
    data = str(tmp_path / "data")
    with LogDir(data) as log:
        log.create_topic("typed", config={"value.schema": SCHEMA})
    return data


def test_a_bad_line_in_a_later_block_is_named_by_its_stdin_line(tmp_path):
    data = typed_topic(tmp_path)
    blocks = [Block([b'{"id": 1}', b'{"id": 2}']), Block([b'{"id": 3}', b'{"id": "four"}', b'{"id": 5}'])]
    try:
        produce_blocks(data, "typed", blocks, 1)
    except CliError as exc:
        message, code = str(exc), exc.exit_code
    else:
        raise AssertionError("a line that does not fit the schema was appended")
    assert code == EXIT_USAGE
    assert "stdin line 4 (b'{\"id\": \"four\"}')" in message and "produce_batch" not in message
    assert "(lines 1-2, read before, had been appended)" in message
    with LogDir(data) as log:
        assert log.topic("typed").partition(0).high_watermark == 2


def test_the_command_exits_2_with_one_line_naming_the_line(tmp_path):
    data = typed_topic(tmp_path)
    res = subprocess.run([sys.executable, "-m", "arrowlog", "--data", data, "produce", "typed"],
                         input=b'{"id": 1}\nnot json\n', capture_output=True, timeout=120)
    err = res.stderr.decode()
    assert res.returncode == EXIT_USAGE, err
    assert err.startswith("arrowlog: error: topic 'typed': stdin line 2 (b'not json')"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
