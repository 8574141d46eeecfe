"""Run the benchmarks and write docs/PERFORMANCE.md.

    python -m benchmarks [--quick] [--only polling,batch] [--out docs/PERFORMANCE.md] [--no-plots]

Benchmarks whose code has not landed yet (a module they need is missing) are reported as not run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks.common import NOT_RUN, ROOT, MissingCode, Section, machine
from benchmarks.env import Context
from benchmarks.report import code_version, now, render, write

BENCHMARKS = (
    "polling",
    "status_check",
    "batch",
    "cleanup",
    "cold_start",
    "finalize",
    "cost",
    "throughput",
    "admission",
)
TITLES = {
    "polling": "Polling efficiency",
    "status_check": "Status-check overhead",
    "batch": "Batch scaling",
    "cleanup": "Cleanup scaling",
    "cold_start": "Cold start",
    "finalize": "Finalize memory",
    "cost": "Cost per job",
    "throughput": "Throughput",
    "admission": "Admission with per-user limits",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code, not the speed")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=None, help="default: docs/PERFORMANCE.md (quick: build/)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    return args


def run_all(ctx: Context, names: list[str], *, echo: bool = True) -> list[Section]:
    """Each benchmark in turn; a failure becomes a section that says so, and the run goes on."""
    sections = []
    for name in names:
        began = time.perf_counter()
        if echo:
            print(f"[bench] {name} ...", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            section = module.run(ctx)
        except MissingCode as exc:
            section = Section(name, TITLES[name], "—", NOT_RUN, str(exc), str(exc))
        except ModuleNotFoundError as exc:
            reason = f"`{exc.name}` is not in the tree yet"
            section = Section(name, TITLES[name], "—", NOT_RUN, reason, reason)
        except Exception as exc:  # a broken benchmark must not hide the others' results
            detail = "".join(traceback.format_exception(exc)[-3:])
            section = Section(name, TITLES[name], "—", NOT_RUN, f"failed: {exc}", f"```\n{detail}\n```")
        section.seconds = time.perf_counter() - began
        if echo:
            print(
                f"[bench] {name}: {section.verdict} ({section.seconds:.0f} s) {section.headline}", flush=True
            )
        sections.append(section)
    return sections


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only.split(",")]
    default_out = ROOT / ("build/PERFORMANCE-quick.md" if args.quick else "docs/PERFORMANCE.md")
    out = args.out or default_out
    ctx = Context(quick=args.quick, docs_dir=out.parent, plots=not args.no_plots)
    ctx.log_to_file()
    conditions = {"before": machine(), "when": now(), "code": code_version()}
    began = time.perf_counter()
    try:
        sections = run_all(ctx, names)
    finally:
        ctx.close()
    conditions["after"] = machine()
    path = write(out, render(sections, conditions, time.perf_counter() - began, args.quick))
    print(f"[bench] wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
