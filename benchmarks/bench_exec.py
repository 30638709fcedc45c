"""Execution throughput on HumanEval canonical solutions: our sandbox vs the reference harness's way.

    .venv/bin/python benchmarks/bench_exec.py [--limit 164] [--workers 2] [--no-exec-path]

Both run every canonical solution (prompt + solution + test + check) once, `workers` at a time,
side by side in the same run, and must pass them all:

- reference: the approach of openai/human-eval's `check_correctness` — one
  multiprocessing.Process (fork) per sample that chdirs into a temp dir, applies the standard
  "reliability guard" (rlimit on memory, os/shutil/subprocess functions set to None), and exec()s
  the program under a SIGALRM timeout; a thread pool waits on the processes. Written here from
  that description, not copied.
- lightcoder: eval/runner.execute -> eval/sandbox.run_in_sandbox — per slot a fork server (started
  once, root, in its own network, mount and IPC namespaces: one private tmpfs on /tmp, /var/tmp
  and /dev/shm, the rest read-only; child subreaper) forks one child per sample that takes a new
  session, copies the work dir onto the tmpfs, sets rlimits, a clean environment and the slot's
  uid, and runs the program in that forked interpreter (`python -I -S main.py` semantics); then
  the slot uid is swept with kill(-1), every descendant reaped, the tmpfs and System V IPC
  emptied; temp dir removed.
- lightcoder exec path: the same sandbox with in_process=False — the child execs a fresh
  `python -I -S main.py` (what node/java/g++ samples always do). Shows what interpreter start-up
  costs.

Prints samples/s for each and the ratio vs the reference. The reference's guard is in-process
Python that the program can undo (`import importlib; importlib.reload(os)`); ours is all kernel
fences applied before the program's first line runs.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import multiprocessing
import os
import platform
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from lightcoder.eval.runner import execute, reference_samples, score
from lightcoder.eval.runtimes import runtime_for
from lightcoder.eval.sandbox import run_in_sandbox
from lightcoder.eval.tasks import get_task
from lightcoder.eval.tasks.humaneval import python_program


def reliability_guard(max_bytes: int = 1 << 30) -> None:
    """The reference harness's guard: memory rlimit, then destructive functions disabled."""
    import builtins
    import resource
    import shutil
    import subprocess
    import sys

    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, max_bytes))
    faulthandler.disable()
    builtins.exit = builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod",
                 "fchown", "chmod", "chown", "chroot", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for mod in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[mod] = None


class _Timeout(Exception):
    pass


def _child(program: str, timeout: float, result) -> None:
    import shutil

    with tempfile.TemporaryDirectory() as d:
        saved = (shutil.rmtree, os.rmdir, os.chdir, os.unlink)  # the temp dir's cleanup needs them back
        os.chdir(d)
        reliability_guard()

        def alarm(signum, frame):
            raise _Timeout()

        signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                exec(program, {})
            result.append("passed")
        except _Timeout:
            result.append("timed out")
        except BaseException as e:  # noqa: BLE001 - the sample's failure, recorded
            result.append(f"failed: {e}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            shutil.rmtree, os.rmdir, os.chdir, os.unlink = saved


def check_correctness_reference(program: str, timeout: float = 3.0) -> bool:
    manager_list = multiprocessing.Manager().list()
    p = multiprocessing.Process(target=_child, args=(program, timeout, manager_list))
    p.start()
    p.join(timeout=timeout + 1)
    if p.is_alive():
        p.kill()
    return bool(manager_list) and manager_list[0] == "passed"


def run_reference(problems, workers: int) -> tuple[int, float]:
    programs = [python_program(p.prompt, p.reference, "", p.test, p.entry_point) for p in problems]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        passed = sum(pool.map(check_correctness_reference, programs))
    return passed, time.perf_counter() - start


def run_lightcoder(task, workers: int) -> tuple[int, float, list[str], list[str]]:
    """(passed, seconds, isolation notes, "task_id: status stderr" of each failure)."""
    import json

    with tempfile.TemporaryDirectory() as d:
        reference_samples(task, d)
        start = time.perf_counter()
        execute(d, workers=workers)
        seconds = time.perf_counter() - start
        score(d)
        rows = [json.loads(line) for line in open(os.path.join(d, "results.jsonl"), encoding="utf-8")][1:]
    failures = [f"{r['task_id']}: {r['status']} rc={r['returncode']} {r['stderr_tail'][-200:]!r}"
                for r in rows if not r["passed"]]
    return sum(r["passed"] for r in rows), seconds, rows[0]["isolation"], failures


def run_lightcoder_exec(problems, workers: int) -> tuple[int, float]:
    """The sandbox's fork + exec path on the same programs: `workers` threads, one slot each."""
    programs = [python_program(p.prompt, p.reference, "", p.test, p.entry_point) for p in problems]
    argv = list(runtime_for("python").command)

    def worker(k: int) -> int:  # slot 100 + k: not the runner's slots 0..workers-1
        return sum(run_in_sandbox(argv, {"main.py": prog}, slot=100 + k, in_process=False).passed
                   for prog in programs[k::workers])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        passed = sum(pool.map(worker, range(workers)))
    return passed, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=164)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-exec-path", action="store_true", help="skip the fork + exec row")
    args = parser.parse_args()
    task = get_task("humaneval", limit=args.limit)
    problems = task.problems()
    n = len(problems)
    ref_passed, ref_s = run_reference(problems, args.workers)
    lc_passed, lc_s, isolation, failures = run_lightcoder(task, args.workers)
    exec_row = None if args.no_exec_path else run_lightcoder_exec(problems, args.workers)
    print(f"HumanEval canonical solutions: {n} samples, {args.workers} workers, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"lightcoder isolation: {', '.join(isolation)}\n")
    print("| harness | passed | seconds | samples/s | ratio vs reference |")
    print("|---|---:|---:|---:|---:|")
    print(f"| reference (fork + reliability guard) | {ref_passed}/{n} | {ref_s:.1f} | {n / ref_s:.1f} | 1.00 |")
    print(f"| lightcoder sandbox (fork server + netns + private tmpfs + rlimits + uid + sweep) | {lc_passed}/{n} "
          f"| {lc_s:.1f} | {n / lc_s:.1f} | {ref_s / lc_s:.2f} |")
    if exec_row:
        ex_passed, ex_s = exec_row
        print(f"| lightcoder sandbox, exec path (fresh interpreter per sample) | {ex_passed}/{n} | {ex_s:.1f} "
              f"| {n / ex_s:.1f} | {ref_s / ex_s:.2f} |")
    for failure in failures:
        print("lightcoder failure:", failure)

if __name__ == "__main__":
    main()
