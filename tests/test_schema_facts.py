"""`zachot-gen schema` (JSON Schema of a spec file) and `zachot-gen facts` (every `${...}`).

The schema is checked with a real JSON Schema validator (jsonschema, draft 2020-12) against
every spec file of the repo and the fixtures, and against broken files it must refuse.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import REPO, SPEC_CASES, run_cli

SPEC_FILES = sorted(p for case in SPEC_CASES.values() for p in case.glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", SPEC_FILES, ids=[str(p.relative_to(REPO)) for p in SPEC_FILES])
def test_every_spec_file_conforms(validator: jsonschema.protocols.Validator, path: Path) -> None:
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("port: 9000", "port: nine", "is not of type 'integer'"),
        ("    rotate: 7\n", "    rotat: 7\n", "Additional properties are not allowed ('rotat' was unexpected)"),
        ("kind: uvicorn", "kind: unicorn", "'uvicorn' was expected"),
        ("policy: always", "policy: sometimes", "is not one of"),
    ],
)
def test_schema_refuses_broken_files(validator: jsonschema.protocols.Validator, old: str, new: str,
                                     message: str) -> None:
    text = (SPEC_CASES["single_api_en"] / "spec.yaml").read_text()
    assert old in text
    found = list(validator.iter_errors(yaml.safe_load(text.replace(old, new, 1))))
    # a runner is one of several kinds (oneOf): the reasons are in each error's context
    errors = [e.message for top in found for e in (top, *top.context)]
    assert any(message in e for e in errors), errors


def test_schema_carries_the_field_docs() -> None:
    schema = json.loads(run_cli("schema").stdout)
    user = schema["$defs"]["Project"]["properties"]["user"]
    assert "User=" in user["description"] and user["pattern"].startswith("^")
    assert "required" not in schema  # one file holds only some sections


def test_facts_lists_every_fact_with_its_value() -> None:
    result = run_cli("facts", "--spec", SPEC_CASES["gunicorn_command"])
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    assert rows["${api.shutdown_timeout}"] == "25s"  # gunicorn --graceful-timeout
    assert rows["${tasks.shutdown_timeout}"] == "120s"  # the command's declared wait
    assert "${sync.shutdown_timeout}" not in rows  # a command without one has no such fact
    assert rows["${env_file}"] == "/etc/ledger/ledger.env"
    assert rows["${enable_units}"] == "ledger-api.service ledger-tasks.service ledger-sync.service"


def test_facts_on_a_broken_spec_is_a_located_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "spec.yaml").write_text((SPEC_CASES["single_api_en"] / "spec.yaml").read_text()
                                    .replace("port: 9000", "port: nine"))
    result = run_cli("facts", "--spec", spec, cwd=tmp_path)
    assert result.returncode == 2
    assert "spec/spec.yaml:20:" in result.stderr and "services.web.runner.port" in result.stderr


def test_pre_commit_hook_runs_an_existing_command() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "zachot-gen-check" and hook["language"] == "python" and hook["pass_filenames"] is False
    program, *args = hook["entry"].split()
    assert program == "zachot-gen"  # the console script pyproject.toml installs
    result = run_cli(*args)  # in the repo: build/ is up to date
    assert result.returncode == 0, result.stdout + result.stderr
