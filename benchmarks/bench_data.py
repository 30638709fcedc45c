"""End-to-end corpus pipeline throughput: MB of source per CPU-second, per step.

Runs `run_data` (every step at its defaults: licence, ranking, clean, generated, heuristics,
decontamination, MinHash + LSH dedup, PII, commented-out code, syntax, static analysis) on this
interpreter's standard library (the quickstart corpus) or on --corpus paths, with all cores,
and prints the CPU time of each step (from stats.json's counters.cpu_ms, which includes ruff's
child processes) and the whole run (this process + workers), as MB per CPU-second against the
issue's target of 5 MB/s per core. CPU seconds, not wall seconds, so a busy shared machine does
not distort the number; the wall time is printed too. MB counts the bytes of files in the
selected languages (what the steps read), not every file listed.

    .venv/bin/python benchmarks/bench_data.py [--corpus PATH ...] [--languages Python,Java]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from lightcoder.data.config import DataConfig
from lightcoder.data.pipeline import run_data

TARGET_MB_PER_CORE = 5.0


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", nargs="*", default=[])
    parser.add_argument("--languages", default="Python")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    cfg = DataConfig(sources=args.corpus, languages=args.languages.split(","),
                     workers=args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="lc-bench-data-"))
    try:
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        stats = run_data(cfg, tmp / "data")
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    clean = next(s for s in stats["stages"] if s["stage"] == "clean")
    language_dropped = clean["dropped"].get("language", {}).get("bytes", 0)
    mb = (stats["seen"]["bytes"] - language_dropped) / 1e6
    steps = stats["counters"].get("cpu_ms", {})
    print(f"corpus: {', '.join(stats['roots'])}; {mb:.1f} MB in {args.languages}; "
          f"{stats['kept']['files']:,} files kept ({stats['kept']['bytes'] / 1e6:.1f} MB); "
          f"{stats['throughput']['workers']} workers, {wall:.1f} s wall")
    print("| step | CPU s | share | MB per CPU-second |\n|---|---:|---:|---:|")
    total_steps = sum(steps.values()) / 1000
    for step, ms in sorted(steps.items(), key=lambda kv: -kv[1]):
        if ms:
            print(f"| {step} | {ms / 1000:.2f} | {ms / 1000 / total_steps:.0%} | "
                  f"{mb / (ms / 1000):.1f} |")
    rate = mb / cpu
    print(f"| **whole run** (incl. planning, dedup, process start) | {cpu:.2f} | | "
          f"**{rate:.2f}** |")
    print(f"\nMB/s per core: {rate:.2f} (target {TARGET_MB_PER_CORE:.0f}: "
          f"{rate / TARGET_MB_PER_CORE:.2f}x of target)")


if __name__ == "__main__":
    main()
