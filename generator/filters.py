"""Pure functions that make a value safe for the file it lands in; used as Jinja2 filters.

Each destination has its own filter and templates never escape by hand (house style 9).
A value that cannot be made safe raises ``ValueError``; the renderer reports it with
the artifact's name.
"""

from __future__ import annotations

import json
import re
import shlex

__all__ = [
    "json_document",
    "FILTERS",
    "comment_text",
    "env_file_value",
    "md_cell",
    "md_code",
    "md_table",
    "seconds",
    "shell_command",
    "shell_word",
    "sysusers_text",
    "sysusers_word",
    "systemd_command",
    "systemd_env",
    "systemd_path",
    "systemd_value",
    "systemd_word",
    "tmpfiles_path",
]

_SAFE_WORD = re.compile(r"^[A-Za-z0-9._/:@+=,-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str, where: str) -> None:
    if _CONTROL.search(value):
        raise ValueError(f"{where}: control characters (newline, tab, ...) cannot be written here: {value!r}")


def systemd_value(value: str) -> str:
    """Escape a free-text setting value (e.g. ``Description=``) for a unit file.

    systemd.unit(5): ``%`` starts a specifier, so it is doubled; a newline would end the
    setting and a trailing backslash would continue it onto the next line, so both are
    refused (``ValueError``). Output: the value to write after ``Key=``.
    """
    _no_control(value, "unit setting")
    if value.endswith("\\"):
        raise ValueError(f"unit setting: a trailing backslash would join the next line: {value!r}")
    return value.replace("%", "%%")


def systemd_word(value: str, *, expand: bool = True) -> str:
    """Quote one word of an ``Exec*=`` command line so systemd reads it back unchanged.

    systemd.service(5), "Command lines": words split on whitespace, double quotes group,
    C-style backslash escapes apply inside them, ``%`` is a specifier; ``$`` is an
    environment expansion in the arguments only (``expand=True``), not in the program
    path. A plain word is returned as is; any other is double-quoted with ``\\`` and ``"``
    escaped, ``%`` -> ``%%`` and, for arguments, ``$`` -> ``$$``. Refuses control
    characters and the empty word (``ValueError``).
    """
    _no_control(value, "command word")
    if value == "":
        raise ValueError("command word: an empty word cannot be written")
    if _SAFE_WORD.match(value):
        return value
    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if expand:
        quoted = quoted.replace("$", "$$")
    return f'"{quoted}"'


def systemd_command(argv: list[str]) -> str:
    """An ``Exec*=`` value from a program and its arguments, each word quoted for systemd.

    The program path gets no ``$`` escaping (systemd does not expand it there, found by
    the round-trip test through ``systemd-analyze verify``); arguments do.
    Raises ``ValueError`` for an empty command or a word :func:`systemd_word` refuses.
    """
    if not argv:
        raise ValueError("command: empty")
    return " ".join([systemd_word(argv[0], expand=False), *(systemd_word(a) for a in argv[1:])])


def systemd_path(value: str) -> str:
    """A path for a path-valued unit setting (``WorkingDirectory=``, ``EnvironmentFile=``,
    ``append:``, ``ReadWritePaths=``): ``%`` -> ``%%`` (specifiers are expanded there).

    Such settings are not split into quoted words, so a path with whitespace, quotes,
    a backslash or a control character cannot be written safely and is refused
    (``ValueError``); spec paths are already limited to safe characters.
    """
    _no_control(value, "unit path")
    if not value.startswith("/") or re.search(r"[\s\"'\\]", value):
        raise ValueError(f"unit path: must be absolute, without whitespace, quotes or backslashes: {value!r}")
    return value.replace("%", "%%")


def systemd_env(name: str, value: str) -> str:
    """Render one ``Environment=`` assignment, quoted: ``"NAME=value"``.

    systemd.exec(5) Environment=: the assignment is one word, so it is double-quoted
    with ``\\`` and ``"`` escaped; specifiers are expanded, so ``%`` -> ``%%`` (``$`` is
    not expanded here). Refuses control characters (``ValueError``).
    """
    _no_control(value, f"Environment={name}")
    text = f"{name}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


def env_file_value(value: str) -> str:
    """A value of one ``NAME=value`` line of an EnvironmentFile= (systemd.exec(5)).

    systemd's parser (src/basic/env-file.c) strips whitespace around unquoted values and
    treats a backslash there as an escape; inside single quotes every character is literal;
    inside double quotes a backslash escapes ``"``, ``\\``, a backquote and ``$``. No
    variable expansion happens. So: safe words stay bare, anything else is single-quoted,
    and a value holding a single quote is double-quoted with those four characters escaped;
    each form reads the same in a POSIX shell (``set -a; . file``). Refuses control
    characters (``ValueError``): a newline would end the assignment.
    """
    _no_control(value, "env file value")
    if _SAFE_WORD.match(value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + re.sub(r'(["\\`$])', r"\\\1", value) + '"'


def comment_text(value: str) -> str:
    """Free text for a ``#`` comment line: every run of control characters (a newline would end
    the comment and start an assignment) and surrounding spaces becomes one space."""
    return re.sub(r"\s*[\x00-\x1f\x7f]+\s*", " ", value).strip()


def md_cell(value: object) -> str:
    """Make text safe inside a Markdown table cell: ``|`` -> ``\\|``, line breaks -> ``<br>``."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("|", "\\|").replace("\n", "<br>")


def md_table(headers: list[object], rows: list[list[object]]) -> str:
    """A Markdown (GFM) table: every cell through :func:`md_cell`; no trailing newline.

    Raises ``ValueError`` when a row's length differs from the header's.
    """
    lines = ["| " + " | ".join(md_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"table row has {len(row)} cells, the header {len(headers)}")
        lines.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    return "\n".join(lines)


def md_code(value: object) -> str:
    """Wrap text as Markdown inline code, with a fence longer than any backtick run inside."""
    text = str(value)
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def seconds(value: float) -> str:
    """Format seconds (float) for a systemd time span and the docs: plain decimal notation at
    systemd's microsecond resolution (systemd.time(7)), no useless fraction: ``5.0`` -> ``5``,
    ``0.1`` -> ``0.1``, ``100000.5`` -> ``100000.5`` (never ``1e+05`` or ``1e-07``)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def shell_word(value: object) -> str:
    """Quote one word of a POSIX shell command shown in the docs (``git clone URL DIR``).

    ``shlex.quote``: a word of safe characters stays as it is, any other is single-quoted,
    so ``; curl … | sh`` in a value stays one argument. Refuses control characters
    (``ValueError``): a newline in a copied command would run a second one.
    """
    text = str(value)
    _no_control(text, "shell word")
    return shlex.quote(text)


def shell_command(argv: list[str]) -> str:
    """A shell command line from its words, each through :func:`shell_word`."""
    return " ".join(shell_word(a) for a in argv)


def sysusers_text(value: str) -> str:
    """A free-text field (GECOS) of a sysusers.d(5) line, double-quoted.

    sysusers.d(5): fields are split on whitespace, quotes group a field, a backslash
    escapes the next character, and specifiers (``%``) are expanded, so ``\\`` and ``"``
    are escaped and ``%`` doubled. The GECOS field of passwd(5) cannot hold ``:`` (the
    field separator; systemd-sysusers refuses it), so ``:`` becomes ``-``. A value of exactly
    ``-`` stays the sysusers.d(5) placeholder for "no GECOS", quoted or not. Refuses control
    characters (``ValueError``): a newline would start a second sysusers line.
    """
    _no_control(value, "sysusers.d field")
    text = value.replace(":", "-").replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}"'


def sysusers_word(value: str) -> str:
    """A name or home-folder field of a sysusers.d(5) line, unquoted.

    Refuses whitespace, quotes, backslashes and control characters (``ValueError``): they
    would split or join fields; ``%`` -> ``%%`` (specifiers are expanded there too).
    """
    _no_control(value, "sysusers.d field")
    if value == "" or re.search(r"[\s\"'\\]", value):
        raise ValueError(f"sysusers.d field: must be one word without quotes or backslashes: {value!r}")
    return value.replace("%", "%%")


def tmpfiles_path(value: str) -> str:
    """A path for the Path field of a tmpfiles.d(5) line.

    tmpfiles.d(5): fields are split on whitespace (quotes and C escapes apply), and
    specifiers are expanded in the path, so ``%`` -> ``%%``. A path with whitespace, quotes,
    a backslash or a control character is refused (``ValueError``), as is a relative one.
    """
    _no_control(value, "tmpfiles.d path")
    if not value.startswith("/") or re.search(r"[\s\"'\\]", value):
        raise ValueError(f"tmpfiles.d path: must be absolute, without whitespace, quotes or backslashes: {value!r}")
    return value.replace("%", "%%")


def json_document(value: object) -> str:
    """A JSON document (RFC 8259) of ``value``, indented by 2, keys in the given order, text kept as
    UTF-8 (not ``\\u`` escapes). Unlike Jinja's ``tojson`` it does not HTML-escape ``<>&'``: the
    file is read by a program, not embedded in a page. Raises TypeError for a value JSON cannot hold."""
    return json.dumps(value, indent=2, ensure_ascii=False)


FILTERS = {
    "comment_text": comment_text,
    "env_file_value": env_file_value,
    "md_cell": md_cell,
    "md_code": md_code,
    "json_document": json_document,
    "md_table": md_table,
    "seconds": seconds,
    "shell_command": shell_command,
    "shell_word": shell_word,
    "sysusers_text": sysusers_text,
    "sysusers_word": sysusers_word,
    "systemd_command": systemd_command,
    "systemd_env": systemd_env,
    "systemd_path": systemd_path,
    "systemd_value": systemd_value,
    "systemd_word": systemd_word,
    "tmpfiles_path": tmpfiles_path,
}
"""Every filter the templates may use, registered by :mod:`generator.environment`."""
