"""``python -m bench``: run the scenarios, print the table, write BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import text

from bench.harness import REPO, Bench, start_bench
from bench.report import markdown, text_table
from bench.results import ScenarioResult
from bench.scale import SCALES, Scale
from bench.scenarios import (
    client,
    fanout,
    inflight,
    overhead,
    scaleout,
    submission,
    throughput,
)

TITLES = {
    "1": "step overhead",
    "2": "throughput",
    "3": "in-flight concurrency",
    "4": "fan-out",
    "5": "submission",
    "6": "memory",
    "7": "provider client overhead",
    "8": "scale-out",
}
# Run order: the client scenario needs no worker; submission leaves thousands of queued
# runs in the database, so it goes last.
ORDER = ("7", "1", "2", "3", "4", "8", "5")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only", default="", help="comma-separated scenarios, e.g. 1,3 (default: all 8)"
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="worker threads (default: the scale's)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown report (default: BENCHMARKS.md at full scale, none at smoke scale)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and SQLite files")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def selected(only: str) -> set[str]:
    if not only.strip():
        return set(TITLES)
    chosen = {part.strip() for part in only.split(",") if part.strip()}
    unknown = chosen - set(TITLES)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}; known: 1-8")
    return chosen


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_suite(
    bench: Bench, scale: Scale, chosen: set[str], log: Callable[[str], None]
) -> list[ScenarioResult]:
    results = {key: ScenarioResult(key=key, title=TITLES[key]) for key in sorted(chosen)}
    memory = results.get("6")
    runners: dict[str, Callable[[ScenarioResult], None]] = {
        "7": lambda r: client.run(bench, scale, r),
        "1": lambda r: overhead.run(bench, scale, r),
        "2": lambda r: throughput.run(bench, scale, r),
        "3": lambda r: inflight.run(bench, scale, r, memory),
        "4": lambda r: fanout.run(bench, scale, r),
        "5": lambda r: submission.run(bench, scale, r),
        "8": lambda r: scaleout.run(bench, scale, r),
    }
    if "6" in chosen and "3" not in chosen:
        # Memory is measured during scenario 3; run it without reporting its figures.
        results["3"] = ScenarioResult(key="3", title=TITLES["3"])
    for key in ORDER:
        if key not in results:
            continue
        result = results[key]
        log(f"scenario {key} ({result.title}) ...")
        started = time.monotonic()
        try:
            runners[key](result)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            log(traceback.format_exc())
            if key == "3" and memory is not None:
                memory.error = f"scenario 3 did not complete: {result.error}"
        finally:
            result.seconds = time.monotonic() - started
            bench.purge_queues()
        log(f"scenario {key} done in {result.seconds:.1f} s" + (" (ERROR)" if result.error else ""))
    if "3" not in chosen:
        results.pop("3", None)
    if memory is not None:
        memory.seconds = results["3"].seconds if "3" in results else memory.seconds
    return [results[key] for key in sorted(results)]


def db_version(bench: Bench) -> str:
    if bench.db == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with bench.engine.connect() as connection:
        return str(connection.execute(text("SHOW server_version")).scalar_one())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = selected(args.only)
    scale = SCALES[args.scale]
    if args.concurrency:
        scale = Scale(**{**scale.__dict__, "concurrency": args.concurrency})
    output = args.output
    if output is None and scale.name == "full":
        output = REPO / "BENCHMARKS.md"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ownkey-bench-"))

    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    ok = False
    try:
        log(f"starting Redis, fake-llm, the {args.db} database and the API in {workdir}")
        bench = start_bench(workdir, db=args.db)
        try:
            results = run_suite(bench, scale, chosen, log)
            version = db_version(bench)
        finally:
            log("stopping every process")
            bench.stop()
        flags = shlex.join(argv if argv is not None else sys.argv[1:])
        command = f'make bench ARGS="{flags}"' if flags else "make bench"
        report = markdown(
            results, db=args.db, db_version=version, scale=scale.name, command=command.strip()
        )
        judged = scale.name == "full"
        print(text_table(results, judge=judged))
        if not judged:
            print(f"  ({scale.name} scale: figures too small to judge against the targets)")
        for result in results:
            for note in result.notes:
                print(f"  [{result.key}] {note}")
            if result.error:
                print(f"  [{result.key}] ERROR: {result.error}")
        if output is not None:
            output.write_text(report + "\n")
            log(f"wrote {output}")
        if args.json is not None:
            args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
        ok = all(r.error is None for r in results)
        return 0 if ok else 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if args.workdir is None and ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"logs kept in {workdir}")


def entry(*_: Any) -> None:
    sys.exit(main())
