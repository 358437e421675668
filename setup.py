"""Build arrowlog's native core.

Every top-level ``_native/<name>.pyx`` becomes the extension module
``arrowlog._native.<name>``; a module pulls in its per-layer ``.pxi`` files
with ``include`` (one compilation unit, as asyncpg and uvloop do), and the C
headers under ``_native/include``. A module's C-level declarations (its
extension types' attributes and cdef methods) are in
``src/arrowlog/_native/<name>.pxd``, which Cython finds through ``src`` on
the include path.

``ARROWLOG_DEBUG=1`` builds with asserts, bounds checks and -O0 -g; the
default build compiles those checks out.
"""

import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ARROWLOG_DEBUG", "") not in ("", "0")

if DEBUG:
    extra_compile_args = ["-O0", "-g3", "-UNDEBUG"]
    macros = [("ARROWLOG_DEBUG", "1")]
else:
    extra_compile_args = ["-O3", "-DNDEBUG"]
    macros = [("ARROWLOG_DEBUG", "0")]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": DEBUG,
    "embedsignature": True,
}

def pxd_changed(pyx: str) -> bool:
    """Whether the module's .pxd (in the package) is newer than its generated C:
    Cython's dependency check looks for a .pxd beside the .pyx only."""
    name = os.path.splitext(os.path.basename(pyx))[0]
    pxd, c = os.path.join("src", "arrowlog", "_native", name + ".pxd"), os.path.splitext(pyx)[0] + ".c"
    return os.path.exists(pxd) and os.path.exists(c) and os.path.getmtime(pxd) > os.path.getmtime(c)


ext_modules = []
for path in sorted(glob.glob("_native/*.pyx")):
    extension = Extension(
        "arrowlog._native." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=["_native/include", "_native"],
        define_macros=macros,
        extra_compile_args=extra_compile_args,
    )
    ext_modules += cythonize(
        [extension],
        compiler_directives=directives,
        compile_time_env={"ARROWLOG_DEBUG": DEBUG},
        include_path=["_native", "src"],
        force=pxd_changed(path),
    )

setup(ext_modules=ext_modules)
