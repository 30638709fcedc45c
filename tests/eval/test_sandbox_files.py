"""Red-team tests for files and memory: no sample sees, keeps or fills what another sample or the
machine depends on (/tmp, /var/tmp, /dev/shm, System V IPC, the rest of the filesystem).

Each case runs in both modes where it applies: "private" (the sample's own mount and IPC
namespaces with a size-capped tmpfs, the default) and "swept" (Limits.private_mounts=False: the
fallback used where the kernel refuses namespaces, which removes the slot uid's files afterwards).
The kernel's own refusal is tested too, by running a harness without CAP_SYS_ADMIN (setpriv).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from lightcoder.eval.sandbox import Limits, mounts_available, run_in_sandbox, sandbox_python, sandbox_uid

PY = sandbox_python()
FAST = Limits(wall_seconds=5.0, cpu_seconds=3, memory_mb=512, file_size_mb=16, max_processes=16, tmpfs_mb=32)
MODES = ["private", "swept"]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox uids and namespaces need root")


def limits_for(mode: str, **changes) -> Limits:
    """FAST in `mode`; skips "private" where this kernel refuses the sample's namespaces."""
    if mode == "private" and not mounts_available()["private"]:
        pytest.skip(f"no private mounts here ({mounts_available()['reason']}); the swept mode still runs")
    return replace(FAST, private_mounts=mode == "private", **changes)


def run(code: str, limits: Limits, slot: int):
    return run_in_sandbox([PY, "-I", "-S", "main.py"], {"main.py": code}, limits, slot=slot)


def shmem_mb() -> float:
    """The machine's memory held by tmpfs and shared memory (/proc/meminfo Shmem)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no Shmem line in /proc/meminfo")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["/tmp", "/var/tmp", "/dev/shm"])
def test_a_file_one_sample_leaves_is_gone_for_the_next(where, mode):
    limits, marker = limits_for(mode), f"{where}/marker-{uuid.uuid4().hex}"
    a = run(f"open({marker!r}, 'w').write('from A')\nprint('wrote')", limits, slot=6)
    assert a.passed and a.stdout == "wrote\n", a.stderr
    assert ("mountns:tmpfs=32MB,ro" if mode == "private" else "swept") in a.isolation[1]
    for slot in (6, 7):  # the same slot's next sample, and another slot's
        b = run(f"print(open({marker!r}).read())", limits, slot=slot)
        assert not b.passed and "FileNotFoundError" in b.stderr and "from A" not in b.stdout
    assert not os.path.exists(marker)


@pytest.mark.parametrize("mode", MODES)
def test_an_ipc_object_one_sample_leaves_is_gone_for_the_next(mode):
    """A System V segment outlives its process (swept or wiped after the sample); a POSIX queue
    would too, so samples may not make one (RLIMIT_MSGQUEUE 0)."""
    limits, key = limits_for(mode), 0x4C430000 + uuid.uuid4().int % 0xFFFF
    libc = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    a = run(libc + f"print(libc.shmget({key}, 1 << 20, 0o1600) >= 0)\n"  # IPC_CREAT | 0600
            f"print(libc.mq_open(b'/lc-{key}', os.O_CREAT | os.O_RDWR, 0o600, None) >= 0)\n", limits, slot=6)
    assert a.passed and a.stdout.split() == ["True", "False"], a.stderr
    b = run(libc + f"print(libc.shmget({key}, 0, 0) >= 0, ctypes.get_errno() == 2)\n", limits, slot=6)
    assert b.passed and b.stdout.split() == ["False", "True"], b.stderr  # ENOENT: no such segment


def test_filling_dev_shm_stops_at_the_cap_and_gives_the_memory_back():
    limits = limits_for("private")
    code = ("written = 0\ntry:\n    for i in range(20):\n        with open(f'/dev/shm/fill-{i}', 'wb') as f:\n"
            "            for _ in range(10):\n                f.write(b'x' * (1 << 20))\n                written += 1\n"
            "    print(written, 0)\nexcept OSError as e:\n    print(written, e.errno)\n")
    run("print('warm')", limits, slot=8)  # the slot's server is started before we measure
    before = shmem_mb()
    r = run(code + "print(open('/proc/meminfo').read().split('Shmem:')[1].split()[0])\n", limits, slot=8)
    assert r.passed, r.stderr
    written, err, during_kb = map(int, r.stdout.split())
    assert err == 28 and 24 <= written <= 32  # ENOSPC at the 32 MB cap (the work dir holds a little)
    assert during_kb / 1024 - before > 16  # the fill was the machine's memory while the sample ran ...
    assert shmem_mb() - before < 8, "the sample's tmpfs outlived it"  # ... and is not any more
    assert [n for n in os.listdir("/dev/shm") if n.startswith("fill-")] == []


def test_without_private_mounts_the_memory_a_sample_filled_is_given_back():
    limits = limits_for("swept")
    code = ("for i in range(5):\n    with open(f'/dev/shm/fill-{i}', 'wb') as f:\n"
            "        f.write(b'x' * (10 << 20))\nprint('filled')\n")
    run("print('warm')", limits, slot=8)
    before = shmem_mb()
    r = run(code, limits, slot=8)
    assert r.passed and r.stdout == "filled\n", r.stderr  # 50 MB: no cap in this mode ...
    assert shmem_mb() - before < 8  # ... but none of it stays (others' shared memory may shrink meanwhile)


def test_the_rest_of_the_filesystem_is_read_only_but_the_work_dir_is_writable():
    limits = limits_for("private")
    if not mounts_available()["readonly"]:
        pytest.skip(f"no read-only remount here ({mounts_available()['reason']})")
    shared = [d for d in ("/run/lock", "/var/lock") if os.path.isdir(d) and os.stat(d).st_mode & 0o002]
    if not shared:
        pytest.skip("no world-writable dir outside /tmp, /var/tmp and /dev/shm on this machine")
    code = (f"import errno, os\nopen('out.txt', 'w').write('ok')\nos.mkdir('sub')\n"
            f"try:\n    open({shared[0] + '/x'!r}, 'w')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n")
    r = run(code, limits, slot=9)
    assert r.passed and r.stdout == "EROFS\n", r.stderr


HOSTILE = r'''
import ctypes, os, time
work, made = os.getcwd(), []
for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue", os.getcwd(), "/", "/etc", "/usr/local", CHECKOUT):
    p = os.path.join(d, "hostile-" + TOKEN)
    try:
        open(p, "w").write("x")
        made.append(d)
        os.mkfifo(p + ".fifo")
        os.symlink("/etc/passwd", p + ".link")
        os.mkdir(p + ".d", 0o777)
        os.chmod(p + ".d", 0o777)
        os.chdir(p + ".d")
        for _ in range(80):  # deeper than the sweep's per-pass depth (SWEEP_DEPTH)
            os.mkdir("d")
            os.chdir("d")
        open("deep", "w").write("x")
        os.chmod(".", 0)
    except OSError:
        pass
    finally:
        os.chdir(work)
ctypes.CDLL(None).shmget(0, 1 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600: a segment nobody removes
if os.fork() == 0:  # a daemon that keeps writing after the sample ends
    os.setsid()
    for i in range(100000):
        open(f"/tmp/daemon-{TOKEN}-{i}", "w").close()
        time.sleep(0.001)
print(" ".join(made))
'''


def owned_files(uids: set[int]) -> list[str]:
    """Every path on the machine owned by one of `uids` (/proc and /sys aside)."""
    args = [a for uid in sorted(uids) for a in ("-o", "-uid", str(uid))][1:]
    out = subprocess.run(["find", "/", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o",
                          "(", *args, ")", "-print"], capture_output=True, text=True, check=False)
    return out.stdout.split()


def sysv_ipc_of(uids: set[int]) -> list[str]:
    rows = []
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            header, *lines = [line.split() for line in f]
        rows += [f"{kind} {r[1]}" for r in lines if int(r[header.index("uid")]) in uids]
    return rows


def test_twenty_hostile_samples_in_parallel_leave_nothing_of_theirs_anywhere():
    """Half in private mounts (where the kernel allows), half swept; 20 slots at once."""
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    modes = [MODES[k % 2] if mounts_available()["private"] else "swept" for k in range(20)]

    def one(k: int):
        code = f"TOKEN, CHECKOUT = {uuid.uuid4().hex + str(k)!r}, {checkout!r}" + HOSTILE
        return run(code, replace(FAST, private_mounts=modes[k] == "private"), slot=20 + k)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    for r in results:
        assert r.passed, r.stderr
        assert {"/tmp", "/var/tmp", "/dev/shm"} <= set(r.stdout.split()), r.stdout  # it did write there
        assert not {"/", "/etc", "/usr/local", checkout} & set(r.stdout.split())
    uids = {sandbox_uid(20 + k) for k in range(20)}
    assert owned_files(uids) == []
    assert sysv_ipc_of(uids) == []
    # Private slots keep their namespace: their next sample must find it empty.
    inspect = ("import os\nprint(sorted(os.listdir('/tmp')) == [os.path.basename(os.getcwd())], os.listdir('/var/tmp'),"
               " os.listdir('/dev/shm'), open('/proc/sysvipc/shm').read().count('\\n'))\n")
    for k in [k for k in range(20) if modes[k] == "private"]:
        r = run(inspect, replace(FAST, private_mounts=True), slot=20 + k)
        assert r.passed and r.stdout == "True [] [] 1\n", (r.stdout, r.stderr)  # 1: the header line


def test_files_are_swept_even_when_the_slot_server_dies_mid_sample():
    """The server sweeps after each sample; killed mid-sample, it cannot, so the harness does."""
    from lightcoder.eval import sandbox

    limits, marker = replace(limits_for("swept"), wall_seconds=60), f"/tmp/marker-{uuid.uuid4().hex}"
    run("print('warm')", limits, slot=15)
    server = next(s for key, s in sandbox._SERVERS.items() if key[0] == 15)

    def kill_once_written() -> None:
        for _ in range(3000):  # as soon as the sample has written its file (at most ~30 s)
            if os.path.exists(marker):
                break
            time.sleep(0.01)
        server.proc.kill()

    killer = threading.Thread(target=kill_once_written)
    killer.start()
    r = run(f"import time\nopen({marker!r}, 'w').write('x')\ntime.sleep(60)\n", limits, slot=15)
    killer.join()
    assert not r.passed and r.isolation[1] == "mountns:off (Limits.private_mounts=False),swept"
    assert not os.path.exists(marker)
    assert run("print('served')", limits, slot=15).stdout == "served\n"  # a new server took the slot


SETPRIV_HARNESS = r'''
import json, warnings
from lightcoder.eval.sandbox import run_in_sandbox, sandbox_python
PY, marker = sandbox_python(), "/dev/shm/marker-" + TOKEN
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = run_in_sandbox([PY, "-I", "-S", "main.py"], {"main.py": f"open({marker!r}, 'w').write('A')"})
    b = run_in_sandbox([PY, "-I", "-S", "main.py"], {"main.py": f"print(open({marker!r}).read())"})
print(json.dumps({"a": a.passed, "b": b.passed, "b_stderr": b.stderr, "isolation": a.isolation,
                  "warnings": [str(w.message) for w in caught if "mount namespace" in str(w.message)]}))
'''


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv to drop CAP_SYS_ADMIN")
def test_where_the_kernel_refuses_namespaces_files_are_swept_and_it_warns_once():
    """A real refusal: the harness (and so its fork servers) run without CAP_SYS_ADMIN."""
    script = SETPRIV_HARNESS.replace("TOKEN", repr(uuid.uuid4().hex))
    proc = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, "-c",
                           script], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["isolation"][1] == "mountns:unavailable (EPERM),swept"
    assert out["a"] and not out["b"] and "FileNotFoundError" in out["b_stderr"]
    assert len(out["warnings"]) == 1 and "share /tmp, /var/tmp and /dev/shm" in out["warnings"][0]


def test_root_with_cap_sys_admin_gets_private_mounts():
    """Guards the skips above: where the kernel should allow namespaces, the probe must say so."""
    with open("/proc/self/status") as f:
        cap_eff = int(next(line.split()[1] for line in f if line.startswith("CapEff:")), 16)
    if not cap_eff >> 21 & 1:  # CAP_SYS_ADMIN
        pytest.skip("no CAP_SYS_ADMIN here: the swept mode is what this machine gets")
    assert mounts_available() == {"private": True, "readonly": True, "reason": ""}


def test_the_tmpfs_cap_is_validated():
    with pytest.raises(ValueError, match="Limits.tmpfs_mb"):
        Limits(tmpfs_mb=0)
