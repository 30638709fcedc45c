"""The corpus stage's config: `DataConfig` and one section per curation step, validated on construction.

Pure dataclasses and the constants they default to or validate against; the steps that use them
(ranking.py, pii.py, comments.py, quality.py, analysis.py, decontam.py, pipeline.py) import them
from here, so `import lightcoder.config` loads no curation code.

    DataConfig.license / .ranking   repository-level steps (ranking.py)
    .pii / .comments / .syntax      per-file edits and checks (pii.py, comments.py, quality.py)
    .analysis / .decontam           static analysis (analysis.py), benchmark decontamination

Example: DataConfig(sources=["~/src"], languages=["Python", "Java"], pii=PiiConfig(enabled=False))
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from lightcoder.languages import get_language

SPLITS: tuple[str, ...] = ("train", "valid", "test")  # the corpus splits, by repository

# ---------------------------------------------------------------- repository level (ranking.py)

# Prefixes of SPDX ids dropped by default: strong and weak copyleft (BigCode kept permissive only).
COPYLEFT_PREFIXES: tuple[str, ...] = (
    "GPL", "AGPL", "LGPL", "MPL", "EPL", "EUPL", "OSL", "CDDL", "CC-BY-SA", "CECILL",
)


@dataclass(kw_only=True)
class RankingConfig:
    drop_fraction: float = 0.10  # aiXcoder drops the lowest-scoring 10 % of projects
    dedup_repos: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_fraction < 1.0:
            raise ValueError(f"drop_fraction must be in [0, 1), got {self.drop_fraction}")


@dataclass(kw_only=True)
class LicenseConfig:
    copyleft: list[str] = field(default_factory=lambda: list(COPYLEFT_PREFIXES))  # id prefixes
    allow: list[str] = field(default_factory=list)  # exact ids kept despite a copyleft prefix
    unknown: str = "keep"  # repos without a recognised licence: "keep" or "drop"
    check_headers: bool = True  # a file whose header declares a copyleft licence is dropped

    def __post_init__(self) -> None:
        if self.unknown not in ("keep", "drop"):
            raise ValueError(f"unknown must be 'keep' or 'drop', got {self.unknown!r}")


# ---------------------------------------------------------------- per-file steps

DEFAULT_SECRET_TYPES: tuple[str, ...] = (
    "AWS Access Key", "Artifactory Credentials", "Azure Storage Account access key",
    "Basic Auth Credentials", "Cloudant Credentials", "Discord Bot Token", "GitHub Token",
    "GitLab Token", "IBM Cloud IAM Key", "IBM COS HMAC Credentials", "JSON Web Token",
    "Secret Keyword", "Mailchimp Access Key", "NPM tokens", "OpenAI Token", "Private Key",
    "PyPI Token", "SendGrid API Key", "Slack Token", "SoftLayer Credentials",
    "Square OAuth Secret", "Stripe Access Key", "Telegram Bot Token", "Twilio API Key",
)


@dataclass(kw_only=True)
class PiiConfig:
    enabled: bool = True
    secret_types: list[str] = field(default_factory=lambda: list(DEFAULT_SECRET_TYPES))


@dataclass(kw_only=True)
class CommentsConfig:
    enabled: bool = True
    min_lines: int = 5
    min_code_share: float = 0.6
    probability: float = 0.5  # aiXcoder deletes "a proportion" of such blocks

    def __post_init__(self) -> None:
        if self.min_lines < 2:
            raise ValueError(f"min_lines must be >= 2, got {self.min_lines}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")


# quality.check_heuristics thresholds (BigCode's)
MAX_LINE_LENGTH = 1000  # chars; longer lines are usually data or minified code
MAX_AVG_LINE_LENGTH = 100.0  # chars per line
MIN_ALNUM_FRACTION = 0.25  # share of letters and digits among all characters


@dataclass(kw_only=True)
class SyntaxConfig:
    enabled: bool = True
    max_error_ratio: float = 0.0  # any ERROR/MISSING node drops the file ...
    # ... except in C/C++, where headers and macro-heavy code trip the grammar: a share of the
    # file's bytes inside ERROR nodes up to this is tolerated (glibc/Linux headers: ~0.1-2 %).
    max_error_ratio_c: float = 0.02
    # Python is parsed by ruff's parser (the exact Python 3 grammar; it runs anyway for static
    # analysis, so the check is free) when ruff is installed, else by tree-sitter. tree-sitter
    # parsing is 40 % of the pipeline's CPU on the stdlib and accepts Python 2 print statements.
    python_parser: str = "ruff"

    def __post_init__(self) -> None:
        if self.python_parser not in ("ruff", "tree-sitter"):
            raise ValueError(f"python_parser must be 'ruff' or 'tree-sitter', got "
                             f"{self.python_parser!r}")
        for name in ("max_error_ratio", "max_error_ratio_c"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def limit(self, language: str) -> float:
        return self.max_error_ratio_c if language in ("C", "C++") else self.max_error_ratio


# ---------------------------------------------------------------- static analysis (analysis.py)

PYTHON_RULES: tuple[str, ...] = (
    "F632",  # is-literal: `x is "a"` compares identity
    "F701", "F702",  # break / continue outside a loop
    "F704", "F706",  # yield / return outside a function
    "F822",  # undefined name in __all__
    "F631",  # assert on a non-empty tuple: always true
    "F502", "F503", "F504", "F505", "F506", "F507", "F508", "F509",  # % format mismatches
    "F521", "F522", "F523", "F524", "F525",  # str.format mismatches
    "F601", "F602",  # dict literal repeats a key with different values
    "F622", "F633",  # two starred targets; print >> file
    "PLE0100", "PLE0101",  # yield / return value in __init__
    "PLE0117", "PLE0118",  # nonlocal without binding; name used before `global`
    "PLE1142",  # await outside async
    "PLE0604", "PLE0605",  # invalid __all__
    "PLE0302",  # special method with the wrong number of parameters
    "PLE2502",  # bidirectional unicode control characters (trojan source)
    "B002",  # ++x (no increment operator in Python)
)

# cppcheck ids (optional backend for C/C++) whose hits stay right without the file's includes
# and macros. Left out: uninitvar, nullPointer, memleak, missingReturn (they misfire when
# cppcheck cannot see a macro or a callee) and the C++ lifetime/move checks (accessMoved,
# returnDanglingLifetime, returnReference, identicalConditionAfterEarlyExit: all 14 of their
# hits in /usr/include were correct code). Counted as "cppcheck:<id>".
CPPCHECK_RULES: tuple[str, ...] = (
    "doubleFree", "deallocuse", "mismatchAllocDealloc", "deallocret", "invalidFree",
    "arrayIndexOutOfBounds", "negativeIndex", "bufferAccessOutOfBounds", "zerodiv",
    "shiftTooManyBits", "memsetZeroBytes", "memsetValueOutOfRange",
    "sizeofwithsilentarraypointer", "pointerSize", "autoVariables", "wrongPrintfScanfArgNum",
    "selfAssignment", "incorrectLogicOperator", "stringLiteralWrite", "sprintfOverlappingData",
    "useClosedFile", "eraseDereference", "mismatchingContainers",
)

# ESLint core rules (optional backend for JavaScript; TypeScript needs typescript-eslint's
# parser, which we do not install). Left out: no-cond-assign (42 hits in playwright's bundles;
# those we read were deliberate, `else if (m = pattern.match(re))`), no-self-compare (`x !== x` is the NaN test) and
# valid-typeof (flags old IE's "unknown"; the tree-sitter rule allows it). Counted as
# "eslint:<rule>".
ESLINT_RULES: tuple[str, ...] = (
    "for-direction", "no-compare-neg-zero", "no-dupe-class-members", "no-dupe-else-if",
    "no-dupe-keys", "no-duplicate-case", "no-self-assign", "no-unreachable",
    "no-unsafe-negation", "use-isnan",
)

# The tree-sitter rules of analysis_rules.TS_RULES, in its order (tests check the two agree). The
# noisy ones are off by default and run only when named in data.analysis.ts_rules.
TS_RULE_NAMES: tuple[str, ...] = (
    "self-assignment", "self-comparison", "identical-branches", "duplicate-condition",
    "assignment-in-condition", "unreachable-code", "wrong-loop-direction",
    "integer-division-to-float", "string-reference-equality", "split-on-regex-metachar",
    "misnamed-override", "thread-run", "compare-with-nan", "invalid-typeof", "duplicate-key",
    "duplicate-case", "unsafe-negation", "dangerous-gets", "sizeof-pointer", "memset-zero-length",
    "double-free", "delete-mismatch", "empty-if-body",
)
OFF_BY_DEFAULT_TS_RULES: tuple[str, ...] = ("identical-branches", "string-reference-equality")
DEFAULT_TS_RULES: tuple[str, ...] = tuple(
    name for name in TS_RULE_NAMES if name not in OFF_BY_DEFAULT_TS_RULES)


@dataclass(kw_only=True)
class AnalysisConfig:
    enabled: bool = True
    python_rules: list[str] = field(default_factory=lambda: list(PYTHON_RULES))
    ts_rules: list[str] = field(default_factory=lambda: list(DEFAULT_TS_RULES))
    # external analysers (Debian cppcheck for C/C++, npm eslint for JavaScript) when installed; off
    # by default: cppcheck reads ~4 MB/s, below the pipeline's per-core rate
    external: bool = False
    cppcheck_rules: list[str] = field(default_factory=lambda: list(CPPCHECK_RULES))
    eslint_rules: list[str] = field(default_factory=lambda: list(ESLINT_RULES))

    def __post_init__(self) -> None:
        unknown = [r for r in self.ts_rules if r not in TS_RULE_NAMES]
        if unknown:
            raise ValueError(f"ts_rules: unknown rules {unknown}; known: {sorted(TS_RULE_NAMES)}")


@dataclass(kw_only=True)
class DecontamConfig:
    enabled: bool = True
    humaneval: bool = True  # include HumanEval when it is found
    benchmarks: list[str] = field(default_factory=list)  # extra JSONL / text files
    ngram: int = 20

    def __post_init__(self) -> None:
        if self.ngram < 5:
            raise ValueError(f"ngram must be >= 5 (shorter n-grams match common idioms), got "
                             f"{self.ngram}")


# ---------------------------------------------------------------- the stage

@dataclass(kw_only=True)
class DataConfig:
    sources: list[str] = field(default_factory=list)  # dirs, archives, JSONL/Parquet; [] = stdlib
    languages: list[str] = field(default_factory=lambda: ["Python"])
    manifest: str = ""  # JSONL of {"repo", "stars", "commits", "license"} per repository
    repo_layout: str = "auto"  # "auto" (.git -> one repo), "root" (one repo), "children"
    max_file_bytes: int = 1_000_000
    valid_fraction: float = 0.05  # share of corpus bytes, whole repositories (see assign_splits)
    test_fraction: float = 0.05
    seed: int = 0
    syntax_check: bool = True  # False skips the syntax step (shorthand for syntax.enabled)
    use_heuristics: bool = True
    max_line_length: int = MAX_LINE_LENGTH
    max_avg_line_length: float = MAX_AVG_LINE_LENGTH
    min_alnum_fraction: float = MIN_ALNUM_FRACTION
    near_dedup: bool = True
    dedup_threshold: float = 0.7  # estimated Jaccard for near duplicates (BigCode: 0.7)
    workers: int = 0  # processes; 0 = all cores
    engine: str = "local"  # "local" process pool or "datatrove" executors
    shard_bytes: int = 8_000_000  # input bytes per shard (whole repositories)
    max_rejected_per_reason: int = 200  # samples kept per reason and shard (stats has the counts)
    exclude_dirs: list[str] = field(default_factory=lambda: [
        "site-packages", "dist-packages", "__pycache__", ".git", ".hg", ".svn", "node_modules",
    ])
    exclude_suffixes: list[str] = field(default_factory=lambda: [".pyc", ".pyo"])
    license: LicenseConfig = field(default_factory=LicenseConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    comments: CommentsConfig = field(default_factory=CommentsConfig)
    syntax: SyntaxConfig = field(default_factory=SyntaxConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)

    def __post_init__(self) -> None:
        if isinstance(self.sources, str) or not all(isinstance(s, str) for s in self.sources):
            raise ValueError(
                f"data.sources must be a list of paths, got {self.sources!r}")
        if not self.languages:
            raise ValueError("data.languages is empty: name at least one language, e.g. ['Python']")
        for lang in self.languages:
            try:
                get_language(lang)
            except ValueError as e:
                raise ValueError(f"data.languages: {e}") from None
        for name in ("max_file_bytes", "shard_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be > 0, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"data.workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.max_rejected_per_reason < 0:
            raise ValueError(
                "data.max_rejected_per_reason must be >= 0 (0 writes no rejected/ lines)")
        if self.engine not in ("local", "datatrove"):
            raise ValueError(f"data.engine must be 'local' or 'datatrove', got {self.engine!r}")
        if self.repo_layout not in ("auto", "root", "children"):
            raise ValueError(f"data.repo_layout must be auto, root or children, got "
                             f"{self.repo_layout!r}")
        if not 0.0 < self.dedup_threshold <= 1.0:
            raise ValueError(f"data.dedup_threshold must be in (0, 1], got {self.dedup_threshold}")
        for name in ("valid_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"data.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"data.valid_fraction + data.test_fraction = "
                f"{self.valid_fraction + self.test_fraction} leaves no training repos: keep it < 1"
            )

    def heuristics(self) -> dict:
        """Keyword arguments for quality.check_heuristics."""
        return {"max_line_length": self.max_line_length,
                "max_avg_line_length": self.max_avg_line_length,
                "min_alnum_fraction": self.min_alnum_fraction}

    def num_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    def fingerprint(self) -> str:
        """Hash of everything that changes the output (not workers/engine)."""
        values = {k: v for k, v in asdict(self).items() if k not in ("workers", "engine")}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
