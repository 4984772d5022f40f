"""Run every ``benchmarks/bench_*.py`` in turn with its default (small) sizes: ``make bench``.

Each benchmark runs in its own process with this interpreter, its output streamed as it comes;
a failing one is reported and the others still run. The exit status is non-zero if any failed.

Usage::

    .venv/bin/python benchmarks/run_all.py                 # all of them
    .venv/bin/python benchmarks/run_all.py speed memory    # those whose name contains a word
    .venv/bin/python benchmarks/run_all.py --list
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="Run only benchmarks whose name contains these.")
    parser.add_argument("--list", action="store_true", help="List the benchmarks and exit.")
    args = parser.parse_args()
    benches = sorted(HERE.glob("bench_*.py"))
    if args.only:
        benches = [b for b in benches if any(word in b.stem for word in args.only)]
    if args.list or not benches:
        print("\n".join(b.name for b in benches) or "no benchmark matches")
        return 0 if benches or args.list else 2
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    print(f"{len(benches)} benchmarks; load average {load} on {os.cpu_count()} CPUs", flush=True)
    outcomes = []
    for bench in benches:
        print(f"\n=== {bench.name} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(bench)], cwd=HERE.parent).returncode
        outcomes.append((bench.name, code, time.perf_counter() - start))
    print("\n=== summary ===")
    for name, code, seconds in outcomes:
        print(f"{'ok    ' if code == 0 else f'FAILED (exit {code})'}  {name}  {seconds:.0f} s")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
