"""Alerting: every generated unit names a report unit in ``OnFailure=``, so a failure is told once.

Without it a failed unit, a crash loop that hit its start limit or a healthcheck that returned
DOWN shows only in ``systemctl --failed`` and the journal. systemd starts the units of
``OnFailure=`` when a unit enters the "failed" state (systemd.unit(5)); a unit that is only
being restarted (``Restart=``) is not failed yet, so a crash loop reports once, when the start
limit is hit. The report unit is a template, ``<project>-on-failure@.service``, started as
``<project>-on-failure@<failed unit>.service`` (``%n`` of the failed unit); systemd gives its
process ``$MONITOR_SERVICE_RESULT``, ``$MONITOR_EXIT_CODE``, ``$MONITOR_EXIT_STATUS`` and
``$MONITOR_UNIT`` (systemd.exec(5), "Environment Variables in Spawned Processes", systemd 250
and later).

What it runs is the spec's ``project.on_failure.command`` (e.g. a webhook call), with the failed
unit's name and its result appended as two arguments. Without a command it writes one line to the
journal at priority ``crit`` under the identifier ``<project>-alert`` (``SyslogLevel=``,
``SyslogIdentifier=``), which ``journalctl -p crit`` and any journal shipper see. The report unit
itself has no ``OnFailure=``: a failing report must not report itself.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from .filters import systemd_command, systemd_word
from .runners import Word, program_first
from .spectypes import SpecModel

__all__ = ["OnFailure", "alert_identifier", "report_exec", "report_template", "report_unit"]

RESULT_ARGS = ("%i", "${MONITOR_SERVICE_RESULT}")
"""What the report appends to the command: the failed unit (the instance name) and its result."""


class OnFailure(SpecModel):
    """What the report of a failed unit runs (spec ``project.on_failure``)."""

    command: Annotated[list[Word], Field(min_length=1, max_length=256), AfterValidator(program_first)]
    """The program and its arguments, one word each, passed literally like a `command` runner's
    argv (an absolute path, or a plain name from project.venv's bin/). Two arguments are
    appended: the failed unit's name and its result (`exit-code`, `signal`, `start-limit-hit`,
    `timeout`, ...). systemd's `MONITOR_*` variables and the env file (when present) are in its
    environment. It runs with a dynamic user (DynamicUser=yes) and the sandboxing preset."""


def report_template(project: str) -> str:
    """File name of the report template unit, ``<project>-on-failure@.service``."""
    return f"{project}-on-failure@.service"


def report_unit(project: str) -> str:
    """What ``OnFailure=`` names: the template instantiated with the failed unit's full name (``%n``)."""
    return f"{project}-on-failure@%n.service"


def alert_identifier(project: str) -> str:
    """The journal identifier of the default report (``journalctl -t <project>-alert``)."""
    return f"{project}-alert"


_FIELDS = {"unit": "%i", "result": "${MONITOR_SERVICE_RESULT}", "code": "${MONITOR_EXIT_CODE}",
           "status": "${MONITOR_EXIT_STATUS}"}
"""The default line's fields: the failed unit and what systemd says of its end."""


def report_exec(on_failure: OnFailure | None, venv: str, line: str) -> str:
    """The ``ExecStart=`` value of the report unit, quoted for systemd.

    Inputs: the spec's ``project.on_failure`` (None: the default journal line), project.venv (for
    a plain program name) and the default line's text in the docs' language, with ``{unit}``,
    ``{result}``, ``{code}`` and ``{status}`` fields. The spec's words are quoted literally
    (:func:`generator.filters.systemd_command`); the unit specifier and the ``MONITOR_*``
    variables are inserted unquoted so systemd expands them. Raises ValueError for a word
    systemd cannot hold (checked when the spec is loaded).
    """
    if on_failure is not None:
        argv = on_failure.command
        program = argv[0] if argv[0].startswith("/") else f"{venv}/bin/{argv[0]}"
        return " ".join([systemd_command([program, *argv[1:]]), *RESULT_ARGS])
    marks = {name: f"@{name.upper()}@" for name in _FIELDS}
    text = systemd_word(line.format(**marks))
    for name, mark in marks.items():
        text = text.replace(mark, _FIELDS[name])
    return f"/bin/echo {text}"
