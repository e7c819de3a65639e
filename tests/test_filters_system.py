"""The sysusers.d, tmpfiles.d and shell filters, round-tripped through the real parsers.

* ``sysusers_text``: a GECOS written by the filter into a ``u`` line is applied by the real
  ``systemd-sysusers --root=<scratch>``; the passwd line it writes must carry exactly the
  text (``:`` mapped to ``-``), and exactly one user must be created, whatever the text.
* ``tmpfiles_path``: a path written by the filter into a ``d`` line is created by the real
  ``systemd-tmpfiles --create --root=<scratch>`` under exactly that name.
* ``shell_word``: a command line joined by the filter is split back by ``bash`` into the
  same words, and no other command runs.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from generator.filters import shell_command, shell_word, sysusers_text, sysusers_word, tmpfiles_path

_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30)
_NAME = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), blacklist_characters="/\"'\\"),
                min_size=1, max_size=12).filter(lambda s: s not in {".", ".."})  # fmt: skip
_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _scratch_root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\n")
    return root


def _apply(tool: list[str], line: str, read: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``tool --root=<scratch> <conf holding line>``; return the process and the names
    (passwd lines, or the entries of a folder) found at ``read`` inside the root."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _scratch_root(Path(tmp))
        conf = Path(tmp) / "probe.conf"
        conf.write_text(line)
        proc = subprocess.run([*tool, f"--root={root}", str(conf)], capture_output=True, text=True, timeout=60)
        found = root / read
        if found.is_dir():
            return proc, sorted(p.name for p in found.iterdir())
        return proc, found.read_text().splitlines() if found.is_file() else []


@_SETTINGS
@given(_TEXT)
@example('x" /bin/sh u evil - "e')
@example("back\\slash\\")
@example("100% %n: 'single'")
@example("-")
def test_sysusers_text_round_trips_through_systemd_sysusers(text: str) -> None:
    line = f"u probe - {sysusers_text(text)} /opt/probe /usr/sbin/nologin\n"
    proc, lines = _apply(["systemd-sysusers"], line, "etc/passwd")
    users = [ln.split(":") for ln in lines]
    assert proc.returncode == 0, (line, proc.stderr)
    assert [u[0] for u in users] == ["root", "probe"], (line, users)
    want = "" if text.replace(":", "-") == "-" else text.replace(":", "-")  # "-": no GECOS, sysusers.d(5)
    assert ":".join(users[1][4:-2]) == want, (line, users[1])
    assert users[1][-1] == "/usr/sbin/nologin"


@pytest.mark.parametrize("bad", ["a\nu evil - - / /bin/bash", "tab\there", "nul\x00"])
def test_sysusers_filters_refuse_control_characters(bad: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        sysusers_text(bad)
    with pytest.raises(ValueError):
        sysusers_word(bad)


@_SETTINGS
@given(_NAME)
@example("100%n")
def test_tmpfiles_path_round_trips_through_systemd_tmpfiles(name: str) -> None:
    line = f"d {tmpfiles_path(f'/srv/probe/{name}')} 0750 root root -\n"
    proc, made = _apply(["systemd-tmpfiles", "--create"], line, "srv/probe")
    assert proc.returncode == 0, proc.stderr
    assert made == [name]


@pytest.mark.parametrize("bad", ["/a b", '/a"b', "/a\\b", "relative", "/a\nd /etc 0777 root root -"])
def test_tmpfiles_path_refuses_what_would_split_a_line(bad: str) -> None:
    with pytest.raises(ValueError):
        tmpfiles_path(bad)


@_SETTINGS
@given(st.lists(_TEXT, min_size=1, max_size=4))
@example(["it's", '"$(id)"', "a b;c|d", "`x`\\"])
def test_shell_command_is_split_back_into_the_same_words(words: list[str]) -> None:
    line = shell_command(["printf", "%s\\0", *words])
    proc = subprocess.run(["bash", "-c", line], capture_output=True, timeout=30)
    assert proc.returncode == 0, (line, proc.stderr)
    assert proc.stdout.decode().split("\0")[:-1] == words, line


def test_shell_word_keeps_an_injection_one_argument() -> None:
    url = "https://x; touch /tmp/zachot-pwned-$$ | sh `id`"
    proc = subprocess.run(["bash", "-c", f"printf '%s\\n' {shell_word(url)}"], capture_output=True, text=True)
    assert proc.stdout == url + "\n"
    with pytest.raises(ValueError):
        shell_word("a\nrm -rf /")
