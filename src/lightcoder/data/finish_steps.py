"""The steps of the finish phase: each shard's map output, after the global dedup
(steps.finish_shard).

    DropDuplicates  rows the global dedup marked                 dedup: duplicate, near_duplicate
    Redact          emails, IPs, keys, passwords -> placeholders  (counters.pii)
    Comments        deletes blocks of commented-out code          (counters.comments)
    Lint            batch linters over the whole shard: ruff (Python rules and, by default, the
                    Python syntax check), cppcheck, ESLint        (drops nothing)
    Syntax          parse errors (tree-sitter, or ruff's verdict) syntax: syntax_error
    Analysis        static-analysis rule hits                     analysis: static_analysis
    Measure         meta size/lines of the edited text

Lint leaves each file's linter results in the Scratch, and Syntax its tree-sitter tree, so
Analysis runs its query rules on the tree Syntax already parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from lightcoder.data import analysis
from lightcoder.data.comments import remove_commented_code
from lightcoder.data.curation import Step
from lightcoder.data.filters import Check
from lightcoder.data.pii import redact
from lightcoder.data.quality import can_check_syntax, check_syntax
from lightcoder.data.records import SourceFile
from lightcoder.languages import tree_sitter_parser


def syntax_on(cfg) -> bool:
    return cfg.syntax.enabled and cfg.syntax_check


def ruff_parses(cfg) -> bool:
    """Whether ruff, not tree-sitter, checks Python's syntax (see docs/data.md)."""
    return syntax_on(cfg) and cfg.syntax.python_parser == "ruff" and \
        analysis.ruff_path() is not None


class DropDuplicates(Step):
    """Drops the rows the global dedup marked: {"<row in the map output>": [reason, detail]}.
    It must come first, so that rows are counted as the map phase wrote them."""

    name = "dedup"

    def __init__(self, cfg, log, scratch, *, marked: dict[str, list[str]],
                 **shard_inputs) -> None:
        super().__init__(cfg, log, scratch)
        self.marked = marked

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        for row, f in enumerate(files):
            if str(row) in self.marked:
                self.drop(f, tuple(self.marked[str(row)]))
            else:
                yield f


class Redact(Step):
    """Replaces PII with placeholders; counts per kind, and files changed."""

    name = "pii"
    drops = False
    section = "pii"

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        types = tuple(self.config.secret_types)
        for f in files:
            text, counts = redact(f.content, secret_types=types)
            for kind, n in counts.items():
                self.count(kind, n)
            if counts:
                self.count("files")
            yield replace(f, content=text)


class Comments(Step):
    """Deletes blocks of commented-out code, each with a probability seeded by (seed, path)."""

    name = "comments"
    drops = False
    section = "comments"

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        for f in files:
            text, found, deleted = remove_commented_code(f.content, f.language, f.path,
                                                         cfg=self.config, seed=self.cfg.seed)
            if found:
                self.count("blocks_found", found)
                self.count("blocks_deleted", deleted)
                self.count("files_changed", deleted > 0)
            yield replace(f, content=text)


class Lint(Step):
    """Runs the batch linters once over the shard; per file, leaves in the Scratch "hits"
    ({rule: n} from ruff/cppcheck/ESLint) and "ruff_syntax" (ruff's syntax error, if any)."""

    name = "lint"
    drops = False
    counter_group = "analysis"
    section = "analysis"

    def enabled(self) -> bool:
        return self.config.enabled or ruff_parses(self.cfg)

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        shard = list(files)
        hits, ruff_syntax = self._lint(shard)
        for i, f in enumerate(shard):
            if self.config.enabled:  # else nobody reads them
                self.scratch.put(f, "hits", hits.get(str(i), {}))
            if str(i) in ruff_syntax:
                self.scratch.put(f, "ruff_syntax", ruff_syntax[str(i)])
        yield from shard

    def _lint(self, shard: list[SourceFile]) -> tuple[dict, dict]:
        """({file index: {rule: n}}, {file index: ruff's syntax error}) for the shard."""
        on = self.config.enabled
        py = {str(i): f.content for i, f in enumerate(shard) if f.language == "Python"}
        hits, ruff_syntax = analysis.ruff_check(py, self.config.python_rules if on else [])
        if on and self.config.external:
            cpp = {str(i): (f.content, f.language) for i, f in enumerate(shard)
                   if f.language in ("C", "C++")}
            js = {str(i): f.content for i, f in enumerate(shard) if f.language == "JavaScript"}
            external = [analysis.cppcheck_hits(cpp, self.config.cppcheck_rules),
                        analysis.eslint_hits(js, self.config.eslint_rules)]
            for found in external:
                for key, per_rule in found.items():
                    hits.setdefault(key, {}).update(per_rule)
        if py and on and analysis.ruff_path() is None:
            self.count("python_unchecked_no_ruff", len(py))
        return hits, ruff_syntax


class Syntax(Step):
    """Drops files that do not parse: ruff's verdict for Python when ruff parses, else
    tree-sitter's (C/C++ may keep a small share of bytes in ERROR nodes). Also parses for
    Analysis when only that is on, leaving the tree in the Scratch."""

    name = "syntax"
    section = "syntax"

    def enabled(self) -> bool:
        return syntax_on(self.cfg) or self.cfg.analysis.enabled

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        by_ruff = ruff_parses(self.cfg)
        for f in files:
            problem = self._check(f, by_ruff and f.language == "Python")
            if problem is None:
                yield f
            else:
                self.drop(f, problem)

    def _check(self, f: SourceFile, by_ruff: bool) -> Check:
        if by_ruff:
            error = self.scratch.pop(f, "ruff_syntax")
            return ("syntax_error", error) if error else None
        tree = None
        if can_check_syntax(f.language):
            tree = tree_sitter_parser(f.language).parse(f.content.encode("utf-8"))
            if self.cfg.analysis.enabled:
                self.scratch.put(f, "tree", tree)
        if not syntax_on(self.cfg):
            return None
        if tree is None:
            self.count(f"unchecked:{f.language}")
        return check_syntax(f.content, f.language, self.config.limit(f.language), tree)


class Analysis(Step):
    """Drops files with a static-analysis hit: the linters' (from Lint) plus the tree-sitter
    query rules; every hit is counted per rule."""

    name = "analysis"
    section = "analysis"

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        for f in files:
            hits = dict(self.scratch.pop(f, "hits", {}))
            tree = self.scratch.pop(f, "tree")
            hits.update(analysis.ts_rule_hits(f.content, f.language, self.config.ts_rules,
                                              tree=tree))
            for rule, n in hits.items():
                self.count(rule, n)
            if hits:
                self.drop(f, ("static_analysis",
                              ", ".join(f"{r} x{n}" for r, n in sorted(hits.items()))))
            else:
                yield f


class Measure(Step):
    """Sets meta size and lines from the edited text (original_size when an edit changed it)."""

    name = "measure"
    drops = False

    def run(self, files: Iterator[SourceFile]) -> Iterator[SourceFile]:
        for f in files:
            size, new_size = int(f.meta["size"]), len(f.content.encode("utf-8"))
            meta = {**f.meta, "size": new_size,
                    "lines": f.content.count("\n") + (not f.content.endswith("\n"))}
            if new_size != size:
                meta["original_size"] = size
            yield replace(f, meta=meta)


FINISH_STEPS: tuple[type[Step], ...] = (DropDuplicates, Redact, Comments, Lint, Syntax, Analysis,
                                        Measure)
