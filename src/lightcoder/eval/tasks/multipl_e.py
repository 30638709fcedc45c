"""MultiPL-E-style NL2Code in JavaScript, Java and C++ (Cassano et al. 2023), pass@k by execution.

Records: MultiPL-E's JSONL fields (name, language, prompt, tests, stop_tokens) plus, in our
bundled files, canonical_solution. program = prompt + completion + tests, as MultiPL-E runs it;
the completion is cut at the first stop token (Java: the method's closing brace line).

Bundled data (data/multipl_e_{js,java,cpp}.jsonl): 12 HumanEval problems translated by
`multipl_e_build.py` — a faithful small stand-in, not the 161-problem MultiPL-E set; pass
data=PATH to a real MultiPL-E file (e.g. humaneval-js.jsonl) for comparable numbers.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from lightcoder.eval.tasks import DATA_DIR, Problem, Task, register

LANG_KEYS = {"js": "javascript", "java": "java", "cpp": "cpp"}


class MultiPLE(Task):
    kind = "execution"

    def __init__(self, *, lang: str, data: str | None = None, limit: int | None = None,
                 max_new_tokens: int = 512):
        if lang not in LANG_KEYS:
            raise ValueError(f"MultiPL-E language must be one of {list(LANG_KEYS)}, got {lang!r}")
        self.lang, self.name = lang, f"multipl-e-{lang}"
        self.data = Path(data) if data else DATA_DIR / f"multipl_e_{lang}.jsonl"
        self.limit, self.max_new_tokens = limit, max_new_tokens
        self.description = f"MultiPL-E-style {LANG_KEYS[lang]} NL2Code, pass@k"

    def problems(self) -> list[Problem]:
        if not self.data.is_file():
            raise FileNotFoundError(f"MultiPL-E file {self.data} not found; pass data=PATH")
        problems = []
        for lineno, line in enumerate(self.data.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = [k for k in ("name", "prompt", "tests", "stop_tokens") if k not in row]
            if missing:
                raise ValueError(f"{self.data}:{lineno}: MultiPL-E record lacks {missing}")
            problems.append(Problem(task_id=f"{self.name}/{row['name']}", language=LANG_KEYS[self.lang],
                                    prompt=row["prompt"], reference=row.get("canonical_solution", ""),
                                    test=row["tests"], stop=tuple(row["stop_tokens"]),
                                    extra={"humaneval_id": row.get("humaneval_id", "")}))
        return problems[: self.limit]

    def program(self, problem: Problem, completion: str) -> str:
        return problem.prompt + completion + problem.test

    def settings(self) -> dict:
        return {**super().settings(), "data": str(self.data), "limit": self.limit, "language": LANG_KEYS[self.lang]}


for _lang in LANG_KEYS:
    register(f"multipl-e-{_lang}", f"MultiPL-E-style {LANG_KEYS[_lang]} (bundled: 12 translated HumanEval "
             "problems), pass@k")(partial(MultiPLE, lang=_lang))  # partial: get_task reads its options
