"""What a reader who pastes a documented Python block into the interactive
interpreter (Python before 3.13: one statement at a time, a blank line to
end an indented block) sees go wrong, without running the block."""

from __future__ import annotations

import code


class _CompileOnly(code.InteractiveConsole):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def runcode(self, code_object) -> None:  # compile, do not run
        pass

    def showsyntaxerror(self, filename=None, **kwargs) -> None:
        self.errors.append(f"line {self.line_no}: {self.last_line.strip()}")

    def showtraceback(self) -> None:
        self.errors.append(f"line {self.line_no}: {self.last_line.strip()}")


def paste_errors(block: str) -> list[str]:
    """The lines of ``block`` at which the interactive interpreter reports a
    syntax error when the block is pasted in (an empty list: it pastes)."""
    console = _CompileOnly()
    for console.line_no, console.last_line in enumerate([*block.splitlines(), ""], 1):
        console.push(console.last_line)
    return console.errors
