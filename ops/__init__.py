"""The operator CLI, `python -m ops`: submit, status, cancel, jobs, batch-check, cleanup, health, token.

Modules: `cli` (arguments, exit codes), `commands` (one function per command), `target` (local
stack or a deployed project, and where tokens come from), `client` (HTTP and the `OpsError` tree),
`store` (Firestore reads through the job store), `render` (tables and JSON).
"""

from ops.cli import main

__all__ = ["main"]
