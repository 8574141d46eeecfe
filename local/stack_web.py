"""The sample web app (samples/web/) on its own loopback origin, with the API reference at /docs.

The local stack starts one `SamplePage` and sets the functions' CORS_ORIGINS to its `origin`, so the
page calls the functions cross-origin exactly as the real app does. What it serves::

    /, /app.js, /style.css   the files of samples/web/, as they are (no build step)
    /config.json             where the functions are: {"functionsBaseUrl": ...}
    /token                   LOCAL ONLY: a Firebase ID token for the local user, minted by the
                             stack's token issuer (the real app calls Firebase Auth's getIdToken())
    /docs                    openapi.yaml rendered as one plain HTML page (nothing fetched)
    /openapi.yaml            the document itself

A second `SamplePage` on another port is an origin the functions do not allow (the browser test).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

from local.openapi import SPEC, render_html

PAGE_DIR = Path(__file__).resolve().parent.parent / "samples" / "web"
STATIC = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}


class SamplePage:
    """Serves samples/web/ on 127.0.0.1 from a thread; `mint_token()` gives the page its user token."""

    def __init__(self, functions_base_url: str, mint_token: Callable[[], str], port: int = 0) -> None:
        self.functions_base_url = functions_base_url
        self.mint_token = mint_token
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        path = path.split("?", 1)[0]
        if path in STATIC:
            name = STATIC[path]
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return 200, f"{kind}; charset=utf-8", (PAGE_DIR / name).read_bytes()
        if path == "/config.json":
            return _json({"functionsBaseUrl": self.functions_base_url})
        if path == "/token":
            return _json({"token": self.mint_token(), "localOnly": True})
        if path == "/docs":
            return 200, "text/html; charset=utf-8", render_html().encode()
        if path == "/openapi.yaml":
            return 200, "application/yaml; charset=utf-8", SPEC.read_bytes()
        return _json({"error": {"code": "not_found", "message": f"nothing at {path}"}}, 404)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, kind, body = page.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json(payload: object, status: int = 200) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload).encode()
