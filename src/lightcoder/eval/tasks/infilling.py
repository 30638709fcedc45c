"""Infilling benchmarks built from HumanEval: HumanEval-infilling (execution) and SantaCoder-FIM (EM).

HumanEval-infilling (Bavarian et al. 2022) masks part of each canonical solution; the model fills
the middle given prompt (everything before) and suffix (everything after). Records use its fields
(task_id, prompt, suffix, canonical_solution, test, entry_point). When the official files are not
given (data=PATH), we build the three formats from HumanEval's canonical solutions:

- single-line: each non-blank line of the solution is one task (1,033, as the official set);
- multi-line: each run of consecutive lines whose first and last lines are non-blank (5,815, as
  the official set; `max_span_lines` caps the run length);
- random-span: 10 random non-blank character spans per solution, seeded (1,640, as the official
  count; the spans themselves are ours, not the official file's).

Judged by execution (program = prompt + middle + suffix + test + check) -> pass@1, and by exact
match of the stripped middle. Single-line completions are cut after their first line.

SantaCoder-FIM-style (Allal et al. 2023): single lines masked out of HumanEval (Python) and of our
MultiPL-E-style JavaScript/Java canonical solutions, full prefix and suffix given, exact match of
the stripped line (the first generated line) — research/aixcoder-7b.md §6.2.
"""

from __future__ import annotations

import json
import random
from functools import partial

from lightcoder.eval.metrics import exact_match
from lightcoder.eval.tasks import Problem, Task, register
from lightcoder.eval.tasks.humaneval import python_program, read_humaneval

FORMATS = ("single-line", "multi-line", "random-span")


def first_line(text: str) -> str:
    """The completion up to and including the first newline that follows non-blank text.

    Example: first_line("\\n    x = 1\\n    y = 2\\n") -> "\\n    x = 1\\n"
    """
    start = len(text) - len(text.lstrip())
    end = text.find("\n", start)
    return text if end < 0 else text[: end + 1]


def _line_starts(text: str) -> list[int]:
    starts, pos = [], 0
    for line in text.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    return starts + [len(text)]


def build_infilling(rows: list[dict], fmt: str, *, max_span_lines: int = 0, spans_per_problem: int = 10,
                    seed: int = 0) -> list[dict]:
    """HumanEval-infilling records of format `fmt` from HumanEval rows (task order, deterministic)."""
    if fmt not in FORMATS:
        raise ValueError(f"infilling format must be one of {FORMATS}, got {fmt!r}")
    tag = {"single-line": "SingleLineInfilling", "multi-line": "MultiLineInfilling",
           "random-span": "RandomSpanInfilling"}[fmt]
    out = []
    for row in rows:
        sol = row["canonical_solution"]
        starts = _line_starts(sol)
        lines = sol.splitlines(keepends=True)
        spans: list[tuple[int, int, str]] = []
        if fmt == "single-line":
            spans = [(starts[i], starts[i + 1], f"L{i}") for i, line in enumerate(lines) if line.strip()]
        elif fmt == "multi-line":
            longest = max_span_lines or len(lines)
            for i in range(len(lines)):
                for j in range(i, min(len(lines), i + longest)):
                    if lines[i].strip() and lines[j].strip():
                        spans.append((starts[i], starts[j + 1], f"L{i}_L{j}"))
        else:
            rng = random.Random(f"{seed}:{row['task_id']}")
            while len(spans) < spans_per_problem:
                a, b = sorted(rng.sample(range(len(sol) + 1), 2))
                if sol[a:b].strip():  # redraw blank spans: nothing to infill
                    spans.append((a, b, f"{len(spans)}"))
        for a, b, suffix_id in spans:
            out.append({"task_id": f"{tag}/{row['task_id']}/{suffix_id}", "entry_point": row["entry_point"],
                        "prompt": row["prompt"] + sol[:a], "suffix": sol[b:], "canonical_solution": sol[a:b],
                        "test": row["test"]})
    return out


class HumanEvalInfilling(Task):
    kind = "execution"
    infilling = True

    def __init__(self, *, fmt: str, data: str | None = None, humaneval: str | None = None,
                 limit: int | None = None, seed: int = 0, max_new_tokens: int = 128):
        self.fmt, self.name = fmt, f"humaneval-infill-{fmt}"
        self.data, self.humaneval, self.limit, self.seed = data, humaneval, limit, seed
        self.max_new_tokens = max_new_tokens
        self.description = f"HumanEval-infilling {fmt}: pass@1 and exact match"

    def records(self) -> list[dict]:
        if self.data:
            with open(self.data, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        return build_infilling(read_humaneval(self.humaneval), self.fmt, seed=self.seed)

    def problems(self) -> list[Problem]:
        rows = self.records()
        if self.limit is not None:  # a spread over all problems, not the first few functions only
            rows = sorted(rows, key=lambda r: random.Random(f"{self.seed}:{r['task_id']}").random())[: self.limit]
        return [Problem(task_id=r["task_id"], language="python", prompt=r["prompt"], suffix=r["suffix"],
                        reference=r["canonical_solution"], test=r["test"], entry_point=r["entry_point"],
                        task_type=self.fmt) for r in rows]

    def postprocess(self, problem: Problem, raw: str) -> str:
        return first_line(raw) if self.fmt == "single-line" else raw

    def program(self, problem: Problem, completion: str) -> str:
        return python_program(problem.prompt, completion, problem.suffix, problem.test, problem.entry_point)

    def match_scores(self, problem: Problem, completion: str) -> dict:
        return {"em": exact_match(completion, problem.reference)}

    def settings(self) -> dict:
        return {**super().settings(), "format": self.fmt, "data": self.data or "built from HumanEval",
                "limit": self.limit, "seed": self.seed}


class SantaCoderFIM(Task):
    kind = "match"
    infilling = True

    def __init__(self, *, lang: str, limit: int | None = None, seed: int = 0, max_new_tokens: int = 64,
                 data: str | None = None):
        self.lang, self.name = lang, f"santacoder-fim-{lang}"
        self.limit, self.seed, self.data, self.max_new_tokens = limit, seed, data, max_new_tokens
        self.description = f"SantaCoder-FIM-style single-line exact match ({lang})"

    def _sources(self) -> list[tuple[str, str, str, str]]:
        """(id, language, prompt, solution) for each source function."""
        if self.lang == "py":
            return [(r["task_id"], "python", r["prompt"], r["canonical_solution"]) for r in read_humaneval(self.data)]
        from lightcoder.eval.tasks.multipl_e import MultiPLE

        return [(p.task_id, p.language, p.prompt, p.reference) for p in MultiPLE(lang=self.lang).problems()]

    def problems(self) -> list[Problem]:
        problems = []
        for source_id, language, prompt, sol in self._sources():
            starts = _line_starts(sol)
            for i, line in enumerate(sol.splitlines(keepends=True)):
                if line.strip():
                    problems.append(Problem(task_id=f"{self.name}/{source_id}/L{i}", language=language,
                                            prompt=prompt + sol[: starts[i]], suffix=sol[starts[i + 1]:],
                                            reference=line, task_type=language))
        if self.limit is not None:
            problems = sorted(problems, key=lambda p: random.Random(f"{self.seed}:{p.task_id}").random())[: self.limit]
        return problems

    def postprocess(self, problem: Problem, raw: str) -> str:
        return first_line(raw)

    def match_scores(self, problem: Problem, completion: str) -> dict:
        return {"em": exact_match(completion, problem.reference)}

    def settings(self) -> dict:
        return {**super().settings(), "language": self.lang, "limit": self.limit, "seed": self.seed}


for _fmt in FORMATS:
    register(f"humaneval-infill-{_fmt}", f"HumanEval-infilling {_fmt} (built from HumanEval), pass@1 + EM")(
        partial(HumanEvalInfilling, fmt=_fmt))  # partial, not a lambda: get_task checks its options
for _lang in ("py", "js", "java"):
    register(f"santacoder-fim-{_lang}", f"SantaCoder-FIM-style single-line EM ({_lang})")(
        partial(SantaCoderFIM, lang=_lang))
