"""Run one untrusted program in its own process, fenced in, and report how it ended.

Each call to `run_in_sandbox(argv, files, limits)`:

1. makes a throwaway working directory (mode 0700, owned by the sandbox user) holding `files`;
2. starts `argv` in a new session (its own process group) with a clean environment
   (PATH, HOME=the work dir, LANG, no inherited variables);
3. in the child before exec: `unshare(CLONE_NEWNET)` through ctypes (a fresh network namespace
   with only a downed loopback: no network at all), rlimits on CPU seconds, address space, file
   size, open files, process count and core dumps, then drops root for a sandbox uid/gid with
   no supplementary groups (one uid per parallel slot, no passwd entry needed; each uid is
   claimed with a lock file for the life of this process, so two harnesses on one machine never
   share a uid and never kill each other's samples);
4. waits up to a wall-clock timeout, then SIGKILLs the process group, then every process still
   owned by the slot's uid (a fork that called setsid escapes the group, not the uid);
5. deletes the working directory and returns an ExecResult: status ("passed", "failed",
   "timeout", "killed"), exit code / signal, clipped stdout/stderr, seconds, and `isolation`,
   which says what was actually applied (e.g. "netns:unavailable (EPERM)" when unshare failed).

What it protects against, and what it does not, is written down in docs/evaluation.md §Sandbox.
In short: it stops runaway CPU, memory, disk-per-file, processes and network, signals to the
harness, and writes to or reads of root-only files; it does NOT stop reading world-readable files
(/etc/passwd, the Python stdlib), writing to world-writable dirs (/tmp, /dev/shm), kernel
exploits, or side channels. Run it in a container or VM for hostile code.

Example:
    r = run_in_sandbox(["python3", "main.py"], {"main.py": "print(1 + 1)"}, Limits())
    r.status, r.stdout   # -> ("passed", "2\\n")
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
SANDBOX_UID_BASE = 61000  # sandbox uids are claimed from [61000, 61000 + SANDBOX_UID_COUNT): no real user's
SANDBOX_UID_COUNT = 4096
LOCK_DIR = Path(tempfile.gettempdir()) / "lightcoder-sandbox-uids"
MAX_OUTPUT_CHARS = 4000  # stdout/stderr kept per sample (the tail of stderr, the head of stdout)
_LIBC = ctypes.CDLL(None, use_errno=True)  # resolved in the parent: the child only calls into it


@dataclass(kw_only=True)
class Limits:
    """Per-sample resource limits. Defaults suit HumanEval-sized Python; JVM/node need more memory."""

    wall_seconds: float = 10.0  # wall clock, then the whole process group and uid are killed
    cpu_seconds: int = 10  # RLIMIT_CPU: SIGXCPU, then SIGKILL at the hard limit (+1 s)
    memory_mb: int = 1024  # RLIMIT_AS (virtual address space)
    file_size_mb: int = 16  # RLIMIT_FSIZE: a write past it gets SIGXFSZ
    max_processes: int = 32  # RLIMIT_NPROC for the sandbox uid (counts every process of that uid)
    max_open_files: int = 128  # RLIMIT_NOFILE
    network: bool = False  # True skips the network namespace
    drop_privileges: bool = True  # run as the slot's uid when we are root

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds", "memory_mb", "file_size_mb", "max_processes",
                     "max_open_files"):
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


# ---- what the child does between fork and exec (no Python-level allocation-heavy work) ----

def _child_setup(limits: Limits, uid: int | None, netns_ok: bool, report_fd: int) -> None:
    """preexec_fn: runs in the forked child. Errors here abort the exec (Popen raises)."""
    if netns_ok and not limits.network:
        if _LIBC.unshare(CLONE_NEWNET) != 0:
            os.write(report_fd, b"N")  # the parent records "netns failed" and the sample still runs offline-less
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb, limits.file_size_mb * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.close(report_fd)


def _probe_netns() -> tuple[bool, str]:
    """Can a child create a network namespace here? (False, reason) on EPERM/ENOSYS etc."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        code = 0 if _LIBC.unshare(CLONE_NEWNET) == 0 else ctypes.get_errno()
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


# ---- sandbox uids: one per (process, slot), claimed machine-wide with flock ----

_CLAIMED: dict[int, tuple[int, int]] = {}  # slot -> (uid, lock fd held open for the process's life)
_CLAIM_LOCK = threading.Lock()


def sandbox_uid(slot: int) -> int:
    """The uid this process runs `slot`'s samples as; claimed on first use with an exclusive flock on
    LOCK_DIR/<uid>.lock, so no other live process uses it. Leftover processes of a freshly claimed
    uid (from a crashed earlier owner) are killed first."""
    with _CLAIM_LOCK:
        if slot in _CLAIMED:
            return _CLAIMED[slot][0]
        LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        taken = {uid for uid, _ in _CLAIMED.values()}
        for uid in range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + SANDBOX_UID_COUNT):
            if uid in taken:
                continue
            fd = os.open(LOCK_DIR / f"{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _CLAIMED[slot] = (uid, fd)
            _kill_uid(uid)
            return uid
    raise RuntimeError(f"no free sandbox uid in {SANDBOX_UID_BASE}..{SANDBOX_UID_BASE + SANDBOX_UID_COUNT - 1}")


# ---- cleanup ----

def _pids_of_uid(uid: int) -> list[int]:
    """Live (not zombie) processes whose real uid is `uid`, from every /proc/PID/status.

    Not the cheaper owner of /proc/PID: a process that makes itself non-dumpable
    (prctl PR_SET_DUMPABLE 0) shows its /proc entry as root's and would escape the sweep.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as f:
                state = ""
                for line in f:
                    if line.startswith("State:"):
                        state = line.split()[1]
                    elif line.startswith("Uid:"):
                        if int(line.split()[1]) == uid and state not in ("Z", "X"):
                            pids.append(int(entry))
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def _kill_everything(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL the process group, then (repeatedly, forks race us) every process of the slot uid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is not None:
        _kill_uid(uid)


def _kill_uid(uid: int) -> None:
    for _ in range(50):
        pids = _pids_of_uid(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _tail(f, n: int) -> bytes:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - n))
    return f.read()


def _clip(text: bytes, keep_tail: bool) -> str:
    s = text.decode("utf-8", errors="replace")
    if len(s) <= MAX_OUTPUT_CHARS:
        return s
    return ("..." + s[-MAX_OUTPUT_CHARS:]) if keep_tail else (s[:MAX_OUTPUT_CHARS] + "...")


# ---- the call ----

def run_in_sandbox(argv: list[str], files: dict[str, str], limits: Limits | None = None, *,
                   slot: int = 0, stdin: str = "") -> ExecResult:
    """Write `files` into a fresh work dir, run `argv` there under `limits`, clean up, report.

    `slot` picks the sandbox uid (sandbox_uid(slot)); concurrent calls in one process must use
    distinct slots so one sample's cleanup never kills another's processes.
    """
    limits = limits or Limits()
    root = os.geteuid() == 0
    uid = sandbox_uid(slot) if (root and limits.drop_privileges) else None
    netns_ok, netns_note = netns_available() if not limits.network else (False, "network:allowed")
    if not root and netns_ok is False and not limits.network:
        netns_note = netns_note or "netns:unavailable (not root)"
    isolation = [netns_note, f"uid:{uid}" if uid is not None else "uid:unchanged (not root or disabled)",
                 f"rlimits:cpu={limits.cpu_seconds}s,as={limits.memory_mb}MB,fsize={limits.file_size_mb}MB,"
                 f"nproc={limits.max_processes},nofile={limits.max_open_files}"]
    workdir = Path(tempfile.mkdtemp(prefix="lc-sandbox-"))
    try:
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
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
               "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        report_r, report_w = os.pipe()
        # Output goes to unlinked temp files, not pipes: a daemonised grandchild holding a pipe
        # cannot keep us waiting, and RLIMIT_FSIZE also caps how much output a sample can write.
        out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv, cwd=workdir, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=out_f, stderr=err_f, start_new_session=True, pass_fds=(report_w,),
                preexec_fn=lambda: _child_setup(limits, uid, netns_ok, report_w))
        finally:
            os.close(report_w)
        status = "failed"
        try:
            if stdin:
                try:
                    proc.stdin.write(stdin.encode())
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            proc.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            status = "timeout"
        _kill_everything(proc, uid)  # leftovers (daemonised children) die with the sample
        proc.wait()
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(MAX_OUTPUT_CHARS * 4), _tail(err_f, MAX_OUTPUT_CHARS * 4)
        out_f.close()
        err_f.close()
        seconds = time.perf_counter() - start
        if os.read(report_r, 1) == b"N":
            isolation[0] = "netns:failed in child"
        os.close(report_r)
        if status != "timeout":
            status = "passed" if proc.returncode == 0 else "failed"
        return ExecResult(status=status, returncode=proc.returncode, stdout=_clip(out, keep_tail=False),
                          stderr=_clip(err, keep_tail=True), seconds=seconds, isolation=isolation)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
