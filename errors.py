"""`ApiError`: an answer other than success, raised anywhere below the entry points.

Its `status`, `code` and `message` become the response `{"error": {"code", "message"}}` (see
`web.py`); `message` is shown to the caller, so it never carries a secret or a stack trace.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def not_found(what: str = "job") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}, or it is not yours")
