"""The sandbox's uids: one per (process, slot), claimed machine-wide, and killing all of a uid's processes.

Each slot's samples run as their own uid from [SANDBOX_UID_BASE, SANDBOX_UID_BASE + SANDBOX_UID_COUNT)
(no passwd entry needed). A uid is claimed with an exclusive flock on LOCK_DIR/<uid>.lock, held open
for the life of the process, so two harnesses on one machine never share a uid and never kill each
other's samples. `kill_uid` is the slow, thorough sweep (sandbox.py uses it when a fork server stops
answering, and on a freshly claimed uid that a crashed owner may have left processes under).

Example:
    uid = sandbox_uid(0)   # e.g. 61000, the same for every later call with slot 0 in this process
    kill_uid(uid)          # no process of that uid is left
"""

from __future__ import annotations

import fcntl
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

SANDBOX_UID_BASE = 61000  # sandbox uids are claimed from [61000, 61000 + SANDBOX_UID_COUNT): no real user's
SANDBOX_UID_COUNT = 4096
LOCK_DIR = Path(tempfile.gettempdir()) / "lightcoder-sandbox-uids"

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
            kill_uid(uid)
            return uid
    raise RuntimeError(f"no free sandbox uid in {SANDBOX_UID_BASE}..{SANDBOX_UID_BASE + SANDBOX_UID_COUNT - 1}")


def pids_of_uid(uid: int) -> list[int]:
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


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` until none is left (up to ~0.5 s of retries for ones just forked)."""
    for _ in range(50):
        pids = pids_of_uid(uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
