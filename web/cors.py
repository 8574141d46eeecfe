"""CORS for the functions the web app calls from a browser (`generate_video`, `cancel_video`,
`runwayml_status_check`); internal functions and webhooks never answer CORS.

    allowed origins   CORS_ORIGINS: exact origins (`https://app.example.com`), no wildcard
    preflight         OPTIONS from an allowed origin -> 204 with Access-Control-Allow-Origin (that
                      origin), -Allow-Methods, -Allow-Headers (Authorization, Content-Type,
                      Idempotency-Key, X-Firebase-AppCheck), -Max-Age; from any other origin
                      -> 204 without them, so the browser refuses the call
    real answers      Access-Control-Allow-Origin for an allowed origin, errors included
    every answer      Vary: Origin (a cache must not hand one origin's answer to another)
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import flask

ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Firebase-AppCheck"
EXPOSED_HEADERS = "Retry-After"
MAX_AGE_S = 3600


@dataclass(frozen=True)
class Cors:
    """The CORS answer of one function: its methods, and where the allowed origins come from."""

    methods: str
    origins: Callable[[], Collection[str]]

    def allowed(self, request: flask.Request) -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin is not None and origin in self.origins() else None

    def preflight(self, request: flask.Request) -> flask.Response:
        response = flask.Response(status=204)
        origin = self.allowed(request)
        if origin is not None:
            response.headers["Access-Control-Allow-Methods"] = self.methods
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
        return self.decorate(request, response)

    def decorate(self, request: flask.Request, response: flask.Response) -> flask.Response:
        origin = self.allowed(request)
        response.headers.add("Vary", "Origin")
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
