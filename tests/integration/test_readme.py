"""README.md's Python examples run as written, so the README cannot drift
from the library: every ```python block is either run here (in a child, in
an empty directory, as a newcomer would paste it) or listed as a fragment
with the reason it cannot run on its own."""

import os
import re
import subprocess
import sys

import pytest
from paste import paste_errors

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")

# blocks that are run, by the heading above them; blocks under one entry run
# in one process, in order (the analytics block reads the topic the library one wrote)
RUN = [("## Using the library", "## Analytics: DuckDB and polars push into the log"), ("## Compacted topics",)]
# blocks that are not self-contained, and why
FRAGMENTS = {
    "## Serving the Kafka protocol": "needs a running server with a registry; schema_str and record are the user's",
    "## Scaling out": "needs a Kafka cluster at broker1:9092",
}


def python_blocks() -> dict[str, str]:
    """Each ```python block of README.md under the ## heading above it (one per heading)."""
    text = open(README, encoding="utf-8").read()
    blocks: dict[str, str] = {}
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        heading = [h for h in re.findall(r"^## .*$", text[:m.start()], re.M)][-1]
        assert heading not in blocks, f"two python blocks under {heading!r}: give the second its own heading"
        blocks[heading] = m.group(1)
    return blocks


def run_blocks(tmp_path, *headings: str) -> str:
    blocks = python_blocks()
    script = "\n".join(blocks[h] for h in headings)
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_every_python_block_is_run_or_named_as_a_fragment():
    run = {h for group in RUN for h in group}
    assert set(python_blocks()) == run | set(FRAGMENTS)


@pytest.mark.parametrize("headings", RUN, ids=lambda hs: hs[0].lstrip("# "))
def test_the_readme_python_blocks_run_as_written(tmp_path, headings):
    pytest.importorskip("duckdb")
    pytest.importorskip("polars")
    pytest.importorskip("pandas")
    run_blocks(tmp_path, *headings)


def test_the_compacted_topic_example_prints_what_the_readme_shows(tmp_path):
    """The ``# ...`` lines under the block's print() are its output."""
    pytest.importorskip("pandas")
    block = python_blocks()["## Compacted topics"]
    lines = block.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("print("))
    shown = []
    for line in lines[at + 1:]:
        if not line.startswith("#"):
            break
        shown.append(line[2:])
    assert shown, "the block shows no output under its print()"
    assert run_blocks(tmp_path, "## Compacted topics").splitlines() == shown


def test_the_command_line_session_runs_as_pasted(tmp_path):
    """The README's shell session under "## Command line", pasted into bash
    in a checkout (its .venv) with every command required to succeed; only
    its data directory is moved under tmp_path so runs do not share it."""
    venv = os.path.dirname(os.path.dirname(sys.executable))
    if not os.path.exists(os.path.join(venv, "bin", "activate")):
        pytest.skip("not running from a virtual environment")
    text = open(README, encoding="utf-8").read()
    section = text[text.index("## Command line"):]
    session = re.search(r"^```sh\n(.*?)^```", section, re.S | re.M).group(1)
    assert "source .venv/bin/activate" in session and "/tmp/arrowlog-cli-demo" in session
    os.symlink(venv, tmp_path / ".venv")
    session = session.replace("/tmp/arrowlog-cli-demo", str(tmp_path / "cli-demo"))
    res = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", session], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "ARROWLOG_DATA"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "error" not in res.stderr, res.stderr
    assert sorted(res.stdout.splitlines()[:3]) == ["0 0 alice=42", "0 1 bob=7", "2 0 carol=13"]
    assert (tmp_path / "orders.parquet").is_file()


def test_the_readme_names_every_debian_package_make_installs():
    makefile = open(os.path.join(os.path.dirname(README), "Makefile"), encoding="utf-8").read()
    packages = re.search(r"^APT_PACKAGES\s*:=\s*(.*)$", makefile, re.M).group(1).split()
    text = open(README, encoding="utf-8").read()
    quick_start = text[text.index("## Quick start"):text.index("## Using the library")]
    assert [p for p in packages if p not in quick_start] == []


@pytest.mark.parametrize("heading", list(python_blocks()), ids=lambda h: h.lstrip("# "))
def test_every_block_pastes_into_the_interactive_interpreter(heading):
    """A newcomer pastes them into ``python``: before 3.13 a statement after
    an indented block needs the blank line that ends the block."""
    assert paste_errors(python_blocks()[heading]) == []
