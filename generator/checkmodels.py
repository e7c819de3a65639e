"""pydantic models of what a healthcheck script checks and what its exit codes mean
(``healthchecks.<name>.checks``, ``exit_codes``, ``not_checked``); the healthcheck itself is
:class:`generator.models.Healthcheck`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .spectypes import Name, Text
from .spectypes import SpecModel as _Model

__all__ = ["Check", "ExitCode", "NotChecked"]


class ExitCode(_Model):
    """What one exit code of a healthcheck means."""

    status: Annotated[str, Field(pattern=r"^[A-Z][A-Z_]*$")]
    """Short status word (OK, DEGRADED, DOWN, SKIP, BROKEN)."""
    meaning: Text


class Check(_Model):
    """One check of a healthcheck script."""

    id: Name
    title: Text
    description: Text
    fails_as: int | Annotated[list[int], Field(min_length=1, max_length=8)]
    """Exit code the script returns when this check fails, or several, worst first, when the check
    tells failures apart (e.g. ``[2, 1]``: keys unreadable -> 2, no live heartbeat -> 1)."""

    @property
    def exits(self) -> list[int]:
        """``fails_as`` as a list, worst first."""
        return self.fails_as if isinstance(self.fails_as, list) else [self.fails_as]


class NotChecked(_Model):
    """Something the healthcheck deliberately leaves unchecked (`what`), and `why`."""

    what: Text
    why: Text
