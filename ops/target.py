"""Which system the CLI talks to, and where its identities come from.

local stack (default)   URLs from the state file `python -m local.stack` writes; tokens minted
                        with the stack's throwaway issuer key (local user, ops, scheduler accounts)
--project P --region R  https://R-P.cloudfunctions.net; service calls carry
                        `gcloud auth print-identity-token --audiences=<function URL> --include-email`
                        (optionally `--impersonate-service-account`); calls as an app user need a
                        Firebase ID token in CVPLUS_ID_TOKEN. No token is ever stored or hard-coded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from local.stack_state import StackState, StateError, read_state
from ops.client import EXIT_DENIED, EXIT_UNREACHABLE, EXIT_USAGE, FunctionsClient, OpsError

USER_TOKEN_ENV = "CVPLUS_ID_TOKEN"  # noqa: S105 - a variable name, not a token


class Tokens(Protocol):
    def user(self, uid: str | None, tier: str | None = None) -> str: ...

    def service(self, role: str, audience: str) -> str: ...


class LocalTokens:
    """Tokens the local stack's functions accept, signed with the stack's issuer key."""

    def __init__(self, state: StackState) -> None:
        from local.tokens import TokenIssuer

        self.state = state
        try:
            self.issuer = TokenIssuer(Path(state.token_key_file), serve=False)
        except ValueError as exc:
            raise OpsError(f"the local stack's key is unusable: {exc}", EXIT_UNREACHABLE) from None

    def user(self, uid: str | None, tier: str | None = None) -> str:
        """A Firebase ID token for `uid` (the stack's local user by default), valid for an hour."""
        extra = {} if tier is None else {"tier": tier}
        return self.issuer.user_token(uid or self.state.local_user, self.state.project, **extra)

    def service(self, role: str, audience: str) -> str:
        return self.issuer.service_token(self.state.service_accounts[role], audience)


@dataclass
class GcloudTokens:
    """Identity tokens from the gcloud CLI, one per audience (function URL), cached for this run."""

    impersonate: str | None = None
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _cache: dict[str, str] = field(default_factory=dict)

    def user(self, uid: str | None, tier: str | None = None) -> str:
        token = self.environ.get(USER_TOKEN_ENV)
        if not token:
            raise OpsError(
                f"calls as an app user need a Firebase ID token: set {USER_TOKEN_ENV} "
                "(e.g. from the app's getIdToken()) and try again",
                EXIT_USAGE,
            )
        return token

    def service(self, role: str, audience: str) -> str:
        if audience not in self._cache:
            self._cache[audience] = self._print_identity_token(audience)
        return self._cache[audience]

    def _print_identity_token(self, audience: str) -> str:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise OpsError("the gcloud CLI is not installed; it provides the identity token", EXIT_USAGE)
        argv = [gcloud, "auth", "print-identity-token", f"--audiences={audience}", "--include-email"]
        if self.impersonate:
            argv.append(f"--impersonate-service-account={self.impersonate}")
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)  # noqa: S603
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise OpsError(f"gcloud could not print an identity token: {reason}", EXIT_DENIED)
        return result.stdout.strip()


@dataclass
class Target:
    description: str
    client: FunctionsClient
    tokens: Tokens
    project: str
    state: StackState | None = None  # the local stack, when that is the target

    def user_token(self, uid: str | None = None, tier: str | None = None) -> str:
        return self.tokens.user(uid, tier)

    def service_token(self, role: str, function: str) -> str:
        return self.tokens.service(role, self.client.url(function))


def deployed_base_url(project: str, region: str) -> str:
    return f"https://{region}-{project}.cloudfunctions.net"


def resolve(
    *,
    project: str | None,
    region: str,
    state_file: Path,
    base_url: str | None = None,
    impersonate: str | None = None,
    timeout_s: float = 30.0,
) -> Target:
    """The local stack (from its state file) unless a project is named."""
    if project is not None:
        url = base_url or deployed_base_url(project, region)
        client = FunctionsClient(url, timeout_s=timeout_s)
        return Target(f"project {project} ({region})", client, GcloudTokens(impersonate), project)
    try:
        state = read_state(state_file)
    except StateError as exc:
        raise OpsError(str(exc), EXIT_UNREACHABLE) from None
    return local_target(state, base_url=base_url, timeout_s=timeout_s)


def local_target(state: StackState, *, base_url: str | None = None, timeout_s: float = 30.0) -> Target:
    """The local stack described by `state` (from its state file, or from a `LocalStack`)."""
    url = base_url or state.functions_base_url
    client = FunctionsClient(url, timeout_s=timeout_s, loopback=True)
    return Target(f"local stack ({url})", client, LocalTokens(state), state.project, state)
