"""openapi.yaml describes every HTTP function and is generated from the models they validate with."""

from __future__ import annotations

import ast

import schemathesis
import yaml

from local import openapi
from tests.conftest import ROOT


def entry_nodes() -> list[ast.FunctionDef]:
    tree = ast.parse((ROOT / "main.py").read_text())
    return [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "functions_framework.http" for d in node.decorator_list)
    ]


def entry_points() -> set[str]:
    return {node.name for node in entry_nodes()}


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


def app_checked() -> set[str]:
    """The entry points that check the App Check header (directly or through `_user`)."""
    checks = ("_user", "appcheck.require")
    return {
        node.name
        for node in entry_nodes()
        if any(isinstance(call, ast.Call) and ast.unparse(call.func) in checks for call in ast.walk(node))
    }


def test_the_headers_a_function_reads_are_described():
    paths = yaml.safe_load(openapi.SPEC.read_text())["paths"]
    headers = {
        path.lstrip("/"): {
            p["name"] for op in ops.values() for p in op.get("parameters", []) if p["in"] == "header"
        }
        for path, ops in paths.items()
    }
    assert app_checked()  # the scan finds the user-facing functions
    assert {name for name, names in headers.items() if "X-Firebase-AppCheck" in names} == app_checked()
    assert {name for name, names in headers.items() if "Idempotency-Key" in names} == {"generate_video"}
