"""Tooling runs as tests: lint failures fail the suite, so CI catches them."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def run(*args):
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)


def test_ruff():
    r = run(os.path.join(BIN, "ruff"), "check", "src", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cython_lint():
    r = run(os.path.join(BIN, "cython-lint"), "_native")
    assert r.returncode == 0, r.stdout + r.stderr
