"""CrossCodeEval-style cross-file line completion (Ding et al. 2023), with BM25 retrieval.

Records: CrossCodeEval's JSONL — prompt (in-file code before the line), groundtruth (the line),
right_context, metadata {task_id, repository, file}, optionally crossfile_context {list:
[{retrieved_chunk, filename, score}]}. Settings:

- "infile": the prompt alone;
- "bm25": the 3 best in-repository chunks prepended as comments, ranked by Okapi BM25
  (k1=1.2, b=0.75) against the prompt's last 10 lines. Chunks are 10-line windows with stride 5
  over the repository's other files (`repo_root/<repository>/...`), or the record's own
  crossfile_context list when no repo_root is given.

Without the CrossCodeEval files, `data=DIR` builds records in its format from a directory of
repositories (each subdirectory one repository; `build_from_repos`): lines that use a name
defined only in ANOTHER file of the same repository, i.e. lines that need cross-file context.

Metrics (first non-blank generated line vs the groundtruth, both stripped): code exact match,
edit similarity = rapidfuzz `Levenshtein.normalized_similarity` x 100 (the pinned
implementation; its version is stamped), identifier exact match and identifier F1 over the
identifiers (regex `[A-Za-z_][A-Za-z0-9_]*`, keywords removed) of each line.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import rapidfuzz
from rapidfuzz.distance import Levenshtein

from lightcoder.eval.codebleu import KEYWORDS
from lightcoder.eval.tasks import Problem, Task, register
from lightcoder.eval.tasks.infilling import first_line

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")
_COMMENT = {"python": "#", "java": "//", "javascript": "//", "typescript": "//", "csharp": "//", "cpp": "//"}
_EXT = {"python": (".py",), "java": (".java",), "javascript": (".js",), "typescript": (".ts",),
        "csharp": (".cs",), "cpp": (".cpp", ".h", ".hpp")}
ALL_KEYWORDS = frozenset().union(*KEYWORDS.values())


def identifiers(code: str) -> list[str]:
    """Identifiers of a line, keywords removed. Example: identifiers("x = self.f(y)") -> ['x', 'f', 'y']"""
    return [t for t in _IDENT.findall(code) if t not in ALL_KEYWORDS]


def identifier_scores(pred: str, ref: str) -> dict:
    """{id_em, id_f1}: identifier lists equal; F1 of the identifier multisets (both empty: 1.0)."""
    p, r = identifiers(pred), identifiers(ref)
    if not p and not r:
        return {"id_em": True, "id_f1": 1.0}
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return {"id_em": p == r, "id_f1": 0.0}
    precision, recall = common / len(p), common / len(r)
    return {"id_em": p == r, "id_f1": 2 * precision * recall / (precision + recall)}


def code_scores(pred: str, ref: str) -> dict:
    """Per-task row: em (bool), es, id_em (bool), id_f1 — es and id_f1 in 0..100 like the tables."""
    pred, ref = first_line(pred).strip(), ref.strip()
    ids = identifier_scores(pred, ref)
    return {"em": pred == ref, "es": 100.0 * Levenshtein.normalized_similarity(pred, ref),
            "id_em": ids["id_em"], "id_f1": 100.0 * ids["id_f1"]}


# ---- BM25 ----

class BM25:
    """Okapi BM25 over token lists. Example: BM25([["a", "b"], ["c"]]).scores(["a"]) -> [0.98.., 0.0]"""

    def __init__(self, docs: list[list[str]], k1: float = 1.2, b: float = 0.75):
        self.docs, self.k1, self.b = [Counter(d) for d in docs], k1, b
        self.lengths = [len(d) for d in docs]
        self.avg = sum(self.lengths) / len(docs) if docs else 0.0
        df = Counter(t for d in self.docs for t in d)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: list[str]) -> list[float]:
        out = []
        for doc, length in zip(self.docs, self.lengths):
            s = 0.0
            for t in query:
                f = doc.get(t, 0)
                if f:
                    s += self.idf[t] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * length / self.avg))
            out.append(s)
        return out


def chunk_file(path: str, text: str, window: int = 10, stride: int = 5) -> list[tuple[str, str]]:
    lines = text.splitlines()
    return [(path, "\n".join(lines[i:i + window])) for i in range(0, max(1, len(lines) - window + stride), stride)
            if "\n".join(lines[i:i + window]).strip()]


def retrieve(prompt: str, chunks: list[tuple[str, str]], k: int = 3) -> list[tuple[str, str, float]]:
    """The k chunks (path, text, score) most similar to the prompt's last 10 lines, best first."""
    if not chunks:
        return []
    query = _TOKEN.findall("\n".join(prompt.splitlines()[-10:]))
    scores = BM25([_TOKEN.findall(text) for _, text in chunks]).scores(query)
    best = sorted(range(len(chunks)), key=lambda i: (-scores[i], i))[:k]
    return [(chunks[i][0], chunks[i][1], scores[i]) for i in best if scores[i] > 0]


def format_context(snippets: list[tuple[str, str, float]], language: str) -> str:
    """Retrieved chunks as comments before the in-file prompt (CrossCodeEval's layout)."""
    c = _COMMENT.get(language, "#")
    parts = [f"{c} Here are some relevant code fragments from other files of the repo:\n"]
    for path, text, _ in reversed(snippets):  # the best chunk closest to the cursor
        parts.append(f"{c} the below code fragment can be found in: {path}\n")
        parts += [f"{c} {line}\n" for line in text.splitlines()]
    return "".join(parts)


_DEFINITION = re.compile(r"^\s*(?:async\s+)?(?:def|class|function|interface|struct)\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)


def build_from_repos(root: str | Path, *, language: str = "python", per_repo: int = 5, seed: int = 0) -> list[dict]:
    """CrossCodeEval-format records from the repositories under `root` (deterministic given seed).

    A candidate line is a non-definition line of file F that uses an identifier defined (def /
    class / function / interface / struct) in another file of the repository and not in F.
    Example record: {"prompt": <F up to the line>, "groundtruth": "area = triangle_area(b, h)",
    "right_context": <F after it>, "metadata": {"task_id": "proj/0", "repository": "proj", "file": "main.py"}}
    """
    import random

    records = []
    for repo in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        files = {str(p.relative_to(repo)): p.read_text(encoding="utf-8", errors="replace")
                 for p in sorted(repo.rglob("*")) if p.is_file() and p.suffix in _EXT.get(language, ())}
        defined = {path: set(_DEFINITION.findall(text)) for path, text in files.items()}
        candidates = []
        for path, text in files.items():
            elsewhere = set().union(*(d for q, d in defined.items() if q != path)) - defined[path]
            offset = 0
            for line in text.splitlines(keepends=True):
                stripped = line.strip()
                if (stripped and not _DEFINITION.match(line) and not stripped.startswith(("import ", "from "))
                        and elsewhere & set(_IDENT.findall(stripped))):
                    candidates.append((path, offset, line))
                offset += len(line)
        random.Random(f"{seed}:{repo.name}").shuffle(candidates)
        for i, (path, offset, line) in enumerate(sorted(candidates[:per_repo], key=lambda c: (c[0], c[1]))):
            text = files[path]
            indent = line[: len(line) - len(line.lstrip())]
            records.append({"prompt": text[:offset] + indent, "groundtruth": line.strip(),
                            "right_context": text[offset + len(line.rstrip("\n")):],
                            "metadata": {"task_id": f"{repo.name}/{i}", "repository": repo.name, "file": path}})
    return records


class CrossCodeEval(Task):
    kind = "match"

    def __init__(self, *, data: str | None = None, records: list[dict] | None = None, setting: str = "bm25",
                 repo_root: str | None = None, language: str = "python", limit: int | None = None,
                 top_k: int = 3, max_new_tokens: int = 50):
        if setting not in ("infile", "bm25"):
            raise ValueError(f"crosscodeeval setting must be 'infile' or 'bm25', got {setting!r}")
        self.name = f"crosscodeeval-{setting}"
        self.data, self.records_given, self.setting, self.repo_root = data, records, setting, repo_root
        self.language, self.limit, self.top_k, self.max_new_tokens = language, limit, top_k, max_new_tokens
        self.description = "CrossCodeEval-style cross-file line completion: EM / ES / identifier match"

    def records(self) -> list[dict]:
        if self.records_given is not None:
            return self.records_given
        if not self.data:
            raise ValueError("crosscodeeval needs data=FILE.jsonl in CrossCodeEval's format, or data=DIR of repos")
        if Path(self.data).is_dir():
            self.repo_root = self.repo_root or self.data
            return build_from_repos(self.data, language=self.language)
        with open(self.data, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def _chunks(self, row: dict) -> list[tuple[str, str]]:
        meta = row.get("metadata", {})
        if self.repo_root:
            repo = Path(self.repo_root) / meta.get("repository", "")
            own = meta.get("file", "")
            chunks = []
            for p in sorted(repo.rglob("*")):
                rel = str(p.relative_to(repo))
                if p.is_file() and p.suffix in _EXT.get(self.language, (p.suffix,)) and rel != own:
                    chunks += chunk_file(rel, p.read_text(encoding="utf-8", errors="replace"))
            return chunks
        return [(c.get("filename", ""), c["retrieved_chunk"]) for c in row.get("crossfile_context", {}).get("list", [])]

    def problems(self) -> list[Problem]:
        problems = []
        for i, row in enumerate(self.records()[: self.limit]):
            missing = [k for k in ("prompt", "groundtruth") if k not in row]
            if missing:
                raise ValueError(f"crosscodeeval record {i}: lacks {missing}")
            meta = row.get("metadata", {})
            prompt, snippets = row["prompt"], []
            if self.setting == "bm25":
                snippets = retrieve(prompt, self._chunks(row), self.top_k)
                if snippets:
                    prompt = format_context(snippets, self.language) + prompt
            problems.append(Problem(task_id=meta.get("task_id", f"cceval/{i}"), language=self.language,
                                    prompt=prompt, suffix=row.get("right_context", ""), reference=row["groundtruth"],
                                    task_type=self.setting, path=meta.get("file", ""),
                                    extra={"retrieved": [(p, s) for p, _, s in snippets]}))
        return problems

    def postprocess(self, problem: Problem, raw: str) -> str:
        return first_line(raw)

    def match_scores(self, problem: Problem, completion: str) -> dict:
        return code_scores(completion, problem.reference)

    def settings(self) -> dict:
        return {**super().settings(), "setting": self.setting, "data": self.data, "top_k": self.top_k,
                "bm25": {"k1": 1.2, "b": 0.75, "window": 10, "stride": 5, "query_lines": 10},
                "edit_distance": f"rapidfuzz {rapidfuzz.__version__} Levenshtein.normalized_similarity",
                "limit": self.limit}


register("crosscodeeval", "CrossCodeEval format (data=FILE.jsonl or DIR of repos to build from, "
         "setting=infile|bm25): EM/ES/identifier match")(
    CrossCodeEval)
