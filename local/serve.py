"""Serve every function of `main.py` from one local process, each at `/<function name>`.

Each function gets its own app from `functions_framework.create_app(target=name, source=main.py)`,
the same code path as a deployed function, mounted under a werkzeug `DispatcherMiddleware`; a
deployed function sees the path `/`, and so does each mounted app here. The list of functions is
read from `main.py` itself (every function decorated with `@functions_framework.http`), so a new
entry point is served without touching this file.

    python -m local.serve --port 8080            # the local stack runs this with its environment

The environment (emulators, simulators, token issuer) is the caller's; see `local/stack.py`.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
HTTP_DECORATORS = ("functions_framework.http", "http")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def function_names(source: Path = MAIN) -> list[str]:
    """Names of the HTTP entry points in `source`, in file order (read, not imported)."""
    tree = ast.parse(source.read_text(), filename=str(source))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) in HTTP_DECORATORS for d in node.decorator_list)
    ]


def _at_root(app: WsgiApp) -> WsgiApp:
    """Present `/name` to the mounted app as `/` (as Cloud Functions does), not as a redirect."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        return app(environ, start_response)

    return wrapped


def _not_found(names: list[str]) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        message = f"no function at {environ.get('PATH_INFO', '')}; served: {', '.join(names)}"
        body = json.dumps({"error": {"code": "not_found", "message": message}}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("404 NOT FOUND", headers)
        return [body]

    return app


def build_app(names: list[str] | None = None, source: Path = MAIN) -> WsgiApp:
    """One WSGI app routing `/<name>` to that function's functions-framework app."""
    import functions_framework
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    names = function_names(source) if names is None else names
    apps = {name: functions_framework.create_app(target=name, source=str(source)) for name in names}
    mounts = {f"/{name}": _at_root(app) for name, app in apps.items()}
    return DispatcherMiddleware(_not_found(names), mounts)


def use_local_queue(environ: Mapping[str, str]) -> None:
    """On the local stack, tasks carry the OIDC header Cloud Tasks would add (the emulator does not)."""
    from config import load_settings
    from local.tokens import task_auth_headers
    from tasks.queue import CloudTasksQueue
    from web import deps

    settings = load_settings(environ)
    headers = task_auth_headers(settings)
    if headers is not None:
        deps.use(deps.build(settings, queue=CloudTasksQueue(settings, task_headers=headers)))


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve until SIGTERM or Ctrl-C (threaded: a webhook may arrive while a poll is running)."""
    from werkzeug.serving import make_server

    use_local_queue(os.environ)

    names = function_names()
    server = make_server(host, port, build_app(names), threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving {len(names)} functions on http://{host}:{port}: {', '.join(names)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve main.py's functions at /<name> on loopback")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--list", action="store_true", help="print the function names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(function_names()))
        return 0
    serve(args.port, args.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
