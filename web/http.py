"""HTTP conventions shared by every entry point: JSON errors, body parsing, one error seam.

Every answer is JSON. Errors are `{"error": {"code": "snake_case", "message": "..."}}` with::

    400 bad input (names the field)     401 no or invalid identity      404 not found or not yours
    405 wrong method                    409 state conflict              413 body too large
    415 not JSON                        429 over budget (Retry-After)   503 no provider can take it
    503 misconfigured (`config.ConfigError`: names every missing or invalid variable)
    500 the project's own fault (no detail; the log has it, the response never a trace or secret)

`endpoint` wraps an entry point: it checks the function's configuration (`check`, see
`web/check.py`), maps every `errors.AppError` to its answer (`STATUS`), logs one line per request
with the function's name and the trace id (`event: http_5xx` for every 5xx, `event: limit_refused`
for a 429), and turns anything unexpected into a 500 whose log line carries the traceback.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import flask
import msgspec

import errors
import logs
from config import ConfigError
from logs import get_logger
from web.cors import Cors

log = get_logger("web")
M = TypeVar("M")
MAX_BODY_BYTES = 64 * 1024
TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")
MAX_DEPTH = 32  # no request body needs more; deeper ones only cost recursion further on


class ApiError(errors.AppError):
    """An answer only the HTTP edge gives (405, 413, 415, ...), with its status and headers."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message, code=code, **extra)
        self.status = status
        self.headers = headers or {}


# The HTTP status of each kind of error (the first class in an error's MRO that is listed here).
STATUS: dict[type[errors.AppError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.Missing: 404,
    errors.Conflict: 409,
    errors.OverLimit: 429,
    errors.Unavailable: 503,
    ConfigError: 503,
}


def status_of(exc: errors.AppError) -> int | None:
    """The status an error is answered with; None for errors that are the project's own fault."""
    if isinstance(exc, ApiError):
        return exc.status
    return next((STATUS[kind] for kind in type(exc).__mro__ if kind in STATUS), None)


def error_response(exc: errors.AppError, status: int) -> flask.Response:
    headers = dict(getattr(exc, "headers", {}))
    if exc.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(exc.retry_after))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return respond(error_body(exc.code, exc.message, **exc.details), status, headers)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def respond(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    body = json.dumps(payload, default=str, ensure_ascii=False)
    response = flask.Response(body, status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def require_method(request: flask.Request, *methods: str) -> None:
    if request.method not in methods:
        allowed = ", ".join(methods)
        raise ApiError(405, "method_not_allowed", f"use {allowed}", headers={"Allow": allowed})


def raw_body(request: flask.Request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing oversized ones before reading them whole."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(413, "body_too_large", f"the body must be at most {max_bytes} bytes")
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(413, "body_too_large", f"the body must be at most {max_bytes} bytes")
    return data


def json_object(request: flask.Request, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    data = raw_body(request, max_bytes)
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    except RecursionError:  # the parser's own limit, far above MAX_DEPTH
        raise _too_deep() from None
    if depth(value) > MAX_DEPTH:
        raise _too_deep()
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    return value


def _too_deep() -> ApiError:
    return ApiError(400, "malformed_json", f"the body is nested more than {MAX_DEPTH} levels deep")


def depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in children)
    return deepest


def parse(model: type[M], data: dict[str, Any], where: str = "body") -> M:
    """Validate with the model's own library: a msgspec `Struct` (the status check's query, loaded
    without pydantic: `web/query.py`) or a pydantic model. The first problem becomes a 400 naming the
    field (or `where`: the body or the query, for a problem of the whole)."""
    if issubclass(model, msgspec.Struct):
        return _convert(model, data, where)
    import pydantic  # loaded by the model's own module already

    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except pydantic.ValidationError as exc:
        raise validation_error(exc.errors(), where) from None


def _convert(model: type[M], data: dict[str, Any], where: str) -> M:
    """A msgspec model from `data`, its strings stripped as the pydantic models strip theirs."""
    stripped = {key: value.strip() if isinstance(value, str) else value for key, value in data.items()}
    try:
        return msgspec.convert(stripped, model)
    except msgspec.ValidationError as exc:
        message, loc = errors.msgspec_problem(exc)
        raise validation_error([{"loc": loc, "msg": message}], where) from None


def validation_error(problems: Iterable[Any], where: str = "body") -> errors.InvalidInput:
    first = next(iter(problems))
    field = ".".join(str(part) for part in first.get("loc", ())) or where
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return errors.InvalidInput(f"{field}: {message}", field=field)


def trace_of(headers: Any, project: str | None) -> str | None:
    """`projects/P/traces/T` from `X-Cloud-Trace-Context` (`T/SPAN;o=1`) or W3C `traceparent`."""
    trace_id = headers.get("X-Cloud-Trace-Context", "").split("/")[0].strip()
    if not trace_id:
        parts = headers.get("traceparent", "").strip().split("-")
        trace_id = parts[1] if len(parts) >= 3 and len(parts[1]) == 32 else ""
    if not trace_id or not TRACE_ID.fullmatch(trace_id) or project is None:
        return None
    return f"projects/{project}/traces/{trace_id}"


def endpoint(
    project: Callable[[], str | None] = lambda: None,
    check: Callable[[str], None] | None = None,
    cors: Cors | None = None,
) -> Callable:
    """Decorate an entry point `fn(request) -> Response` with the configuration check, the error
    seam and a request log; `check(function name)` raises `ConfigError` naming what is missing.
    With `cors` (functions a browser calls) preflights are answered and every answer carries the
    CORS headers its origin may have (`web/cors.py`)."""

    def decorate(fn: Callable[[flask.Request], flask.Response]) -> Callable[[flask.Request], flask.Response]:
        @functools.wraps(fn)
        def wrapper(request: flask.Request) -> flask.Response:
            try:
                if cors is not None and request.method == "OPTIONS":
                    return cors.preflight(request)
                trace = trace_of(request.headers, _safe(project))
                with logs.request_context(function=fn.__name__, trace=trace):
                    response = _serve(fn, request, check)
                return cors.decorate(request, response) if cors is not None else response
            finally:
                _started()

        return wrapper

    return decorate


Entry = Callable[[flask.Request], flask.Response]


def _started() -> None:
    """After an instance's first answer: what its cold start loaded is moved out of the collector's
    way (`gc.freeze`), and cyclic collection, which main.py turns off while the modules load, runs
    again. Loading makes tens of thousands of objects; the collections the collector would run over
    them took ~45 ms (8 %) of a status check's cold start on a full core."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _serve(fn: Entry, request: flask.Request, check: Callable[[str], None] | None) -> flask.Response:
    try:
        if check is not None:
            check(fn.__name__)
        response = fn(request)
    except errors.AppError as exc:
        status = status_of(exc)
        if status is None:
            return _internal(fn.__name__, exc.code)
        _log_answer(fn.__name__, status, exc.message, exc.code)
        return error_response(exc, status)
    except Exception:
        return _internal(fn.__name__, None)
    _log_answer(fn.__name__, response.status_code, "ok", None)
    return response


def _internal(function: str, code: str | None) -> flask.Response:
    """A 500: logged with the exception's message and traceback (Error Reporting), answered blind."""
    context = {"event": "http_5xx", "function": function, "status": 500, "code": code or "internal"}
    log.exception("unhandled error", extra=context)
    return respond(error_body("internal", "internal error; it has been logged"), 500)


def _log_answer(function: str, status: int, message: str, code: str | None) -> None:
    event = "http_5xx" if status >= 500 else "limit_refused" if status == 429 else function
    context = {"event": event, "function": function, "status": status, **({"code": code} if code else {})}
    logs.emit(log, logging.WARNING if status >= 500 else logging.INFO, message, context)


def _safe(fn: Callable[[], str | None]) -> str | None:
    try:
        return fn()
    except Exception:
        return None
