"""The steps of the map phase: each shard's files, before the global dedup (steps.map_shard).

    read_refs   (the source) one SourceFile per planned file, its bytes left in the Scratch
    Clean       size, UTF-8, language by content          clean:  oversized, binary, ...
    Header      a copyleft licence in the file's header   license: copyleft
    Generated   generated, minified, lock and vendored    generated: ...
    Heuristics  BigCode's line-length / alphanumeric caps heuristics: ...
    Decontam    a 20-token window shared with a benchmark decontam: contaminated
    Hash        exact-dedup hash and MinHash signature (drops nothing)

Decontam and Hash share the word-token hashes of the file body (through the Scratch), so the
text is tokenised once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from lightcoder.data import archives, stack
from lightcoder.data.curation import Filter, Scratch, Step
from lightcoder.data.dedup import normalized_sha256
from lightcoder.data.filters import (Check, check_generated, check_size, decode_source,
                                     refine_language)
from lightcoder.data.license import license_check, license_of_header
from lightcoder.data.minhash import MinHasher, strip_leading_comments, token_hashes
from lightcoder.data.quality import check_heuristics
from lightcoder.data.records import SourceFile
from lightcoder.languages import language_for_path


def _read_bytes(refs: list[dict]) -> Iterator[tuple[dict, bytes | Exception]]:
    """(ref, bytes or the error that stopped the read) per ref, one pass per source."""
    by_source: dict[tuple[str, str], list[dict]] = {}
    for ref in refs:
        by_source.setdefault((ref["kind"], ref["source"]), []).append(ref)
    for (kind, source), group in by_source.items():
        if kind in ("dir", "git"):
            for ref in group:
                try:
                    with open(ref["loc"], "rb") as fh:
                        yield ref, fh.read()
                except OSError as e:
                    yield ref, e
            continue
        if kind == "stack":
            data = dict(stack.read_rows(source, [r["loc"] for r in group]))
        else:
            data = dict(archives.read_members(source, kind, [r["loc"] for r in group]))
        for ref in group:
            yield ref, data.get(ref["loc"], KeyError(ref["loc"]))


def read_refs(refs: list[dict], repos: dict[str, dict], scratch: Scratch) -> Iterator[SourceFile]:
    """A SourceFile (no content yet) per planned file, with its repo's licence, stars and rank;
    its bytes (or read error) wait in `scratch` under "bytes" for Clean."""
    for ref, data in _read_bytes(refs):
        repo = repos[ref["repo"]]
        f = SourceFile(repo=ref["repo"], path=ref["path"], language="", content="",
                       license=repo["license"], stars=repo["stars"],
                       meta={"size": ref["size"], "rank": repo["rank"],
                             "repo_score": repo["score"]})
        scratch.put(f, "bytes", data)
        yield f


class Clean(Step):
    """Drops files that cannot be read, are empty or too big, are not UTF-8 text, or turn out
    (by content: a C++ header named .h) not to be in `languages`; fills content and language."""

    name = "clean"

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        for f in files:
            data = self.scratch.pop(f, "bytes")
            if isinstance(data, Exception):
                self.drop(f, ("unreadable", f"{type(data).__name__}: {data}"), content="")
                continue
            text, language, problem = self._decode(f.path, data)
            if problem is None:
                yield replace(f, content=text, language=language, meta={**f.meta,
                                                                       "size": len(data)})
            else:
                self.drop(f, problem, size=len(data), content=text)

    def _decode(self, path: str, data: bytes) -> tuple[str, str, Check]:
        """(text, language, None) for a usable file, else the problem ("" text if undecoded)."""
        problem = check_size(len(data), self.cfg.max_file_bytes)
        text = ""
        if problem is None:
            text, problem = decode_source(data)
        language = language_for_path(path) or ""
        if problem is None:
            language = refine_language(path, language, text)
            if language not in self.cfg.languages:
                problem = ("language", f"{language} (by content) is not in the allowed languages")
        return text, language, problem


class Header(Filter):
    """Drops a file whose header declares a copyleft licence (SPDX line or licence text)."""

    name = "license"
    section = "license"

    def enabled(self) -> bool:
        return self.cfg.license.check_headers

    def check(self, f: SourceFile) -> Check:
        found = license_of_header(f.content)
        if not found:
            return None
        return license_check(found, copyleft=self.config.copyleft, unknown="keep",
                             allow=self.config.allow)


class Generated(Filter):
    """Drops generated, minified, lock and vendored files (markers and paths in filters.py)."""

    name = "generated"

    def check(self, f: SourceFile) -> Check:
        return check_generated(f.path, f.content)


class Heuristics(Filter):
    """Drops files with over-long lines or too few alphanumeric characters (BigCode's caps)."""

    name = "heuristics"

    @property
    def config(self):
        return self.cfg.heuristics()

    def enabled(self) -> bool:
        return self.cfg.use_heuristics

    def check(self, f: SourceFile) -> Check:
        return check_heuristics(f.content, **self.config)


def body_tokens(text: str) -> np.ndarray:
    """Word-token hashes of the text after its leading comment block (MinHash's shingles)."""
    return token_hashes(strip_leading_comments(text).encode("utf-8"))


class Decontam(Filter):
    """Drops files that share an n-gram window with a benchmark; leaves the body's token
    hashes in the Scratch for Hash."""

    name = "decontam"

    def __init__(self, cfg, log, scratch, *, decontaminator=None, **shard_inputs) -> None:
        super().__init__(cfg, log, scratch)
        self.decontaminator = decontaminator  # built once per process (steps.decontaminator)
    section = "decontam"

    def enabled(self) -> bool:
        return self.decontaminator is not None

    def check(self, f: SourceFile) -> Check:
        tokens = body_tokens(f.content)
        self.scratch.put(f, "tokens", tokens)
        return self.decontaminator.check(f.content, tokens)


class Hash(Step):
    """Sets sha256 (whitespace-normalised) and meta["lines"], and keeps each file's MinHash
    signature, in output order, in `signatures` for the global dedup."""

    name = "minhash"
    drops = False

    def __init__(self, cfg, log, scratch, **shard_inputs) -> None:
        super().__init__(cfg, log, scratch)
        self.hasher = MinHasher()
        self.signatures: list[np.ndarray] = []  # (num_perm,) uint32 each

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        for f in files:
            tokens = self.scratch.pop(f, "tokens")
            if tokens is None:
                tokens = body_tokens(f.content)
            self.signatures.append(self.hasher.signature(f.content, tokens))
            lines = f.content.count("\n") + (not f.content.endswith("\n"))
            yield replace(f, sha256=normalized_sha256(f.content), meta={**f.meta, "lines": lines})

    def signature_matrix(self) -> np.ndarray:
        """(files, num_perm) uint32, one row per file passed on."""
        if not self.signatures:
            return np.zeros((0, self.hasher.num_perm), np.uint32)
        return np.stack(self.signatures)


MAP_STEPS: tuple[type[Step], ...] = (Clean, Header, Generated, Heuristics, Decontam, Hash)
