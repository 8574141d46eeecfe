"""Calling the functions over HTTP, and the CLI's one error type with its exit codes.

Exit codes (`OpsError.exit_code`)::

    0 ok            1 the call failed (4xx/5xx other than below), or a job did not complete
    2 bad arguments 3 endpoint unreachable / no local stack    4 not found (404)
    5 unauthenticated or forbidden (401, 403)

Foreign exceptions (requests) are translated here, once; messages name the URL, never a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_FOUND, EXIT_DENIED = 0, 1, 2, 3, 4, 5
_STATUS_EXIT = {401: EXIT_DENIED, 403: EXIT_DENIED, 404: EXIT_NOT_FOUND}


class OpsError(Exception):
    """Something the operator must know; `exit_code` is the process's exit status."""

    def __init__(
        self, message: str, exit_code: int = EXIT_FAILED, *, status: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status
        self.body = body


class FunctionsClient:
    """JSON calls to `<base_url>/<function>`; `trust_env=False` keeps loopback calls off any proxy."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, loopback: bool = False) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.trust_env = not loopback

    def url(self, function: str) -> str:
        return f"{self.base_url}/{function}"

    def call(
        self,
        function: str,
        token: str,
        *,
        method: str = "POST",
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The JSON answer of a 2xx, or `OpsError` with the function's own error message."""
        url = self.url(function)
        all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        try:
            response = self.session.request(
                method, url, json=body, params=params, headers=all_headers, timeout=self.timeout_s
            )
        except requests.ConnectionError:
            raise OpsError(f"cannot reach {url}: nothing answers there", EXIT_UNREACHABLE) from None
        except requests.Timeout:
            raise OpsError(f"{url} did not answer within {self.timeout_s:g} s", EXIT_UNREACHABLE) from None
        except requests.RequestException as exc:
            raise OpsError(f"calling {url} failed: {type(exc).__name__}", EXIT_UNREACHABLE) from None
        return _answer(function, response)

    def download(self, url: str, path: Any, *, chunk: int = 1 << 16) -> int:
        """Stream `url` into `path`; the number of bytes written."""
        try:
            with self.session.get(url, stream=True, timeout=self.timeout_s) as response:
                if response.status_code != 200:
                    raise OpsError(f"downloading {url} answered HTTP {response.status_code}")
                written = 0
                with open(path, "wb") as out:
                    for part in response.iter_content(chunk):
                        written += out.write(part)
                return written
        except requests.RequestException as exc:
            raise OpsError(f"downloading {url} failed: {type(exc).__name__}", EXIT_UNREACHABLE) from None

    def close(self) -> None:
        self.session.close()


def _answer(function: str, response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if 200 <= response.status_code < 300 and isinstance(payload, dict):
        return payload
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        detail = f"{error.get('code')}: {error.get('message')}"
    else:
        detail = (response.text or "").strip()[:200] or "no body"
    exit_code = _STATUS_EXIT.get(response.status_code, EXIT_FAILED)
    message = f"{function} answered HTTP {response.status_code} ({detail})"
    raise OpsError(message, exit_code, status=response.status_code, body=payload)
