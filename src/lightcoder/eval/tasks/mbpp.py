"""MBPP (Austin et al. 2021): Python functions from a one-sentence description and one test.

Format (one JSON object per line, as the released mbpp.jsonl): task_id, text, code, test_list,
test_setup_code, challenge_test_list. Prompt (the common zero-shot form):

    \"\"\"
    {text}
    {test_list[0]}
    \"\"\"

program = completion + test_setup_code + every test_list assert; pass iff it exits 0.

The MBPP dataset is not on these machines, so without `data=PATH` the task reads
`data/mbpp_sample.jsonl`: 12 problems we wrote in MBPP's format and style (NOT MBPP problems;
numbers on it are not comparable with published MBPP scores). Pass the real file for those.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightcoder.eval.tasks import DATA_DIR, Problem, Task, register

STOP = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n```")
SAMPLE = DATA_DIR / "mbpp_sample.jsonl"


def mbpp_prompt(text: str, first_test: str) -> str:
    return f'"""\n{text}\n{first_test}\n"""\n'


class MBPP(Task):
    kind = "execution"

    def __init__(self, *, data: str | None = None, limit: int | None = None, max_new_tokens: int = 512):
        self.name = "mbpp"
        self.data = Path(data) if data else SAMPLE
        self.limit, self.max_new_tokens = limit, max_new_tokens
        self.description = "MBPP-format Python NL2Code, pass@k"

    def problems(self) -> list[Problem]:
        if not self.data.is_file():
            raise FileNotFoundError(f"MBPP file {self.data} not found; pass data=PATH to mbpp.jsonl")
        problems = []
        for lineno, line in enumerate(self.data.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not row.get("test_list") or "code" not in row or "text" not in row:
                raise ValueError(f"{self.data}:{lineno}: an MBPP record needs text, code and test_list")
            tests = row.get("test_setup_code", "") + "\n" + "\n".join(row["test_list"]) + "\n"
            problems.append(Problem(task_id=f"mbpp/{row['task_id']}", language="python",
                                    prompt=mbpp_prompt(row["text"], row["test_list"][0]),
                                    reference=row["code"], test=tests, stop=STOP))
        return problems[: self.limit]

    def program(self, problem: Problem, completion: str) -> str:
        return f"{completion}\n\n{problem.test}"

    def settings(self) -> dict:
        return {**super().settings(), "data": str(self.data), "limit": self.limit, "stop": list(STOP),
                "is_sample": self.data == SAMPLE}


register("mbpp", "MBPP format (bundled: 12 MBPP-style problems; data=PATH for the real set), pass@k")(MBPP)
