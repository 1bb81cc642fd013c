"""ownkey's benchmark suite (issue 3): real processes on loopback, every figure that
matters a ratio against a floor measured in the same run.

Run it with ``make bench`` or ``python -m bench --help``; it prints a table and writes
BENCHMARKS.md. Nothing here is imported by ownkey itself.
"""
