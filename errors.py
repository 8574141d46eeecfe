"""The project's one error base: a code, a message, and the decisions that go with them.

Every error the project raises on purpose derives from `AppError`; foreign exceptions (requests,
google-api-core, google-auth) are translated into one at the seam where they occur. The decision
lives on the error: `retryable` (the same call may be repeated), `fallback_allowed` (another
provider could do this job), `retry_after` (seconds, when the error knows). An HTTP status is given
only at the edge (`web/http.py`), from the kind of error::

    AppError                      code, message, retryable, fallback_allowed, retry_after, details
    |-- InvalidInput              bad input, names the field                   -> 400
    |-- Unauthenticated           no or invalid identity (web.auth.AuthError)  -> 401
    |-- Forbidden                 a known caller that may not do this          -> 403
    |-- Missing                   not found, or not the caller's               -> 404
    |-- Conflict                  the state does not allow it                  -> 409
    |-- OverLimit                 over a budget; `retry_after`                 -> 429
    |-- Unavailable               nothing can take it now; `retry_after`       -> 503
    |-- ConfigError (config.py)   settings missing or invalid (names them all) -> 503 misconfigured
    |-- ProviderError (providers/base.py)  the provider error tree, see there
    |-- StoreError (jobs/store.py), QueueError (tasks/queue.py), StorageError (tasks/storage.py),
    |   FinalizeError (tasks/finalize.py), SignatureError (providers/signatures.py)
    `-- anything else reaching the edge                                        -> 500

`message` may be shown to a caller: it never carries a secret, a token or a stack trace.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of the project's errors; subclasses set the default code and decisions."""

    default_code = "error"
    retryable = False
    fallback_allowed = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if retryable is not None:
            self.retryable = retryable
        self.retry_after = retry_after
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description for records and logs (no secrets by construction)."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class InvalidInput(AppError):
    default_code = "invalid_request"


class Unauthenticated(AppError):
    default_code = "unauthenticated"


class Forbidden(AppError):
    default_code = "forbidden"


class Missing(AppError):
    default_code = "not_found"


class Conflict(AppError):
    default_code = "conflict"


class OverLimit(AppError):
    default_code = "over_quota"
    retryable = True


class Unavailable(AppError):
    default_code = "unavailable"
    retryable = True


def not_found(what: str = "job") -> Missing:
    """The answer for something that does not exist or is not the caller's (never "forbidden")."""
    return Missing(f"no such {what}, or it is not yours")


def msgspec_problem(exc: Exception) -> tuple[str, tuple[str, ...]]:
    """A msgspec `ValidationError` as its message and the place it names:
    "Expected `int` >= 1 - at `$.free.live_jobs`" -> ("Expected `int` >= 1", ("free", "live_jobs"))."""
    message, _, path = str(exc).partition(" - at `")
    return message, tuple(part for part in path.rstrip("`").removeprefix("$").split(".") if part)
