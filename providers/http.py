"""HTTP plumbing shared by the provider modules: sessions, transport-error translation, retries.

The only place in `providers/` that knows `requests` exceptions; each provider package maps HTTP
status codes and bodies to the error tree itself (the tables differ). Its client derives from
`HttpProvider` (settings, one lazy session, timeouts) and runs each call through `_retry` with the
predicate that fits the call:

- `retry_read`: GETs (and creates carrying an idempotency key) repeat anything `retryable`.
- `retry_unsent_or_refused`: creates without an idempotency key repeat only what provably never
  reached the provider (`ConnectFailed`) or what it refused outright (429, 502, 503).

A `Retry-After` longer than the policy's cap ends the retries at once: the caller (a poll, a
fallback) is better placed to wait than a function instance holding a request open.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import requests
import tenacity
import urllib3

from config import Settings
from providers.base import (
    ConnectFailed,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)

T = TypeVar("T")

USER_AGENT = "cvplus-video/1.0"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about min(cap, base * 2**(n-1))."""

    max_attempts: int = 3
    base_s: float = 0.5
    cap_s: float = 8.0
    retry_after_cap_s: float = 30.0


def new_session() -> requests.Session:
    """A session with the project's user agent; callers create it lazily and keep it."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date); None when absent or bad."""
    if value is None or value.strip() == "":
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, policy: RetryPolicy, rand: float) -> float:
    """Delay before retry number `attempt` (1-based): capped exponential, minus up to 25 % jitter."""
    raw = min(policy.cap_s, policy.base_s * (2 ** max(0, attempt - 1)))
    return raw * (1.0 - 0.25 * rand)


def retry_read(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def retry_unsent_or_refused(exc: BaseException) -> bool:
    if isinstance(exc, ConnectFailed | RateLimited):
        return True
    return isinstance(exc, ProviderUnavailable) and exc.http_status in (502, 503)


def never_reached(exc: requests.RequestException) -> bool:
    """True when the request provably never reached the server (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", exc.args[0])
        return isinstance(
            reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        )
    return False


def translate_transport_error(
    exc: requests.RequestException, *, provider: str, is_create: bool
) -> ProviderError:
    """Map a `requests` failure (no HTTP answer) onto the error tree."""
    if never_reached(exc):
        return ConnectFailed(f"could not connect to {provider}", provider=provider)
    kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "failed in transit"
    if is_create:
        return OutcomeUnknown(
            f"create request to {provider} {kind}; the task may exist and must not be re-sent",
            provider=provider,
        )
    return ProviderUnavailable(f"request to {provider} {kind}", provider=provider)


def with_retries(
    call: Callable[[], T],
    *,
    policy: RetryPolicy,
    should_retry: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run `call`, repeating it per `policy` while `should_retry(error)` holds; re-raise the last."""

    def retry_predicate(exc: BaseException) -> bool:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after > policy.retry_after_cap_s:
            return False
        return should_retry(exc)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after
        return backoff_delay(state.attempt_number, policy, rand())

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(retry_predicate),
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
    return retrying(call)


class HttpProvider:
    """Base of the provider clients: settings, one lazily created session, timeouts, the retry
    policy, and the sleep and randomness that retries use (injected by tests)."""

    def __init__(
        self,
        settings: Settings,
        *,
        session_factory: Callable[[], requests.Session] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._timeout = (settings.http_connect_timeout_s, settings.http_read_timeout_s)
        self._policy = RetryPolicy(
            max_attempts=settings.http_max_attempts, retry_after_cap_s=settings.retry_after_cap_s
        )
        self._sleep, self._rand = sleep, rand
        self._factory = session_factory or new_session
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    def _http_session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = self._factory()
            return self._session

    def _retry(self, call: Callable[[], T], should_retry: Callable[[BaseException], bool]) -> T:
        return with_retries(
            call, policy=self._policy, should_retry=should_retry, sleep=self._sleep, rand=self._rand
        )
