"""The field types spec models share: names, paths, modes, one-line texts, seconds.

Each type says where its rule comes from (systemd's user-name syntax, what a path may hold so
it means the same in a unit file, tmpfiles.d, logrotate and a shell line). Used by
:mod:`generator.models` and :mod:`generator.runners`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, Strict

__all__ = [
    "LINE_BREAKING",
    "NAME_RE",
    "AbsPath",
    "DateFormat",
    "DirMode",
    "FileName",
    "Flag",
    "Mode",
    "Name",
    "RelPath",
    "RepoUrl",
    "Seconds",
    "ServiceUser",
    "SpecModel",
    "StopTimeout",
    "Text",
    "UnitText",
    "UserName",
    "clean_path",
    "unit_text",
]

_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
NAME_RE = re.compile(_NAME)
"""What a spec name (project, service, environment) may be; ``Name`` is this as a field type."""
LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters, C1 included (U+0085 NEL), and the Unicode line and paragraph separators:
what a one-line value may not hold, since some reader would take it for a line break."""
# systemd's "strict" user/group name rule (systemd.exec(5) User=, and the
# "User/Group Name Syntax" doc): ASCII letters, digits, '_' and '-', not starting
# with a digit or '-', at most 31 characters.
_USER = r"^[a-zA-Z_][a-zA-Z0-9_-]{0,30}$"
# Characters allowed in paths: no whitespace, quotes, '%' (a systemd specifier),
# '$' (an environment expansion), '\\' or glob characters, so a path means the same in a
# unit file, a logrotate file, tmpfiles.d and a shell snippet in the docs.
_PATH_CHARS = re.compile(r"[A-Za-z0-9._/@+-]+")
# What a repository URL may hold: no whitespace, quotes, backticks, backslashes or shell
# redirections; it is shown in a `git clone` command (shell-quoted all the same).
_REPO_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:|/)[^\s\"'`\\|<>{}^]+")


def _abs_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path (start with '/')")
    return clean_path(value)


def _rel_path(value: str) -> str:
    if value.startswith("/"):
        raise ValueError("must be relative to the repo checkout, not absolute")
    return clean_path(value)


def clean_path(value: str) -> str:
    """``value`` if it is a safe, normalised path of at most 1024 characters (255 per name);
    raises ValueError saying which rule it breaks."""
    if not _PATH_CHARS.fullmatch(value):
        raise ValueError("may only contain letters, digits and . _ / @ + - (no spaces, quotes, %, $, globs)")
    parts = value.strip("/").split("/")
    if value != "/" and (value.endswith("/") or "" in parts or "." in parts or ".." in parts):
        raise ValueError("must be normalised: no '//', '/./', '/../' and no trailing '/'")
    if len(value) > 1024 or any(len(p) > 255 for p in parts):
        raise ValueError("too long: at most 1024 characters, and 255 per folder or file name (NAME_MAX)")
    return value


def _repo_url(value: str) -> str:
    if not _REPO_URL.fullmatch(value):
        raise ValueError(
            "must be a repository URL (https://..., ssh://..., git@host:path, or an absolute path) "
            "without spaces, quotes, backticks, backslashes, '|', '<', '>'"
        )
    return value


def unit_text(value: str) -> str:
    """``value`` if it can be one unit-file setting: one line, no trailing backslash (systemd.syntax(7));
    raises ValueError otherwise."""
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("lands in a unit file: must be one line without control characters (newline, tab)")
    if value.endswith("\\"):
        raise ValueError("lands in a unit file: a trailing backslash would join the next line")
    return value


def _not_root(value: str) -> str:
    if value == "root":
        raise ValueError("the services must not run as root; name a system user (sysusers.d creates it)")
    return value


def _file_name(value: str) -> str:
    if "/" in value or value in {".", ".."} or value.startswith(".") or not _PATH_CHARS.fullmatch(value):
        raise ValueError("must be a plain, non-hidden file name (no '/', no leading '.')")
    return value


def _mode_not_number(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f'write the mode quoted, e.g. "0640": YAML reads 0640 unquoted as the number {value}')
    return value


def _octal_mode(value: str) -> str:
    if not re.fullmatch(r"0[0-7]{3}", value):
        raise ValueError('must be a 4-digit octal mode written as a string, e.g. "0640"')
    return _not_world_writable(value)


def _not_world_writable(value: str) -> str:
    if int(value, 8) & 0o002:
        raise ValueError(
            f"{value} lets every local user write there (replace a log with a symlink systemd opens as root, "
            "or delete it); drop the 'other' write bit"
        )
    return value


_DATE_SPECIFIERS = re.compile(r"%(.?)")
_SORT_RANK = {"Y": 0, "m": 1, "V": 1, "d": 2, "H": 3, "M": 4, "S": 5}  # %s sorts by itself


def _date_format(value: str) -> str:
    """logrotate.conf(5) ``dateformat``: only %Y %m %d %H %M %S %V %s, and the stamps must sort
    lexically (year, then month, then day, ...), for logrotate sorts archives by name to find
    the oldest. It must begin with ``-`` or ``.``: it is appended to the log's name, and an
    archive is told from another log by that separator (api.log-20260103, not api.log20260103)."""
    found = _DATE_SPECIFIERS.findall(value)
    bad = [f"%{c}" for c in found if c not in _SORT_RANK and c != "s"]
    if bad:
        raise ValueError(f"{', '.join(bad)} is not a logrotate dateformat specifier; "
                         "logrotate understands %Y %m %d %H %M %S %V %s only (logrotate.conf(5))")
    if not found:
        raise ValueError("names every archive alike; give a date, e.g. -%Y%m%d, or -%Y%m%d-%s")
    ranks = [_SORT_RANK[c] for c in found if c != "s"]
    if ranks != sorted(ranks):
        raise ValueError(f"{value} does not sort by date: logrotate sorts archives by name to remove the oldest, "
                         "so write the year first, then the month, the day and the time, e.g. -%Y%m%d")
    if value[0] not in "-.":
        raise ValueError(f"must begin with - or . (e.g. -{value}): it is appended to the log's name, and that "
                         "separator tells an archive (api.log-20260103) from another log")
    return value


AbsPath = Annotated[str, AfterValidator(_abs_path)]
"""An absolute, normalised path that needs no quoting in any artifact."""
RelPath = Annotated[str, AfterValidator(_rel_path)]
FileName = Annotated[str, AfterValidator(_file_name)]
def _dir_mode(value: str) -> str:
    if not re.fullmatch(r"[0-3][0-7]{3}", value):
        raise ValueError('must be a 4-digit octal folder mode written as a string, e.g. "0750" or "2770" (setgid)')
    return _not_world_writable(value)


Mode = Annotated[str, BeforeValidator(_mode_not_number), AfterValidator(_octal_mode)]
"""A file mode: 4 octal digits, no setuid, setgid or sticky bit."""
DirMode = Annotated[str, BeforeValidator(_mode_not_number), AfterValidator(_dir_mode)]
"""A folder mode: may add setgid (new files take the folder's group) or sticky, never setuid."""
Name = Annotated[str, Field(pattern=_NAME)]
UserName = Annotated[str, Field(pattern=_USER)]
Text = Annotated[str, Field(min_length=1)]
UnitText = Annotated[str, Field(min_length=1), AfterValidator(unit_text)]
"""Free text written into a unit file (Description=, Environment= values): one line."""
ServiceUser = Annotated[str, Field(pattern=_USER), AfterValidator(_not_root)]
Flag = Annotated[bool, Strict()]
"""true or false, nothing else (not 1, not "yes")."""
RepoUrl = Annotated[str, Field(max_length=2048), AfterValidator(_repo_url)]
Seconds = Annotated[float, Field(ge=0.000001, le=86400 * 7)]
"""A time span in seconds, > 0 at systemd's resolution of one microsecond, at most 7 days."""
DateFormat = Annotated[str, Field(pattern=r"^[-._A-Za-z0-9%]+$"), AfterValidator(_date_format)]
"""logrotate's ``dateformat``, one logrotate keeps in date order (:func:`_date_format`)."""


def _stop_timeout(value: object) -> float | str:
    if value == "infinity":
        return "infinity"
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.000001 <= value <= 86400 * 7:
        return float(value)
    raise ValueError(
        "want seconds (at least 0.000001, at most 7 days) or `infinity`; a packaged TimeoutStopSec=0 (no stop "
        "timeout, systemd.service(5)) is written `infinity`"
    )


StopTimeout = Annotated[
    float | Literal["infinity"], PlainValidator(_stop_timeout, json_schema_input_type=float | Literal["infinity"])
]
"""TimeoutStopSec=: seconds, or `infinity` (systemd never sends the final SIGKILL)."""


class SpecModel(BaseModel):
    """Base of every spec model: unknown fields are errors, values are frozen, field docstrings
    are the documentation (they feed `zachot-gen schema`, :mod:`generator.schema`, which reads
    them when it runs: pydantic's ``use_attribute_docstrings`` would parse every model's source
    at each start, ~0.07 s of every `check`), NaN and infinities are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
