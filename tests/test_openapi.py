"""openapi.yaml describes every HTTP function and is generated from the models they validate with."""

from __future__ import annotations

import ast

import schemathesis
import yaml

from local import openapi
from tests.conftest import ROOT


def entry_points() -> set[str]:
    tree = ast.parse((ROOT / "main.py").read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "functions_framework.http" for d in node.decorator_list)
    }


def test_the_document_is_up_to_date_with_the_code():
    assert openapi.main(["--check"]) == 0, "run: python -m local.openapi"


def test_every_function_has_a_path_and_every_path_a_function():
    paths = {path.lstrip("/") for path in yaml.safe_load(openapi.SPEC.read_text())["paths"]}
    assert paths == entry_points()


def test_the_document_is_a_valid_openapi_schema():
    schema = schemathesis.openapi.from_path(str(openapi.SPEC))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(entry_points())


def test_request_schemas_refuse_unknown_fields_like_the_functions_do():
    schemas = yaml.safe_load(openapi.SPEC.read_text())["components"]["schemas"]
    assert schemas["GenerateRequest"]["additionalProperties"] is False
    assert "script" in schemas["GenerateRequest"]["required"]
