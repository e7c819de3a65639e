"""The JSON Schema of a spec file, for editors (yaml-language-server) and other tools.

Built from the pydantic models (:class:`generator.models.Spec`); field docstrings become
``description``s. A spec is split over several files whose top-level sections are merged, so
in the schema of one file no section is required (the loader still requires every section
somewhere). Rules the schema cannot express (YAML 1.2 scalars, the path policy, cross-references,
lint) are only checked by ``zachot-gen render``/``check``/``validate``.
"""

from __future__ import annotations

from typing import Any

from .models import Spec

__all__ = ["SCHEMA_DIALECT", "spec_file_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect pydantic generates (draft 2020-12)."""


def spec_file_schema() -> dict[str, Any]:
    """The JSON Schema (a dict, JSON-serialisable) every ``spec/*.yaml`` file conforms to.

    Input: none. Output: the schema of :class:`Spec` with ``required`` dropped at the top level
    (each file holds some of the sections) and ``$schema``/``title``/``description`` set.
    Raises nothing.
    """
    schema = Spec.model_json_schema(mode="validation")
    schema.pop("required", None)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "zachot-gen spec file",
        "description": (
            "One file of a zachot-gen spec folder: any of its top-level sections. Every section must appear "
            "in exactly one file of the folder; `zachot-gen check` validates everything this schema cannot."
        ),
        **{k: v for k, v in schema.items() if k not in {"title", "description"}},
    }
