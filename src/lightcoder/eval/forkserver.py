"""The sandbox's fork server: the process that forks, fences in and reaps every sample.

Runs as a script, never imported by sample code: `python -I -S forkserver.py --serve FD NETNS(0|1)`,
started once per sandbox slot by lightcoder.eval.sandbox (the harness side, which also documents
the whole protocol and what it does and does not protect against). Stdlib only, because `-I -S`
keeps site-packages and the project off its path.

Protocol on the SOCK_SEQPACKET socket FD (JSON messages, at most MSG_BYTES each):
    server -> harness  {"netns": note}                    once, after unshare(CLONE_NEWNET)
    harness -> server  request + [stdin?, stdout, stderr] descriptors (SCM_RIGHTS)
    server -> harness  {"pid": pid}                        the sample started (its own session)
    server -> harness  {"status": wait_status}             it ended and everything it spawned is dead
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import json
import os
import resource
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36
# Modules the fork server imports once so that forked samples find them loaded (their state is the
# pristine post-import state: the server never runs sample code). HumanEval programs use these.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
           "hashlib", "traceback")
LIBC = ctypes.CDLL(None, use_errno=True)  # resolved before any fork: children only call into it
MSG_BYTES = 1 << 16  # max request/reply size on the server socket (argv + env + limits as JSON)


def serve(sock_fd: int, want_netns: bool) -> None:
    """Serve run requests on the socket until the harness closes it. One sample at a time."""
    sock = socket.socket(fileno=sock_fd)
    note = "network:allowed"
    if want_netns:
        note = "netns" if LIBC.unshare(CLONE_NEWNET) == 0 else \
            f"netns:unavailable ({errno.errorcode.get(ctypes.get_errno(), '?')})"
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of samples come to us, not to init
    for name in PRELOAD:
        __import__(name)
    sock.send(json.dumps({"netns": note}).encode())
    try:
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, MSG_BYTES, 3)
            if not msg:
                return  # the harness is gone
            req = json.loads(msg)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the sample's process
                sample_child(req, fds, sock)
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"pid": pid}).encode())
            _, status = os.waitpid(pid, 0)
            sweep(req["uid"])
            sock.send(json.dumps({"status": status}).encode())
    except OSError:  # the harness is gone (its socket end closed): nothing left to report to
        return


def sweep(uid: int | None) -> None:
    """Kill every process of `uid` (when we dropped to one), then kill and reap every descendant.

    kill(-1, SIGKILL) from a process whose real uid is `uid` reaches every process that uid owns,
    including setsid()'d, non-dumpable and setuid-exec'd ones (their real uid is still `uid`); the
    kernel holds the task list for the whole walk, so a fork bomb cannot add a child mid-kill.
    Orphans are re-parented to us (child subreaper), so "no children left" means nothing survived.
    """
    if uid is not None:
        killer = os.fork()
        if killer == 0:  # pragma: no cover - child
            try:
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
    for _ in range(100_000):
        try:
            with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            kids = []
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def sample_child(req: dict, fds: list[int], sock: socket.socket) -> None:
    """In the forked child: fence ourselves in, then exec argv or run the Python script in-process."""
    try:
        sock.detach()  # its fd is closed below; the object must never close a reused number later
        os.setsid()
        stdin_fd = fds[0] if len(fds) == 3 else os.open(os.devnull, os.O_RDONLY)
        for target, fd in zip((0, 1, 2), (stdin_fd, *fds[-2:])):
            os.dup2(fd, target)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.chdir(req["cwd"])
        limits, mb = req["limits"], 1024 * 1024
        for rlimit, soft, hard in ((resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1),
                                   (resource.RLIMIT_AS, limits["memory_mb"] * mb, limits["memory_mb"] * mb),
                                   (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb, limits["file_size_mb"] * mb),
                                   (resource.RLIMIT_NOFILE, limits["max_open_files"], limits["max_open_files"]),
                                   (resource.RLIMIT_CORE, 0, 0),
                                   (resource.RLIMIT_NPROC, limits["max_processes"], limits["max_processes"])):
            resource.setrlimit(rlimit, (soft, hard))
        if req["uid"] is not None:
            os.setgroups([])
            os.setgid(req["uid"])
            os.setuid(req["uid"])
        if req["inproc"]:
            run_python_main(req["argv"][-1], req["env"])
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores these; an exec'd program must not
            signal.signal(sig, signal.SIG_DFL)
        os.execvpe(req["argv"][0], req["argv"], req["env"])
    except BaseException as e:  # noqa: BLE001 - reported as the sample's failure
        try:
            os.write(2, f"sandbox: could not start {req['argv'][0]!r}: {e!r}\n".encode())
        finally:
            os._exit(127)


def run_python_main(path: str, env: dict) -> None:
    """Run `path` as `python -I -S path` would, in this (forked, fenced) interpreter; never returns."""
    import builtins
    import types

    atexit._clear()  # only the sample's own exit handlers run at its exit
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [path]
    if "tempfile" in sys.modules:  # re-read TMPDIR (the work dir), as a fresh interpreter would
        sys.modules["tempfile"].tempdir = None
    if "random" in sys.modules:  # fresh seed per sample, not the server's
        sys.modules["random"].seed()
    main = types.ModuleType("__main__")
    main.__file__, main.__builtins__, main.__cached__ = path, builtins, None
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as f:
            source = f.read()
        exec(compile(source, path, "exec"), main.__dict__)  # noqa: S102 - this process is the sandbox
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 - printed like the interpreter does
        tb = e.__traceback__.tb_next if e.__traceback__ else None  # drop this function's frame
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        code = 1
    try:
        threading._shutdown()  # join non-daemon threads, as interpreter exit does
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        code = code or 120
    os._exit(code & 0xFF)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3] == "1")
