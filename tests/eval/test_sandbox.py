"""Red-team tests: hostile generated code ends in a recorded failure and the harness is unharmed.

Most cases run the way the harness runs Python (`python -I -S main.py`: the slot's fork server runs
the script in a forked child of its own interpreter); `run_exec` takes the fork + exec path that
node, java, g++ and any other argv take.
"""

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from lightcoder.eval.sandbox import Limits, run_in_sandbox, sandbox_python, sandbox_uid
from lightcoder.eval.sandbox_uids import pids_of_uid

PY = sandbox_python()
FAST = Limits(wall_seconds=2.0, cpu_seconds=1, memory_mb=512, file_size_mb=4, max_processes=16)
ROOT = os.geteuid() == 0


def run(code: str, limits: Limits = FAST, slot: int = 0, stdin: str = ""):
    """In-process path (the argv runtimes.py uses for Python)."""
    return run_in_sandbox([PY, "-I", "-S", "main.py"], {"main.py": code}, limits, slot=slot, stdin=stdin)


def run_exec(code: str, limits: Limits = FAST, slot: int = 0, stdin: str = ""):
    """Fork + exec path: a fresh interpreter, as for every non-Python runtime."""
    return run_in_sandbox([PY, "main.py"], {"main.py": code}, limits, slot=slot, stdin=stdin)


def assert_clean(slot: int = 0) -> None:
    """No process of the slot's uid is left, and this process is alive and well."""
    if ROOT:
        assert pids_of_uid(sandbox_uid(slot)) == []
    assert os.getpid() > 0


@pytest.mark.parametrize("runner", [run, run_exec], ids=["in-process", "exec"])
def test_a_correct_program_passes_with_a_clean_environment(runner):
    r = runner("import os, sys\nprint(sorted(os.environ))\nprint(os.getcwd())")
    assert r.passed, r.stderr
    assert ("in-process" in r.isolation[-1]) == (runner is run)
    env = eval(r.stdout.splitlines()[0])
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}
    workdir = r.stdout.splitlines()[1]
    assert "lc-sandbox-" in workdir and not os.path.exists(workdir)  # the throwaway dir is gone


def test_fork_bomb_is_a_recorded_failure_and_leaves_no_process():
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = run(code, slot=1)
    assert r.status in ("timeout", "failed") and not r.passed
    assert_clean(1)


@pytest.mark.parametrize("runner", [run, run_exec], ids=["in-process", "exec"])
def test_daemonised_child_is_killed_with_the_sample(runner):
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nelse:\n    print('parent done')\n")
    r = runner(code, slot=2)
    assert r.passed  # the parent exited 0 ...
    assert_clean(2)  # ... and its setsid() child did not outlive the sample


def test_disk_fill_stops_at_the_file_size_limit(tmp_path):
    r = run("f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n")
    assert not r.passed and r.returncode is not None and r.returncode != 0  # SIGXFSZ or OSError(EFBIG)


def test_unbounded_allocation_is_a_memory_error():
    r = run("x = []\nwhile True:\n    x.append(bytearray(1 << 26))\n")
    assert not r.passed
    assert "MemoryError" in r.stderr or r.returncode < 0


def test_infinite_loop_is_killed_by_the_cpu_or_wall_limit():
    r = run("while True:\n    pass\n")
    assert r.status in ("timeout", "failed") and r.returncode is not None and r.returncode < 0


def test_sleeping_forever_hits_the_wall_clock():
    r = run("import time\ntime.sleep(100)\n", Limits(wall_seconds=1.0, cpu_seconds=1))
    assert r.status == "timeout" and r.seconds < 10


def test_no_network_even_to_a_server_on_this_machine():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        r = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')\n")
    finally:
        server.close()
    if "netns" not in r.isolation:
        pytest.skip(f"no network namespace here: {r.isolation[0]}")
    assert not r.passed and "connected" not in r.stdout


@pytest.mark.skipif(not ROOT, reason="privilege dropping needs root")
def test_reading_a_root_only_file_outside_the_work_dir_fails(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the answer")
    secret.chmod(0o600)
    # The uid fence alone: private mounts would also hide tmp_path (it is under /tmp).
    r = run(f"print(open({str(secret)!r}).read())", replace(FAST, private_mounts=False))
    assert not r.passed and "PermissionError" in r.stderr and "the answer" not in r.stdout


@pytest.mark.skipif(not ROOT, reason="privilege dropping needs root")
def test_killing_the_parent_is_not_permitted():
    r = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(os.getpgid(os.getppid()), 9)\n")
    assert not r.passed and "PermissionError" in r.stderr
    assert_clean(0)


def test_parallel_hostile_samples_each_fail_alone():
    codes = ["while True: pass", "print(1)", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
             "raise SystemExit(3)"]
    with ThreadPoolExecutor(max_workers=4) as pool:  # exec path here; every other case in-process
        results = list(pool.map(lambda ic: run_exec(ic[1], slot=10 + ic[0]), enumerate(codes)))
    assert [r.passed for r in results] == [False, True, False, False]
    assert results[3].returncode == 3
    for slot in range(10, 14):
        assert_clean(slot)
    assert threading.active_count() >= 1


def test_file_names_cannot_escape_the_work_dir():
    with pytest.raises(ValueError, match="leaves the work dir"):
        run_in_sandbox([PY, "x.py"], {"../x.py": "print(1)"}, FAST)


def test_in_process_needs_the_python_runtime_argv():
    with pytest.raises(ValueError, match="in_process=True needs argv"):
        run_in_sandbox(["node", "main.js"], {"main.js": "1"}, FAST, in_process=True)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="Limits.cpu_seconds"):
        Limits(cpu_seconds=0)


def test_without_a_network_namespace_the_reason_is_recorded(monkeypatch):
    import lightcoder.eval.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_NETNS", (False, "netns:unavailable (EPERM)"))
    r = run("print('ran')")
    assert r.passed and r.isolation[0] == "netns:unavailable (EPERM)"


@pytest.mark.skipif(not ROOT, reason="privilege dropping needs root")
def test_two_harness_processes_never_share_a_sandbox_uid():
    """Each process claims its uids with a lock file: another process's slot 0 gets another uid."""
    import subprocess
    import sys

    here = sandbox_uid(0)
    other = subprocess.run([sys.executable, "-c", "from lightcoder.eval.sandbox import sandbox_uid; "
                            "print(sandbox_uid(0), sandbox_uid(1))"], capture_output=True, text=True, check=True)
    theirs = {int(x) for x in other.stdout.split()}
    assert here not in theirs and len(theirs) == 2


def test_a_non_dumpable_daemon_is_still_swept():
    """prctl(PR_SET_DUMPABLE, 0) makes /proc/PID root's; the sweep reads real uids, so it still dies."""
    code = ("import ctypes, os, time\nctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"
            "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('parent done')\n")
    r = run(code, slot=3)
    assert r.passed
    assert_clean(3)


def test_in_process_python_behaves_like_a_fresh_interpreter():
    """__main__, argv, TMPDIR, exit handlers, non-daemon threads, exit codes and tracebacks."""
    code = ("import atexit, sys, tempfile, threading, time\n"
            "print(__name__, sys.argv, tempfile.gettempdir() == sys.path[0] or tempfile.gettempdir())\n"
            "atexit.register(print, 'atexit ran')\n"
            "threading.Thread(target=lambda: (time.sleep(0.05), print('thread joined'))).start()\n"
            "sys.exit(3)\n")
    r = run(code)
    lines = r.stdout.splitlines()
    assert r.returncode == 3 and r.status == "failed"
    assert lines[0].startswith("__main__ ['main.py'] ") and "lc-sandbox-" in lines[0]
    assert lines[1:] == ["thread joined", "atexit ran"]
    r = run("def f():\n    raise KeyError('boom')\nf()\n")
    assert r.returncode == 1 and 'File "main.py", line 3' in r.stderr and "KeyError: 'boom'" in r.stderr
    assert "sandbox.py" not in r.stderr  # the server's own frames are not part of the traceback
    r = run("import random\nprint(random.random())")
    assert run("import random\nprint(random.random())").stdout != r.stdout  # reseeded per sample


@pytest.mark.parametrize("runner", [run, run_exec], ids=["in-process", "exec"])
def test_stdin_is_passed_and_no_harness_descriptor_leaks_in(runner):
    """Only fds 0-2 are open: the sample cannot write to the server's socket to forge a result."""
    r = runner("import os\nprint(input())\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))",
               stdin="hello\n")
    assert r.passed, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "hello" and eval(out[1])[:3] == [0, 1, 2] and len(eval(out[1])) <= 4  # +1: listdir's own fd


@pytest.mark.skipif(not ROOT, reason="privilege dropping needs root")
def test_the_fork_server_cannot_be_signalled_and_survives_hostile_samples():
    r = run("import os\nos.kill(os.getppid(), 9)", slot=4)  # the parent of an in-process sample is the server
    assert not r.passed and "PermissionError" in r.stderr
    assert run("print('still served')", slot=4).stdout == "still served\n"


def test_a_dead_fork_server_is_replaced():
    """If a slot's server is gone (killed from outside), the next sample starts a new one and runs."""
    import lightcoder.eval.sandbox as sandbox

    assert run("print(1)", slot=5).passed
    for server in [s for key, s in sandbox._SERVERS.items() if key[0] == 5]:
        server.proc.kill()
        server.proc.wait()
    r = run("print(2)", slot=5)
    assert r.passed and r.stdout == "2\n"
    assert_clean(5)
