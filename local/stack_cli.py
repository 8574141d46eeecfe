"""The command line of `python -m local.stack`: options, the table of what runs where, the watch loop."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from local import stack_env as plan
from local.stack_state import DEFAULT_STATE_FILE, StateError, read_state

if TYPE_CHECKING:
    from local.stack import LocalStack, StackOptions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.stack",
        description="Run the whole system on 127.0.0.1 until Ctrl-C: emulators, provider simulators, "
        "a token issuer and every function.",
    )
    parser.add_argument("--speed", type=float, default=20.0, help="simulated seconds per real second")
    faults = parser.add_mutually_exclusive_group()
    faults.add_argument("--fault-rate", type=float, default=0.0, help="share of provider calls that fail")
    faults.add_argument("--faults", default="", help='exact simulator faults, e.g. "http_5xx=0.1,stuck=0.05"')
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulators' randomness")
    parser.add_argument(
        "--state-file", type=Path, default=DEFAULT_STATE_FILE, help="where tools find the stack"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="logs and key file (build/local-stack)")
    parser.add_argument("--no-storage", action="store_true", help="do not start the storage emulator")
    return parser


def parse_options(argv: list[str] | None) -> StackOptions:
    from local.stack import DEFAULT_WORK_DIR, StackOptions

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be above 0")
    try:
        faults = args.faults or plan.fault_mix(args.fault_rate)
    except plan.PlanError as exc:
        parser.error(str(exc))
    refuse_second_stack(args.state_file, parser)
    return StackOptions(
        speed=args.speed,
        faults=faults,
        seed=args.seed,
        work_dir=args.work_dir or DEFAULT_WORK_DIR,
        state_file=args.state_file,
        storage=False if args.no_storage else None,
    )


def refuse_second_stack(state_file: Path, parser: argparse.ArgumentParser) -> None:
    try:
        state = read_state(state_file)
    except StateError:
        return  # none, or a stale file that the new stack overwrites
    where = f"pid {state.pid}, {state.functions_base_url}"
    parser.exit(1, f"a local stack already runs ({where}); stop it first\n")


def rows(stack: LocalStack) -> list[tuple[str, str, str]]:
    """(part, where, detail) for each part of a started stack."""
    state = stack.state
    assert state is not None
    options = stack.options
    faults = options.faults or "none"
    out = [
        ("functions", state.functions_base_url + "/<name>", f"{len(state.functions)} functions, one process"),
        ("Firestore emulator", state.firestore_host, "rules: firestore.rules"),
        ("Cloud Tasks emulator", state.tasks_host, state.queue),
    ]
    if state.storage_url:
        out.append(("Storage emulator", state.storage_url, f"bucket {state.storage_bucket}"))
    for name in plan.PROVIDERS:
        info = state.providers[name]
        simulated = info["mode"] == plan.SIMULATOR
        detail = f"speed {options.speed:g}x, faults: {faults}" if simulated else "REAL API"
        out.append((f"{name} {info['mode']}", info["url"], detail))
    out.append(("token issuer", state.certs_url, f"key {state.token_key_file}"))
    if stack.page is not None:
        out.append(("sample web app", stack.page.origin, "samples/web, API reference at /docs"))
    out.append(("logs", state.log_dir, f"started in {stack.startup_s or 0:.1f} s"))
    return out


def format_table(table: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table)
    return "\n".join(line.rstrip() for line in lines)


def print_summary(stack: LocalStack) -> None:
    for warning in stack.warnings:
        print(f"!!! WARNING: {warning} !!!", file=sys.stderr)
    state = stack.state
    assert state is not None
    print(format_table([("part", "where", "detail"), *rows(stack)]))
    if stack.page is not None:
        print(f"\nweb app: {stack.page.origin}/  (API reference: {stack.page.origin}/docs)")
    print("\nfunctions:")
    for url in state.functions.values():
        print(f"  {url}")
    if stack.options.state_file is not None:
        print(f"\nstate file for tools (python -m ops ...): {stack.options.state_file}")
    print("Ctrl-C stops everything.", flush=True)


def watch(stack: LocalStack, interval_s: float = 1.0) -> int:
    """Run until interrupted; a part that dies stops the stack with its last log lines (exit 1)."""
    while True:
        dead = stack.dead_parts()
        if dead:
            for part in dead:
                tail = stack.log_tail(part)
                print(f"local stack: {part} exited unexpectedly; last output:\n{tail}", file=sys.stderr)
            return 1
        time.sleep(interval_s)
