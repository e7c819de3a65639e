"""The JSON Schema of a spec file, for editors (yaml-language-server) and other tools.

Built from the pydantic models (:class:`generator.models.Spec`); field docstrings become
``description``s. A spec is split over several files whose top-level sections are merged, so
in the schema of one file no section is required (the loader still requires every section
somewhere). Rules the schema cannot express (YAML 1.2 scalars, the path policy, cross-references,
lint) are only checked by ``zachot-gen render``/``check``/``validate``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

from .models import Spec
from .spectypes import SpecModel

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
    _describe(schema, Spec)
    for name, model in _models().items():
        if name in schema.get("$defs", {}):
            _describe(schema["$defs"][name], model)
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


def _models() -> dict[str, type[SpecModel]]:
    """Every spec model by class name (the names pydantic gives their ``$defs``)."""
    found: dict[str, type[SpecModel]] = {}
    todo = [SpecModel]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            found.setdefault(sub.__name__, sub)
            todo.append(sub)
    return found


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of the string literals written right under a class's annotated
    fields (PEP 257's "attribute docstrings", as pydantic's ``use_attribute_docstrings`` reads
    them), this class's own before its bases'."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for field, doc in zip(body, body[1:], strict=False):
            if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                    and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                    and isinstance(doc.value.value, str)):
                docs[field.target.id] = inspect.cleandoc(doc.value.value)
    return docs


def _describe(schema: dict[str, Any], model: type[SpecModel]) -> None:
    """Give each property of ``model``'s schema without a ``description`` its field's docstring."""
    docs = _attribute_docstrings(model)
    for name, prop in schema.get("properties", {}).items():
        if "description" not in prop and docs.get(name):
            prop["description"] = docs[name]
