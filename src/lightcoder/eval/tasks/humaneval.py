"""HumanEval (Chen et al. 2021): 164 Python functions from signature + docstring, judged by tests.

Prompt: the problem's `prompt` (signature and docstring), no suffix, no path (aiXcoder's NL2Code
setting, research/aixcoder-7b.md §6.0). The completion is cut at the Codex paper's stop
sequences; program = prompt + completion + test + `check(entry_point)`; pass iff it exits 0.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from lightcoder.eval.tasks import Problem, Task, humaneval_path, register

STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # Codex paper, §2.3


def read_humaneval(path: str | Path | None = None) -> list[dict]:
    """The raw HumanEval records (task_id, prompt, canonical_solution, test, entry_point)."""
    path = humaneval_path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for i, row in enumerate(rows):
        missing = [k for k in ("task_id", "prompt", "canonical_solution", "test", "entry_point") if k not in row]
        if missing:
            raise ValueError(f"{path}:{i + 1}: HumanEval record lacks {missing}")
    return rows


def python_program(prompt: str, completion: str, suffix: str, test: str, entry_point: str) -> str:
    """The executed file, as in the reference harness: prompt + completion (+ suffix) + test + check."""
    return f"{prompt}{completion}{suffix}\n\n{test}\n\ncheck({entry_point})\n"


class HumanEval(Task):
    kind = "execution"
    mode = "psm"

    def __init__(self, *, data: str | None = None, limit: int | None = None, name: str = "humaneval",
                 max_new_tokens: int = 512):
        self.name = name
        self.data, self.limit, self.max_new_tokens = data, limit, max_new_tokens
        self.description = "HumanEval: Python NL2Code, pass@k"

    def problems(self) -> list[Problem]:
        rows = read_humaneval(self.data)[: self.limit]
        return [Problem(task_id=r["task_id"], language="python", prompt=r["prompt"],
                        reference=r["canonical_solution"], test=r["test"], entry_point=r["entry_point"],
                        stop=STOP) for r in rows]

    def program(self, problem: Problem, completion: str) -> str:
        return python_program(problem.prompt, completion, problem.suffix, problem.test, problem.entry_point)

    def settings(self) -> dict:
        return {**super().settings(), "data": str(humaneval_path(self.data)), "limit": self.limit,
                "stop": list(STOP)}


register("humaneval", "HumanEval (164 Python problems), pass@k by execution")(HumanEval)
