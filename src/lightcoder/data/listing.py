"""What a corpus listing is made of: `Repo`s holding `FileRef`s and `Problem`s (no I/O here).

The listers (sources.py for directories, archives.py for zip/tar, stack.py for The Stack's
rows) build these; ranking.py and the plan (pipeline.build_plan) read them. Living apart from
the listers keeps them from importing one another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileRef:
    """A file listed by the scan, not yet read. `loc` says where its bytes are (see read_file)."""

    repo: str
    path: str  # corpus path, starts with the repo name
    size: int
    loc: str  # absolute path (directories), member name (archives), "offset"/"rg:row" (rows)


@dataclass(frozen=True)
class Problem:
    """Something the scan could not list or read, kept for the funnel and rejected/."""

    repo: str
    path: str
    reason: str  # "symlink_loop", "broken_archive", "unreadable", "empty_source", ...
    detail: str
    size: int = 0


@dataclass
class Repo:
    name: str
    source: str  # the source path it was listed from
    kind: str  # "dir", "git", "zip", "tar", "stack"
    license: str = ""
    license_from: str = ""  # "repo", "root", "manifest", "rows"
    stars: int = 0
    commits: int = 0
    test_files: int = 0
    files: list[FileRef] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def fingerprint(self) -> str:
        """Hash of the repo's (relative path, size) listing: equal for copies of one project."""
        h = hashlib.sha256()
        cut = len(self.name) + 1
        for f in sorted(self.files, key=lambda f: f.path):
            h.update(f"{f.path[cut:]}\0{f.size}\n".encode())
        return h.hexdigest()[:16]
