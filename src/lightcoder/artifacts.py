"""Files a stage leaves in a run directory: atomic writes, completion markers, JSONL that tolerates a torn last line.

The one home for file-safety helpers; every stage uses these instead of its own copy.

- Atomic writes: the data goes to a hidden temp file in the same directory, is flushed and fsynced,
  renamed over the target (`os.replace`), and the directory is fsynced (best effort). A reader sees
  the old file or the new one, never half of one; a crash leaves at most a `.NAME.*.tmp` file.

      write_json_atomic(run / "config.json", cfg)
      with AtomicFile(path, "w") as f:     # streaming; on an exception the old file stays
          f.write(...)

- Completion markers: a stage is finished when DIR/DONE exists; DONE holds its JSON summary and is
  written last (`mark_done`), so a crash never leaves DONE next to partial outputs.
- JSONL: `append_jsonl` writes one flushed line per row; `read_jsonl` skips a torn last line (no
  newline and not valid JSON: a process killed mid-write); any other bad line, including a last
  line that does end in a newline, is a ValueError naming file:line.
- Directory swaps: `replace_dir(tmp, final)` moves a fully written temp dir into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

DONE_FILE = "DONE"
_OLD_SIBLING = re.compile(r"^\..+\.old-\d+$")


# ----------------------------------------------------------------------------- fsync


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so renames inside it survive a power cut (best effort: no-op where unsupported)."""
    _fsync_path(path)


def _fsync_path(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every regular file under root, then the directories (best effort)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync_path(os.path.join(dirpath, name))
        fsync_dir(dirpath)


# ----------------------------------------------------------------------------- atomic writes


class AtomicFile:
    """A temp file next to `path` that replaces `path` on commit(); abort() (or an exception in a
    `with` block) removes it and leaves `path` as it was.

    Example: with AtomicFile("out/tasks.jsonl", "w") as f: f.write(line)
    """

    def __init__(self, path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8") -> None:
        if mode not in ("w", "wb"):
            raise ValueError(f"AtomicFile mode must be 'w' or 'wb', got {mode!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:  # O_EXCL with mode 0o666: a unique name, and the umask decides permissions as usual
            self.tmp = self.path.with_name(f".{self.path.name}.{os.urandom(4).hex()}.tmp")
            try:
                fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        self.file: IO = os.fdopen(fd, mode, encoding=None if mode == "wb" else encoding)
        self.closed = False

    def write(self, data) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        """Flush, fsync, rename over the target, fsync the directory."""
        if self.closed:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.closed = True
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop the temp file; the target is untouched."""
        if self.closed:
            return
        self.closed = True
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> IO:
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with AtomicFile(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with AtomicFile(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | Path, value: Any, *, sort_keys: bool = True) -> None:
    """`value` as indented JSON plus a newline (keys sorted unless sort_keys=False), atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")


# ----------------------------------------------------------------------------- completion markers


def is_done(directory: str | Path) -> bool:
    """True when the stage in `directory` finished (its DONE marker exists)."""
    return (Path(directory) / DONE_FILE).is_file()


def read_done(directory: str | Path) -> dict | None:
    """The summary in DIR/DONE, or None when the stage is not finished; ValueError if DONE is unreadable."""
    path = Path(directory) / DONE_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a valid completion marker ({exc}); delete it or rerun with --force "
                         "to redo the stage") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is not a valid completion marker (not a JSON object); delete it or rerun "
                         "with --force to redo the stage")
    return value


def mark_done(directory: str | Path, summary: dict) -> None:
    """Write DIR/DONE (the stage's JSON summary, key order kept) atomically; call it last."""
    write_json_atomic(Path(directory) / DONE_FILE, summary, sort_keys=False)


def clear_done(directory: str | Path) -> None:
    """Remove DIR/DONE (before redoing a stage in place)."""
    (Path(directory) / DONE_FILE).unlink(missing_ok=True)
    fsync_dir(directory)


# ----------------------------------------------------------------------------- JSONL


def append_jsonl(target: str | Path | IO[str], row: dict) -> None:
    """Append one JSON line to an open text file (then flush) or to the file at a path."""
    line = json.dumps(row) + "\n"
    if isinstance(target, (str, os.PathLike)):
        with open(target, "a", encoding="utf-8") as f:
            f.write(line)
        return
    target.write(line)
    target.flush()


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = True, hint: str = "") -> list[dict]:
    """The JSON-object rows of a JSONL file (blank lines skipped).

    With tolerate_torn_tail, a last line without its newline that is not valid JSON (a write cut
    short) is ignored; any other bad line is a ValueError "PATH:LINE: ..." (plus `hint`, e.g. how
    to fix it).
    FileNotFoundError when the file does not exist.
    """
    return [row for _, row in iter_jsonl(path, tolerate_torn_tail=tolerate_torn_tail, hint=hint)]


def iter_jsonl(path: str | Path, *, tolerate_torn_tail: bool = True, hint: str = "") -> Iterator[tuple[int, dict]]:
    """(line number, row) of each row of a JSONL file, as `read_jsonl` reads them."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")  # not str.splitlines: U+2028 may sit inside a JSON string
    unterminated = len(lines)  # line number of the bytes after the last newline (b"" when none)
    suffix = f"; {hint}" if hint else ""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if tolerate_torn_tail and lineno == unterminated:
                return  # a torn multi-byte character is a torn line too
            raise ValueError(f"{path}:{lineno}: not valid JSON ({err}){suffix}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: not a JSON object{suffix}")
        yield lineno, row


def trim_torn_tail(path: str | Path) -> bool:
    """Make an append-only JSONL file end on a line boundary, so the next append starts a fresh line:
    a last line without its newline is cut off when it is not valid JSON, else its newline is added.
    Returns True when the file was changed. A missing file is left missing.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return False
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return False
            f.seek(0)
            data = f.read()
    except FileNotFoundError:
        return False
    start = data.rfind(b"\n") + 1
    try:
        json.loads(data[start:])
        complete = True
    except (UnicodeDecodeError, json.JSONDecodeError):
        complete = False
    with path.open("r+b") as f:
        if complete:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
        else:
            f.truncate(start)
        f.flush()
        os.fsync(f.fileno())
    return True


# ----------------------------------------------------------------------------- directory swaps


def replace_dir(tmp_dir: str | Path, final_dir: str | Path) -> Path:
    """Swap a fully written temp dir into place as final_dir; returns final_dir.

    The temp dir's files are fsynced first; an existing final_dir is renamed aside to
    `.NAME.old-PID`, the temp dir renamed into place, and the old one deleted (if the second rename
    fails, the old dir is moved back). Stale `.*.old-*` siblings left by crashed swaps are removed.
    tmp_dir must be on the same filesystem as final_dir (make it a sibling).
    """
    tmp, final = Path(tmp_dir), Path(final_dir)
    parent = final.parent
    _fsync_tree(tmp)
    old = parent / f".{final.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    moved_aside = False
    if final.exists():
        os.replace(final, old)
        moved_aside = True
    try:
        os.replace(tmp, final)
    except BaseException:
        if moved_aside:
            os.replace(old, final)
        raise
    fsync_dir(parent)
    for stale in parent.iterdir():
        if _OLD_SIBLING.match(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    return final
