"""The sandbox's fork server: the process that forks, fences in and reaps every sample.

Runs as a script, never imported by sample code:
`python -I -S forkserver.py --serve FD NETNS(0|1) PRIVATE(0|1) TMPFS_MB`,
started once per sandbox slot by lightcoder.eval.sandbox (the harness side, which also documents
the whole protocol and what it does and does not protect against). Stdlib only, because `-I -S`
keeps site-packages and the project off its path.

Protocol on the SOCK_SEQPACKET socket FD (JSON messages, at most MSG_BYTES each):
    server -> harness  {"netns": note, "mounts": {...}}   once, after unshare(CLONE_NEWNET) and, with
                                                           PRIVATE, SlotFiles() ({"private", "readonly",
                                                           "reason"}: what it achieved)
    harness -> server  request + [work dir, stdin?, stdout, stderr] descriptors (SCM_RIGHTS)
    server -> harness  {"pid": pid}                        the sample started (its own session)
    server -> harness  {"status": wait_status,             it ended and everything it spawned is dead;
                        "sweeping": bool}                  sweeping: its files are being swept (no
                                                           private mounts), then:
    server -> harness  {"swept": true}                     they are gone

Files (SlotFiles below): with PRIVATE the server enters its own mount and IPC namespaces, in
which /tmp, /var/tmp and /dev/shm are one size-capped tmpfs and every other mount is read-only;
each sample gets a copy of its work dir on it, and after each sample the tmpfs and the System V
IPC objects are emptied (the tmpfs checked empty) before the server reports. Without
PRIVATE, or where the kernel refuses, the server instead removes everything the slot's uid owns in
the world-writable dirs, and its System V IPC objects, after each sample (sweep_files).
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
import stat
import sys
import threading

CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWIPC = 0x40000000, 0x00020000, 0x08000000
MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x20, 0x1000, 0x4000, 0x40000
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1  # 442: every arch since 5.12
COVERED_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # one private tmpfs (SlotFiles)
WORLD_WRITABLE = (*COVERED_DIRS, "/run/lock", "/var/lock", "/dev/mqueue")  # swept in the fallback
SWEEP_DEPTH = 64  # deeper dirs are moved up to the top before being swept: bounded fds and recursion
PR_SET_CHILD_SUBREAPER = 36
# Modules the fork server imports once so that forked samples find them loaded (their state is the
# pristine post-import state: the server never runs sample code). HumanEval programs use these.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
           "hashlib", "traceback")
LIBC = ctypes.CDLL(None, use_errno=True)  # resolved before any fork: children only call into it
LIBC.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
MSG_BYTES = 1 << 16  # max request/reply size on the server socket (argv + env + limits as JSON)


def serve(sock_fd: int, want_netns: bool, want_private: bool, tmpfs_mb: int) -> None:
    """Serve run requests on the socket until the harness closes it. One sample at a time."""
    sock = socket.socket(fileno=sock_fd)
    note = "network:allowed"
    if want_netns:
        note = "netns" if LIBC.unshare(CLONE_NEWNET) == 0 else \
            f"netns:unavailable ({errno.errorcode.get(ctypes.get_errno(), '?')})"
    LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of samples come to us, not to init
    for name in PRELOAD:
        __import__(name)
    files, mounts = None, {"private": False, "readonly": False, "reason": "off"}
    if want_private:
        try:
            files = SlotFiles(tmpfs_mb)
            mounts = {"private": True, "readonly": files.readonly, "reason": files.reason}
        except OSError as e:
            mounts["reason"] = errno.errorcode.get(e.errno, str(e.errno))
    sock.send(json.dumps({"netns": note, "mounts": mounts}).encode())
    try:
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, MSG_BYTES, 4)
            if not msg:
                return  # the harness is gone
            req = json.loads(msg)
            if files:
                files.resize(req["limits"]["tmpfs_mb"])
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the sample's process
                sample_child(req, fds, sock, files)
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"pid": pid}).encode())
            _, status = os.waitpid(pid, 0)
            sweep(req["uid"])
            clean = files.wipe() if files else True
            sweeping = req["uid"] is not None and not (files and files.readonly)
            sock.send(json.dumps({"status": status, "sweeping": sweeping}).encode())  # its wall clock stops
            if sweeping:
                sweep_files(req["uid"], req["cwd"])
                sock.send(json.dumps({"swept": True}).encode())
            if not clean:  # never seen: end the namespace with us; the harness starts a fresh server
                return
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


def sample_child(req: dict, fds: list[int], sock: socket.socket, files: SlotFiles | None) -> None:
    """In the forked child: fence ourselves in, then exec argv or run the Python script in-process."""
    try:
        sock.detach()  # its fd is closed below; the object must never close a reused number later
        os.setsid()
        stdin_fd = fds[1] if len(fds) == 4 else os.open(os.devnull, os.O_RDONLY)
        for target, fd in zip((0, 1, 2), (stdin_fd, *fds[-2:])):
            os.dup2(fd, target)
        if files:
            files.enter(fds[0], req["cwd"], req["uid"])
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        limits, mb = req["limits"], 1024 * 1024
        os.chdir(req["cwd"])
        for rlimit, soft, hard in ((resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1),
                                   (resource.RLIMIT_AS, limits["memory_mb"] * mb, limits["memory_mb"] * mb),
                                   (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb, limits["file_size_mb"] * mb),
                                   (resource.RLIMIT_NOFILE, limits["max_open_files"], limits["max_open_files"]),
                                   (resource.RLIMIT_CORE, 0, 0),
                                   # POSIX message queues outlive their processes and no sweep can list
                                   # them without mounting their filesystem: samples get none.
                                   (resource.RLIMIT_MSGQUEUE, 0, 0),
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


# ---- files: the slot's private tmpfs, emptied after each sample, or a sweep of the shared dirs ----

def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _private_namespace() -> None:
    """New mount + IPC namespaces for this process, detached from the machine's mount propagation."""
    _check(LIBC.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare(CLONE_NEWNS | CLONE_NEWIPC)")
    # Without this, mounts made below would propagate back to shared peers outside (systemd's default).
    _check(LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")


class MountAttr(ctypes.Structure):
    """struct mount_attr of mount_setattr(2)."""

    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def _readonly_everything() -> None:
    """Every mount of this namespace read-only, in one call; other mount flags are left as they were."""
    attr = MountAttr(attr_set=MOUNT_ATTR_RDONLY)
    _check(LIBC.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), b"/", ctypes.c_uint(AT_RECURSIVE),
                        ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr(/, read-only)")


def probe_mounts() -> dict:
    """Can this process's children get private mounts? {"private", "readonly", "reason"}: a forked
    child tries the namespace, a tmpfs and the read-only remount; reason names the errno that failed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        result = {"private": False, "readonly": False, "reason": ""}
        try:
            os.close(r)
            _private_namespace()
            _check(LIBC.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m"), "mount tmpfs")
            result["private"] = True
            _readonly_everything()
            result["readonly"] = True
        except OSError as e:
            result["reason"] = errno.errorcode.get(e.errno, str(e.errno))
        finally:
            os.write(w, json.dumps(result).encode())
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    return json.loads(out or b'{"private": false, "readonly": false, "reason": "probe died"}')


def _bind(source: str, target: str) -> None:
    _check(LIBC.mount(source.encode(), target.encode(), None, MS_BIND, None), f"bind {source} on {target}")


def _tmpfs_options(size_mb: int) -> bytes:
    # ~1 KB of kernel memory per inode, which size= does not count: cap inodes too.
    return f"size={size_mb}m,nr_inodes={size_mb * 256},mode=0700".encode()


class SlotFiles:
    """The server's own mount + IPC namespaces, entered once (a namespace per sample cost ~1.2 ms
    more CPU per sample, +18 % on HumanEval): one tmpfs of `size_mb` holds /tmp, /var/tmp and
    /dev/shm, every other mount is read-only where mount_setattr exists; wipe() empties them after
    each sample. Raises OSError where the kernel refuses, leaving the server where it was."""

    def __init__(self, size_mb: int):
        host = [os.open(f"/proc/self/ns/{ns}", os.O_RDONLY) for ns in ("mnt", "ipc")]
        try:
            self._enter(size_mb)
        except OSError:
            for fd in host:  # back to the machine's namespaces (a no-op if unshare itself failed)
                LIBC.setns(fd, 0)
            raise
        finally:
            for fd in host:
                os.close(fd)

    def _enter(self, size_mb: int) -> None:
        _private_namespace()
        self.readonly, self.reason = True, ""
        try:
            _readonly_everything()
        except OSError as e:  # Linux < 5.12 (ENOSYS): private tmpfs still, the rest stays writable
            self.readonly, self.reason = False, errno.errorcode.get(e.errno, str(e.errno))
        self.size_mb = size_mb
        _check(LIBC.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, _tmpfs_options(size_mb)), "mount tmpfs")
        umask = os.umask(0)
        try:
            for name in ("tmp", "var_tmp", "shm"):
                os.mkdir(f"/tmp/{name}", 0o1777)
        finally:
            os.umask(umask)
        for name, target in (("var_tmp", "/var/tmp"), ("shm", "/dev/shm"), ("tmp", "/tmp")):  # /tmp last:
            if os.path.isdir(target):  # it covers the tmpfs's root, the sources' parent
                _bind(f"/tmp/{name}", target)
        self.dirs = [os.open(d, os.O_RDONLY | os.O_DIRECTORY) for d in COVERED_DIRS if os.path.isdir(d)]

    def resize(self, size_mb: int) -> None:
        """A request with another Limits.tmpfs_mb: the (empty) tmpfs is remounted with that size."""
        if size_mb != self.size_mb:
            _check(LIBC.mount(b"tmpfs", b"/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, _tmpfs_options(size_mb)),
                   "resize tmpfs")
            self.size_mb = size_mb

    def enter(self, work_fd: int, cwd: str, uid: int | None) -> None:
        """In the sample's child, as root: `cwd` (under /tmp) becomes a copy of the harness's work dir."""
        umask = os.umask(0)  # mkdir and open then give the modes asked for
        try:
            os.mkdir(cwd, 0o700)
            _copy_tree(work_fd, cwd, uid)
        finally:
            os.umask(umask)

    def wipe(self) -> bool:
        """Empty /tmp, /var/tmp, /dev/shm and System V IPC; True if the dirs are empty now."""
        for fd in self.dirs:
            _sweep_top(fd, None)
        _remove_ipc(None)
        return not any(os.listdir(fd) for fd in self.dirs)


def _copy_tree(src_fd: int, dst: str, uid: int | None) -> None:
    """Copy the dirs and regular files under dir fd `src_fd` to `dst`, modes kept, owned by `uid`.
    Raw descriptors, no file objects: this runs before every sample."""
    dst_fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if uid is not None:
            os.fchown(dst_fd, uid, uid)
        for entry in os.scandir(src_fd):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(entry.name, stat.S_IMODE(st.st_mode), dir_fd=dst_fd)
                sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=src_fd)
                try:
                    _copy_tree(sub, os.path.join(dst, entry.name), uid)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(entry.name, src_fd, dst_fd, stat.S_IMODE(st.st_mode), uid)
    finally:
        os.close(dst_fd)


def _copy_file(name: str, src_fd: int, dst_fd: int, mode: int, uid: int | None) -> None:
    fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src_fd)
    try:
        fout = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=dst_fd)
        try:
            while chunk := os.read(fin, 1 << 20):
                os.write(fout, chunk)  # a regular file takes the whole chunk (or raises)
            if uid is not None:
                os.fchown(fout, uid, uid)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def sweep_files(uid: int, cwd: str) -> None:
    """The fallback without private mounts: remove all that `uid` owns in the world-writable dirs
    and the work dir `cwd`, and its System V IPC objects. Its processes are dead by now, but other
    slots' samples run on: every step is relative to a dir fd opened without following symlinks, so
    a name swapped for a symlink cannot lead outside these trees."""
    seen = set()
    for top in (*WORLD_WRITABLE, cwd):
        try:
            fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)  # root's own paths (or the harness's cwd)
        except OSError:
            continue
        try:
            key = os.fstat(fd)[1:3]  # (st_ino, st_dev): /var/lock is often /run/lock
            if key not in seen:
                seen.add(key)
                _sweep_top(fd, uid)
        finally:
            os.close(fd)
    _remove_ipc(uid)


def _sweep_top(top_fd: int, uid: int | None) -> None:
    """Sweep one top dir (`uid` None: everything in it); subtrees deeper than SWEEP_DEPTH are moved
    up to it and swept in turn."""
    hoisted: list[tuple[str, bool]] = []
    _remove_owned(top_fd, top_fd, uid, uid is None, 0, hoisted)
    while hoisted:
        name, everything = hoisted.pop()
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top_fd)
        except OSError:
            continue
        try:
            _remove_owned(fd, top_fd, uid, everything, 0, hoisted)
        finally:
            os.close(fd)
        if everything:
            _quietly(os.rmdir, name, dir_fd=top_fd)


def _remove_owned(dir_fd: int, top_fd: int, uid: int | None, everything: bool, depth: int,
                  hoisted: list[tuple[str, bool]]) -> None:
    """Remove entries of `dir_fd` that `uid` owns (all of them when `everything`: inside its dir).

    Descends only into dirs `uid` could enter (o+x, or its own): nothing of its can be below others.
    """
    for name, st in _entries(dir_fd):
        mine = everything or st.st_uid == uid
        if not stat.S_ISDIR(st.st_mode):
            if mine:
                _quietly(os.unlink, name, dir_fd=dir_fd)
            continue
        if not (mine or st.st_mode & 0o001) or (depth >= SWEEP_DEPTH and not mine):
            continue
        if depth >= SWEEP_DEPTH:  # move it up (root may rename in sticky dirs) and sweep it later
            up = f".lightcoder-sweep-{uid}-{os.getpid()}-{len(hoisted)}-{st.st_ino}"
            if _quietly(os.rename, name, up, src_dir_fd=dir_fd, dst_dir_fd=top_fd):
                hoisted.append((up, mine))
            continue
        try:
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            _remove_owned(sub, top_fd, uid, mine, depth + 1, hoisted)
        finally:
            os.close(sub)
        if mine:
            _quietly(os.rmdir, name, dir_fd=dir_fd)


def _entries(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry; one that vanishes meanwhile (other slots sweep too) is skipped."""
    out = []
    try:
        with os.scandir(dir_fd) as it:
            for entry in it:
                try:
                    out.append((entry.name, entry.stat(follow_symlinks=False)))
                except OSError:
                    continue
    except OSError:
        pass
    return out


def _quietly(fn, *args, **kwargs) -> bool:
    """fn(...) -> True; False when it raced with someone else (gone already, replaced, not empty)."""
    try:
        fn(*args, **kwargs)
        return True
    except OSError:
        return False


def _remove_ipc(uid: int | None) -> None:
    """IPC_RMID every System V shared memory segment, message queue and semaphore set `uid` owns or
    made (None: all of this IPC namespace's)."""
    for kind, remove in (("shm", lambda i: LIBC.shmctl(i, 0, None)), ("msg", lambda i: LIBC.msgctl(i, 0, None)),
                         ("sem", lambda i: LIBC.semctl(i, 0, 0))):
        try:  # raw reads: this runs after every sample, and there is almost always only the header
            fd = os.open(f"/proc/sysvipc/{kind}", os.O_RDONLY)
        except OSError:
            continue
        chunks = []
        try:
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        header, *rows = [line.split() for line in b"".join(chunks).decode().splitlines()]
        owners = [header.index(name) for name in ("uid", "cuid")] if rows else []
        for row in rows:
            if uid is None or any(int(row[k]) == uid for k in owners):
                remove(int(row[1]))


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
        serve(int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1", int(sys.argv[5]))
