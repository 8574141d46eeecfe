"""What each function needs from its configuration, checked at its first request and before a deploy.

`NEEDS` is the one table: function name -> the settings it cannot work without. `problems` names
EVERY missing or invalid variable of a function (not just the first); `require` raises them as one
`config.ConfigError`, which the edge answers 503 `misconfigured` (`web/http.py`) before the
function touches a job, so a misconfigured function never strands an attempt.

    needs       checked at every request: 503 misconfigured while one is missing
    creates     may send a provider create (a fallback too): a provider key must be set, and
                HEYGEN_AVATAR_ID whenever HEYGEN_API_KEY is
    own_answer  the function answers its own, more specific 503 while these are missing
                (webhook_not_configured, storage_not_configured); this check lists them before a deploy

Before a deploy (`deploy.sh --check`)::

    python -m web.check --env-file ENV.yaml --secret HEYGEN_API_KEY [--secret VAR ...] [FUNCTION ...]

prints one line per problem and exits 1 if there is any. With `--env-file` the file (`KEY: 'value'`
or `KEY=value` lines) is the whole environment, as the deployed function sees it; `--secret VAR`
names a variable bound from Secret Manager (taken as set). Without it, the current environment.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config import ENV_VARS, ConfigError, Settings, load_settings

ENQUEUES = ("functions_base_url", "tasks_service_account")  # task targets, OIDC audiences and caller
OPS = ("functions_base_url", "ops_service_accounts")


@dataclass(frozen=True)
class Needs:
    needs: tuple[str, ...] = ()
    creates: bool = False
    own_answer: tuple[str, ...] = ()


NEEDS: dict[str, Needs] = {
    "generate_video": Needs(ENQUEUES, creates=True),
    "cancel_video": Needs(),
    "runwayml_status_check": Needs(ENQUEUES, creates=True),
    "runwayml_polling_task": Needs(ENQUEUES, creates=True),
    "heygen_webhook": Needs(
        ("heygen_api_key", *ENQUEUES), creates=True, own_answer=("heygen_webhook_secrets",)
    ),
    "runwayml_webhook": Needs(
        ("runwayml_api_key", *ENQUEUES), creates=True, own_answer=("runwayml_webhook_secrets",)
    ),
    "runwayml_batch_status_check": Needs((*OPS, "tasks_service_account"), creates=True),
    "provider_health": Needs(OPS),
    "finalize_video_task": Needs(ENQUEUES, own_answer=("storage_bucket",)),
    "runwayml_cleanup_task": Needs((*ENQUEUES, "scheduler_service_account"), creates=True),
}


def problems(function: str, settings: Settings, *, with_own: bool = False) -> list[str]:
    """Every setting `function` lacks (with `with_own`, also those it answers for itself)."""
    needs = NEEDS[function]
    fields = needs.needs + (needs.own_answer if with_own else ())
    found = [f"{variable(f)} is not set" for f in dict.fromkeys(fields) if _missing(settings, f)]
    if needs.creates:
        if _missing(settings, "runwayml_api_key") and _missing(settings, "heygen_api_key"):
            found.append("neither RUNWAYML_API_KEY nor HEYGEN_API_KEY is set: no provider can take a job")
        if not _missing(settings, "heygen_api_key") and _missing(settings, "heygen_avatar_id"):
            found.append("HEYGEN_AVATAR_ID is not set (HEYGEN_API_KEY is, so HeyGen creates need it)")
    return found


# function -> (the settings checked, what they lack): settings are immutable, so a function's answer
# is worked out once per settings object, not on every request
_checked: dict[str, tuple[Settings, list[str]]] = {}


def require(function: str, settings: Settings) -> None:
    """Raise one `ConfigError` naming everything `function` lacks (503 misconfigured at the edge)."""
    known = _checked.get(function)
    if known is None or known[0] is not settings:
        known = _checked[function] = (settings, problems(function, settings))
    if found := known[1]:
        raise ConfigError(f"{function} is misconfigured: " + "; ".join(found), problems=found)


def variable(field: str) -> str:
    return ENV_VARS[field][0]


def _missing(settings: Settings, field: str) -> bool:
    value = getattr(settings, field)
    if isinstance(value, tuple):
        return not any(_text(item).strip() for item in value)
    return value is None or _text(value).strip() == ""


def _text(value: object) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def report(environ: Mapping[str, str], functions: Sequence[str]) -> list[str]:
    """`FUNCTION: problem` for every problem of `functions` under `environ` (all problems, all names)."""
    try:
        settings = load_settings(environ)
    except ConfigError as exc:
        return [f"all functions: {p}" for p in exc.details.get("problems", [exc.message])]
    return [f"{f}: {p}" for f in functions for p in problems(f, settings, with_own=True)]


def read_env_file(text: str) -> dict[str, str]:
    """`KEY: 'value'` (deploy.sh's env.yaml) or `KEY=value` lines; comments and blanks skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s?(.*)$", line)
        if match is None or line.lstrip().startswith("#"):
            continue
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("''", "'")
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found[match.group(1)] = value
    return found


def main(argv: Sequence[str] | None = None) -> int:
    import argparse  # the command line only; a function checking its configuration never needs it

    parser = argparse.ArgumentParser(prog="python -m web.check", description=__doc__.splitlines()[0])
    parser.add_argument("functions", nargs="*", help=f"default: all ({', '.join(NEEDS)})")
    parser.add_argument("--env-file", help="the deployed environment (KEY: 'value' or KEY=value lines)")
    parser.add_argument("--secret", action="append", default=[], help="a variable bound from Secret Manager")
    args = parser.parse_args(argv)
    unknown = [f for f in args.functions if f not in NEEDS]
    if unknown:
        parser.error(f"unknown function(s): {', '.join(unknown)}")
    if args.env_file:
        with open(args.env_file, encoding="utf-8") as file:
            environ = read_env_file(file.read())
    else:
        environ = dict(os.environ)
    environ.update({name: "(from Secret Manager)" for name in args.secret})
    found = report(environ, args.functions or list(NEEDS))
    for line in found:
        print(line)
    if not found:
        print(f"configuration ok: {', '.join(args.functions or NEEDS)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
