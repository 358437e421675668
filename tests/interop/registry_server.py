"""``arrowlog serve`` with the schema registry on a free port, for the registry tests
(tests/interop/test_registry_clients.py, tests/integration/test_registry_*.py)."""

from __future__ import annotations

from pathlib import Path

from .conftest import ServerProcess


class RegistryServer(ServerProcess):
    """``python -m arrowlog.server`` with the registry on a free port (its URL is the second line)."""

    def __init__(self, data_dir: Path, *extra: str):
        super().__init__(data_dir, "--registry-listen", "127.0.0.1:0", *extra)
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise RuntimeError("the registry did not start:\n" + self.log())

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the server; it must have exited cleanly (unless the block failed)."""
        code = self.stop()
        if exc[0] is None:
            assert code == 0, self.log()
