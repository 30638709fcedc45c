"""Zip and tar archives as corpus sources: listing members into repositories, reading them back.

An archive is treated like a directory: each top-level member directory is a repository (the
JDK's src.zip: "java.base/java/lang/String.java" is in repo "java.base"). Member names are
cleaned of "./" and absolute or ".." parts (a member that escapes the archive is a problem
"unsafe_member", never read). A file that is not a valid archive, or is truncated, becomes one
problem "broken_archive" naming the error; a member whose bytes fail their CRC becomes
"unreadable" when its shard reads it.

Reading: zip members are read by name (random access); tar members are read in one sequential
pass per shard (`read_tar_members`), because compressed tars cannot seek backwards cheaply.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from lightcoder.data.license import LICENSE_FILENAMES, license_of_file_text
from lightcoder.data.listing import FileRef, Problem, Repo

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def archive_kind(path: Path) -> str:
    """"zip", "tar" or "" by file name."""
    name = path.name.lower()
    if name.endswith((".zip", ".jar")):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    return ""


def _clean_member(name: str) -> str | None:
    """The member's relative path, or None when it is absolute or climbs out with ".."."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        return None
    parts = [q for q in p.parts if q not in (".", "")]
    return "/".join(parts) or None


def _members(path: Path, kind: str) -> Iterator[tuple[str, int, str]]:
    """(member name, size, raw name) of the regular files of an archive, in archive order."""
    if kind == "zip":
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size, info.filename
    else:
        with tarfile.open(path) as t:
            for info in t:
                if info.isfile():
                    yield info.name, info.size, info.name


def list_archive(path: Path, kind: str, prefix: str, excluded: set[str],
                 exclude_suffixes: tuple[str, ...]):
    """The repositories of an archive (see module docstring)."""
    repos: dict[str, Repo] = {}
    license_members: dict[str, str] = {}  # top dir ("" = archive root) -> member name
    problems: list[Problem] = []
    root_name = prefix.rstrip("/") or path.name
    try:
        for raw, size, member in _members(path, kind):
            rel = _clean_member(raw)
            if rel is None:
                problems.append(Problem(root_name, f"{prefix}{raw}", "unsafe_member",
                                        "absolute or '..' member path", size))
                continue
            parts = rel.split("/")
            if any(p in excluded for p in parts[:-1]) or rel.endswith(exclude_suffixes):
                continue
            if parts[-1] in LICENSE_FILENAMES and len(parts) <= 2:
                license_members[parts[0] if len(parts) == 2 else ""] = member
            if len(parts) == 1:
                if parts[0] in LICENSE_FILENAMES:
                    continue
                repo_name = prefix + parts[0].split(".")[0]
            else:
                repo_name = prefix + parts[0]
            repo = repos.setdefault(repo_name, Repo(name=repo_name, source=str(path), kind=kind))
            repo.files.append(FileRef(repo=repo_name, path=prefix + rel, size=size, loc=member))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
        problems.append(Problem(root_name, root_name, "broken_archive",
                                f"{type(e).__name__}: {e}", path.stat().st_size))
    licenses = _read_licenses(path, kind, license_members) if license_members else {}
    root_license = licenses.get("", "")
    for top, repo in ((r.name[len(prefix):], r) for r in repos.values()):
        own = licenses.get(top, "")
        repo.license, repo.license_from = (own, "repo") if own else (
            root_license, "root" if root_license else "")
        repo.files.sort(key=lambda f: f.path)
    out = sorted(repos.values(), key=lambda r: r.name)
    if problems:
        holder = next((r for r in out if r.name == root_name), None)
        if holder is None:
            holder = Repo(name=root_name, source=str(path), kind=kind)
            out.append(holder)
        holder.problems.extend(problems)
    return out


def _read_licenses(path: Path, kind: str, members: dict[str, str]) -> dict[str, str]:
    wanted = {m: top for top, m in members.items()}
    found: dict[str, str] = {}
    try:
        for member, data in read_members(path, kind, list(wanted)):
            if isinstance(data, bytes):
                found[wanted[member]] = license_of_file_text(data.decode("utf-8", "replace"))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError):
        pass
    return found


def read_members(path: Path | str, kind: str, names: list[str]
                 ) -> Iterator[tuple[str, bytes | OSError | Exception]]:
    """(member, bytes) for each wanted member, or (member, the exception) when it cannot be read.

    Members missing from the archive are reported as KeyError. One pass for tar archives.
    """
    wanted = set(names)
    if kind == "zip":
        try:
            z = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            for n in names:
                yield n, e
            return
        with z:
            for n in names:
                try:
                    yield n, z.read(n)
                except Exception as e:  # noqa: BLE001 - CRC errors, bad headers: per member
                    yield n, e
        return
    seen = set()
    try:
        with tarfile.open(path) as t:
            for info in t:
                if info.name in wanted and info.isfile():
                    fh = t.extractfile(info)
                    seen.add(info.name)
                    yield info.name, fh.read() if fh else KeyError(info.name)
                if len(seen) == len(wanted):
                    break
    except (tarfile.TarError, EOFError, OSError, zipfile.BadZipFile) as e:
        for n in names:
            if n not in seen:
                seen.add(n)
                yield n, e
    for n in names:
        if n not in seen:
            yield n, KeyError(f"{n} not in archive")
