"""The only place a Jinja2 Environment is built (house style 7)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from .filters import FILTERS
from .layout import TEMPLATES_DIR

__all__ = ["TEMPLATES_DIR", "make_environment"]


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Jinja's own on-disk cache of compiled templates (``FileSystemBytecodeCache``: a folder in
    the temp dir that Jinja creates 0700 for this user and refuses if anyone else owns it), keyed
    by each template's source checksum, so an edited template is compiled anew. None when Jinja
    cannot set it up: templates are then compiled in memory, as before."""
    try:
        return jinja2.FileSystemBytecodeCache()
    except Exception:  # noqa: BLE001 - any refusal only costs the compile time
        return None


@lru_cache(maxsize=4)
def make_environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """Build the Environment all artifacts are rendered with.

    ``StrictUndefined`` (an undefined name is an error, never ""), no autoescape (nothing
    here is HTML; each value goes through its destination's filter instead),
    ``keep_trailing_newline``, ``trim_blocks``/``lstrip_blocks``, filters from
    :data:`generator.filters.FILTERS`, Jinja's bytecode cache (:func:`_bytecode_cache`), no
    ``auto_reload`` (a template loaded once is not checked for edits again). Input:
    the templates folder. Output: the Environment, cached per folder (it is not changed after
    creation, and compiled templates are reused).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=_bytecode_cache(),
        auto_reload=False,  # one run renders from one templates folder: no stat(2) per get_template
    )
    env.filters.update(FILTERS)
    return env
