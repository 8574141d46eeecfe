"""Benchmarks of the video backend: `python -m benchmarks` (or `make bench`) writes docs/PERFORMANCE.md.

Each benchmark module offers `run(ctx) -> Section`: it measures the project's code against a baseline
in the same run and returns its tables, figures and headline ratios. `benchmarks.__main__` runs them
in order, `benchmarks.report` writes the page. `--quick` runs every benchmark in a tiny configuration
(the smoke test, tests/test_benchmarks.py); its numbers mean nothing.
"""
