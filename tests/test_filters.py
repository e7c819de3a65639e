"""Each destination's escaping filter, checked against the real parser where there is one.

`systemd_word` round-trips through systemd itself: the escaped word is written as the
program path of an `ExecStart=` line, an executable with the *unescaped* name is created
in a throwaway root, and `systemd-analyze verify` complains unless systemd read the word
back exactly.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.filters import md_cell, md_table, seconds, systemd_command, systemd_env, systemd_value, systemd_word

# Printable text without '/' (a path separator) and without control characters, which
# the filters refuse (tested separately).
_WORD = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"), min_size=1, max_size=12)
_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)

_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _verify(unit_text: str, programs: list[str]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil_root = root / "usr/lib/systemd/system"
        shutil_root.parent.mkdir(parents=True)
        subprocess.run(["cp", "-a", "/usr/lib/systemd/system", str(shutil_root)], check=True)
        for name in programs:
            prog = root / "opt/p" / name
            prog.parent.mkdir(parents=True, exist_ok=True)
            prog.write_text("#!/bin/sh\n")
            prog.chmod(0o755)
        unit = root / "etc/systemd/system/t.service"
        unit.parent.mkdir(parents=True)
        unit.write_text(unit_text)
        proc = subprocess.run(
            [
                "systemd-analyze",
                "verify",
                f"--root={root}",
                "--man=no",
                "--generators=no",
                "/etc/systemd/system/t.service",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return (proc.stdout + proc.stderr).replace(str(root), "") + (
            "" if proc.returncode == 0 else f"rc={proc.returncode}"
        )


@_SETTINGS
@given(
    st.lists(
        _WORD.filter(lambda w: w not in {".", ".."} and not set(w) & set("\\'\"")), min_size=1, max_size=8, unique=True
    )
)
def test_systemd_word_round_trips_through_systemd(names: list[str]) -> None:
    # systemd refuses quotes and backslashes in an executable's name ("Executable name
    # contains special characters") however they are escaped; spec paths never contain them.
    lines = "".join(f"ExecStart={systemd_command(['/opt/p/' + n, n])}\n" for n in names)
    out = _verify(f"[Service]\nType=oneshot\n{lines}", names)
    assert out == "", out


@_SETTINGS
@given(_TEXT.filter(lambda t: not t.endswith("\\")), _TEXT)
def test_description_and_environment_values_are_accepted_as_written(desc: str, value: str) -> None:
    unit = (
        f"[Unit]\nDescription={systemd_value(desc)}\n[Service]\nType=oneshot\n"
        f"Environment={systemd_env('ZACHOT_X', value)}\nExecStart=/opt/p/x\n"
    )
    out = _verify(unit, ["x"])
    assert out == "", out


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "tab\there", "nul\x00"])
def test_control_characters_are_refused(bad: str) -> None:
    for fn in (systemd_word, systemd_value, lambda v: systemd_env("X", v)):
        with pytest.raises(ValueError, match="control characters"):
            fn(bad)


def test_trailing_backslash_and_empty_word_are_refused() -> None:
    with pytest.raises(ValueError, match="trailing backslash"):
        systemd_value("ends with \\")
    with pytest.raises(ValueError, match="empty word"):
        systemd_word("")


def test_percent_and_dollar_are_escaped() -> None:
    assert systemd_value("100% done") == "100%% done"
    assert systemd_word("a$b%c") == '"a$$b%%c"'
    assert systemd_command(["/opt/a$b", "a$b"]) == '"/opt/a$b" "a$$b"'
    assert systemd_env("K", 'say "hi" 50%') == '"K=say \\"hi\\" 50%%"'


@given(_TEXT | st.text(max_size=40))
def test_md_cell_never_breaks_a_table_row(text: str) -> None:
    cell = md_cell(text)
    assert "\n" not in cell and "\r" not in cell
    # every '|' is escaped, so the row keeps its number of cells
    assert cell.replace("\\|", "").count("|") == 0 or cell.count("\\|") == text.count("|")
    row = md_table(["a", "b"], [[text, "x"]]).split("\n")[2]
    assert row.replace("\\|", "").count("|") == 3


@pytest.mark.parametrize(
    ("value", "text"),
    [(5.0, "5"), (0.1, "0.1"), (90, "90"), (100000.5, "100000.5"), (0.000001, "0.000001"), (604800.0, "604800")],
)
def test_seconds_are_plain_decimals_at_microsecond_resolution(value: float, text: str) -> None:
    """systemd.time(7) takes plain decimals; `:g` formatting gave 1e-06 and 100000 for these."""
    assert seconds(value) == text


@given(st.floats(min_value=0.000001, max_value=604800, allow_nan=False))
def test_seconds_round_trip_within_a_microsecond(value: float) -> None:
    text = seconds(value)
    # half a microsecond (an exact .5 rounds to even), plus what parsing the text back may add
    assert "e" not in text and abs(float(text) - value) <= 0.0000005 + 2 * math.ulp(value)
