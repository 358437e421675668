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
    r = run(os.path.join(BIN, "ruff"), "check", "--no-cache", "src", "tests", "bench")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cython_lint():
    pxds = [os.path.join("src", "arrowlog", "_native", n) for n in os.listdir(os.path.join(ROOT, "src", "arrowlog", "_native"))
            if n.endswith(".pxd")]
    r = run(os.path.join(BIN, "cython-lint"), "_native", *pxds)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy():
    """mypy over src/arrowlog with [tool.mypy] in pyproject.toml: every error code, untyped bodies too."""
    r = run(sys.executable, "-m", "mypy", "--config-file", "pyproject.toml")
    assert r.returncode == 0, r.stdout + r.stderr


# Cython adds these to every extension type and module; they are not API.
STUBTEST_ALLOWLIST = [r".*\.__reduce_cython__", r".*\.__setstate_cython__", r".*\.__test__"]


def test_native_stubs_match_the_built_modules(tmp_path):
    """The .pyi stubs shipped for arrowlog._native.core and .kafka name every function, class and
    parameter the compiled modules have (a changed .pyx needs its stub changed too)."""
    allow = tmp_path / "allowlist.txt"
    allow.write_text("\n".join(STUBTEST_ALLOWLIST) + "\n")
    r = run(sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", "pyproject.toml", "--ignore-disjoint-bases",
            "--allowlist", str(allow), "arrowlog._native.core", "arrowlog._native.kafka", "arrowlog._native.avro")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("py.typed", "_native/core.pyi", "_native/kafka.pyi"):
        assert os.path.isfile(os.path.join(ROOT, "src", "arrowlog", name)), name


def test_ci_tests_every_python_the_wheels_are_built_for():
    import re

    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        build = re.search(r'^build\s*=\s*"([^"]*)"', f.read(), re.M).group(1)
    wheels = {f"3.{m}" for m in re.findall(r"cp3(\d+)-", build)}
    with open(os.path.join(ROOT, ".github", "workflows", "test.yml")) as f:
        tested = set(re.findall(r'"(3\.\d+)"', re.search(r"python-version:\s*\[([^\]]*)\]", f.read()).group(1)))
    assert wheels and wheels == tested, (sorted(wheels), sorted(tested))
