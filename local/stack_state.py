"""The local stack's state file: what runs where, for the operator CLI and other tools.

`python -m local.stack` writes it (default `build/local-stack.json`) once everything answers and
removes it when it stops. A file whose stack process is gone is stale: `read_state` says so
instead of sending requests to ports that nobody (or somebody else) listens on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_FILE = ROOT / "build" / "local-stack.json"


class StateError(RuntimeError):
    """No usable state file; the message says how to get one."""


@dataclass(frozen=True)
class StackState:
    pid: int  # the process that runs the stack (and serves the token certificates)
    project: str
    region: str
    functions_base_url: str
    functions: dict[str, str]  # name -> URL
    firestore_host: str
    tasks_host: str
    queue: str
    token_key_file: str
    certs_url: str
    service_accounts: dict[str, str]  # role (tasks, scheduler, ops) -> email
    local_user: str
    providers: dict[str, dict[str, Any]]  # name -> {"mode": simulator|real, "url": ...}
    log_dir: str
    started_at: str
    storage_url: str | None = None
    storage_bucket: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


def write_state(path: Path, state: StackState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(state.to_json())
    os.replace(partial, path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(path: Path = DEFAULT_STATE_FILE) -> StackState:
    """The running stack's state, or `StateError` when there is none (or it is stale)."""
    try:
        state = StackState.from_json(Path(path).read_text())
    except FileNotFoundError:
        raise StateError(
            f"no local stack is running ({path} does not exist); start one with `make stack`"
        ) from None
    except (ValueError, TypeError) as exc:
        raise StateError(f"{path} is not a local stack state file: {exc}") from None
    if not pid_alive(state.pid):
        raise StateError(
            f"{path} is stale: the stack process {state.pid} is gone; start a new one with `make stack`"
        )
    return state


def remove_state(path: Path, pid: int) -> None:
    """Remove the state file if it is still the one written by `pid`."""
    try:
        if StackState.from_json(path.read_text()).pid == pid:
            path.unlink()
    except (OSError, ValueError, TypeError):
        pass
