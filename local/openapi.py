"""Builds `openapi.yaml` from the code: one path per HTTP function, bodies from the models they parse.

    python -m local.openapi            # rewrite openapi.yaml
    python -m local.openapi --check    # exit 1 when openapi.yaml differs from the code
    python -m local.openapi --html     # print the document as one plain HTML page (the stack's /docs)

The request schemas are the models the functions validate with (`web/schemas.py`, `web/query.py`), so the
document cannot drift from what is accepted; `tests/test_openapi.py` runs the check. Paths are the
function names as served locally (`http://127.0.0.1:PORT/<function>`) and deployed
(`https://REGION-PROJECT.cloudfunctions.net/<function>`).
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml
from pydantic import BaseModel

from jobs.view_models import OpsView, UserView
from providers import registry
from web.query import DEFAULT_PROVIDER, StatusQuery
from web.schemas import (
    BatchStatusRequest,
    CancelRequest,
    CleanupRequest,
    FinalizePayload,
    GenerateRequest,
    HealthQuery,
    PollPayload,
)

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
USER, SERVICE, SIGNED = [{"firebaseUser": []}], [{"serviceAccount": []}], []
ERRORS = {
    "400": "bad input; the message names the field",
    "401": "no or invalid identity",
    "404": "not found, or not the caller's",
    "405": "wrong method",
    "413": "body too large",
    "415": "body is not application/json",
    "500": "the project's own fault (no detail)",
}
APP_CHECK_HEADER = {
    "name": "X-Firebase-AppCheck",
    "in": "header",
    "required": False,
    "description": "Firebase App Check token of the web app; required of a Firebase user when the "
    "deployment sets APP_CHECK=enforce (else 401 app_check_failed), never asked of a service account",
    "schema": {"type": "string", "maxLength": 4096},
}
IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the app's key for this request: a repeat with the same key and body answers 200 "
    "with the same job; with another body, 409 idempotency_key_reused",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
# function -> the headers it reads beyond Authorization (App Check: every function a user calls)
HEADERS = {"generate_video": [IDEMPOTENCY_HEADER]}
# function -> the views its 200 answer may hold as `job` (`jobs/views.py`)
JOB_ANSWERS: dict[str, tuple[type[BaseModel], ...]] = {
    "cancel_video": (UserView,),
    "runwayml_status_check": (UserView, OpsView),  # OpsView: an operator asks
}
# function -> (method, body model or None, query model or None, security, extra responses, summary)
FUNCTIONS: dict[str, tuple[str, type[BaseModel] | None, type | None, list, dict, str]] = {
    "generate_video": (
        "post",
        GenerateRequest,
        None,
        USER,
        {
            "200": "repeat of an Idempotency-Key: the same job",
            "202": "accepted",
            "409": "key reused",
            "429": "over budget (Retry-After)",
            "503": "no provider could take it (Retry-After; a named jobId has failed: retry with a new key)",
        },
        "Turn a CV script into a video job",
    ),
    "cancel_video": (
        "post",
        CancelRequest,
        None,
        USER,
        {"200": "cancelled", "409": "already ended"},
        "Cancel the caller's job",
    ),
    "runwayml_status_check": (
        "get",
        None,
        StatusQuery,
        USER + SERVICE,
        {"200": "the job"},
        "A job's status, refreshed from its provider when stale",
    ),
    "runwayml_batch_status_check": (
        "post",
        BatchStatusRequest,
        None,
        SERVICE,
        {"200": "per-job results"},
        "Many jobs at once (ops)",
    ),
    "runwayml_polling_task": (
        "post",
        PollPayload,
        None,
        SERVICE,
        {"200": "poll handled"},
        "One poll of a provider task (Cloud Tasks)",
    ),
    "finalize_video_task": (
        "post",
        FinalizePayload,
        None,
        SERVICE,
        {"200": "stored", "503": "retry later"},
        "Copy a finished video to storage (Cloud Tasks)",
    ),
    "runwayml_cleanup_task": (
        "post",
        CleanupRequest,
        None,
        SERVICE,
        {"200": "counts", "503": "a step failed"},
        "Retention, time-outs and crash recovery (Cloud Scheduler)",
    ),
    "provider_health": (
        "get",
        None,
        HealthQuery,
        SERVICE,
        {"200": "per-provider health"},
        "Provider reachability, circuit, budget and job statistics (ops)",
    ),
    "heygen_webhook": (
        "post",
        None,
        None,
        SIGNED,
        {"200": "handled, duplicate or ignored", "503": "no secret"},
        "HeyGen events, verified by HMAC signature",
    ),
    "runwayml_webhook": (
        "post",
        None,
        None,
        SIGNED,
        {"200": "handled, duplicate or ignored", "503": "no secret"},
        "RunwayML task events (Standard Webhooks signature)",
    ),
}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    }


def _responses(extra: dict[str, str]) -> dict[str, Any]:
    json_object = {"application/json": {"schema": {"type": "object"}}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    out = {code: {"description": text, "content": json_object} for code, text in extra.items()}
    for code, text in ERRORS.items():
        if code not in out:
            out[code] = {"description": text, "content": error}
    for code in list(out):
        if code.startswith(("4", "5")) and code in extra:
            out[code]["content"] = error
    return dict(sorted(out.items()))


def _query_parameters(model: type) -> list[dict[str, Any]]:
    if issubclass(model, msgspec.Struct):
        schema = _struct_schema(model)
    else:
        schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _nullable(prop)}
        for name, prop in schema["properties"].items()
    ]


def _struct_schema(model: type[msgspec.Struct]) -> dict[str, Any]:
    """A msgspec model's schema; its `provider` lists the registered names (as `ProviderName` does in
    the pydantic models) and the default it stands for when left out."""
    schema = msgspec.json.schema(model)["$defs"][model.__name__]
    if "provider" in schema["properties"]:
        names = list(registry.names())
        schema["properties"]["provider"] = {"default": DEFAULT_PROVIDER, "enum": names, "type": "string"}
    return schema


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 has no `"type": "null"`; a pydantic `X | None` becomes `X` with nullable."""
    options = prop.get("anyOf")
    if not options:
        return prop
    kept = [o for o in options if o.get("type") != "null"]
    rest = {k: v for k, v in prop.items() if k != "anyOf"}
    if len(kept) == 1:
        return {**kept[0], **rest, "nullable": True}
    return {**rest, "anyOf": kept, "nullable": True}


def _component(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    schema["properties"] = {name: _nullable(prop) for name, prop in schema.get("properties", {}).items()}
    return schema


def _operation(name: str) -> dict[str, Any]:
    method, body, query, security, extra, summary = FUNCTIONS[name]
    operation: dict[str, Any] = {"operationId": name, "summary": summary, "security": security}
    if body is not None:
        ref = {"$ref": f"#/components/schemas/{body.__name__}"}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    elif name.endswith("_webhook"):
        raw = {"type": "object", "additionalProperties": True}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": raw}}}
    parameters = _query_parameters(query) if query is not None else []
    parameters += HEADERS.get(name, [])
    if any("firebaseUser" in scheme for scheme in security):
        parameters.append(APP_CHECK_HEADER)
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = _responses(extra)
    if name in JOB_ANSWERS:
        refs = [{"$ref": f"#/components/schemas/{m.__name__}"} for m in JOB_ANSWERS[name]]
        job = refs[0] if len(refs) == 1 else {"oneOf": refs}
        answer = {"type": "object", "required": ["job"], "properties": {"job": job}}
        operation["responses"]["200"]["content"]["application/json"]["schema"] = answer
    return {method: operation}


def _view_components() -> dict[str, Any]:
    """The answer views and the models they nest, as components (serialization schemas)."""
    out: dict[str, Any] = {}
    for model in {m for models in JOB_ANSWERS.values() for m in models}:
        schema = model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}", mode="serialization"
        )
        for name, nested in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            props = nested.get("properties", {})
            out[name] = {**nested, "properties": {k: _ref_nullable(_nullable(v)) for k, v in props.items()}}
    return out


def _ref_nullable(prop: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 ignores the siblings of a `$ref`: a nullable reference is an `allOf` of one."""
    if "$ref" not in prop or len(prop) == 1:
        return prop
    rest = {k: v for k, v in prop.items() if k != "$ref"}
    return {"allOf": [{"$ref": prop["$ref"]}], **rest}


def build() -> dict[str, Any]:
    """The whole OpenAPI 3.0 document, deterministic."""
    models = sorted({m for spec in FUNCTIONS.values() for m in (spec[1],) if m}, key=lambda m: m.__name__)
    schemas = {model.__name__: _component(model) for model in models}
    schemas["Error"] = _error_schema()
    schemas |= _view_components()
    schemas = dict(sorted(schemas.items()))
    return {
        "openapi": "3.0.3",
        "info": {"title": "CVPlus video backend", "version": "1.0.0"},
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": {f"/{name}": _operation(name) for name in sorted(FUNCTIONS)},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "firebaseUser": {"type": "http", "scheme": "bearer", "bearerFormat": "Firebase ID token"},
                "serviceAccount": {"type": "http", "scheme": "bearer", "bearerFormat": "Google OIDC token"},
            },
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated parts in full instead of YAML anchors, so the file reads plainly."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    header = "# Generated by `python -m local.openapi` from the code; do not edit by hand.\n"
    body = yaml.dump(build(), Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


STYLE = "body{font:15px sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
STYLE += "td,th{border:1px solid #ccc;padding:4px;text-align:left}"


def render_html(text: str | None = None) -> str:
    """openapi.yaml (or `text`) as one self-contained HTML page: no script, nothing fetched."""
    spec = yaml.safe_load(SPEC.read_text() if text is None else text)
    parts = [f"<h1>{_esc(spec['info']['title'])} {_esc(spec['info']['version'])}</h1>"]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            parts += _operation_html(path, method, op, spec["components"]["schemas"])
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>CVPlus video API</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def _operation_html(path: str, method: str, op: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    who = ", ".join(name for scheme in op.get("security", []) for name in scheme) or "signature"
    parts = [
        f"<h2 id='{_esc(op['operationId'])}'>{method.upper()} {_esc(path)}</h2>",
        f"<p>{_esc(op.get('summary', ''))} <em>(caller: {_esc(who)})</em></p>",
    ]
    fields = {p["name"]: p["schema"] for p in op.get("parameters", [])}
    required = [p["name"] for p in op.get("parameters", []) if p.get("required")]
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        model = schemas[body["$ref"].rsplit("/", 1)[1]]
        fields, required = model.get("properties", {}), model.get("required", [])
    if fields:
        parts.append(_table(("field", "type", "required", "default", "values"), _rows(fields, required)))
    answers = [(code, r.get("description", "")) for code, r in op["responses"].items()]
    return [*parts, _table(("status", "meaning"), answers)]


def _rows(fields: dict[str, Any], required: list[str]) -> list[tuple[str, ...]]:
    rows = []
    for name, prop in fields.items():
        kind = prop.get("type") or " | ".join(o.get("type", "?") for o in prop.get("anyOf", []))
        notes = " | ".join(map(str, prop.get("enum", []))) or prop.get("description", "")
        default = "" if "default" not in prop else str(prop["default"])
        rows.append((name, kind, "yes" if name in required else "", default, notes))
    return rows


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    cells = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if openapi.yaml is out of date")
    parser.add_argument("--html", action="store_true", help="print openapi.yaml as an HTML page")
    args = parser.parse_args(argv)
    if args.html:
        print(render_html())
        return 0
    text = render()
    if args.check:
        current = SPEC.read_text() if SPEC.exists() else ""
        if current != text:
            print("openapi.yaml is out of date: run python -m local.openapi", file=sys.stderr)
            return 1
        return 0
    SPEC.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
