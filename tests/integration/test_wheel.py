"""The wheel a user installs works: built with ``pip wheel .``, installed into a fresh virtual
environment outside the source tree, then ``arrowlog demo``, a produce/consume round trip (CLI and
Python API), the native, storage and client test suites, and mypy over a small program (py.typed and
the native stubs) run against it.

The fresh environment gets the wheel only; its dependencies (numpy, pyarrow, click, ...) come from the
environment running the tests, through a ``.pth`` line (so nothing is downloaded), which never makes
the source tree importable there: the test checks that ``arrowlog`` is the installed copy.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 600  # a generous bound for a loaded 2-core machine; the whole test takes well under it

pytestmark = pytest.mark.slow


def run(*args, cwd, input=None, env=None):
    r = subprocess.run(args, cwd=cwd, input=input, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert r.returncode == 0, f"{args}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, arrowlog script, work dir) of a fresh venv holding only the built wheel."""
    base = tmp_path_factory.mktemp("wheel")
    wheels = base / "wheels"
    # --no-build-isolation: build with this environment's setuptools and Cython (no download)
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
        cwd=ROOT)
    [wheel] = glob.glob(str(wheels / "arrowlog-*.whl"))
    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=base)
    python = str(venv / "bin" / "python")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=base)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=base).stdout.strip()
    with open(os.path.join(site, "zz-test-dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # numpy, pyarrow, click... of this environment
    work = base / "work"
    work.mkdir()
    return python, str(venv / "bin" / "arrowlog"), str(work), wheel


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ARROWLOG_"))}
    env["NO_COLOR"] = "1"
    return env


def test_the_wheel_holds_the_package_the_native_modules_and_the_type_information(installed):
    names = zipfile.ZipFile(installed[3]).namelist()
    for needed in ("arrowlog/py.typed", "arrowlog/_native/core.pyi", "arrowlog/_native/kafka.pyi",
                   "arrowlog/_native/core.pxd", "arrowlog/_native/kafka.pxd",
                   "arrowlog/demo.py", "arrowlog/cli/__init__.py"):
        assert needed in names, needed
    assert any(n.startswith("arrowlog/_native/core.") and n.endswith(".so") for n in names)
    assert any(n.startswith("arrowlog/_native/kafka.") and n.endswith(".so") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "_native/")) or n.endswith((".pyx", ".pxi", ".c"))
                   for n in names)


def test_arrowlog_is_imported_from_the_installed_wheel(installed):
    python, _, work, _ = installed
    where = run(python, "-c", "import arrowlog, arrowlog._native.core as c; print(arrowlog.__file__); "
                "print(c.__file__)", cwd=work, env=clean_env()).stdout.split()
    venv = os.path.dirname(os.path.dirname(python))
    assert all(path.startswith(venv) for path in where), where
    assert not any(path.startswith(os.path.join(ROOT, "src")) for path in where)


def test_demo_runs_from_the_installed_package(installed):
    _, arrowlog, work, _ = installed
    r = run(arrowlog, "demo", os.path.join(work, "demo"), cwd=work, env=clean_env())
    assert "published 200,000 OrderPlaced events" in r.stdout
    assert "value_format='json'" in r.stdout and "grand total:" in r.stdout
    assert "done. Data is in" in r.stdout


def test_produce_and_consume_with_the_installed_cli_and_api(installed):
    python, arrowlog, work, _ = installed
    data = os.path.join(work, "data")
    r = run(arrowlog, "--data", data, "produce", "smoke", input="one\ntwo\nthree\n", cwd=work, env=clean_env())
    assert "created topic smoke" in r.stderr and "produced 3 records to smoke" in r.stderr
    r = run(arrowlog, "--data", data, "consume", "smoke", "-e", "--format", "text", cwd=work, env=clean_env())
    assert r.stdout.splitlines() == ["one", "two", "three"]
    program = f"""
import arrowlog
with arrowlog.Producer({{"log.dir": {data!r}}}) as p:
    p.produce("smoke", b"four", key=b"k")
with arrowlog.Consumer({{"log.dir": {data!r}, "group.id": "g", "auto.offset.reset": "earliest"}}) as c:
    c.subscribe(["smoke"])
    got = []
    while len(got) < 4:
        m = c.poll(30.0)
        assert m is not None and m.error() is None, m
        got.append(m.value().decode())
print(",".join(got))
print(arrowlog.replay({data!r}, "smoke").num_records)
"""
    r = run(python, "-c", program, cwd=work, env=clean_env())
    assert r.stdout.split() == ["one,two,three,four", "4"]


# The unit suite and the integration suites of the public API (library, CLI,
# both backends), run against the installed package: the compiled code the
# wheel carries (built with the wheel's own flags) and its Python files. Left
# out: the source-tree checks (lint, stubs, schema and import layering read the
# tree), the browser and
# subprocess-heavy suites, and this file.
INSTALLED_SUITES = ["tests/unit", "tests/integration/test_produce_consume.py",
                    "tests/integration/test_library_errors.py", "tests/integration/test_backends.py",
                    "tests/integration/test_cli_commands.py", "tests/integration/test_compaction.py",
                    "tests/integration/test_json_columns.py", "tests/integration/test_retention_defaults.py",
                    "tests/integration/test_transactions_library.py", "tests/integration/test_dataset.py"]
INSTALLED_SKIP = ["tests/unit/test__sourcecode.py", "tests/unit/test_schema.py", "tests/unit/test_import_layers.py"]


def test_native_storage_and_client_suites_pass_against_the_installed_package(installed):
    python, _, work, _ = installed
    where = os.path.join(work, "arrowlog-used-by-the-suites.txt")
    with open(os.path.join(work, "arrowlog_probe.py"), "w") as f:  # a plugin: which arrowlog the tests used
        f.write("import sys\n\n\ndef pytest_sessionfinish(session):\n"
                f"    open({where!r}, 'w').write(sys.modules['arrowlog'].__file__)\n")
    env = dict(clean_env(), PYTHONPATH=work)
    ignore = [f"--ignore={os.path.join(ROOT, s)}" for s in INSTALLED_SKIP]
    r = run(python, "-m", "pytest", *[os.path.join(ROOT, s) for s in INSTALLED_SUITES], *ignore, "-q", "-p", "arrowlog_probe",
            "-p", "no:cacheprovider", "-W", "ignore", cwd=work, env=env)
    tail = r.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", tail)
    # the unit suite alone is several hundred tests: a handful would mean the paths were not found
    print(tail)
    assert passed and int(passed.group(1)) > 500 and "failed" not in tail and "error" not in tail, tail
    with open(where) as f:
        assert f.read().startswith(os.path.dirname(os.path.dirname(python)))


def test_mypy_reads_the_installed_type_information(installed):
    python, _, work, _ = installed
    usage = os.path.join(work, "usage.py")
    with open(usage, "w") as f:
        f.write("import arrowlog\nfrom arrowlog._native import core\n"
                "reveal_type(arrowlog.murmur2(b'k'))\nreveal_type(core.crc32c(b'x'))\n"
                "arrowlog.murmur2_partition(b'k')  # one argument short: mypy must say so\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--python-executable", python, "--no-incremental",
                        "--cache-dir", os.path.join(work, ".mypy_cache"), usage],
                       cwd=work, capture_output=True, text=True, timeout=TIMEOUT_S, env=clean_env())
    out = r.stdout + r.stderr
    assert len(re.findall(r'Revealed type is "(?:builtins\.)?int"', out)) == 2, out
    assert "Missing positional argument" in out, out
    assert "missing library stubs or py.typed" not in out, out
