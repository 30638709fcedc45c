"""Listing a corpus: source paths -> `Repo`s of `FileRef`s (no file content is read here).

A source is one of:

    a directory          each top-level package directory or module file is one repository
                         (the stdlib: "json", "asyncio", "argparse"); a directory with `.git`
                         is one repository (repo_layout "auto"; "root"/"children" force it)
    a zip / tar archive  the same rule over the archive's members (the JDK's lib/src.zip gives
                         "java.base", "java.sql", ...)
    a JSONL / Parquet    rows in The Stack's layout (archives.py / stack.py read them)

With one source, repository names are the top-level names; with several, each name is prefixed
by the shortest path suffix that tells the sources apart ("3.11.7/lib/python3.11/json").
Git repositories report their commit count (`git rev-list --count HEAD`); every repository
counts its test files by path. Symlinked directories are never followed; a symlinked file is
kept only when it resolves inside its source. Anything that cannot be listed (a broken archive,
a symlink loop, an unreadable directory) becomes a `Problem` with a reason, never a crash, and a
source that yields no repository at all is recorded as a problem too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
from pathlib import Path

from lightcoder.data import archives, stack
from lightcoder.data.license import LICENSE_FILENAMES, license_of_file_text
from lightcoder.data.listing import FileRef, Problem, Repo

TEST_PATH_RE = re.compile(
    r"(^|/)(tests?|testing|spec|__tests__)/|(^|/)test_[^/]*$|_tests?\.\w+$|Tests?\.java$"
    r"|\.(test|spec)\.[jt]sx?$")
VCS_DIRS = frozenset({".git", ".hg", ".svn"})  # never corpus content, whatever exclude_dirs says
STACK_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".parquet")


def default_sources() -> list[str]:
    """The embedded default corpus: the running interpreter's standard library directory."""
    return [sysconfig.get_paths()["stdlib"]]


def source_kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "dir"
    if name.endswith(STACK_SUFFIXES):
        return "stack"
    if archives.archive_kind(path):
        return archives.archive_kind(path)
    return "unknown"


def resolve_sources(sources: list[str]) -> list[Path]:
    """Absolute source paths; ValueError (naming the path and the fix) for a missing path or a
    file that is neither an archive nor a JSONL/Parquet file."""
    roots = []
    for src in sources or default_sources():
        p = Path(src).expanduser()
        if not p.exists():
            hint = " (a dangling symlink)" if p.is_symlink() else ""
            raise ValueError(f"corpus path {src} does not exist{hint}: pass --corpus DIR with "
                             "source files")
        if source_kind(p) == "unknown":
            raise ValueError(
                f"corpus path {src} is a file, not a directory, archive (.zip/.tar[.gz]) or "
                "JSONL/Parquet file: pass --corpus DIR with source files (put a single file in a "
                "directory of its own)")
        roots.append(p.resolve())
    return roots


def source_names(roots: list[Path]) -> list[str]:
    """Shortest distinct path suffixes: [a/x/lib, b/x/lib] -> ["a/x/lib", "b/x/lib"]."""
    depth = [1] * len(roots)
    while True:
        names = ["/".join(r.parts[-d:]) for r, d in zip(roots, depth)]
        clash = {n for n in names if names.count(n) > 1}
        if not clash:
            return names
        for i, n in enumerate(names):
            if n in clash and depth[i] < len(roots[i].parts):
                depth[i] += 1
        if all(n in clash and d >= len(r.parts) for n, r, d in zip(names, roots, depth)):
            raise ValueError(f"corpus paths repeat: {[str(r) for r in roots]}")


def list_source(root: Path, name: str, *, multi: bool, layout: str, exclude_dirs: list[str],
                exclude_suffixes: list[str], languages_exts: tuple[str, ...] | None = None
                ) -> list[Repo]:
    """The repositories of one source. Never raises for bad content: problems are recorded."""
    kind = source_kind(root)
    prefix = f"{name}/" if multi else ""
    if kind == "stack":
        repos = stack.list_rows(root)
    elif kind == "dir":
        repos = _list_dir(root, prefix, layout, set(exclude_dirs), tuple(exclude_suffixes))
    else:
        repos = archives.list_archive(root, kind, prefix, set(exclude_dirs),
                                      tuple(exclude_suffixes))
    if not any(r.files or r.problems for r in repos):
        repos = [Repo(name=name, source=str(root), kind=kind, problems=[
            Problem(name, name, "empty_source", f"{root} holds no files")])]
    for r in repos:
        r.test_files = sum(bool(TEST_PATH_RE.search(f.path[len(r.name) + 1:])) for f in r.files)
    return repos


# ---------------------------------------------------------------- directories

def _list_dir(root: Path, prefix: str, layout: str, excluded: set[str],
              exclude_suffixes: tuple[str, ...]) -> list[Repo]:
    root_license = _dir_license(root)
    if layout == "root" or (layout == "auto" and _is_git_checkout(root)):
        repo = Repo(name=prefix.rstrip("/") or root.name, source=str(root), kind="dir")
        _walk(root, root, repo, f"{repo.name}/", excluded, exclude_suffixes)
        _set_repo_license(repo, root, root_license)
        return [repo]
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        return [Repo(name=prefix.rstrip("/") or root.name, source=str(root), kind="dir",
                     problems=[Problem(root.name, root.name, "unreadable", str(e))])]
    dir_names = {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    repos: list[Repo] = []
    loose: list[os.DirEntry] = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name in excluded:
                continue
            repo = Repo(name=prefix + entry.name, source=str(root), kind="dir")
            _walk(Path(entry.path), root, repo, f"{repo.name}/", excluded, exclude_suffixes)
            _set_repo_license(repo, Path(entry.path), root_license)
            repos.append(repo)
        else:
            loose.append(entry)
    by_name: dict[str, Repo] = {}
    for entry in loose:
        if entry.name in LICENSE_FILENAMES:
            continue  # the root's licence file is metadata, not a module
        stem = entry.name.split(".")[0] or entry.name
        # A module file named like a sibling package keeps its suffix as repo name; loose files that share a
        # stem (foo.c, foo.h, foo.py) are one repository, not three that ranking would drop as duplicates.
        name = prefix + (entry.name if stem in dir_names else stem)
        repo = by_name.get(name)
        if repo is None:
            repo = by_name[name] = Repo(name=name, source=str(root), kind="dir", license=root_license,
                                        license_from="root" if root_license else "")
            repos.append(repo)
        _add_file(entry, root, repo, prefix + entry.name, exclude_suffixes)
    return [r for r in repos if r.files or r.problems]


def _set_repo_license(repo: Repo, directory: Path, root_license: str) -> None:
    own = _dir_license(directory)
    repo.license, repo.license_from = (own, "repo") if own else (
        root_license, "root" if root_license else "")
    if _is_git_checkout(directory):
        repo.kind = "git"
        repo.commits = git_commit_count(directory)


def _is_git_checkout(directory: Path) -> bool:
    # Path.exists() raises on an unreadable directory (EACCES); the walk records such a directory as
    # a problem of its repository instead of stopping the whole corpus.
    try:
        return (directory / ".git").exists()
    except OSError:
        return False


def _dir_license(directory: Path) -> str:
    for name in LICENSE_FILENAMES:
        p = directory / name
        try:
            if p.is_file() and not p.is_symlink():
                with open(p, "rb") as fh:
                    return license_of_file_text(fh.read(200_000).decode("utf-8", "replace"))
        except OSError:
            continue
    return ""


def git_commit_count(directory: Path) -> int:
    """Commits reachable from HEAD, 0 when git is missing or the repository has none."""
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-list", "--count", "HEAD"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else 0


def _walk(directory: Path, root: Path, repo: Repo, rel: str, excluded: set[str],
          exclude_suffixes: tuple[str, ...]) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
        repo.problems.append(Problem(repo.name, rel.rstrip("/"), "unreadable",
                                     f"cannot list directory: {e.strerror}"))
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in excluded and entry.name not in VCS_DIRS:
                _walk(Path(entry.path), root, repo, f"{rel}{entry.name}/", excluded,
                      exclude_suffixes)
        else:
            _add_file(entry, root, repo, rel + entry.name, exclude_suffixes)


def _add_file(entry: os.DirEntry, root: Path, repo: Repo, path: str,
              exclude_suffixes: tuple[str, ...]) -> None:
    if entry.name.endswith(exclude_suffixes):
        return
    abs_path = entry.path
    if entry.is_symlink():
        try:
            target = Path(entry.path).resolve(strict=True)
        except RuntimeError:  # Python < 3.13 reports a loop this way
            repo.problems.append(Problem(repo.name, path, "symlink_loop", "symlink loop"))
            return
        except OSError as e:
            reason = "symlink_loop" if e.errno == 40 else "broken_symlink"
            repo.problems.append(Problem(repo.name, path, reason, str(e.strerror)))
            return
        if target.is_dir():
            return  # symlinked directories are never followed
        if not target.is_relative_to(root):
            repo.problems.append(Problem(repo.name, path, "symlink_outside",
                                         f"points outside the source to {target}"))
            return
        abs_path = str(target)
    elif not entry.is_file(follow_symlinks=False):
        return  # sockets, fifos, devices
    try:
        size = os.stat(abs_path).st_size
    except OSError as e:
        repo.problems.append(Problem(repo.name, path, "unreadable", str(e.strerror)))
        return
    repo.files.append(FileRef(repo=repo.name, path=path, size=size, loc=abs_path))


# ---------------------------------------------------------------- manifest

def read_manifest(path: str) -> dict[str, dict]:
    """repo name -> {"stars", "commits", "license"} from a JSONL (or JSON list) manifest.

    Example line: {"repo": "json", "stars": 120, "commits": 800, "license": "MIT"}
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"data.manifest {path} does not exist: pass a JSONL file of "
                         '{"repo": ..., "stars": ...} lines')
    text = p.read_text(encoding="utf-8")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"data.manifest {path} is not JSON lines ({e}): fix line {e.lineno}"
                         ) from None
    out = {}
    for row in rows:
        if "repo" not in row:
            raise ValueError(f"data.manifest {path}: a row has no 'repo' key: {row}")
        out[str(row["repo"])] = row
    return out


def apply_manifest(repos: list[Repo], manifest: dict[str, dict]) -> int:
    """Set stars/commits/license from the manifest; returns how many repos matched."""
    matched = 0
    for r in repos:
        row = manifest.get(r.name) or manifest.get(r.name.rsplit("/", 1)[-1])
        if row is None:
            continue
        matched += 1
        r.stars = int(row.get("stars", r.stars) or 0)
        r.commits = int(row.get("commits", r.commits) or 0)
        if row.get("license"):
            r.license, r.license_from = str(row["license"]), "manifest"
    return matched
