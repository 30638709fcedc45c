"""Finding the files of a corpus: source directories -> repositories -> `FoundFile`s.

A source root is a directory; each top-level package directory or top-level module file under it
is one "repository" (the embedded default corpus is the running interpreter's standard library,
so "json", "asyncio" and "argparse" are repositories). With one root, paths are relative to the
root ("json/decoder.py", repo "json"); with several roots each path and repo name is prefixed by
the root's directory name ("Lib/json/decoder.py", repo "Lib/json") so names never collide.

The scan reads no file contents (filters.py does that); it only lists, sorted by path, so every
later step sees a deterministic order. Symlinked directories are never followed; a symlinked
file is kept only when it resolves inside its root. Excluded directories (site-packages,
__pycache__, VCS dirs) are pruned and counted in `ScanStats`.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

# Files whose name says "licence of everything below this directory".
LICENSE_FILENAMES: tuple[str, ...] = (
    "LICENSE", "LICENSE.txt", "LICENSE.md", "LICENSE.rst", "LICENCE", "LICENCE.txt", "COPYING",
    "COPYING.txt",
)

# (SPDX id, phrases that must all appear, case-insensitive). First match wins, so specific
# licences come before the generic BSD/MIT wording that other licence texts quote.
_LICENSE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PSF-2.0", ("python software foundation license",)),
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("AGPL-3.0", ("gnu affero general public license",)),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3")),
    ("LGPL-2.1", ("gnu lesser general public license",)),
    ("GPL-3.0", ("gnu general public license", "version 3")),
    ("GPL-2.0", ("gnu general public license",)),
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("MIT", ("permission is hereby granted, free of charge",)),
    ("Unlicense", ("this is free and unencumbered software",)),
)


@dataclass(frozen=True)
class FoundFile:
    """A file listed by the scan, not yet read."""

    abs_path: str
    repo: str
    path: str  # corpus path, starts with repo
    size: int
    license: str = ""


@dataclass
class ScanStats:
    roots: list[str] = field(default_factory=list)
    repos: int = 0
    excluded_dirs: int = 0
    excluded_files: int = 0  # by suffix (.pyc)
    skipped_symlinks: int = 0  # symlinked dirs, and symlinked files that leave their root
    unreadable: int = 0  # entries os.stat could not read


def default_sources() -> list[str]:
    """The embedded default corpus: the running interpreter's standard library directory."""
    return [sysconfig.get_paths()["stdlib"]]


def resolve_roots(sources: list[str]) -> list[Path]:
    """Absolute source roots; ValueError for a missing path, a file, or clashing root names."""
    roots = []
    for src in sources or default_sources():
        p = Path(src).expanduser()
        if not p.exists():
            raise ValueError(
                f"corpus path {src} does not exist: pass --corpus DIR with source files")
        if not p.is_dir():
            raise ValueError(
                f"corpus path {src} is a file, not a directory: pass --corpus DIR with source "
                "files (put a single file in a directory of its own)"
            )
        roots.append(p.resolve())
    names = [r.name for r in roots]
    if len(roots) > 1 and len(set(names)) != len(names):
        raise ValueError(
            f"corpus paths {[str(r) for r in roots]} share a directory name, so their repository "
            "names would collide: pass directories with distinct names"
        )
    return roots


def detect_license(directory: Path) -> str:
    """SPDX-style id of the licence file in a directory: "" when none, "other" when unrecognised.

    Example: detect_license(Path(sysconfig.get_paths()["stdlib"])) -> "PSF-2.0"
    """
    for name in LICENSE_FILENAMES:
        p = directory / name
        if p.is_file() and not p.is_symlink():
            text = p.read_bytes()[:200_000].decode("utf-8", errors="replace").lower()
            text = " ".join(text.split())
            for spdx, phrases in _LICENSE_RULES:
                if all(ph in text for ph in phrases):
                    return spdx
            return "other"
    return ""


def scan_sources(
    roots: list[Path],
    *,
    exclude_dirs: list[str],
    exclude_suffixes: list[str],
    stats: ScanStats,
) -> list[FoundFile]:
    """All files under the roots (minus exclusions), sorted by corpus path."""
    found: list[FoundFile] = []
    excluded = set(exclude_dirs)
    multi = len(roots) > 1
    for root in roots:
        stats.roots.append(str(root))
        root_license = detect_license(root)
        prefix = f"{root.name}/" if multi else ""
        entries = sorted(os.scandir(root), key=lambda e: e.name)
        dir_names = {e.name for e in entries if e.is_dir(follow_symlinks=False)}
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name in excluded:
                    stats.excluded_dirs += 1
                    continue
                repo = prefix + entry.name
                license = detect_license(Path(entry.path)) or root_license
                before = len(found)
                _walk(Path(entry.path), root, repo, f"{repo}/", license, excluded,
                      exclude_suffixes, stats, found)
                stats.repos += len(found) > before
            else:
                stem = entry.name.split(".")[0] or entry.name
                # A module file named like a sibling package keeps its suffix as repo name.
                repo = prefix + (entry.name if stem in dir_names else stem)
                before = len(found)
                _add_file(entry, root, repo, prefix + entry.name, root_license, exclude_suffixes,
                          stats, found)
                stats.repos += len(found) > before
    found.sort(key=lambda f: f.path)
    return found


def _walk(directory: Path, root: Path, repo: str, rel: str, license: str, excluded: set[str],
          exclude_suffixes: list[str], stats: ScanStats, found: list[FoundFile]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        stats.unreadable += 1
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name in excluded:
                stats.excluded_dirs += 1
            else:
                _walk(Path(entry.path), root, repo, f"{rel}{entry.name}/", license, excluded,
                      exclude_suffixes, stats, found)
        elif entry.is_symlink() and Path(entry.path).is_dir():
            stats.skipped_symlinks += 1
        else:
            _add_file(entry, root, repo, rel + entry.name, license, exclude_suffixes, stats, found)


def _add_file(entry: os.DirEntry, root: Path, repo: str, path: str, license: str,
              exclude_suffixes: list[str], stats: ScanStats, found: list[FoundFile]) -> None:
    if entry.name.endswith(tuple(exclude_suffixes)):
        stats.excluded_files += 1
        return
    abs_path = entry.path
    if entry.is_symlink():
        target = Path(entry.path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            stats.skipped_symlinks += 1
            return
        abs_path = str(target)
    elif not entry.is_file(follow_symlinks=False):
        return  # sockets, fifos, devices
    try:
        size = os.stat(abs_path).st_size
    except OSError:
        stats.unreadable += 1
        return
    found.append(FoundFile(abs_path=abs_path, repo=repo, path=path, size=size, license=license))
