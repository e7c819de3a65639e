"""One error hierarchy for the generator, independent of click.

Only :mod:`generator.cli` turns these into messages and exit codes:
``SpecError`` and ``TemplateError`` exit 2, drift is a result (exit 1), not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GeneratorError", "Location", "Problem", "SpecError", "TemplateError", "OutputError"]


@dataclass(frozen=True, order=True, slots=True)
class Location:
    """A place in a spec file: ``file`` as given, 1-based ``line`` and ``column``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _printable(text: str) -> str:
    """Escape control characters (a key or value may hold a newline) so one problem is one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


@dataclass(frozen=True)
class Problem:
    """One mistake in a spec: where it is, the dotted path of the field, and what is wrong.

    ``str()`` gives ``file:line:col: path: message`` on one line (control characters escaped).
    """

    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        text = f"{self.location}: {self.path}: {self.message}" if self.path else f"{self.location}: {self.message}"
        return _printable(text)


class GeneratorError(Exception):
    """Raised for any failure the user can fix; the base of every error the CLI maps to exit 2."""


class SpecError(GeneratorError):
    """Raised when spec files cannot be read, parsed or validated; holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.location, p.path, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class TemplateError(GeneratorError):
    """Raised when a template is missing, does not parse, or uses an undefined variable."""


class OutputError(GeneratorError):
    """Raised when the build tree cannot be written safely (e.g. a symlink planted inside it)."""
