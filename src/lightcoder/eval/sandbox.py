"""Run one untrusted program in its own process, fenced in, and report how it ended.

Each call to `run_in_sandbox(argv, files, limits, slot=...)`:

1. makes a throwaway working directory (mode 0700, owned by the sandbox user) holding `files`;
2. hands the job to the slot's **fork server** (forkserver.py): a small stdlib-only Python process
   (`python -I -S forkserver.py --serve`), started once per slot, running as root (so a
   sample can neither signal nor ptrace it) inside a network namespace it created once with
   `unshare(CLONE_NEWNET)` (only a downed loopback: no network at all), and a child subreaper
   (every orphan of a sample is re-parented to it, so none can hide);
3. the server forks one fresh child per sample, which starts a new session (its own process
   group), points stdin/stdout/stderr at files the harness passed over the socket, closes every
   other descriptor, enters the work dir, sets a clean environment (PATH, HOME=TMPDIR=the work
   dir, LANG), rlimits on CPU seconds, address space, file size, open files, process count and
   core dumps, then drops root for the slot's uid/gid with no supplementary groups (one uid per
   slot, no passwd entry needed; each uid is claimed with a lock file for the life of this
   process, sandbox_uids.py, so two harnesses on one machine never share a uid and never kill
   each other's samples). Then it either `exec`s `argv`, or, when `argv` is exactly the server's own
   `python -I -S script.py`, runs the script in that forked interpreter as `__main__` (what a
   fresh interpreter would do, minus ~35 ms of start-up and stdlib imports);
4. the harness waits (blocking on the socket, no polling) up to a wall-clock timeout, then
   SIGKILLs the sample's process group; when the sample has ended the server kills every process
   of the slot's uid (`kill(-1, SIGKILL)` from a child that took that uid: a fork that called
   setsid escapes the group, not the uid) and reaps every descendant before it reports;
5. files: the server lives in its own mount and IPC namespaces (entered once, like the network
   one) where /tmp, /var/tmp and /dev/shm are one tmpfs of Limits.tmpfs_mb and every other mount
   is read-only; the child copies the work dir onto it (/tmp/NAME) before dropping root, and after
   the sample the server empties the tmpfs and the namespace's System V IPC objects. Where the
   kernel refuses (no CAP_SYS_ADMIN) or Limits.private_mounts is False, the server instead removes
   everything the slot's uid owns in the world-writable dirs and its System V IPC objects after
   each sample, and this process warns once;
6. deletes the working directory and returns an ExecResult: status ("passed", "failed",
   "timeout"), exit code / signal, clipped stdout/stderr, seconds, and `isolation`, which says
   what was actually applied (e.g. "netns:unavailable (EPERM)" when unshare is not permitted).

What it protects against, and what it does not, is written down in docs/evaluation.md §Sandbox.
In short: it stops runaway CPU, memory, disk, processes and network, files shared between or
kept after samples, signals to the harness, and writes to or reads of root-only files; it does
NOT stop reading world-readable files (/etc/passwd, the Python stdlib), kernel exploits, or side
channels. Run it in a container or VM for hostile code.

Example:
    r = run_in_sandbox(["python3", "main.py"], {"main.py": "print(1 + 1)"}, Limits())
    r.status, r.stdout   # -> ("passed", "2\\n")
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from lightcoder.eval import forkserver
from lightcoder.eval.forkserver import CLONE_NEWNET, LIBC, MSG_BYTES
from lightcoder.eval.sandbox_uids import kill_uid, sandbox_uid

MAX_OUTPUT_CHARS = 4000  # stdout/stderr kept per sample (the tail of stderr, the head of stdout)
SERVER_GRACE_SECONDS = 10.0  # after a kill, how long the server may take to sweep before it is replaced
FILE_SWEEP_SECONDS = 300.0  # without private mounts: how long removing a sample's files may take (the
# disk's speed: a hostile sample's thousands of dirs take seconds to rmdir), then the server is replaced


@dataclass(kw_only=True)
class Limits:
    """Per-sample resource limits. Defaults suit HumanEval-sized Python; JVM/node need more memory."""

    wall_seconds: float = 10.0  # wall clock, then the whole process group and uid are killed
    cpu_seconds: int = 10  # RLIMIT_CPU: SIGXCPU, then SIGKILL at the hard limit (+1 s)
    memory_mb: int = 1024  # RLIMIT_AS (virtual address space)
    file_size_mb: int = 16  # RLIMIT_FSIZE: a write past it gets SIGXFSZ
    max_processes: int = 32  # RLIMIT_NPROC for the sandbox uid (counts every process of that uid)
    max_open_files: int = 128  # RLIMIT_NOFILE
    tmpfs_mb: int = 64  # the sample's private tmpfs: /tmp, /var/tmp, /dev/shm and its work dir together
    network: bool = False  # True skips the network namespace
    private_mounts: bool = True  # False: shared /tmp etc., the slot uid's files there swept after each sample
    drop_privileges: bool = True  # run as the slot's uid when we are root

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds", "memory_mb", "file_size_mb", "max_processes",
                     "max_open_files", "tmpfs_mb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)}")


@dataclass
class ExecResult:
    status: str  # "passed" (exit 0), "failed" (nonzero exit or signal), "timeout" (wall clock)
    returncode: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    seconds: float
    isolation: list[str] = field(default_factory=list)  # what was applied, e.g. ["netns", "uid:61000", ...]

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def _probe_netns() -> tuple[bool, str]:
    """Can a child create a network namespace here? (False, reason) on EPERM/ENOSYS etc."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        code = 0 if LIBC.unshare(CLONE_NEWNET) == 0 else ctypes.get_errno()
        os.write(w, str(code).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 32)
    os.close(r)
    os.waitpid(pid, 0)
    code = int(out or b"-1")
    if code == 0:
        return True, "netns"
    return False, f"netns:unavailable ({errno.errorcode.get(code, code)})"


_NETNS: tuple[bool, str] | None = None


def netns_available() -> tuple[bool, str]:
    """Probed once per process: (available, "netns" or "netns:unavailable (REASON)")."""
    global _NETNS
    if _NETNS is None:
        _NETNS = _probe_netns()
    return _NETNS


_MOUNTS: dict | None = None
_WARNED_SHARED_FILES = False


def mounts_available() -> dict:
    """Probed once per process: can samples get private mounts here? (forkserver.probe_mounts)"""
    global _MOUNTS
    if _MOUNTS is None:
        _MOUNTS = forkserver.probe_mounts()
    return _MOUNTS


def _mounts_note(probe: dict, limits: Limits, uid: int | None, swept: bool) -> str:
    """The `isolation` entry for files; warns once per process when the kernel refused private mounts."""
    global _WARNED_SHARED_FILES
    swept_note = ",swept" if swept else ",not swept (no sandbox uid)" if uid is None else ""
    if limits.private_mounts and probe["private"]:
        rest = "ro" if probe["readonly"] else f"rw ({probe['reason']})"
        return f"mountns:tmpfs={limits.tmpfs_mb}MB,{rest}{swept_note}"
    if not limits.private_mounts:
        return f"mountns:off (Limits.private_mounts=False){swept_note}"
    if not _WARNED_SHARED_FILES:
        _WARNED_SHARED_FILES = True
        warnings.warn(f"sandbox: no private mount namespace here ({probe['reason']}): samples share /tmp, "
                      "/var/tmp and /dev/shm while they run" + (", and what each leaves there is removed after it"
                      if uid is not None else ", and nothing removes what they leave (not root)"),
                      RuntimeWarning, stacklevel=4)  # run_in_sandbox's caller (via _Job.settle)
    return f"mountns:unavailable ({probe['reason']}){swept_note}"


def world_executable(path: str | os.PathLike) -> bool:
    """True when a non-root user can run `path` (every parent dir o+x, the file o+x)."""
    p = Path(path).resolve()
    if not p.exists() or not os.stat(p).st_mode & 0o001:
        return False
    return all(os.stat(d).st_mode & 0o001 for d in p.parents)


def sandbox_python() -> str:
    """An interpreter the sandbox user may execute: this one if world-executable, else python3 on PATH."""
    if world_executable(sys.executable):
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3") or ""):
        if candidate and world_executable(candidate):
            return candidate
    return sys.executable  # only usable without privilege dropping


def _tail(f, n: int) -> bytes:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - n))
    return f.read()


def _clip(text: bytes, keep_tail: bool) -> str:
    s = text.decode("utf-8", errors="replace")
    if len(s) <= MAX_OUTPUT_CHARS:
        return s
    return ("..." + s[-MAX_OUTPUT_CHARS:]) if keep_tail else (s[:MAX_OUTPUT_CHARS] + "...")


class _Outcome(NamedTuple):
    """One sample as the server reported it; None for a message that never came (the server is then
    abandoned)."""

    status: int | None  # wait status
    timed_out: bool
    swept: bool | None  # its files were swept (no private mounts)
    seconds: float  # from the request to the sample's end (the file sweep after it not counted)

    def result(self, out: bytes, err: bytes, isolation: list[str]) -> ExecResult:
        """The ExecResult, given the sample's raw stdout head and stderr tail; a sample the server never
        reported on counts as SIGKILLed."""
        returncode = None if self.status is None else os.waitstatus_to_exitcode(self.status)
        result = "timeout" if self.timed_out else "passed" if returncode == 0 else "failed"
        return ExecResult(status=result, returncode=returncode if self.status is not None else -signal.SIGKILL,
                          stdout=_clip(out, keep_tail=False), stderr=_clip(err, keep_tail=True),
                          seconds=self.seconds, isolation=isolation)


class _ForkServer:
    """The harness's handle on one slot's server process (see the module docstring)."""

    def __init__(self, want_netns: bool, private: bool, tmpfs_mb: int):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        try:
            self.proc = subprocess.Popen(
                [sandbox_python(), "-I", "-S", os.path.abspath(forkserver.__file__), "--serve", str(theirs.fileno()),
                 "1" if want_netns else "0", "1" if private else "0", str(tmpfs_mb)], env=env, cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                start_new_session=True)
        finally:
            theirs.close()
        self.sock = ours
        self.owner = os.getpid()
        self.python = sandbox_python()
        self.lock = threading.Lock()
        self.sock.settimeout(60)
        hello = json.loads(self._recv())
        self.netns_note, self.mounts = hello["netns"], hello["mounts"]

    def _recv(self) -> bytes:
        msg = self.sock.recv(MSG_BYTES)
        if not msg:
            raise ConnectionError("sandbox fork server exited")
        return msg

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.sock.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def run(self, req: dict, fds: list[int], wall_seconds: float) -> _Outcome:
        """Run one sample, wait for its end and the server's file sweep."""
        start = time.perf_counter()
        socket.send_fds(self.sock, [json.dumps(req).encode()], fds)
        self.sock.settimeout(60)
        pid = json.loads(self._recv())["pid"]
        timed_out = False
        try:
            self.sock.settimeout(wall_seconds)
            msg = self._recv()
        except ConnectionError:  # the server died under a running sample (only possible when not root)
            _killpg_quietly(pid)
            return _Outcome(None, timed_out, None, time.perf_counter() - start)
        except TimeoutError:
            timed_out = True
            _killpg_quietly(pid)
            try:
                self.sock.settimeout(SERVER_GRACE_SECONDS)
                msg = self._recv()
            except (TimeoutError, ConnectionError):
                return _Outcome(None, timed_out, None, time.perf_counter() - start)
        seconds, reply = time.perf_counter() - start, json.loads(msg)
        swept = False
        if reply["sweeping"]:
            try:
                self.sock.settimeout(FILE_SWEEP_SECONDS)
                swept = json.loads(self._recv())["swept"]
            except (TimeoutError, ConnectionError):
                swept = None
        return _Outcome(reply["status"], timed_out, swept, seconds)


def _killpg_quietly(pid: int) -> None:
    """SIGKILL the sample's process group, then its leader (should it have left the group)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


_SERVERS: dict[tuple[int, bool, bool], _ForkServer] = {}  # (slot, netns, private mounts) -> server
_SERVERS_LOCK = threading.Lock()


def _server_for(key: tuple[int, bool, bool], tmpfs_mb: int) -> _ForkServer:
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is None or not server.alive():
            if server is not None:
                server.close()
            server = _SERVERS[key] = _ForkServer(key[1], key[2], tmpfs_mb)
        return server


def _drop_server(key: tuple[int, bool, bool], uid: int | None) -> None:
    """A server that stopped answering: kill it, sweep its uid the slow way, start afresh next time."""
    with _SERVERS_LOCK:
        server = _SERVERS.pop(key, None)
    if server is not None:
        server.close()
    if uid is not None:
        kill_uid(uid)


@atexit.register
def _close_servers() -> None:
    for server in list(_SERVERS.values()):
        if server.owner == os.getpid():
            server.close()
    _SERVERS.clear()


def _forget_servers_after_fork() -> None:
    """A forked harness process starts its own servers; it only drops its copies of our sockets."""
    for server in _SERVERS.values():
        server.sock.close()
    _SERVERS.clear()


os.register_at_fork(after_in_child=_forget_servers_after_fork)


# ---- the call ----

def run_in_sandbox(argv: list[str], files: dict[str, str], limits: Limits | None = None, *,
                   slot: int = 0, stdin: str = "", in_process: bool | None = None) -> ExecResult:
    """Write `files` into a fresh work dir, run `argv` there under `limits`, clean up, report.

    `in_process`: None runs `[sandbox_python(), "-I", "-S", "x.py"]` in the forked server
    interpreter and everything else by exec; False always execs (a fresh interpreter).

    `slot` picks the sandbox uid (sandbox_uid(slot)) and fork server; concurrent calls in one
    process must use distinct slots so one sample's cleanup never kills another's processes.
    """
    job = _Job.plan(argv, limits or Limits(), slot, in_process)
    workdir, work_fd = Path(tempfile.mkdtemp(prefix="lc-sandbox-")), -1
    try:
        _fill_work_dir(workdir, files, job.uid)
        work_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        # Output goes to unlinked temp files, not pipes: a daemonised grandchild holding a pipe
        # cannot keep us waiting, and RLIMIT_FSIZE also caps how much output a sample can write.
        # The work dir goes as a descriptor: with private mounts the server copies it onto its tmpfs.
        with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f, \
                (tempfile.TemporaryFile() if stdin else open(os.devnull, "rb")) as in_f:
            fds = [work_fd, out_f.fileno(), err_f.fileno()]  # + stdin's, second, when there is one
            if stdin:
                in_f.write(stdin.encode())
                in_f.flush()
                in_f.seek(0)
                fds.insert(1, in_f.fileno())
            outcome = job.run(workdir, fds)
            job.settle(outcome, workdir)
            out_f.seek(0)
            out, err = out_f.read(MAX_OUTPUT_CHARS * 4), _tail(err_f, MAX_OUTPUT_CHARS * 4)
        return outcome.result(out, err, job.isolation)
    finally:
        if work_fd >= 0:
            os.close(work_fd)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class _Job:
    """One run_in_sandbox call: who runs the sample, on which fork server, how, and the isolation notes."""

    argv: list[str]
    limits: Limits
    uid: int | None  # the slot's sandbox uid; None: unchanged (not root, or Limits.drop_privileges False)
    key: tuple[int, bool, bool]  # (slot, netns, private mounts): which server
    server: _ForkServer
    inproc: bool  # python runs in the forked server interpreter rather than by exec
    isolation: list[str]  # ExecResult.isolation; the files entry is inserted second by `settle`

    @classmethod
    def plan(cls, argv: list[str], limits: Limits, slot: int, in_process: bool | None) -> _Job:
        """The slot's uid and server, and whether python runs in-process (see run_in_sandbox)."""
        root = os.geteuid() == 0
        uid = sandbox_uid(slot) if (root and limits.drop_privileges) else None
        netns_ok, netns_note = netns_available() if not limits.network else (False, "network:allowed")
        want_netns = netns_ok and not limits.network
        key = (slot, want_netns, limits.private_mounts)
        server = _server_for(key, limits.tmpfs_mb)
        if want_netns:
            netns_note = server.netns_note  # what the server's own unshare() achieved
        inproc = list(argv[:-1]) == [server.python, "-I", "-S"] and argv[-1].endswith(".py")
        if in_process is not None and in_process and not inproc:
            raise ValueError(f"in_process=True needs argv [{server.python!r}, '-I', '-S', 'NAME.py'], got {argv}")
        inproc = inproc and in_process is not False
        isolation = [netns_note, f"uid:{uid}" if uid is not None else "uid:unchanged (not root or disabled)",
                     f"rlimits:cpu={limits.cpu_seconds}s,as={limits.memory_mb}MB,fsize={limits.file_size_mb}MB,"
                     f"nproc={limits.max_processes},nofile={limits.max_open_files},msgqueue=0",
                     "process:forked by the slot server" + (", python in-process" if inproc else ", exec")]
        return cls(argv, limits, uid, key, server, inproc, isolation)

    def run(self, workdir: Path, fds: list[int]) -> _Outcome:
        """The sample on the slot's server. A server that died between samples (so the sample never
        started) is replaced, and the sample sent once more."""
        try:
            with self.server.lock:
                return self.server.run(self._request(workdir), fds, self.limits.wall_seconds)
        except OSError:
            _drop_server(self.key, self.uid)
            self.server = _server_for(self.key, self.limits.tmpfs_mb)
            with self.server.lock:
                return self.server.run(self._request(workdir), fds, self.limits.wall_seconds)

    def _request(self, workdir: Path) -> dict:
        """The server's request; the sample's work dir is /tmp/NAME on the slot's private tmpfs, if any."""
        cwd = f"/tmp/{workdir.name}" if self.server.mounts["private"] else str(workdir)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd,
               "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        return {"argv": list(self.argv), "cwd": cwd, "env": env, "uid": self.uid, "inproc": self.inproc,
                "limits": asdict(self.limits)}

    def settle(self, outcome: _Outcome, workdir: Path) -> None:
        """After the sample: drop a server that stopped answering, sweep the files it never swept (now that
        the uid's processes are dead), and note what happened to the files in `isolation`."""
        swept = outcome.swept
        if outcome.status is None or swept is None:
            _drop_server(self.key, self.uid)
        if swept is None:
            mounts = self.server.mounts
            swept = self.uid is not None and not (mounts["private"] and mounts["readonly"])
            if swept:
                forkserver.sweep_files(self.uid, str(workdir))
        self.isolation.insert(1, _mounts_note(self.server.mounts, self.limits, self.uid, swept))


def _fill_work_dir(workdir: Path, files: dict[str, str], uid: int | None) -> None:
    """`files` (relative name -> text) written under workdir, all of it owned by uid, the dir mode 0700."""
    for name, text in files.items():
        target = workdir / name
        if target.resolve().parent != workdir.resolve() and workdir.resolve() not in target.resolve().parents:
            raise ValueError(f"sandbox file name {name!r} leaves the work dir")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    if uid is not None:
        for path in [workdir, *workdir.rglob("*")]:
            os.chown(path, uid, uid)
    os.chmod(workdir, 0o700)
