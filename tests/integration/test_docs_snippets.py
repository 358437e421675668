"""The code in docs/*.md stays true of the code: every ```python block
compiles and its ``arrowlog`` imports and ``arrowlog.<name>`` references
exist; the blocks whose fence says ```python runnable run as written (in a
child, in an empty directory, in the order of their file); and every
``arrowlog ...`` command line of README.md and docs/*.md names a real
command with options it takes (parsed by the CLI, not run).

README.md's Python blocks are run by test_readme.py."""

from __future__ import annotations

import ast
import glob
import os
import re
import shlex
import subprocess
import sys

import click
import pytest
from paste import paste_errors

import arrowlog
from arrowlog.cli import cli

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks(path: str, language: str) -> list[tuple[str, int, str]]:
    """(info after the language, line number, code) of each fenced block in ``language``."""
    text = open(path, encoding="utf-8").read()
    return [(m.group(2).strip(), text.count("\n", 0, m.start()) + 1, m.group(3))
            for m in FENCE.finditer(text) if m.group(1) == language]


def python_blocks() -> list[tuple[str, int, str, str]]:
    return [(os.path.basename(p), line, info, code) for p in DOCS for info, line, code in blocks(p, "python")]


def block_id(b: tuple) -> str:
    return f"{b[0]}:{b[1]}"


@pytest.mark.parametrize("block", python_blocks(), ids=block_id)
def test_every_python_block_compiles_and_its_arrowlog_names_exist(block):
    name, line, _info, code = block
    tree = compile(code, f"{name}:{line}", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "arrowlog" \
                or isinstance(node, ast.Import) and any(a.name.split(".")[0] == "arrowlog" for a in node.names):
            exec(compile(ast.Module([node], []), f"{name}:{line + node.lineno}", "exec"), {})
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "arrowlog":
            assert hasattr(arrowlog, node.attr), f"{name}:{line + node.lineno}: arrowlog has no {node.attr!r}"


def test_some_blocks_are_marked_runnable():
    assert sum(info == "runnable" for _, _, info, _ in python_blocks()) >= 2


@pytest.mark.parametrize("name", sorted({b[0] for b in python_blocks() if b[2] == "runnable"}))
def test_the_runnable_python_blocks_run_as_written(tmp_path, name):
    pytest.importorskip("pandas")
    script = "\n".join(code for n, _, info, code in python_blocks() if n == name and info == "runnable")
    assert paste_errors(script) == [], "does not paste into the interactive interpreter"
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def command_lines() -> list[tuple[str, int, list[str]]]:
    """Each ``arrowlog ...`` command in a ```sh block, as argv after ``arrowlog``."""
    out = []
    for path in [os.path.join(ROOT, "README.md"), *DOCS]:
        for _info, line, code in blocks(path, "sh"):
            logical, first = "", 0
            for i, text in enumerate(code.splitlines()):
                first = first if logical else line + 1 + i
                logical += text[:-1] + " " if text.endswith("\\") else text + "\n"
                try:
                    lexer = shlex.shlex(re.sub(r"(?<=\s)\d>", ">", logical), posix=True, punctuation_chars=True)
                    lexer.whitespace_split, lexer.commenters = True, "#"
                    words = list(lexer)
                except ValueError:
                    continue   # a quote or a backslash continues on the next line
                if text.endswith("\\"):
                    continue
                logical = ""
                command: list[str] = []
                redirect = False
                for w in [*words, ";"]:
                    if redirect or w in ("<", ">", ">>", ">&", "<<<"):
                        redirect = not redirect   # skip the operator and its file
                        continue
                    if w not in ("|", "||", "&&", ";", "&"):
                        command.append(w)
                        continue
                    while command and command[0] in ("exec", "time"):
                        command = command[1:]
                    if command and command[0] in ("arrowlog", ".venv/bin/arrowlog"):
                        out.append((os.path.basename(path), first, command[1:]))
                    command = []
    return out


@pytest.mark.parametrize("command", command_lines(), ids=lambda c: f"{c[0]}:{c[1]}")
def test_every_documented_command_line_parses(command):
    name, line, argv = command
    cmd: click.Command = cli
    ctx = cli.make_context("arrowlog", list(argv))
    while isinstance(cmd, click.Group):
        args = [*ctx._protected_args, *ctx.args]   # what the group left for its subcommand
        if not args:
            break
        sub_name, sub, rest = cmd.resolve_command(ctx, args)
        assert sub is not None, f"{name}:{line}: no command {sub_name!r}"
        cmd, ctx = sub, sub.make_context(sub_name or "", list(rest), parent=ctx)
